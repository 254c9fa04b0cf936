"""What every view of the fleet shows (``status``, ``state show``, ``strategies
list``, the HTTP API): each strategy's status record, judged against its owner's
heartbeat.

A strategy whose status says it is running, waiting or failing is only as current as
the orchestrator that wrote it. If that orchestrator's heartbeat is older than
``lease_seconds`` (it was killed, frozen or cut off) and it did not stop cleanly, the
strategy is shown as ``STALE`` (owner gone), with the last state it reported. What a
cleanly stopped orchestrator wrote last stands as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from attrs import define

from strategy_manager.core.store import OwnerRecord, StatusRecord, Store

STALE = "STALE"
#: States that stay true without a live owner: nothing runs them.
SETTLED = frozenset({"STOPPED", "FINISHED", "DISABLED", "BLOCKED"})
#: States a monitoring check reports (``status --check``).
ATTENTION = frozenset({"FAILED", "BLOCKED", STALE})


@define(frozen=True)
class StatusView:
    record: StatusRecord
    #: The state to show: the record's, or STALE when its owner is gone.
    state: str
    #: The owner's last heartbeat (None if it never wrote one).
    owner_heartbeat: datetime | None
    #: The owner's host, from its heartbeat record.
    host: str | None
    #: The owner's pid, and its Ray node with executor ray (from the same record).
    pid: int | None = None
    node: str | None = None

    @property
    def strategy_id(self) -> str:
        return self.record.strategy_id

    @property
    def stale(self) -> bool:
        return self.state == STALE

    def as_dict(self) -> dict[str, object]:
        """The record as JSON data, its state judged, the reported one kept."""
        from attrs import asdict

        data = asdict(self.record)
        data["reported_state"] = self.record.state
        data["state"] = self.state
        data["owner_heartbeat"] = self.owner_heartbeat
        data["host"] = self.host
        data["pid"] = self.pid
        data["node"] = self.node
        return data


def judge(
    records: Iterable[StatusRecord], owners: Iterable[OwnerRecord], now: datetime, lease_seconds: float
) -> list[StatusView]:
    """Each record as it should be shown at ``now``."""
    by_owner = {o.owner: o for o in owners}
    limit = timedelta(seconds=lease_seconds)
    views = []
    for record in records:
        owner = by_owner.get(record.owner or "")
        beat = owner.heartbeat if owner is not None else None
        # A cleanly stopped owner wrote its final word; a silent one may be dead.
        gone = owner is None or (not owner.stopped and (beat is None or now - beat > limit))
        state = STALE if gone and record.state not in SETTLED else record.state
        where = (
            (owner.host, owner.pid, owner.details.get("ray_node"))
            if owner is not None
            else (None, None, None)
        )
        views.append(StatusView(record, state, beat, *where))
    return sorted(views, key=lambda v: v.strategy_id)


def current(store: Store, now: datetime, lease_seconds: float) -> list[StatusView]:
    """Every strategy's status from ``store``, judged at ``now``."""
    return judge(store.read_status(), store.read_owners(), now, lease_seconds)
