"""The schedule's plain decisions: which jobs exist, when today's dated jobs run (from the
broker's calendar session), and the APScheduler triggers and defaults of the recurring ones.
``bot.jobs`` runs them; tests check these functions from fixed times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from config.settings import ScheduleSettings
from engine.calendar import REGULAR_CLOSE
from engine.clock import NEW_YORK
from engine.domain import TradingSession

JOB_HEARTBEAT = "heartbeat"
JOB_RECONCILE = "reconcile"
JOB_PLAN = "plan-day"
JOB_MARKET_OPEN = "market-open"
JOB_PRECLOSE = "preclose-flatten"
JOB_EOD = "end-of-day"

PLAN_AT = time(0, 5)
"""New York time of the daily plan (after the engine has rolled its day at midnight)."""


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
