"""The console in sim mode follows the replayed market: #reports shows the market open and,
once the replay has played the close, the end-of-day report; the replay's end is announced,
and a restart with nothing left to replay says how to start a fresh day."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.console_proc import ConsoleProcess

pytestmark = pytest.mark.slow

FAST = {"SIM_REPLAY_SPEED": "max"}


async def test_console_when_sample_replayed_then_market_open_end_and_end_of_day_in_order(
    tmp_path: Path,
) -> None:
    console = await ConsoleProcess.start(tmp_path / "data", FAST)
    opened = await console.read_until(lambda s: s.startswith("[#reports] 🔔 Market open"))
    ended = await console.read_until(lambda s: s.startswith("[#system-alerts] ⏹️ Replay finished"))
    report = await console.read_until(lambda s: s.startswith("[#reports] 📊 End of day"))
    await console.send("!quit")
    code, _, err = await console.finish()

    assert code == 0, err
    assert opened == "[#reports] 🔔 Market open · Fri Nov 20 (closes 16:00 ET)"
    assert "the replayed market stopped at Fri Nov 20 16:00 ET" in ended
    assert "for a fresh day, start with an empty data dir" in ended
    assert report == "[#reports] 📊 End of day · Fri Nov 20"


async def test_console_when_restarted_after_the_replay_ended_then_says_how_to_start_fresh(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = await ConsoleProcess.start(data, FAST)
    await first.read_until(lambda s: s.startswith("[#reports] 📊 End of day"))
    await first.send("!quit")
    assert (await first.finish())[0] == 0

    again = await ConsoleProcess.start(data, FAST)
    over = await again.read_until(lambda s: s.startswith("[#system-alerts] ⏹️ Nothing left"))
    await again.send("!status")
    await again.read_until(lambda s: s.startswith("Feed:"))
    await again.send("!quit")
    code, _, err = await again.finish()

    assert code == 0, err
    assert f"the replay in {data} ended in an earlier run" in over
    assert f"delete {data}, or pass --data-dir" in over
    out = "\n".join(again.lines)
    assert "📊 End of day" not in out  # the day was reported once, by the first run
    assert "🔔 Market open" not in out
