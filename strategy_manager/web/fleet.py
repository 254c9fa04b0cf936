"""The strategies as the server shows them: read from the orchestrator's slots.

The server runs on its own thread; it never locks or changes a slot. It copies the
slot list (one atomic step) and reads each slot's fields, each of which the control
thread replaces whole, so a row is at worst one turn of the control loop old.
Filters and pagination run over the copy; rows are built only for the page asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator, Slot

#: Filters of ``GET /api/strategies``: query parameter -> row field (exact match).
EXACT_FILTERS = ("state", "engine", "user", "symbol", "account")


class Fleet:
    def __init__(self, orchestrator: MultiStrategyOrchestrator) -> None:
        self.orchestrator = orchestrator
        self._zones: dict[str, ZoneInfo | None] = {}

    def slots(self) -> list[Slot]:
        """Every slot, by id."""
        return sorted(list(self.orchestrator.slots.values()), key=lambda s: s.id)

    def slot(self, strategy_id: str) -> Slot | None:
        return self.orchestrator.slots.get(strategy_id)

    # -- queries -------------------------------------------------------------------
    def query(
        self, filters: Mapping[str, Iterable[str]], search: str, offset: int, limit: int
    ) -> dict[str, Any]:
        """One page of the strategies matching ``filters`` (each a set of accepted
        values) and ``search`` (a case-insensitive substring of id, engine or state),
        with the count of each state among those matching every filter but state."""
        needle = search.strip().lower()
        others = {k: v for k, v in filters.items() if k != "state"}
        states = filters.get("state")
        matching: list[Slot] = []
        counts: Counter[str] = Counter()
        engines: set[str] = set()
        for slot in self.slots():
            keys = _keys(slot)
            if keys["engine"]:
                engines.add(keys["engine"])
            if any(keys[name] not in wanted for name, wanted in others.items()):
                continue
            if needle and needle not in f"{slot.id} {keys['engine'] or ''} {keys['state']}".lower():
                continue
            counts[keys["state"]] += 1
            if states is None or keys["state"] in states:
                matching.append(slot)
        now = self.orchestrator.wall.now()
        return {
            "total": len(matching),
            "offset": offset,
            "limit": limit,
            "counts": dict(sorted(counts.items())),
            "engines": sorted(engines),
            "items": [self.row(s, now) for s in matching[offset : offset + limit]],
        }

    def row(self, slot: Slot, now: datetime | None = None) -> dict[str, Any]:
        """What the table shows of one strategy (plain JSON data)."""
        orchestrator = self.orchestrator
        now = now or orchestrator.wall.now()
        keys = _keys(slot)
        spec, phase, lease = slot.spec, slot.phase, slot.lease
        calendar = slot.policy.calendar if slot.policy is not None else None
        zone = self._zone(calendar)
        next_at = phase.until if phase is not None else None
        snapshot_at = slot.last_snapshot_at
        here = lease is not None
        return {
            "id": slot.id,
            "user_id": keys["user"],
            "symbol": keys["symbol"],
            "strategy_key": spec.strategy_key if spec is not None else _part(slot.id, 2),
            "account": keys["account"],
            "engine": keys["engine"],
            "enabled": spec.enabled if spec is not None else None,
            "state": keys["state"],
            "reason": slot.reason,
            "restarts": slot.restarts,
            "starts": slot.starts,
            "owner": orchestrator.owner if here else None,
            "host": orchestrator.record.host if here else None,
            "elsewhere": slot.elsewhere,
            "epoch": lease.epoch if lease is not None else None,
            "last_snapshot_seq": slot.last_snapshot_seq,
            "last_snapshot_at": snapshot_at.isoformat() if snapshot_at else None,
            "snapshot_age_seconds": round((now - snapshot_at).total_seconds(), 1) if snapshot_at else None,
            "calendar": calendar,
            "next_transition": phase.next_kind if phase is not None else None,
            "next_transition_at": (
                (next_at.astimezone(zone) if zone else next_at).isoformat() if next_at else None
            ),
            "zone": str(zone) if zone else None,
        }

    def _zone(self, calendar: str | None) -> ZoneInfo | None:
        """The exchange's time zone (calendars are built once and shared)."""
        if calendar is None:
            return None
        if calendar not in self._zones:
            try:
                tz = self.orchestrator.lifecycle.calendars.calendar(calendar).tz
                self._zones[calendar] = ZoneInfo(str(tz))
            except Exception:  # an unknown calendar blocks its strategy; the row shows UTC
                self._zones[calendar] = None
        return self._zones[calendar]


def _part(ident: str, index: int) -> str | None:
    parts = ident.split(":")
    return parts[index] if len(parts) == 3 else None


def _keys(slot: Slot) -> dict[str, Any]:
    """The fields filters match on."""
    spec = slot.spec
    user: str | None
    symbol: str | None
    if spec is not None:
        account = spec.account
        user, symbol = spec.user_id, spec.symbol
    else:
        account, user, symbol = None, _part(slot.id, 0), _part(slot.id, 1)
    return {
        "state": str(slot.state),
        "engine": slot.engine,
        "user": user,
        "symbol": symbol,
        "account": account if isinstance(account, str) else None,
    }
