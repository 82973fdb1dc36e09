"""Scheduled jobs on a real engine (simulator): the job logic runs on an injected TestClock,
the APScheduler wiring is checked from fixed times and its misfire settings on a real
scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.triggers.date import DateTrigger

from bot import fmt, reports
from bot.alerts import AlertRouter
from bot.jobs import TradingJobs, equity_chart
from bot.messages import AlertMessage, Channel
from bot.schedule import (
    JOB_EOD,
    JOB_HEARTBEAT,
    JOB_MARKET_OPEN,
    JOB_PLAN,
    JOB_PRECLOSE,
    JOB_RECONCILE,
    plan_day,
    preclose_time,
    recurring_triggers,
)
from config.settings import ChannelSettings, ScheduleSettings
from engine.app import EngineApp
from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK, TestClock
from engine.commands import PnLReport
from engine.domain import Fill, OrderRequest, OrderType, Position, Side, TimeInForce
from engine.portfolio import Portfolio
from tests.support.app import sim_settings, start_app, wait_for


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=NEW_YORK)


def hhmm(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(NEW_YORK).strftime("%H:%M")


def schedule(**fields: Any) -> ScheduleSettings:
    return ScheduleSettings(_env_file=None, **fields)  # type: ignore[call-arg]


class FakeTransport:
    name = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[Channel, AlertMessage]] = []

    def is_ready(self) -> bool:
        return True

    def has_channel(self, channel: Channel) -> bool:
        return True

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str = ""
    ) -> None:
        self.sent.append((channel, message))

    def of_kind(self, kind: str) -> list[tuple[Channel, AlertMessage]]:
        return [(c, m) for c, m in self.sent if m.kind == kind]


class Rig:
    def __init__(self, app: EngineApp, transport: FakeTransport, router: AlertRouter) -> None:
        self.app = app
        self.transport = transport
        self.router = router

    def jobs(self, now: datetime, *, chart: Any = None, **fields: Any) -> TradingJobs:
        settings = self.app.settings.schedule.model_copy(update=fields)
        return TradingJobs(
            self.app,
            settings,
            self.router,
            clock=TestClock(now),
            chart=chart,
        )

    async def delivered(self, kind: str) -> list[tuple[Channel, AlertMessage]]:
        await wait_for(lambda: bool(self.transport.of_kind(kind)), within=5)
        return self.transport.of_kind(kind)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    app = await start_app(sim_settings(tmp_path))
    transport = FakeTransport()
    router = AlertRouter(
        app.bus,
        transport,
        ChannelSettings(_env_file=None),  # type: ignore[call-arg]
        clock=TestClock(datetime(2026, 11, 20, tzinfo=UTC)),
        coalesce_window_s=0,
    )
    await router.start()
    try:
        yield Rig(app, transport, router)
    finally:
        await router.stop(deadline_s=1)
        await app.stop()


# ---- calendar decisions -----------------------------------------------------------------


def test_plan_day_when_regular_day_then_open_preclose_and_report_after_close() -> None:
    session = MarketCalendar().session(date(2026, 11, 20))

    plan = plan_day(session, schedule(preclose_flatten_time=time(15, 55)))

    assert plan is not None
    assert [hhmm(plan.market_open), hhmm(plan.preclose_flatten), hhmm(plan.end_of_day)] == [
        "09:30",
        "15:55",
        "16:05",
    ]


def test_plan_day_when_half_day_then_report_follows_the_early_close() -> None:
    session = MarketCalendar().session(date(2026, 11, 27))

    plan = plan_day(session, schedule(preclose_flatten_time=time(15, 55)))

    assert plan is not None
    assert plan.session.early_close
    assert [hhmm(plan.preclose_flatten), hhmm(plan.end_of_day)] == ["12:55", "13:05"]


def test_plan_day_when_holiday_then_nothing() -> None:
    assert plan_day(MarketCalendar().session(date(2026, 11, 26)), schedule()) is None


@pytest.mark.parametrize(
    ("day", "at", "expected"),
    [
        (20, None, None),
        (20, time(12, 0), "12:00"),
        (27, time(12, 0), "12:00"),
        (27, time(15, 30), "12:30"),
        (20, time(16, 30), None),
        (20, time(9, 0), None),
    ],
)
def test_preclose_time_when_configured_then_inside_the_session_or_none(
    day: int, at: time | None, expected: str | None
) -> None:
    session = MarketCalendar().session(date(2026, 11, day))
    assert session is not None

    assert hhmm(preclose_time(session, at)) == expected


# ---- heartbeat --------------------------------------------------------------------------


def test_heartbeat_cadence_when_every_five_minutes_then_fires_five_minutes_apart() -> None:
    trigger = recurring_triggers(schedule(heartbeat_minutes=5), start=ny(20, 9, 30))[JOB_HEARTBEAT]
    fired: list[str | None] = []
    previous, now = None, ny(20, 9, 30)
    for _ in range(4):
        previous = now = trigger.get_next_fire_time(previous, now)
        fired.append(hhmm(now))

    late = trigger.get_next_fire_time(None, ny(20, 9, 47))

    assert fired == ["09:30", "09:35", "09:40", "09:45"]
    assert hhmm(late) == "09:50"


async def test_heartbeat_when_run_then_one_compact_message_and_the_engine_beats(rig: Rig) -> None:
    jobs = rig.jobs(ny(20, 12, 1))
    assert rig.app.engine.last_heartbeat is None

    message = await jobs.heartbeat()

    delivered = await rig.delivered("heartbeat")
    assert delivered == [(Channel.HEARTBEAT, message)]
    lines = message.text.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("💓 🟢 ACTIVE · up ")
    assert lines[1].startswith(f"Equity {fmt.money(rig.app.engine.portfolio.equity)} · day ")
    assert lines[2] == "1 position · 0 open orders"
    assert lines[3].startswith("Data replay done · broker ")
    assert rig.app.engine.last_heartbeat == rig.app.clock.now()


# ---- market open ------------------------------------------------------------------------


async def test_market_open_when_new_day_then_counters_reset_and_start_equity_posted(
    rig: Rig,
) -> None:
    engine = rig.app.engine
    assert engine.days.day == date(2026, 11, 20)
    assert engine.days.orders_today > 0
    rig.app.clock.set(ny(23, 9, 30))  # type: ignore[attr-defined]
    jobs = rig.jobs(ny(23, 9, 30))

    message = await jobs.market_open()

    assert message is not None
    assert engine.days.day == date(2026, 11, 23)
    assert engine.days.orders_today == 0
    assert engine.portfolio.day_start_equity == engine.portfolio.equity
    assert engine.portfolio.day_pnl == 0
    lines = message.text.splitlines()
    assert lines[0] == "🔔 Market open · Mon Nov 23 (closes 16:00 ET)"
    assert lines[1] == f"Starting equity {fmt.money(engine.portfolio.equity)} · 🟢 ACTIVE"
    assert lines[2].startswith("Limits: daily loss $2,000.00 · position 1000 sh")
    assert await rig.delivered("market-open") == [(Channel.REPORTS, message)]


# ---- end of day -------------------------------------------------------------------------


async def test_end_of_day_when_normal_day_then_report_with_figures_and_chart(rig: Rig) -> None:
    charted: list[PnLReport] = []

    def chart(report: PnLReport) -> bytes:
        charted.append(report)
        return b"\x89PNG"

    jobs = rig.jobs(ny(20, 16, 5), chart=chart)
    engine = rig.app.engine

    message = await jobs.end_of_day()

    assert message is not None
    day = date(2026, 11, 20)
    stats = reports.day_trade_stats(await rig.app.commands.trades("t", day, audit=False))
    assert stats.trades > 0
    # Computed independently of the engine's own books: they must agree.
    assert sum(r.realized for r in stats.results) == engine.portfolio.summary().day_realized
    lines = message.text.splitlines()
    assert lines[0] == "📊 End of day · Fri Nov 20"
    assert lines[1].startswith(f"Day P&L {fmt.signed_money(engine.portfolio.day_pnl)} (")
    assert lines[2].startswith(f"Trades {stats.trades} closed ({stats.fills} fills) · win rate")
    assert lines[2].endswith(f"fees {fmt.money(stats.fees)}")
    assert message.attachment == b"\x89PNG"
    assert charted[0].curve[-1][1] == engine.portfolio.equity
    assert await rig.delivered("end-of-day") == [(Channel.REPORTS, message)]


async def test_end_of_day_when_half_day_then_report_after_the_early_close(rig: Rig) -> None:
    rig.app.clock.set(ny(27, 9, 30))  # type: ignore[attr-defined]
    clock = TestClock(ny(27, 9, 30))
    jobs = TradingJobs(rig.app, rig.app.settings.schedule, rig.router, clock=clock, chart=None)
    await jobs.market_open()
    clock.set(ny(27, 12, 59))
    before_close = await jobs.end_of_day()
    clock.set(ny(27, 13, 5))

    message = await jobs.end_of_day()

    assert before_close is None
    assert message is not None
    assert message.text.splitlines()[0] == "📊 End of day · Fri Nov 27 (early close)"
    assert message.text.splitlines()[2] == "No closed trades (0 fills) · fees $0.00"
    assert message.attachment is None


async def test_jobs_when_holiday_then_no_plan_and_nothing_posted(rig: Rig) -> None:
    jobs = rig.jobs(ny(26, 9, 30), preclose_flatten_time=time(15, 55))

    plan = await jobs.plan_today()
    opened = await jobs.market_open()
    flattened = await jobs.preclose_flatten()
    report = await rig.jobs(ny(26, 16, 5)).end_of_day()
    await jobs.heartbeat()  # something is delivered, so the router has caught up
    await rig.delivered("heartbeat")

    assert (plan, opened, flattened, report) == (None, None, None, None)
    assert not rig.transport.of_kind("market-open")
    assert not rig.transport.of_kind("end-of-day")
    assert rig.app.engine.portfolio.positions()


# ---- pre-close flatten ------------------------------------------------------------------


async def test_preclose_flatten_when_configured_then_flat_and_posted(rig: Rig) -> None:
    jobs = rig.jobs(ny(20, 15, 55), preclose_flatten_time=time(15, 55))
    assert rig.app.engine.portfolio.positions()

    report = await jobs.preclose_flatten()

    assert report is not None
    assert report.flat
    assert rig.app.engine.portfolio.positions() == []
    audit = (await rig.app.journal.audit_rows(limit=5))[0]
    assert (audit.actor, audit.command, audit.ok) == ("scheduler", "flatten", True)
    posted = await rig.delivered("preclose")
    assert posted[0][0] is Channel.TRADES
    assert posted[0][1].text.startswith("⏰ Pre-close flatten\n✅ Flat in")


async def test_preclose_flatten_when_off_or_after_close_then_nothing(rig: Rig) -> None:
    off = await rig.jobs(ny(20, 15, 55), preclose_flatten_time=None).preclose_flatten()
    late = await rig.jobs(ny(20, 16, 1), preclose_flatten_time=time(15, 55)).preclose_flatten()

    assert (off, late) == (None, None)
    assert rig.app.engine.portfolio.positions()


# ---- reconcile --------------------------------------------------------------------------


async def test_reconcile_when_local_position_drifted_then_corrected_and_alerted(rig: Rig) -> None:
    portfolio = rig.app.engine.portfolio
    position = portfolio.positions()[0]
    portfolio.set_position(position.symbol, position.qty + 5, position.avg_price)

    result = await rig.jobs(ny(20, 12, 15)).reconcile()

    assert result is not None
    assert [(d.kind, d.key) for d in result.drifts] == [("position", position.symbol)]
    assert portfolio.qty(position.symbol) == position.qty
    channel, alert = (await rig.delivered("drift"))[0]
    assert channel is Channel.SYSTEM_ALERTS
    assert alert.text.startswith(f"🧮 Drift corrected (position {position.symbol})")


def resting_buy(client_order_id: str) -> OrderRequest:
    """A buy of 1 AAPL limited far below the market: it rests at the broker."""
    return OrderRequest(
        client_order_id=client_order_id,
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(1),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(1),
        time_in_force=TimeInForce.GTC,
        strategy="t",
    )


async def test_reconcile_when_an_order_rests_open_then_it_runs_and_corrects_drift(
    rig: Rig,
) -> None:
    engine = rig.app.engine
    position = engine.portfolio.positions()[0]
    engine.portfolio.set_position(position.symbol, position.qty + 5, position.avg_price)
    request = resting_buy("resting-1")
    await engine.execution.submit(request, checked=False)
    assert engine.orders.open_orders()

    result = await rig.jobs(ny(20, 12, 15)).reconcile()

    assert result.skipped == ""
    assert [(d.kind, d.key) for d in result.drifts] == [("position", position.symbol)]
    assert engine.portfolio.qty(position.symbol) == position.qty
    assert [o.client_order_id for o in engine.orders.open_orders()] == ["resting-1"]


async def test_reconcile_when_a_resting_order_fills_while_the_broker_is_read_then_not_doubled(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resting buy fills at the broker between the reconcile's read of the fills and its
    read of the positions: the broker's positions and cash hold it, the book not yet.
    Correcting to the broker then would count it twice once its trade update arrives."""
    engine = rig.app.engine
    broker = engine.execution.broker
    request = resting_buy("resting-2")
    await engine.execution.submit(request, checked=False)
    resting = engine.orders.get("resting-2")
    assert resting is not None
    assert resting.is_open
    before = engine.portfolio.qty("AAPL")
    now = rig.app.clock.now()
    fill = Fill(
        "late-x1",
        "resting-2",
        resting.broker_order_id or "",
        "AAPL",
        Side.BUY,
        Decimal(1),
        Decimal(1),
        now,
    )
    filled = False
    real_positions, real_fills, real_account = (
        broker.get_positions,
        broker.get_fills_since,
        broker.get_account,
    )

    async def positions() -> list[Position]:
        nonlocal filled
        filled = True  # it fills at the broker now, its trade update still on the way
        return [
            replace(p, qty=p.qty + 1) if p.symbol == "AAPL" else p for p in await real_positions()
        ]

    async def fills_since(since: datetime) -> list[Fill]:
        return [*await real_fills(since), *([fill] if filled else [])]

    async def account() -> Any:
        real = await real_account()
        return replace(real, cash=real.cash - 1) if filled else real

    monkeypatch.setattr(broker, "get_positions", positions)
    monkeypatch.setattr(broker, "get_fills_since", fills_since)
    monkeypatch.setattr(broker, "get_account", account)

    result = await rig.jobs(ny(20, 12, 15)).reconcile()
    await engine.execution.apply_fill(fill)  # the trade update arrives

    assert engine.portfolio.qty("AAPL") == before + 1  # once, not twice
    assert result.skipped == "a fill arrived while the broker was read"
    assert result.drifts == []


