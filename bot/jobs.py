"""Scheduled jobs on APScheduler's AsyncIOScheduler, in the bot's own loop (the plain
schedule decisions are in ``bot.schedule``).

Recurring: the heartbeat, the periodic reconcile, and a daily plan (00:05 New York, and at
start) that reads today's session from the broker's calendar and schedules the day's dated
jobs: market open, the optional pre-close flatten, and the end-of-day report after the close.
Holidays get nothing; on a half day the close is 13:00, so the report follows the early close.
A job that runs late still runs within ``SCHEDULE_MISFIRE_GRACE_SECONDS`` (late runs coalesce
into one). The engine runs its own guards (the dead-man's switch included) and its own
reconcile: the jobs only schedule calls on it.

Each job is a plain async method that takes "now" from the injected clock, so tests drive
them with a ``TestClock``. In sim mode (``TradingJobs.for_app``) the dated jobs follow the
replayed market's clock instead of wall time, so a demo shows #reports: market open as the
replay starts its session, the end-of-day report when the replay has played the close. The
replay's end is announced, and a restart with nothing left to replay says how to start a
fresh day. Heartbeat and reconcile stay on wall time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot import charts, reports, text
from bot.alerts import AlertRouter
from bot.messages import AlertMessage, Channel
from bot.schedule import (
    JOB_EOD,
    JOB_HEARTBEAT,
    JOB_MARKET_OPEN,
    JOB_PLAN,
    JOB_PRECLOSE,
    JOB_RECONCILE,
    DayPlan,
    job_defaults,
    plan_day,
    recurring_triggers,
)
from config.settings import ScheduleSettings
from engine.app import EngineApp
from engine.clock import Clock, ReplayClock, SystemClock, trading_day
from engine.commands import PnLReport, StatusReport
from engine.domain import TradingSession
from engine.events import Severity
from engine.flatten import FlattenReport
from engine.reconcile import ReconcileResult

log = logging.getLogger(__name__)

ACTOR = "scheduler"

ChartRenderer = Callable[[PnLReport], bytes | None]
Job = Callable[[], Awaitable[object]]

REPLAY_TICK_S = 0.25
"""How often (wall time) the dated jobs look at a replay's clock."""


def equity_chart(pnl: PnLReport) -> bytes:
    """The default end-of-day chart: the day's equity curve (``bot.charts``)."""
    return charts.render_pnl_chart(pnl)


# ---- the jobs --------------------------------------------------------------------------


class TradingJobs:
    """Start after ``app.start()`` (the boot report reads the started engine); stop before
    ``app.stop()`` and before the router, so the going-down message is still delivered.

    ``chart`` renders the end-of-day equity curve to PNG bytes in a worker thread (None: the
    report goes without it). ``announce`` posts the boot report on start and the going-down
    message on stop. ``follow_clock``: the dated jobs run when ``clock`` reaches their time
    (a replay's clock), checked every ``REPLAY_TICK_S``, instead of on wall time.
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
        follow_clock: bool = False,
    ) -> None:
        self._app = app
        self._schedule = schedule
        self._router = router
        self._clock = clock or SystemClock()
        self._chart = chart
        self._announce = announce
        self._follow_clock = follow_clock
        self._scheduler: AsyncIOScheduler | None = None
        self._due: dict[str, tuple[datetime, Job]] = {}
        self._planned_day: date | None = None
        self._follower: asyncio.Task[None] | None = None
        self.plan: DayPlan | None = None

    @classmethod
    def for_app(
        cls, app: EngineApp, router: AlertRouter, *, chart: ChartRenderer | None = equity_chart
    ) -> TradingJobs:
        """The jobs on the app's market clock: wall time live, the replay's in sim mode."""
        replay = isinstance(app.clock, ReplayClock)
        return cls(
            app, app.settings.schedule, router, clock=app.clock, chart=chart, follow_clock=replay
        )

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
        if self._follow_clock and not paused:
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        """Stop the scheduler (a running job is cancelled), then post the going-down message."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
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
        self._planned_day = trading_day(self._clock.now())
        plan = plan_day(await self.session_today(), self._schedule)
        self.plan = plan
        if self._scheduler is None and not self._follow_clock:
            return plan
        work: dict[str, Job] = {
            JOB_MARKET_OPEN: self.market_open,
            JOB_PRECLOSE: self.preclose_flatten,
            JOB_EOD: self.end_of_day,
        }
        runs = plan.runs() if plan is not None else {}
        grace = timedelta(seconds=self._schedule.misfire_grace_seconds)
        now = self._clock.now()
        for job_id, job in work.items():
            at = runs.get(job_id)
            self._set_dated(job_id, at if at is not None and at + grace >= now else None, job)
        if plan is None:
            log.info("no trading session today: no market jobs")
        else:
            log.info("today's jobs: %s", {k: v.isoformat() for k, v in plan.runs().items()})
        return plan

    def _set_dated(self, job_id: str, at: datetime | None, job: Job) -> None:
        """Schedule ``job`` at ``at`` (None: unschedule it), on wall time or on the clock."""
        if self._follow_clock:
            if at is None:
                self._due.pop(job_id, None)
            else:
                self._due[job_id] = (at, job)
            return
        assert self._scheduler is not None
        if at is None:
            if self._scheduler.get_job(job_id) is not None:
                self._scheduler.remove_job(job_id)
            return
        self._scheduler.add_job(
            self._guarded(job_id, job),
            DateTrigger(run_date=at),
            id=job_id,
            name=job_id,
            replace_existing=True,
        )

    async def _follow(self) -> None:
        """Run the dated jobs as the replay's clock reaches them, however far it moved since
        the last look (a replay at full speed outruns any tick); a new replayed day is
        planned. The replay's end is the end of its market: announced, with the end-of-day
        report at once when the close was played (a replay has no settlement to wait for)."""
        finished = False
        while True:
            now = self._clock.now()
            if trading_day(now) != self._planned_day:
                await self._guarded(JOB_PLAN, self.plan_today)()
            for job_id, (at, job) in sorted(self._due.items(), key=lambda item: item[1][0]):
                if now >= at:
                    del self._due[job_id]
                    await self._guarded(job_id, job)()
            if not finished:
                status = await self._status()
                finished = status.feed.finished
                if finished:
                    await self._replay_ended(status)
            await asyncio.sleep(REPLAY_TICK_S)

    async def _replay_ended(self, status: StatusReport) -> None:
        data_dir = self._app.settings.storage.data_dir
        if status.feed.messages == 0:  # it had ended before this run started
            self._router.publish(reports.replay_over_message(status, data_dir))
            return
        self._router.publish(reports.replay_end_message(status, data_dir))
        due = self._due.pop(JOB_EOD, None)
        if due is not None and self.plan is not None and status.now >= self.plan.session.close:
            await self._guarded(JOB_EOD, due[1])()

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
