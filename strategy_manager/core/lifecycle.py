"""LifecycleManager: when each strategy should run, from its calendar and schedule.

Strategies that share a policy (calendar, mode, warm-up, run-on, break rule) share
one cached phase, valid until its next transition; the orchestrator asks for the
earliest transition and sleeps until then. Nothing here polls per strategy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from strategy_manager.core.schedule import Calendars, Phase, Policy
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import StrategySpec


class LifecycleManager:
    def __init__(self, settings: Settings, calendars: Calendars | None = None) -> None:
        self.settings = settings
        self.calendars = calendars or Calendars(settings.calendar_end_policy, settings.holidays)
        #: policy -> (when computed, phase): valid from then until the phase's end
        self._phases: dict[Policy, tuple[datetime, Phase]] = {}

    def calendar_for(self, spec: StrategySpec) -> str:
        """The document's calendar, else the one its symbol suffix maps to, else the default."""
        if spec.calendar:
            return spec.calendar
        mapping = self.settings.calendar_map
        if "." in spec.symbol:
            suffix = "." + spec.symbol.rsplit(".", 1)[1].upper()
            if suffix in mapping:
                return mapping[suffix]
        elif "" in mapping and spec.symbol.isalpha():
            return mapping[""]  # a plain ticker such as AAPL
        return self.settings.default_calendar

    def policy_for(self, spec: StrategySpec) -> Policy:
        s, o = self.settings, spec.schedule
        return Policy(
            calendar=self.calendar_for(spec),
            mode=o.mode or s.schedule_mode,
            pre_open_minutes=s.pre_open_minutes if o.pre_open_minutes is None else o.pre_open_minutes,
            post_close_minutes=(
                s.post_close_minutes if o.post_close_minutes is None else o.post_close_minutes
            ),
            lunch_break=o.lunch_break or s.lunch_break,
        )

    def phase(self, policy: Policy, now: datetime) -> Phase:
        """The policy's phase at ``now``; recomputed only once its transition has passed."""
        cached = self._phases.get(policy)
        if cached is not None:
            since, phase = cached
            if since <= now and (phase.until is None or now < phase.until):
                return phase
        phase = self.calendars.phase(policy, now)
        self._phases[policy] = (now, phase)
        return phase

    def next_transition(self, policies: Iterable[Policy], now: datetime) -> datetime | None:
        times = [p.until for p in (self.phase(x, now) for x in set(policies)) if p.until]
        return min(times, default=None)
