"""Scheduled jobs on APScheduler's AsyncIOScheduler, in the bot's own loop.

Recurring: the heartbeat, the periodic reconcile, and a daily plan (00:05 New York, and at
start) that reads today's session from the broker's calendar and schedules the day's dated
jobs: market open, the optional pre-close flatten, and the end-of-day report after the close.
Holidays get nothing; on a half day the close is 13:00, so the report follows the early close.
A job that runs late still runs within ``SCHEDULE_MISFIRE_GRACE_SECONDS`` (late runs coalesce
into one). The engine runs its own guards (the dead-man's switch included) and its own
reconcile: the jobs only schedule calls on it.

Each job is a plain async method that takes "now" from the injected clock, and the calendar
decisions are plain functions, so tests drive them with a ``TestClock``. The schedule runs on
wall time: in sim mode the content follows the replay, the timing the real calendar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import charts, reports, text
from bot.alerts import AlertRouter
from bot.messages import AlertMessage, Channel
from config.settings import ScheduleSettings
from engine.app import EngineApp
from engine.calendar import REGULAR_CLOSE
from engine.clock import NEW_YORK, Clock, SystemClock, trading_day
from engine.commands import PnLReport, StatusReport
from engine.domain import TradingSession
from engine.events import Severity
from engine.flatten import FlattenReport
from engine.reconcile import ReconcileResult

log = logging.getLogger(__name__)

ACTOR = "scheduler"

JOB_HEARTBEAT = "heartbeat"
JOB_RECONCILE = "reconcile"
JOB_PLAN = "plan-day"
JOB_MARKET_OPEN = "market-open"
JOB_PRECLOSE = "preclose-flatten"
JOB_EOD = "end-of-day"

PLAN_AT = time(0, 5)
"""New York time of the daily plan (after the engine has rolled its day at midnight)."""

ChartRenderer = Callable[[PnLReport], bytes | None]


def equity_chart(pnl: PnLReport) -> bytes:
    """The default end-of-day chart: the day's equity curve (``bot.charts``)."""
    return charts.render_equity_curve(pnl.curve)


# ---- calendar decisions (plain functions) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class DayPlan:
    """When today's dated jobs run (aware UTC)."""

    session: TradingSession
    market_open: datetime
    preclose_flatten: datetime | None
    end_of_day: datetime

    def runs(self) -> dict[str, datetime]:
        runs = {JOB_MARKET_OPEN: self.market_open, JOB_EOD: self.end_of_day}
        if self.preclose_flatten is not None:
            runs[JOB_PRECLOSE] = self.preclose_flatten
        return runs


def preclose_time(session: TradingSession, at: time | None) -> datetime | None:
    """The pre-close flatten on ``session``'s day, or None (off, or outside the session).

    ``at`` is New York time. On an early close a time at or after the close moves to the
    same lead before the close as on a regular day (15:55 becomes 12:55).
    """
    if at is None:
        return None
    when = datetime.combine(session.day, at, NEW_YORK).astimezone(UTC)
    if session.early_close and when >= session.close:
        lead = datetime.combine(session.day, REGULAR_CLOSE, NEW_YORK) - when
        when = session.close - lead
    return when if session.open < when < session.close else None


def plan_day(session: TradingSession | None, schedule: ScheduleSettings) -> DayPlan | None:
    """Today's plan from the calendar's session; None on a day without one (holiday)."""
    if session is None:
        return None
    return DayPlan(
        session=session,
        market_open=session.open,
        preclose_flatten=preclose_time(session, schedule.preclose_flatten_time),
        end_of_day=session.close + timedelta(minutes=schedule.eod_report_delay_minutes),
    )


def job_defaults(schedule: ScheduleSettings) -> dict[str, Any]:
    """Every job: runs if at most ``misfire_grace_seconds`` late; missed runs coalesce."""
    return {
        "misfire_grace_time": schedule.misfire_grace_seconds,
        "coalesce": True,
        "max_instances": 1,
    }


