"""The chaos suite of issue 11, run by hand like the benchmarks: ``python -m tests.chaos``.

Real processes (the standalone fake Alpaca server, the engine as ``run_bot.py --console`` in
paper mode) and real faults (SIGKILL, SIGSTOP, a full tmpfs, poisoned trade-update frames, a
Discord outage at the alert router's transport seam); each scenario prints one row: runs,
duplicates, lost fills, phantom fills, cash difference against the broker, time to halt or to
flat, pass or fail. ``test_chaos_smoke.py`` runs a tiny version in the normal suite."""
