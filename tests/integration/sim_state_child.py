"""Child for test_sim_state_sigkill: drives a SimExchange with a state file as fast as it can
(prices for four symbols, one order after each, now and then a resting limit order and a
cancel) and prints ``ACK <client id>`` after each order is committed, until it is killed.

    python tests/integration/sim_state_child.py <state path> <first order number> <seed> [tear]

With ``tear`` = N > 0 the child SIGKILLs itself in the middle of writing its N-th commit, half
the line on disk: the torn line a crash inside the write leaves.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from contextlib import suppress
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.clock import ReplayClock
from engine.errors import BrokerRejected
from engine.sim import store as store_module
from engine.sim.exchange import SimExchange
from engine.sim.store import SimStateStore
from tests.integration.sim_state_common import START, SYMBOLS, make_exchange


def tear_at(commit: int) -> None:
    """Make the ``commit``-th append write half its line, then SIGKILL this process."""
    appends = 0
    real_append = SimStateStore.append

    def append(self: SimStateStore, *args: Any) -> None:
        nonlocal appends
        appends += 1
        if appends == commit:
            line = store_module._line(*args, full=False)
            with self.path.open("ab") as f:
                f.write(line[: len(line) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real_append(self, *args)

    SimStateStore.append = append  # type: ignore[method-assign]


def main() -> None:
    path, first, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4 and int(sys.argv[4]) > 0:
        tear_at(int(sys.argv[4]))
    clock = ReplayClock(START)
    exchange: SimExchange = make_exchange(path, clock)
    clock.set(max(START, exchange.last_ts))  # resume where the market left off, as the app does
    rng = random.Random(seed)
    n = first
    ts = clock.now()
    while True:
        ts += timedelta(seconds=20)
        clock.set(ts)
        for symbol in SYMBOLS:
            price = Decimal(rng.randint(9_000, 11_000)) / 100
            exchange.on_price(symbol, price, ts)
        symbol = rng.choice(SYMBOLS)
        client_id = f"c{n}"
        n += 1
        if rng.random() < 0.2:
            limit = Decimal(rng.randint(9_000, 11_000)) / 100
            order = exchange.submit(symbol, "buy", 1, "limit", "gtc", limit, client_id)
            if rng.random() < 0.5:
                with suppress(BrokerRejected):  # it may have filled at once
                    exchange.cancel(order.id)
        else:
            side = rng.choice(("buy", "sell"))
            exchange.submit(symbol, side, rng.randint(1, 5), client_order_id=client_id)
        print(f"ACK {client_id}", flush=True)


if __name__ == "__main__":
    main()
