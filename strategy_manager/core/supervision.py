"""What to do when a strategy fails: restart with backoff, or stop trying.

Only crashes and transient errors are retried, with full-jitter backoff
(``random(0, min(cap, base * 2**n))``) and at most ``restart_max`` failures in
``restart_window`` seconds. Errors a retry cannot fix go to FAILED at once: an engine
that halted for a person to look, an invalid document or refused class, a snapshot
that cannot be restored, a hook that hung.
"""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta

from attrs import define

from strategy_manager.core.errors import (
    ClassRefused,
    EngineHalted,
    HookTimeout,
    InvalidStrategy,
    SnapshotError,
)

#: Errors no restart can fix; found anywhere in the chain of causes.
PERMANENT = (EngineHalted, InvalidStrategy, ClassRefused, SnapshotError, HookTimeout)


def permanent(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain that makes retrying pointless, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PERMANENT):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@define(frozen=True)
class Verdict:
    #: None: give up (FAILED); else when to try again.
    retry_at: datetime | None
    #: The failures counted in the window, this one included.
    attempt: int
    delay: float = 0.0


def judge(
    failures: deque[float],
    exc: BaseException,
    now: datetime,
    restart_max: int,
    restart_window: float,
    backoff_base: float,
    backoff_cap: float,
) -> Verdict:
    """Record a failure at ``now`` in ``failures`` and decide what follows."""
    stamp = now.timestamp()
    failures.append(stamp)
    while failures and failures[0] < stamp - restart_window:
        failures.popleft()
    if permanent(exc) is not None or len(failures) > restart_max:
        return Verdict(None, len(failures))
    attempt = len(failures)
    delay = random.uniform(0, min(backoff_cap, backoff_base * 2 ** (attempt - 1)))
    return Verdict(now + timedelta(seconds=delay), attempt, delay)