async def test_reconcile_when_a_submit_awaits_the_broker_then_skipped(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = rig.app.engine
    position = engine.portfolio.positions()[0]
    engine.portfolio.set_position(position.symbol, position.qty + 5, position.avg_price)
    broker = engine.execution.broker
    answer = asyncio.Event()
    real_submit = broker.submit_order

    async def slow_submit(request: OrderRequest) -> Any:
        await answer.wait()
        return await real_submit(request)

    monkeypatch.setattr(broker, "submit_order", slow_submit)
    request = resting_buy("in-flight-1")
    submit = asyncio.create_task(engine.execution.submit(request, checked=False))
    await wait_for(lambda: bool(engine.execution.in_flight), within=5)

    skipped = await rig.jobs(ny(20, 12, 15)).reconcile()
    answer.set()
    await submit
    after = await rig.jobs(ny(20, 12, 16)).reconcile()

    assert skipped.skipped == "orders in flight"
    assert after.skipped == ""  # once the broker answered, the same book is reconciled
    assert engine.portfolio.qty(position.symbol) == position.qty


# ---- scheduler wiring -------------------------------------------------------------------


async def test_start_when_trading_day_then_jobs_triggers_and_misfire_grace_set(rig: Rig) -> None:
    jobs = rig.jobs(ny(27, 8, 0), preclose_flatten_time=time(15, 55), misfire_grace_seconds=300)
    await jobs.start(paused=True)  # dated jobs are inspected, not run
    try:
        scheduled = {job.id: job for job in jobs.scheduler.get_jobs()}

        assert set(scheduled) == {
            JOB_HEARTBEAT,
            JOB_RECONCILE,
            JOB_PLAN,
            JOB_MARKET_OPEN,
            JOB_PRECLOSE,
            JOB_EOD,
        }
        assert {j.misfire_grace_time for j in scheduled.values()} == {300}
        assert all(j.coalesce for j in scheduled.values())
        assert [
            hhmm(scheduled[k].next_run_time) for k in (JOB_MARKET_OPEN, JOB_PRECLOSE, JOB_EOD)
        ] == ["09:30", "12:55", "13:05"]
        assert scheduled[JOB_PLAN].trigger.get_next_fire_time(None, ny(27, 8, 0)) == ny(28, 0, 5)
        assert str(jobs.scheduler.timezone) == "America/New_York"
    finally:
        await jobs.stop()
    assert jobs._scheduler is None  # type: ignore[attr-defined]


async def test_plan_today_when_started_late_then_jobs_within_grace_kept(rig: Rig) -> None:
    within = rig.jobs(ny(20, 16, 9), misfire_grace_seconds=300)
    beyond = rig.jobs(ny(20, 16, 11), misfire_grace_seconds=300)
    for jobs in (within, beyond):
        await jobs.start(paused=True)

    kept = {j.id for j in within.scheduler.get_jobs()}
    dropped = {j.id for j in beyond.scheduler.get_jobs()}
    await within.stop()
    await beyond.stop()

    assert JOB_EOD in kept
    assert JOB_MARKET_OPEN not in kept
    assert JOB_EOD not in dropped


async def test_scheduler_when_job_runs_late_within_grace_then_it_still_runs(rig: Rig) -> None:
    # A holiday for the plan, so only the probes are due.
    jobs = rig.jobs(ny(26, 12, 0), misfire_grace_seconds=300)
    await jobs.start()
    ran: list[str] = []
    missed: list[str] = []

    async def probe(name: str) -> None:
        ran.append(name)

    def on_missed(event: JobExecutionEvent) -> None:
        missed.append(event.job_id)

    jobs.scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    wall = datetime.now(UTC)
    try:
        jobs.scheduler.add_job(
            probe, DateTrigger(wall - timedelta(seconds=200)), args=["late"], id="late"
        )
        jobs.scheduler.add_job(
            probe, DateTrigger(wall - timedelta(seconds=400)), args=["too-late"], id="too-late"
        )
        await wait_for(lambda: bool(ran) and bool(missed), within=5)
    finally:
        await jobs.stop()

    assert ran == ["late"]
    assert missed == ["too-late"]


async def test_scheduled_job_when_it_fails_then_posted_not_raised(rig: Rig) -> None:
    jobs = rig.jobs(ny(20, 12, 0))

    async def broken(start: date, end: date) -> list[Any]:
        raise ConnectionError("calendar unavailable")

    rig.app.broker.get_calendar = broken  # type: ignore[method-assign]
    try:
        await jobs.start(paused=True)  # plans today at once: the calendar fails
        running = jobs.scheduler.running
    finally:
        await jobs.stop()

    assert running
    channel, alert = (await rig.delivered("job-error"))[0]
    assert channel is Channel.SYSTEM_ALERTS
    assert alert.text == "⚠️ Scheduled job plan-day failed: calendar unavailable"


async def test_start_and_stop_when_announcing_then_boot_report_and_going_down_message(
    rig: Rig,
) -> None:
    jobs = rig.jobs(ny(26, 12, 0))
    await jobs.start()
    scheduler = jobs.scheduler

    await jobs.stop()
    await asyncio.sleep(0)

    assert not scheduler.running
    await rig.delivered("shutdown")
    kinds = [m.kind for _, m in rig.transport.sent if m.kind in ("boot", "shutdown")]
    assert kinds == ["boot", "shutdown"]
    boot = rig.transport.of_kind("boot")[0]
    assert boot[0] is Channel.SYSTEM_ALERTS
    assert boot[1].text.startswith("🚀 Started discord-trader")


def test_equity_chart_when_curve_given_then_png_bytes() -> None:
    curve = [(ny(20, 9, 30), Decimal(100_000)), (ny(20, 16, 0), Decimal("100042.20"))]
    report = PnLReport(summary=Portfolio(cash=Decimal(100_000)).summary(), curve=curve)

    png = equity_chart(report)

    assert png.startswith(b"\x89PNG\r\n")


async def test_follow_clock_when_replay_clock_passes_the_open_then_market_open_runs(
    rig: Rig,
) -> None:
    rig.app.clock.set(ny(23, 9, 0))  # type: ignore[attr-defined]
    clock = TestClock(ny(23, 9, 0))
    jobs = TradingJobs(
        rig.app, rig.app.settings.schedule, rig.router, clock=clock, chart=None, follow_clock=True
    )
    await jobs.start()
    try:
        # The rig's replay has played its bars: the first look at the clock announces it.
        await rig.delivered("replay-end")
        early = rig.transport.of_kind("market-open")
        scheduled = {job.id for job in jobs.scheduler.get_jobs()}
        clock.set(ny(23, 11, 0))  # a replay at full speed jumps far past the open
        opened = await rig.delivered("market-open")
    finally:
        await jobs.stop()

    assert early == []
    assert JOB_MARKET_OPEN not in scheduled  # on the replay's clock, not APScheduler's
    assert len(opened) == 1
    assert opened[0][1].text.startswith("🔔 Market open · Mon Nov 23")
