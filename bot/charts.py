"""The day's equity curve as a small PNG, readable on a phone.

Drawing is CPU work: ``equity_curve_png`` runs it in a thread so the event loop (gateway
heartbeat, engine) never waits on it. matplotlib is imported on first use only, which keeps
the idle process small; the Agg canvas is used directly (no pyplot global state).

Every surface (``!pnl``, the console, the end-of-day report) draws ``pnl_chart_png`` /
``render_pnl_chart``: the same curve under the same title, the day and its P&L.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from bot import fmt
from engine.clock import NEW_YORK, trading_day
from engine.commands import PnLReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

WIDTH_IN = 6.0
HEIGHT_IN = 3.2
DPI = 120
# A curve shorter than this gets padded x limits, so the time axis still has ticks to place.
MIN_SPAN = timedelta(minutes=30)
# A y range narrower than this is widened around its middle: equity that moved by cents still
# gets a few distinct dollar ticks instead of one label repeated.
MIN_Y_SPAN = 2.0


def pnl_title(report: PnLReport) -> str:
    """``Equity Fri Nov 20 · day +$12.34 (New York time)``."""
    day = trading_day(report.curve[-1][0]) if report.curve else None
    when = day.strftime("%a %b %d") if day else "today"
    return f"Equity {when} · day {fmt.signed_money(report.summary.day_pnl)} (New York time)"


async def pnl_chart_png(report: PnLReport) -> bytes:
    """The P&L report's equity curve, titled with its day and day P&L, drawn off the loop."""
    return await equity_curve_png(report.curve, pnl_title(report))


def render_pnl_chart(report: PnLReport) -> bytes:
    """``pnl_chart_png`` for code already off the event loop (the scheduler's thread)."""
    return render_equity_curve(report.curve, pnl_title(report))


async def equity_curve_png(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> bytes:
    """PNG bytes of equity over the day (x axis in New York time)."""
    points = list(curve)
    return await asyncio.to_thread(render_equity_curve, points, title)


def render_equity_curve(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> bytes:
    """Synchronous drawing; call it through ``equity_curve_png`` from async code."""
    fig = equity_figure(curve, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def equity_figure(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> Figure:
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    times = [ts.astimezone(NEW_YORK) for ts, _ in curve]
    # Plotting needs floats; the figures shown in text stay Decimal.
    values = [float(value) for _, value in curve]
    x = mdates.date2num(times)

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if values:
        up = values[-1] >= values[0]
        colour = "#2e9e5b" if up else "#d64541"
        marker = "o" if len(values) == 1 else ""
        ax.plot(x, values, color=colour, linewidth=2, marker=marker)
        ax.fill_between(x, values, min(values), color=colour, alpha=0.12)
        ax.axhline(values[0], color="#888888", linewidth=0.8, linestyle="--")
        if times[-1] - times[0] < MIN_SPAN:
            pad = (MIN_SPAN - (times[-1] - times[0])) / 2
            ax.set_xlim(
                float(mdates.date2num(times[0] - pad)), float(mdates.date2num(times[-1] + pad))
            )
        low, high = min(values), max(values)
        if high - low < MIN_Y_SPAN:
            middle = (low + high) / 2
            ax.set_ylim(middle - MIN_Y_SPAN / 2, middle + MIN_Y_SPAN / 2)
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_title(title or "Equity today (New York time)", fontsize=11)
    locator = mdates.AutoDateLocator(tz=NEW_YORK, minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=NEW_YORK))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(_dollar_ticks())
    ax.tick_params(labelsize=9)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def _dollar_ticks() -> Formatter:
    from matplotlib.ticker import Formatter

    class DollarTicks(Formatter):
        """``$100,002`` when the ticks are whole dollars apart, ``$100,001.50`` when not: the
        labels on one axis always differ."""

        def format_ticks(self, values: list[float]) -> list[str]:
            ticks = sorted(values)
            step = min((b - a for a, b in itertools.pairwise(ticks)), default=1.0)
            places = 0 if step >= 1 else 2
            return [f"${y:,.{places}f}" for y in values]

        def __call__(self, y: float, pos: int | None = None) -> str:
            return f"${y:,.2f}"

    return DollarTicks()
