"""A backtest's report folder and its printed summary.

``trades.csv`` (every execution: time, symbol, side, qty, price, fees, strategy, reason),
``equity.csv`` (each trading day's closing equity, cash, return and drawdown),
``summary.json`` (what was run and the metrics), ``equity.png`` (equity with its drawdown
underneath). Times are UTC ISO-8601; money is written exactly (Decimal strings).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.backtest.metrics import CONVENTIONS, Metrics, daily_returns
from engine.backtest.results import BacktestResult
from engine.clock import NEW_YORK
from engine.domain import usd

TRADES_CSV = "trades.csv"
EQUITY_CSV = "equity.csv"
SUMMARY_JSON = "summary.json"
EQUITY_PNG = "equity.png"
MAX_PLOT_POINTS = 2_000
MINUTES_PER_DAY = 390


@dataclass(frozen=True)
class RunInfo:
    """What was backtested, for the summary."""

    strategies: Sequence[Mapping[str, Any]]
    """Each strategy: name, class, symbols, order_qty, long_only, params."""
    source: str
    start: str | None = None
    end: str | None = None
    pricing: Mapping[str, str] = field(default_factory=dict)
    """starting_cash, slippage_bps, commission_per_share, commission_min, max_fill_qty."""


def metrics_json(metrics: Metrics) -> dict[str, Any]:
    plain: dict[str, Any] = _plain(asdict(metrics))
    return plain


def summary(result: BacktestResult, metrics: Metrics, info: RunInfo) -> dict[str, Any]:
    bars_per_s = result.bars / result.elapsed_s if result.elapsed_s > 0 else None
    return {
        "run": _plain(asdict(info)),
        "metrics": metrics_json(metrics),
        "conventions": CONVENTIONS,
        "rejections": dict(result.rejections),
        "halts": list(result.halts),
        "paused_strategies": dict(result.paused),
        "bars": result.bars,
        "traded_bars": result.traded_bars,
        "elapsed_s": round(result.elapsed_s, 3),
        "bars_per_s": None if bars_per_s is None else round(bars_per_s),
    }


def write_report(
    folder: Path, result: BacktestResult, metrics: Metrics, info: RunInfo
) -> dict[str, Path]:
    """Write the four files into ``folder`` (made if needed); their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": folder / TRADES_CSV,
        "equity": folder / EQUITY_CSV,
        "summary": folder / SUMMARY_JSON,
        "chart": folder / EQUITY_PNG,
    }
    paths["trades"].write_text(trades_csv(result), encoding="utf-8")
    paths["equity"].write_text(equity_csv(result), encoding="utf-8")
    text = json.dumps(summary(result, metrics, info), indent=2) + "\n"
    paths["summary"].write_text(text, encoding="utf-8")
    paths["chart"].write_bytes(equity_png(result, title=_title(info)))
    return paths


def trades_csv(result: BacktestResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "symbol", "side", "qty", "price", "fees", "strategy", "reason"])
    for t in result.trades:
        writer.writerow(
            [t.ts.isoformat(), t.symbol, t.side.value, t.qty, t.price, t.fees, t.strategy, t.reason]
        )
    return out.getvalue()


def equity_csv(result: BacktestResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "equity", "cash", "return", "drawdown"])
    returns = daily_returns(result.starting_cash, [d.equity for d in result.days])
    peak = result.starting_cash
    for day, ret in zip(result.days, returns, strict=True):
        peak = max(peak, day.equity)
        drawdown = float(1 - day.equity / peak)
        writer.writerow(
            [day.day.isoformat(), day.equity, day.cash, f"{ret:.6f}", f"{drawdown:.6f}"]
        )
    return out.getvalue()


def text_summary(metrics: Metrics, result: BacktestResult) -> str:
    """The lines ``run_bot.py backtest`` prints."""
    m = metrics
    dd = m.max_drawdown
    lasted = (
        f"{dd.length} minutes"
        if dd.length < MINUTES_PER_DAY
        else f"{dd.length / MINUTES_PER_DAY:.1f} trading days"
    )
    lines = [
        f"Final equity   {usd(m.final_equity)} (from {usd(m.starting_cash)})",
        f"Total return   {_pct(m.total_return)}    CAGR {_pct(m.cagr)}",
        f"Sharpe         {_num(m.sharpe)}    Sortino {_num(m.sortino)}",
        "Max drawdown   none"
        if dd.depth == 0
        else f"Max drawdown   {_pct(-dd.depth)} over {lasted}"
        + ("" if dd.recovered else " (not recovered)"),
        f"Trades         {m.trades} round trips, {m.fills} fills; win rate "
        + _pct(m.win_rate, signed=False),
        f"Profit factor  {_num(m.profit_factor)}    average trade "
        + ("-" if m.average_trade is None else usd(m.average_trade, signed=True)),
        f"Exposure       {_pct(m.exposure, signed=False)} of the time    fees {usd(m.fees)}",
        f"Days           {m.days} trading days, {result.traded_bars:,} bars traded",
    ]
    if result.rejections:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(result.rejections.items()))
        lines.append(f"Refused        {refused}")
    lines += [f"Halted         {halt}" for halt in result.halts]
    lines += [f"Paused         {name}: {why}" for name, why in result.paused.items()]
    return "\n".join(lines)


def equity_png(result: BacktestResult, title: str = "") -> bytes:
    """Equity per traded minute with its drawdown underneath. The x axis counts traded
    minutes (nights and weekends take no room), labelled with New York dates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    curve = result.curve
    step = max(1, len(curve) // MAX_PLOT_POINTS)
    points = curve[::step]
    if curve and points[-1] is not curve[-1]:
        points.append(curve[-1])
    values = [float(v) for _, v in points] or [float(result.starting_cash)]
    xs = list(range(len(values)))
    peak = float("-inf")
    drawdown = []
    for value in values:
        peak = max(peak, value)
        drawdown.append((value / peak - 1.0) * 100 if peak > 0 else 0.0)

    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    colour = "#2e9e5b" if values[-1] >= float(result.starting_cash) else "#d64541"
    top.plot(xs, values, color=colour, linewidth=1.5)
    top.axhline(float(result.starting_cash), color="#888888", linewidth=0.8, linestyle="--")
    top.set_title(title or "Backtest equity", fontsize=11)
    top.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"${y:,.0f}"))
    bottom.fill_between(xs, drawdown, 0, color="#d64541", alpha=0.35)
    bottom.set_ylabel("drawdown", fontsize=8)
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:.2f}%"))
    ticks, labels = _day_ticks([ts for ts, _ in points])
    bottom.set_xticks(ticks, labels)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _day_ticks(times: Sequence[datetime], most: int = 7) -> tuple[list[int], list[str]]:
    firsts: list[tuple[int, str]] = []
    last_day = None
    for i, ts in enumerate(times):
        day = ts.astimezone(NEW_YORK).date()
        if day != last_day:
            firsts.append((i, f"{day:%b %d}"))
            last_day = day
    every = max(1, -(-len(firsts) // most))
    chosen = firsts[::every]
    return [i for i, _ in chosen], [label for _, label in chosen]


def _title(info: RunInfo) -> str:
    names = ", ".join(str(s.get("name", "")) for s in info.strategies)
    span = f" {info.start} to {info.end}" if info.start and info.end else ""
    return f"{names}{span}"


def _pct(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _plain(value: Any) -> Any:
    """Decimals as exact strings (money to the cent stays as booked), floats rounded."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return round(value, 6)
    return value
