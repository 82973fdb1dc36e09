"""A tiny chaos run in the normal suite: two SIGKILLs of the engine (its own process) while it
trades on the standalone fake (its own process), then 0 duplicates, 0 lost, 0 phantom fills
and the journal's cash equal to the broker's to the cent. The full suite: python -m tests.chaos
(README, Benchmarks)."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from tests.chaos.scenarios import random_kills
from tests.chaos.views import BrokerView, Fill, JournalView, compare

pytestmark = pytest.mark.slow


async def test_chaos_when_two_sigkills_while_trading_then_journal_matches_broker(
    tmp_path: Path,
) -> None:
    result = await random_kills(2, random.Random(11), tmp_path)

    assert result.checks == []
    assert result.tally.notes == []
    assert (result.tally.duplicates, result.tally.lost, result.tally.phantom) == (0, 0, 0)
    assert result.tally.cash_diff == 0
    assert result.tally.position_diffs == 0
    assert result.passed


def _fill(key: str, qty: str = "10", price: str = "100.005", side: str = "buy") -> Fill:
    return Fill(key, key.split(":")[0], "AAPL", side, Decimal(qty), Decimal(price))


def test_compare_when_journal_and_broker_differ_then_each_difference_counted() -> None:
    """The figures the suite prints can be non-zero: a missing, an invented and a doubled
    fill, a signal sent twice and a cent of cash are each seen."""
    broker = BrokerView(
        fills={k: _fill(k) for k in ("o1:10", "o2:10", "o3:10")},
        orders=[
            {"id": "o1", "client_order_id": "gc-AAPL-20261204T150000-aaaa", "filled_qty": "10"},
            {"id": "o2", "client_order_id": "gc-AAPL-20261204T150000-bbbb", "filled_qty": "10"},
            {"id": "o3", "client_order_id": "gc-AAPL-20261204T150100-cccc", "filled_qty": "10"},
        ],
        cash=Decimal("96999.86"),  # 100,000 - 3 x 1,000.05 (10 x 100.005, half-up) + a cent
        positions={"AAPL": Decimal(30)},
    )
    journal = JournalView(
        fills={k: _fill(k) for k in ("o1:10", "o2:10", "ghost:10")}
        | {"o3:5": _fill("o3:5", "5"), "o3:10": _fill("o3:10", "10")},
        fill_rows=5,
        quarantined=0,
        state="ACTIVE",
    )

    tally = compare(journal, broker, due=set(broker.fills))

    assert (tally.lost, tally.phantom) == (0, 2)  # ghost:10, o3:5
    assert tally.duplicates == 2  # o1/o2 share a signal; o3 journaled 15 of 10
    # The journal: 100,000 - 4 x 1,000.05 - 500.03 (5 x 100.005) = 95,499.77.
    assert tally.cash_diff == Decimal("95499.77") - Decimal("96999.86")
    assert not tally.clean

    missing = compare(JournalView({"o1:10": _fill("o1:10")}, 1, 0, "ACTIVE"), broker, cash=False)
    assert (missing.lost, missing.phantom, missing.cash_diff) == (2, 0, Decimal(0))


async def test_chaos_frame_hook_when_posted_then_sent_as_is_to_listening_clients() -> None:
    """The fake's loopback hook the poisoned-update scenario drives from another process."""
    import aiohttp

    from tests.fakes.alpaca import FakeAlpaca
    from tests.fakes.alpaca.server import CHAOS_FRAME_PATH

    keys = {"APCA-API-KEY-ID": "FAKEKEYID", "APCA-API-SECRET-KEY": "FAKESECRET"}
    async with (
        FakeAlpaca() as fake,
        aiohttp.ClientSession() as http,
        http.ws_connect(fake.trade_stream_url) as ws,
    ):
        auth = {"action": "auth", "key": "FAKEKEYID", "secret": "FAKESECRET"}
        await ws.send_json(auth)
        await ws.receive()
        await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
        await ws.receive()
        frame = '{"stream": "trade_updates", "data": {"event": "fill", "ord'
        url = fake.base_url + CHAOS_FRAME_PATH
        async with http.post(url, json={"frame": frame}, headers=keys) as sent:
            answer = await sent.json()
        received = await ws.receive(timeout=5)
        async with http.post(url, json={"frame": frame}) as anonymous:
            refused = anonymous.status
        async with http.post(url, json={"text": 1}, headers=keys) as wrong:
            bad = wrong.status

    assert answer == {"sent_to": 1}
    data = received.data
    assert (data.decode() if isinstance(data, bytes) else data) == frame
    assert refused == 401
    assert bad == 422
