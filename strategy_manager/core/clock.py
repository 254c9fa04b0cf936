"""Time, injected. Nothing else in the project reads the wall clock directly.

``SystemClock`` is real time. ``SimClock`` runs from a chosen instant at a chosen
speed (``strategy-manager run --clock sim --start ... --speed 600`` watches a trading
day in about forty seconds). Both return timezone-aware UTC datetimes and express waits in clock seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


def steady() -> float:
    """Seconds on a clock that never goes back and keeps counting while the machine
    sleeps or the process is paused (CLOCK_BOOTTIME where the system has it): lease
    deadlines are measured on it, so a process that wakes up knows time has passed."""
    return time.clock_gettime(_STEADY)


_STEADY = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` of clock time pass; True if set."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many wall-clock seconds ``seconds`` of this clock's time take."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


class SimClock:
    """Starts at ``start`` and runs ``speed`` times faster than real time, but never
    ahead of whoever drives it.

    Two brakes keep a simulated run the same on an idle and on a loaded machine:

    * :meth:`hold`: while any hold is taken, simulated time stands still. The
      orchestrator holds it while it works (a reconcile, a start or stop in flight,
      a lease claim pending), so work costs no simulated time, however slow the
      machine.
    * :meth:`set_barrier`: simulated time does not pass the barrier. The orchestrator
      sets it to its next due time before it sleeps, so it wakes to that very
      instant, not to wherever the clock got while it was waking up.

    Waits (:meth:`wait`) are in simulated time too, so an engine's bars keep step
    with the schedule.
    """

    #: Longest real wait while the clock stands still, before looking again.
    FROZEN_POLL = 0.02

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        if not speed > 0 or speed == float("inf"):
            raise ValueError("SimClock speed must be a positive number")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._lock = threading.Lock()
        self._virtual = 0.0  # simulated seconds since start, as of _t0
        self._t0 = time.monotonic()
        self._holds = 0
        self._barrier: float | None = None

    def _elapsed(self, mono: float) -> float:
        """Simulated seconds since start; call with the lock held."""
        value = self._virtual if self._holds else self._virtual + (mono - self._t0) * self.speed
        return value if self._barrier is None else min(value, self._barrier)

    def _rebase(self) -> None:
        mono = time.monotonic()
        self._virtual, self._t0 = self._elapsed(mono), mono

    def now(self) -> datetime:
        with self._lock:
            return self.start + timedelta(seconds=self._elapsed(time.monotonic()))

    def anchor(self) -> None:
        """Make ``now()`` equal ``start`` again: the simulated day begins when its
        user is ready (calendars built, documents read), not when the clock was made."""
        with self._lock:
            self._virtual, self._t0 = 0.0, time.monotonic()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Simulated time stands still inside this block (holds nest, across threads)."""
        with self._lock:
            self._rebase()
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if not self._holds:
                    self._t0 = time.monotonic()

    def set_barrier(self, when: datetime | None) -> None:
        """Simulated time will not pass ``when`` (None: no barrier)."""
        with self._lock:
            self._rebase()
            self._barrier = None if when is None else max(self._virtual, (when - self.start).total_seconds())

    def wait(self, event: threading.Event, seconds: float) -> bool:
        target = self.now() + timedelta(seconds=max(0.0, seconds))
        while True:
            with self._lock:
                mono = time.monotonic()
                left = (target - self.start).total_seconds() - self._elapsed(mono)
                stalled = self._holds > 0 or (
                    self._barrier is not None and self._elapsed(mono) >= self._barrier
                )
            if left <= 0:
                return event.is_set()
            real = self.FROZEN_POLL if stalled else min(left / self.speed, self.FROZEN_POLL * 50)
            if event.wait(real):
                return True

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed
