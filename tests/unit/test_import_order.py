"""Every module of the project can be the first one a process imports: an import cycle that
only bites in one order (a CLI entry point or a test importing a feed module first) fails
here, not in the trader's start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, pkgutil, sys
import bot, config, engine
ours = ("bot", "config", "engine")
names = sorted(
    m.name for pkg in (bot, config, engine)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
)
for name in names:
    for loaded in [k for k in sys.modules if k.split(".")[0] in ours]:
        del sys.modules[loaded]  # third-party packages stay loaded: only ours import again
    try:
        importlib.import_module(name)
    except Exception as exc:
        print(f"{name}: {exc!r}")
print(f"{len(names)} modules")
"""


def test_every_module_when_imported_first_then_no_import_cycle_breaks_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr
    *failures, count = out.stdout.strip().splitlines()
    assert failures == []
    assert int(count.split()[0]) > 100  # the walk found the packages' modules
