"""Child process for test_flatten_sigkill: a real engine on the simulator that starts a
flatten and then hangs in it, waiting for the parent's SIGKILL.

Usage: python tests/integration/flatten_child.py <tmp dir> <before-close|after-close>

``before-close``: the close-all request never answers (nothing closed at the broker).
``after-close``: close-all answers and the fills arrive, then the broker check hangs.
Prints ``ACK positions <n>`` once the replay is done, then ``ACK hanging`` from inside the
flatten, after its REDUCING has been persisted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

# Import this checkout's engine, not whichever one the venv was installed from.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.domain import TradingState
from tests.support.app import sim_settings, start_app

ACTOR = "alice"


def ack(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(tmp: Path, where: str) -> None:
    app = await start_app(sim_settings(tmp))
    ack(f"ACK positions {len(app.engine.portfolio.positions())}")
    broker = app.broker
    forever = asyncio.Event()

    async def hang(*args: object, **kwargs: object) -> object:
        assert app.engine.state.state is TradingState.REDUCING  # persisted before it starts
        ack("ACK hanging")
        await forever.wait()
        raise AssertionError("unreachable")

    if where == "before-close":
        broker.close_all_positions = hang  # type: ignore[method-assign]
    else:
        broker.get_positions = hang  # type: ignore[method-assign]
    await app.engine.flatten(ACTOR)
    raise AssertionError("the flatten should never end")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
