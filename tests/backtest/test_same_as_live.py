"""The backtest and the live replay (the real engine on the simulator, at maximum speed) on
the same bars: the same trades, the same final equity."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest

from engine.backtest.runner import BacktestConfig, BacktestRunner
from engine.feed.csv_bars import CsvBars
from tests.support.app import sim_settings, start_app

TWO_STRATEGIES = {
    "enabled": ["trend", "revert"],
    "named": {
        "trend": {"class": "golden_cross", "symbols": "AAPL,MSFT", "fast": "5", "slow": "20"},
        "revert": {
            "class": "vwap_reversion",
            "symbols": "SPY",
            "order_qty": "3",
            "rsi_period": "5",
            "oversold": "40",
            "overbought": "60",
        },
    },
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "sim"),
    [
        pytest.param({}, {}, id="golden-cross-defaults"),
        pytest.param(TWO_STRATEGIES, {"max_fill_qty": "3"}, id="two-strategies-partial-fills"),
    ],
)
async def test_backtest_when_same_bars_as_live_replay_then_same_trades_and_final_equity(
    tmp_path: Path, strategy: dict[str, Any], sim: dict[str, Any]
) -> None:
    settings = sim_settings(tmp_path, until=time(16, 0), strategy=strategy, sim=sim)
    app = await start_app(settings)
    try:
        fills = await app.journal.load_fills()
        orders = {o.client_order_id: o for o in await app.journal.load_orders()}
        live_equity = app.engine.portfolio.equity
    finally:
        await app.stop()
    assert settings.sim.replay_csv is not None
    source = CsvBars(settings.sim.replay_csv)
    # The live replay trades the file's last session; the days before are its history.
    config = BacktestConfig.from_settings(settings, trade_from=source.last_session_start)

    result = BacktestRunner(config).run(source.bars())

    live = [
        (f.ts, f.symbol, f.side, f.qty, f.price, f.commission, orders[f.client_order_id].strategy)
        for f in fills
    ]
    ours = [(t.ts, t.symbol, t.side, t.qty, t.price, t.fees, t.strategy) for t in result.trades]
    assert len(live) > 10
    assert ours == live
    assert result.final_equity == live_equity
