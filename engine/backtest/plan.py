"""From what the trader asked (command line or ``!backtest``) and the settings to a run: the
strategies, the bars, the span traded and the pricing.

Strategies go through the engine's own loader (``engine.strategy.loader``), so a name that
cannot be imported or a parameter its model refuses is one line naming the option
(``--param fast: Input should be greater than 0``), never a traceback or the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from config import Settings
from config.strategies import StrategySlot
from engine.backtest.history import CacheSource, HistoryCache, day_span
from engine.backtest.report import RunInfo
from engine.backtest.runner import BacktestConfig
from engine.backtest.sources import BarSource, CsvSource, Span
from engine.feed.csv_bars import BarDataError
from engine.feed.replay import SAMPLE_BARS_PATH
from engine.strategy.loader import StrategyConfigError, StrategySpec, load_strategies

WARMUP_DAYS = 10
"""Calendar days of bars read before ``--start`` for the strategies' warm-up."""


class PlanError(ValueError):
    """What was asked cannot be run: one line per problem, for the trader."""


@dataclass(frozen=True)
class Request:
    """A backtest as asked for; None means "what the settings say"."""

    strategy: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    symbols: Sequence[str] | None = None
    order_qty: Decimal | None = None
    csv: Path | None = None
    start: date | None = None
    end: date | None = None
    days: int | None = None
    """The last N trading days the data holds (instead of ``start``/``end``)."""
    cash: Decimal | None = None
    slippage_bps: Decimal | None = None
    commission_per_share: Decimal | None = None
    commission_min: Decimal | None = None
    max_fill_qty: Decimal | None = None


@dataclass(frozen=True)
class Plan:
    config: BacktestConfig
    source: BarSource
    span: Span
    """The bars read (warm-up included)."""
    total_bars: int
    info: RunInfo
    start: date
    """First traded day."""
    end: date


def strategy_specs(settings: Settings, request: Request) -> list[StrategySpec]:
    """The configured strategies, or the one ``request.strategy`` names: a configured
    strategy's name (with its settings), or a class (built-in name or package.module:Class,
    with its defaults). ``--param`` and ``--symbols`` change it."""
    slots = list(settings.strategy.slots)
    name = request.strategy
    if name is None and (request.params or request.symbols) and len(slots) > 1:
        raise PlanError(
            "--param and --symbols change one strategy: with STRATEGIES set, name it with "
            "--strategy"
        )
    chosen = [s for s in slots if name is None or name in (s.name, s.use)]
    if name is not None and not chosen:  # a class, with its own defaults
        config = settings.strategy
        symbols = tuple(config.traded_symbols)
        slot = StrategySlot(
            None if ":" in name else name,
            name,
            symbols,
            config.order_qty,
            config.long_only,
            {},
            "STRATEGY_",
        )
        chosen = [slot]
    if len(chosen) == 1:
        (slot,) = chosen
        params = {**slot.params, **{k.lower(): v for k, v in request.params.items()}}
        # Named as the single strategy's settings, so a problem names its option (_option).
        slot = replace(slot, params=params, prefix="STRATEGY_")
        if request.symbols:
            slot = replace(slot, symbols=tuple(s.upper() for s in request.symbols))
        if request.order_qty is not None:
            slot = replace(slot, order_qty=request.order_qty)
        chosen = [slot]
    try:
        return load_strategies(chosen)
    except StrategyConfigError as exc:
        raise PlanError("\n".join(f"{_option(s)}: {what}" for s, what in exc.problems)) from None


def _option(setting: str) -> str:
    """A setting named by a problem, as the option that sets it here."""
    if setting in ("STRATEGY_NAME", "STRATEGY_CLASS"):
        return "--strategy"
    return re.sub(r"STRATEGY_(\w+)", lambda m: f"--param {m.group(1).lower()}", setting)


def open_source(settings: Settings, request: Request, symbols: Sequence[str]) -> BarSource:
    """``--csv``; else the history cache when it holds any of ``symbols``; else the
    replay's CSV (``SIM_REPLAY_CSV`` or the bundled sample)."""
    try:
        if request.csv is not None:
            return CsvSource(request.csv)
        cache = HistoryCache(settings.storage.data_dir, settings.alpaca.data_feed)
        held = [s for s in symbols if cache.chunks(s)]
        if held or request.start is not None:
            return CacheSource(cache, symbols)
        return CsvSource(settings.sim.replay_csv or SAMPLE_BARS_PATH)
    except BarDataError as exc:
        raise PlanError(str(exc)) from None


def make_plan(settings: Settings, request: Request) -> Plan:
    specs = strategy_specs(settings, request)
    symbols = sorted({s for spec in specs for s in spec.symbols})
    source = open_source(settings, request, symbols)
    days = list(source.day_counts())
    start, end = _dates(request, days)
    missing = [s for s in symbols if s not in source.symbols]
    held = ", ".join(source.symbols[:10]) + ("..." if len(source.symbols) > 10 else "")
    if not days or start is None or end is None or len(missing) == len(symbols):
        fetch = (
            f"python run_bot.py fetch-bars --symbols {','.join(symbols)} "
            f"--start {request.start or 'YYYY-MM-DD'} --end {request.end or 'YYYY-MM-DD'}"
        )
        dates = f" from {request.start} to {request.end}" if request.start else ""
        if request.csv is None:
            where = f"; download them first: {fetch}"
        else:
            where = f" (it holds {held or 'none'}): choose symbols with --symbols"
        raise PlanError(f"{source.description} has no bars for {', '.join(symbols)}{dates}{where}")
    if missing:
        raise PlanError(
            f"{source.description} has no bars for {', '.join(missing)}: trade only symbols "
            f"it holds ({held}) with --symbols"
        )
    # Bars before ``start`` (when the data has them) warm the strategies up, as the live
    # replay's history does.
    read_from = start - timedelta(days=WARMUP_DAYS)
    first, _ = day_span(read_from, end)
    trade_from, last = day_span(start, end)
    total = sum(n for day, n in source.day_counts().items() if read_from <= day <= end)
    config = replace(
        _pricing(BacktestConfig.from_settings(settings, specs), request), trade_from=trade_from
    )
    info = RunInfo(
        strategies=[_describe(spec) for spec in specs],
        source=source.description,
        start=start.isoformat(),
        end=end.isoformat(),
        pricing={
            "starting_cash": str(config.starting_cash),
            "slippage_bps": str(config.slippage_bps),
            "commission_per_share": str(config.commission_per_share),
            "commission_min": str(config.commission_min),
            "max_fill_qty": str(config.max_fill_qty),
        },
    )
    return Plan(config, source, (first, last), total, info, start, end)


def _dates(request: Request, days: Sequence[date]) -> tuple[date | None, date | None]:
    if request.days is not None:
        chosen = list(days)[-request.days :]
        return (chosen[0], chosen[-1]) if chosen else (None, None)
    inside = [d for d in days if (request.start or d) <= d <= (request.end or d)]
    return (inside[0], inside[-1]) if inside else (None, None)


def _pricing(config: BacktestConfig, request: Request) -> BacktestConfig:
    changes: dict[str, Any] = {
        "starting_cash": request.cash,
        "slippage_bps": request.slippage_bps,
        "commission_per_share": request.commission_per_share,
        "commission_min": request.commission_min,
        "max_fill_qty": request.max_fill_qty,
    }
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def _describe(spec: StrategySpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "class": f"{spec.cls.__module__}:{spec.cls.__qualname__}",
        "symbols": list(spec.symbols),
        "order_qty": str(spec.order_qty),
        "long_only": spec.long_only,
        "params": spec.params.model_dump(mode="json"),
    }