def recurring_triggers(
    schedule: ScheduleSettings, start: datetime | None = None
) -> dict[str, BaseTrigger]:
    """The recurring jobs' triggers. ``start`` anchors the intervals (tests); by default the
    first heartbeat comes one interval after the scheduler starts."""
    zone = ZoneInfo(schedule.timezone)
    return {
        JOB_HEARTBEAT: IntervalTrigger(
            minutes=schedule.heartbeat_minutes, start_date=start, timezone=zone
        ),
        JOB_RECONCILE: IntervalTrigger(
            minutes=schedule.reconcile_minutes, start_date=start, timezone=zone
        ),
        # Trading days are New York days whatever the scheduler's own time zone.
        JOB_PLAN: CronTrigger(hour=PLAN_AT.hour, minute=PLAN_AT.minute, timezone=NEW_YORK),
    }


# ---- the jobs --------------------------------------------------------------------------


class TradingJobs:
    """Start after ``app.start()`` (the boot report reads the started engine); stop before
    ``app.stop()`` and before the router, so the going-down message is still delivered.

    ``chart`` renders the end-of-day equity curve to PNG bytes in a worker thread (None: the
    report goes without it). ``announce`` posts the boot report on start and the going-down
    message on stop.
    """

    def __init__(
        self,
        app: EngineApp,
        schedule: ScheduleSettings,
        router: AlertRouter,
        *,
        clock: Clock | None = None,
        chart: ChartRenderer | None = equity_chart,
        announce: bool = True,
    ) -> None:
        self._app = app
        self._schedule = schedule
        self._router = router
        self._clock = clock or SystemClock()
        self._chart = chart
        self._announce = announce
        self._scheduler: AsyncIOScheduler | None = None
        self.plan: DayPlan | None = None

    @property
    def scheduler(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            raise RuntimeError("TradingJobs not started")
        return self._scheduler

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, *, paused: bool = False) -> None:
        """Post the boot report, create and start the scheduler in the running loop and plan
        today. ``paused``: jobs are scheduled but do not run (tests)."""
        if self._announce:
            self._router.publish(reports.boot_message(await self._status()))
        scheduler = AsyncIOScheduler(
            timezone=ZoneInfo(self._schedule.timezone),
            job_defaults=job_defaults(self._schedule),
        )
        work: dict[str, Callable[[], Awaitable[object]]] = {
            JOB_HEARTBEAT: self.heartbeat,
            JOB_RECONCILE: self.reconcile,
            JOB_PLAN: self.plan_today,
        }
        for job_id, trigger in recurring_triggers(self._schedule).items():
            scheduler.add_job(
                self._guarded(job_id, work[job_id]),
                trigger,
                id=job_id,
                name=job_id,
                replace_existing=True,
            )
        scheduler.start(paused=paused)
        self._scheduler = scheduler
        await self._guarded(JOB_PLAN, self.plan_today)()

    async def stop(self) -> None:
        """Stop the scheduler (a running job is cancelled), then post the going-down message."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            # AsyncIOScheduler shuts down on the next loop iteration (call_soon_threadsafe).
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)
        if self._announce and scheduler is not None:
            self._router.publish(reports.shutdown_message(await self._status()))

    def _guarded(
        self, job_id: str, work: Callable[[], Awaitable[object]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A job as the scheduler runs it: failures are logged and posted, never raised."""

        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("scheduled job %s failed", job_id)
                self._router.publish(
                    AlertMessage(
                        Channel.SYSTEM_ALERTS,
                        Severity.WARNING,
                        f"⚠️ Scheduled job {job_id} failed: {exc}",
                        "job-error",
                    )
                )

        return run

    # ---- calendar ----------------------------------------------------------------------

    async def session_today(self) -> TradingSession | None:
        """Today's (New York) regular session from the broker's calendar; None if closed."""
        day = trading_day(self._clock.now())
        sessions = await self._app.broker.get_calendar(day, day)
        return next((s for s in sessions if s.day == day), None)

    async def plan_today(self) -> DayPlan | None:
        """Read today's session and schedule its dated jobs (those not already past their
        grace); on a holiday, remove any left over."""
        plan = plan_day(await self.session_today(), self._schedule)
        self.plan = plan
        if self._scheduler is None:
            return plan
        work: dict[str, Callable[[], Awaitable[object]]] = {
            JOB_MARKET_OPEN: self.market_open,
            JOB_PRECLOSE: self.preclose_flatten,
            JOB_EOD: self.end_of_day,
        }
        runs = plan.runs() if plan is not None else {}
        grace = timedelta(seconds=self._schedule.misfire_grace_seconds)
        now = self._clock.now()
        for job_id, job in work.items():
            at = runs.get(job_id)
            if at is None or at + grace < now:
                if self._scheduler.get_job(job_id) is not None:
                    self._scheduler.remove_job(job_id)
                continue
            self._scheduler.add_job(
                self._guarded(job_id, job),
                DateTrigger(run_date=at),
                id=job_id,
                name=job_id,
                replace_existing=True,
            )
        if plan is None:
            log.info("no trading session today: no market jobs")
        else:
            log.info("today's jobs: %s", {k: v.isoformat() for k, v in plan.runs().items()})
        return plan

    # ---- jobs --------------------------------------------------------------------------

    async def heartbeat(self) -> AlertMessage:
        """Beat the engine and post the compact status line to #heartbeat."""
        self._app.engine.beat()
        message = reports.heartbeat_message(await self._status())
        self._router.publish(message)
        return message

    async def market_open(self) -> AlertMessage | None:
        """Open the trading day (daily counters reset) and post starting equity and limits."""
        session = await self.session_today()
        if session is None or self._clock.now() >= session.close:
            return None
        await self._app.engine.roll_day()
        pnl = await self._app.commands.pnl(ACTOR, audit=False)
        risk = self._app.settings.risk
        message = reports.market_open_message(await self._status(), pnl, risk, session)
        self._router.publish(message)
        return message

    async def preclose_flatten(self) -> FlattenReport | None:
        """Close every position before the close, if configured and the session is on."""
        if self._schedule.preclose_flatten_time is None:
            return None
        session = await self.session_today()
        if session is None or self._clock.now() >= session.close:
            return None
        report = await self._app.commands.flatten(ACTOR)
        body = f"⏰ Pre-close flatten\n{text.render_flatten(report)}"
        self._router.publish(AlertMessage(Channel.TRADES, Severity.INFO, body, "preclose"))
        if not report.flat:
            self._router.publish(
                AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, body, "preclose")
            )
        return report

    async def end_of_day(self) -> AlertMessage | None:
        """After the close of a trading day: P&L, trades, win rate, fees, best and worst,
        with the equity-curve PNG when a chart renderer is set."""
        session = await self.session_today()
        if session is None or self._clock.now() < session.close:
            return None
        data = await reports.gather_end_of_day(self._app.commands, session, ACTOR)
        png = await self._render_chart(data.pnl)
        message = reports.end_of_day_message(data, png)
        self._router.publish(message)
        return message

    async def reconcile(self) -> ReconcileResult:
        """The engine's reconcile (``TradingEngine.reconcile``): every drift is corrected and
        published (so alerted); skipped while orders are in flight or a flatten runs."""
        return await self._app.engine.reconcile("scheduled")

    async def _status(self) -> StatusReport:
        return await self._app.commands.status(ACTOR, audit=False)

    async def _render_chart(self, pnl: PnLReport) -> bytes | None:
        if self._chart is None:
            return None
        try:
            # Matplotlib is CPU work: keep it off the loop.
            return await asyncio.to_thread(self._chart, pnl)
        except Exception:
            log.exception("equity chart failed; the report goes without it")
            return None
