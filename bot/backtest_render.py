"""What ``!backtest`` shows: the progress line it keeps editing, and the result (an embed
with the metrics and the equity PNG in Discord, plain text on the console)."""

from __future__ import annotations

from pathlib import Path

import discord

from bot.render import FileData, Reply, pnl_colour
from engine.backtest.metrics import Metrics
from engine.backtest.service import BacktestOutcome
from engine.domain import usd

CHART_NAME = "backtest.png"
BAR_CELLS = 10


def progress_text(strategy: str, days: int, done: float) -> str:
    filled = min(BAR_CELLS, int(done * BAR_CELLS))
    bar = "▓" * filled + "░" * (BAR_CELLS - filled)
    return f"⏳ Backtest of {strategy} over the last {days} days: {bar} {done:.0%}"


def finished_text(outcome: BacktestOutcome) -> str:
    return f"✅ Backtest of {outcome.strategy} from {outcome.start} to {outcome.end}: done"


def refused_text(strategy: str, why: str) -> str:
    return f"✋ No backtest of {strategy}: {why}"


def failed_text(strategy: str, why: str) -> str:
    return f"✋ Backtest of {strategy} stopped: {why}"


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.1f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def metric_lines(m: Metrics) -> list[tuple[str, str]]:
    """(name, value) of every metric, as the embed's fields and the console show them."""
    dd = m.max_drawdown
    return [
        ("Final equity", usd(m.final_equity)),
        ("Total return", _pct(m.total_return)),
        ("CAGR", _pct(m.cagr)),
        ("Sharpe", _ratio(m.sharpe)),
        ("Sortino", _ratio(m.sortino)),
        ("Max drawdown", "none" if dd.depth == 0 else _pct(-dd.depth)),
        ("Trades", f"{m.trades} ({m.fills} fills)"),
        ("Win rate", _pct(m.win_rate, signed=False)),
        ("Profit factor", _ratio(m.profit_factor)),
        ("Average trade", "-" if m.average_trade is None else usd(m.average_trade, signed=True)),
        ("Exposure", _pct(m.exposure, signed=False)),
        ("Fees", usd(m.fees)),
    ]


def result_reply(outcome: BacktestOutcome, chart_png: bytes | None) -> Reply:
    m = outcome.metrics
    embed = discord.Embed(
        title=f"Backtest: {outcome.strategy}",
        description=(
            f"{outcome.start} to {outcome.end} · {m.days} trading days · from "
            f"{usd(m.starting_cash)}\nSharpe and Sortino on daily returns, 252 days a year, "
            "risk-free 0"
        ),
        colour=pnl_colour(m.final_equity - m.starting_cash),
    )
    for name, value in metric_lines(m):
        embed.add_field(name=name, value=value, inline=True)
    embed.set_footer(text=f"Report: {outcome.folder}")
    files = []
    if chart_png is not None:
        embed.set_image(url=f"attachment://{CHART_NAME}")
        files.append(FileData(CHART_NAME, chart_png))
    return Reply(embeds=[embed], files=files)


def console_text(outcome: BacktestOutcome) -> str:
    m = outcome.metrics
    head = f"Backtest of {outcome.strategy}, {outcome.start} to {outcome.end}:"
    lines = [head, *(f"  {name:<14} {value}" for name, value in metric_lines(m))]
    lines.append(f"  Report         {outcome.folder} (equity chart: {Path(outcome.chart).name})")
    return "\n".join(lines)
