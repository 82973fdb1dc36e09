"""The day's equity curve as a small PNG, readable on a phone.

Drawing is CPU work: ``equity_curve_png`` runs it in a thread so the event loop (gateway
heartbeat, engine) never waits on it. matplotlib is imported on first use only, which keeps
the idle process small; the Agg canvas is used directly (no pyplot global state).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from engine.clock import NEW_YORK

WIDTH_IN = 6.0
HEIGHT_IN = 3.2
DPI = 120
# A curve shorter than this gets padded x limits, so the time axis still has ticks to place.
MIN_SPAN = timedelta(minutes=30)


async def equity_curve_png(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> bytes:
    """PNG bytes of equity over the day (x axis in New York time)."""
    points = list(curve)
    return await asyncio.to_thread(render_equity_curve, points, title)


def render_equity_curve(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> bytes:
    """Synchronous drawing; call it through ``equity_curve_png`` from async code."""
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    times = [ts.astimezone(NEW_YORK) for ts, _ in curve]
    # Plotting needs floats; the figures shown in text stay Decimal.
    values = [float(value) for _, value in curve]

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if values:
        up = values[-1] >= values[0]
        colour = "#2e9e5b" if up else "#d64541"
        marker = "o" if len(values) == 1 else ""
        # matplotlib's stubs do not list datetimes, which it plots natively.
        ax.plot(times, values, color=colour, linewidth=2, marker=marker)  # type: ignore[arg-type]
        ax.fill_between(times, values, min(values), color=colour, alpha=0.12)  # type: ignore[arg-type]
        ax.axhline(values[0], color="#888888", linewidth=0.8, linestyle="--")
        if times[-1] - times[0] < MIN_SPAN:
            pad = (MIN_SPAN - (times[-1] - times[0])) / 2
            ax.set_xlim(times[0] - pad, times[-1] + pad)  # type: ignore[arg-type]
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_title(title or "Equity today (New York time)", fontsize=11)
    locator = mdates.AutoDateLocator(tz=NEW_YORK, minticks=3, maxticks=7)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=NEW_YORK))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"${y:,.0f}"))
    ax.tick_params(labelsize=9)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
