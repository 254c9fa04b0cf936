"""Trading calendars turned into run windows.

A strategy's *policy* says which calendar it follows and how (warm-up before the
open, run-on after the close, pause or not over the lunch break). From it we
compute *windows*: the spans in which the strategy should run. Windows are built
from ``ExchangeCalendar.schedule`` (open, break_start, break_end, close), a few
days at a time, and cached: nothing asks the calendar minute by minute.

Calendars end (exchange-calendars' XSHG has no sessions after 2026-12-31). Past
the end we warn, naming the calendar and its last session, and follow
``calendar_end_policy``: ``weekdays`` continues Monday to Friday with the
calendar's regular hours; ``stop`` runs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from attrs import define

from strategy_manager.core.errors import ScheduleError

log = logging.getLogger("strategy_manager.schedule")

HORIZON = timedelta(days=10)
END_WARNING = timedelta(days=30)


@define(frozen=True)
class Policy:
    """Everything that decides when one strategy runs; strategies sharing it share windows."""

    calendar: str
    mode: str = "calendar"  # or "always"
    pre_open_minutes: int = 0
    post_close_minutes: int = 0
    lunch_break: str = "keep_running"  # or "pause"


@define(frozen=True)
class Window:
    start: datetime
    end: datetime
    session: date
    #: why it starts and ends: "warm-up", "open", "break end" / "break", "close"
    starts_at: str
    ends_at: str
    #: True when the calendar had no data for this day and regular hours were assumed.
    assumed: bool = False


@define(frozen=True)
class Phase:
    running: bool
    #: When this phase ends; None for "never" (mode always, or nothing scheduled).
    until: datetime | None
    #: What happens then: "start", "pause", "stop" (or None).
    next_kind: str | None
    reason: str


@define(frozen=True)
class Session:
    day: date
    open: datetime
    close: datetime
    break_start: datetime | None
    break_end: datetime | None
    assumed: bool = False


class Calendars:
    """Builds each exchange calendar once and answers window questions from a cache."""

    def __init__(
        self,
        end_policy: str = "weekdays",
        holidays: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.end_policy = end_policy
        self.holidays = {
            name: {date.fromisoformat(d) for d in days} for name, days in (holidays or {}).items()
        }
        self._calendars: dict[str, Any] = {}
        self._windows: dict[Policy, tuple[datetime, datetime, list[Window]]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def calendar(self, name: str) -> Any:
        with self._lock:
            if name not in self._calendars:
                import exchange_calendars

                try:
                    self._calendars[name] = exchange_calendars.get_calendar(name)
                except Exception as exc:
                    raise ScheduleError(f"calendar '{name}': {exc}") from None
            return self._calendars[name]

    # -- sessions ---------------------------------------------------------------
    def sessions(self, name: str, start: datetime, end: datetime) -> list[Session]:
        """Sessions whose day lies in [start - 1 day, end + 1 day], holidays removed."""
        cal = self.calendar(name)
        tz = ZoneInfo(str(cal.tz))
        first_day = start.astimezone(tz).date() - timedelta(days=1)
        last_day = end.astimezone(tz).date() + timedelta(days=1)
        last_session = cal.last_session.date()
        closed = self.holidays.get(name, set())
        result: list[Session] = []
        if first_day <= last_session:
            frame = cal.schedule.loc[str(first_day) : str(min(last_day, last_session))]
            for day, row in frame.iterrows():
                result.append(
                    Session(
                        day=day.date(),
                        open=row["open"].to_pydatetime(),
                        close=row["close"].to_pydatetime(),
                        break_start=_or_none(row.get("break_start")),
                        break_end=_or_none(row.get("break_end")),
                    )
                )
        if last_day > last_session:
            self._warn_end(name, last_session, start)
            if self.end_policy == "weekdays":
                result.extend(self._assumed(cal, tz, max(first_day, last_session + timedelta(1)), last_day))
        elif start.astimezone(tz).date() + END_WARNING >= last_session:
            self._warn_end(name, last_session, start)
        return [s for s in result if s.day not in closed]

    def _assumed(self, cal: Any, tz: ZoneInfo, first: date, last: date) -> list[Session]:
        """Monday-to-Friday sessions with the calendar's regular hours."""

        def at(day: date, times: Any) -> datetime | None:
            if not times:
                return None
            return datetime.combine(day, times[-1][1], tz)

        out = []
        day = first
        while day <= last:
            if day.weekday() < 5:
                opening, closing = at(day, cal.open_times), at(day, cal.close_times)
                assert opening is not None and closing is not None
                out.append(
                    Session(
                        day,
                        opening,
                        closing,
                        at(day, cal.break_start_times),
                        at(day, cal.break_end_times),
                        assumed=True,
                    )
                )
            day += timedelta(days=1)
        return out

    def _warn_end(self, name: str, last_session: date, now: datetime) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        action = (
            "assuming Monday-Friday sessions with its regular hours"
            if self.end_policy == "weekdays"
            else "running nothing after it"
        )
        tense = "had" if now.date() > last_session else "has"
        log.warning(
            "calendar %s %s no sessions after %s (its last session); past it, %s "
            "(calendar_end_policy=%s). Upgrade exchange-calendars for newer holidays.",
            name,
            tense,
            last_session.isoformat(),
            action,
            self.end_policy,
        )

    # -- windows ----------------------------------------------------------------
    def windows(self, policy: Policy, now: datetime) -> list[Window]:
        """The policy's run windows from around ``now`` to ``now + HORIZON``, cached."""
        cached = self._windows.get(policy)
        if cached and cached[0] <= now <= cached[1] - timedelta(days=2):
            return cached[2]
        start, end = now - timedelta(days=1), now + HORIZON
        pre = timedelta(minutes=policy.pre_open_minutes)
        post = timedelta(minutes=policy.post_close_minutes)
        pause = policy.lunch_break == "pause"
        windows = []
        for s in self.sessions(policy.calendar, start, end):
            if pause and s.break_start is not None and s.break_end is not None:
                windows.append(Window(s.open - pre, s.break_start, s.day, _warm(pre), "break", s.assumed))
                windows.append(Window(s.break_end, s.close + post, s.day, "break end", "close", s.assumed))
            else:
                windows.append(Window(s.open - pre, s.close + post, s.day, _warm(pre), "close", s.assumed))
        windows = _merge(windows)
        self._windows[policy] = (start, end, windows)
        return windows

    def phase(self, policy: Policy, now: datetime) -> Phase:
        if policy.mode == "always":
            return Phase(True, None, None, "schedule mode is always")
        for window in self.windows(policy, now):
            if window.start <= now < window.end:
                kind = "pause" if window.ends_at == "break" else "stop"
                return Phase(True, window.end, kind, f"in session {window.session}")
            if now < window.start:
                reason = "lunch break" if window.starts_at == "break end" else "market closed"
                return Phase(False, window.start, "start", reason)
        return Phase(False, None, None, f"no sessions ahead on {policy.calendar}")


def _warm(pre: timedelta) -> str:
    return "warm-up" if pre else "open"


def _or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except ImportError:  # pragma: no cover - pandas comes with exchange-calendars
        pass
    return value.to_pydatetime()  # type: ignore[no-any-return]


def _merge(windows: list[Window]) -> list[Window]:
    """Join windows that touch or overlap (a long post-close run-on into a warm-up)."""
    windows.sort(key=lambda w: w.start)
    merged: list[Window] = []
    for w in windows:
        if merged and w.start <= merged[-1].end:
            last = merged[-1]
            if w.end > last.end:
                merged[-1] = Window(
                    last.start,
                    w.end,
                    last.session,
                    last.starts_at,
                    w.ends_at,
                    last.assumed or w.assumed,
                )
        else:
            merged.append(w)
    return merged
