"""The driver's decisions about its hosts, free of Ray so they can be tested alone.

A host *fails* when Ray reports it dead, when its heartbeat record says it stopped,
or when it has been silent for a lease (no heartbeat in the store for
``lease_seconds``: frozen, cut off from the store, or gone without Ray noticing).
Its strategies then go to the other hosts at once. That is only a reassignment:
the receivers claim each lease in the store, which grants it only when it was
released, has expired, or is held by a process of the same machine that is gone.
A Ray death notice can come while the old process still runs and renews (a hung
raylet); its leases then stay where they are, the receivers stand by, and they are
told to try again once the old host has been silent for a lease.

A failed host that is heard from again (it was frozen, then resumed) takes new
strategies, not its old ones back: they run elsewhere by then.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import define

from strategy_manager.core.store import OwnerRecord
from strategy_manager.scaleout.assignment import Assignment

#: How long a new host may take to write its first heartbeat before it counts as silent.
HOST_START_SECONDS = 60.0


@define
class HostView:
    """What the driver knows of one host."""

    name: str
    node: str
    #: The host's owner id ends with ``:<token>``: how its heartbeat record is found.
    token: str
    #: When the driver started or found it (wall seconds).
    since: float
    weight: float = 1.0
    #: The latest heartbeat in the store (wall seconds), and the owner id it came with.
    heartbeat: float | None = None
    owner: str | None = None
    pid: int | None = None
    ray_dead: bool = False
    stopped: bool = False
    #: Its strategies were given to others; it takes new ones once heard from again.
    failed: bool = False
    failed_at: float | None = None
    version: int = 0

    def silent_at(self, lease_seconds: float) -> float:
        """When its leases are sure to have expired if it has not renewed since."""
        if self.heartbeat is None:
            return self.since + max(lease_seconds, HOST_START_SECONDS)
        return self.heartbeat + lease_seconds


@define(frozen=True)
class Push:
    """Tell host ``name`` its whole set (a newer ``version`` wins)."""

    name: str
    ids: frozenset[str]
    version: int
    #: Try the leases held elsewhere at once: their holder has gone quiet.
    claim_now: bool = False


@define(frozen=True)
class Event:
    kind: str
    host: str
    detail: str


class Fleet:
    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self.hosts: dict[str, HostView] = {}
        self.assignment = Assignment()
        #: Failed hosts that may still hold leases -> the hosts that took their strategies.
        self._receivers: dict[str, set[str]] = {}
        #: When the heartbeats were last read: silence is judged as of then, so a driver
        #: that cannot read the store fails no host for it.
        self.heard_at: float | None = None
        self._events: list[Event] = []

    # -- what the driver learns ---------------------------------------------------------
    def add(self, host: HostView) -> None:
        self.hosts[host.name] = host
        self.assignment.admit(host.name, host.weight)
        self._event("host-up", host.name, f"node {host.node[:12]}, weight {host.weight:g}")

    def adopt(self, host: HostView, ids: Iterable[str]) -> None:
        """A host found running (started by an earlier driver), with its assignment."""
        self.hosts[host.name] = host
        self.assignment.admit(host.name, host.weight)
        self.assignment.restore(host.name, ids)
        self._event("host-adopted", host.name, f"node {host.node[:12]}, running its assignment")

    def started(self, name: str, owner: str, pid: int) -> None:
        host = self.hosts.get(name)
        if host is not None:
            host.owner, host.pid = owner, pid

    def strategies(self, ids: Iterable[str]) -> None:
        """Every strategy that exists now (documents, valid or not, by ident)."""
        self.assignment.sync(ids)

    def ray_lost(self, name: str, why: str) -> None:
        host = self.hosts.get(name)
        if host is not None and not host.ray_dead:
            host.ray_dead = True
            self._event("ray-dead", name, why)

    def heard(self, owners: Iterable[OwnerRecord], now: float) -> None:
        """Heartbeat records from the store, read at ``now``; each host finds its own by token."""
        self.heard_at = now
        by_token: dict[str, OwnerRecord] = {}
        for record in owners:
            if record.heartbeat is None:
                continue
            token = record.owner.rsplit(":", 1)[-1]
            previous = by_token.get(token)
            if previous is None or record.heartbeat > previous.heartbeat:  # type: ignore[operator]
                by_token[token] = record
        for host in self.hosts.values():
            found = by_token.get(host.token)
            if found is None or found.heartbeat is None:
                continue
            record, beat = found, found.heartbeat.timestamp()
            if host.heartbeat is None or beat > host.heartbeat:
                host.heartbeat, host.owner, host.pid = beat, record.owner, record.pid
            host.stopped = record.stopped

    # -- what the driver does -----------------------------------------------------------
    def step(self, now: float) -> tuple[list[Push], list[Event]]:
        """Fail and recover hosts as their news says; the pushes and events that follow."""
        nudged: set[str] = set()
        for host in list(self.hosts.values()):
            silent = self.heard_at is not None and self.heard_at >= host.silent_at(self.lease_seconds)
            if not host.failed and (host.ray_dead or host.stopped or silent):
                self._fail(host, now, silent)
            elif host.failed and not (host.ray_dead or host.stopped or silent):
                host.failed, host.failed_at = False, None
                self.assignment.admit(host.name, host.weight)
                self._event("host-back", host.name, "heard from again; takes new strategies")
            if host.failed and (silent or host.stopped):
                nudged |= self._receivers.pop(host.name, set())  # its leases have expired now
            if host.ray_dead and host.failed and host.name not in self._receivers:
                del self.hosts[host.name]  # Ray will not reach it again, nor need its news
        pushes = []
        for name in sorted(self.assignment.take_changed() | nudged):
            target = self.hosts.get(name)
            if target is None or target.ray_dead:
                continue
            target.version += 1
            pushes.append(Push(name, self.assignment.of(name), target.version, claim_now=name in nudged))
        events, self._events = self._events, []
        return pushes, events

    def next_due(self) -> float | None:
        """The next time :meth:`step` has something to do without news (wall seconds)."""
        times = [
            h.silent_at(self.lease_seconds)
            for h in self.hosts.values()
            if not h.failed or h.name in self._receivers
        ]
        return min(times, default=None)

    def _fail(self, host: HostView, now: float, silent: bool) -> None:
        host.failed, host.failed_at = True, now
        before = self.assignment.counts()
        moved = self.assignment.evacuate(host.name)
        after = self.assignment.counts()
        receivers = {h for h, n in after.items() if n > before.get(h, 0)}
        why = (
            "stopped"
            if host.stopped
            else "Ray reports it dead"
            if host.ray_dead and not silent
            else f"silent for {self.lease_seconds:g}s"
        )
        where = ", ".join(f"{after[h] - before.get(h, 0)} to {h}" for h in sorted(receivers))
        self._event(
            "host-lost",
            host.name,
            f"{why}; {len(moved)} strategies reassigned"
            + (f" ({where})" if where else "")
            + (f", {len(self.assignment.waiting)} wait for a host" if self.assignment.waiting else ""),
        )
        if receivers and not host.stopped and not silent:
            # Its leases may still be valid: the receivers stand by until it is silent.
            self._receivers[host.name] = receivers

    def _event(self, kind: str, host: str, detail: str) -> None:
        self._events.append(Event(kind, host, detail))


__all__ = ["HOST_START_SECONDS", "Event", "Fleet", "HostView", "Push"]
