"""Which host may run which strategy: the table the driver keeps and pushes to hosts.

A strategy stays on its host until that host fails or the strategy's document goes:
a running strategy is never moved between healthy hosts, since every move is a stop,
a snapshot and a restart. New strategies, and those of a failed host, go one by one
to the host with the fewest strategies per unit of weight (ties: by host name), so a
fleet of equal hosts is spread evenly and a host of weight 2 gets twice the share.
Strategies with no host to go to wait, and are placed as soon as one is admitted.
"""

from __future__ import annotations

from collections.abc import Iterable


class Assignment:
    def __init__(self) -> None:
        #: Hosts that take strategies, and their weights.
        self.weights: dict[str, float] = {}
        #: Strategy id -> host.
        self.where: dict[str, str] = {}
        self._by_host: dict[str, set[str]] = {}
        #: Strategies known but on no host (no host admitted).
        self.waiting: set[str] = set()
        #: Hosts whose set changed since :meth:`take_changed`.
        self._changed: set[str] = set()

    def of(self, host: str) -> frozenset[str]:
        return frozenset(self._by_host.get(host, ()))

    def counts(self) -> dict[str, int]:
        return {host: len(self._by_host.get(host, ())) for host in self.weights}

    def admit(self, host: str, weight: float = 1.0) -> None:
        """A host that takes strategies; the waiting ones are placed at once."""
        if weight <= 0:
            raise ValueError(f"host {host}: weight must be positive, got {weight}")
        self.weights[host] = weight
        self._by_host.setdefault(host, set())
        self._place(sorted(self.waiting))

    def evacuate(self, host: str) -> list[str]:
        """The host takes nothing more and gives up what it had, which goes to the
        others (or waits). Returns the strategies it had, in order."""
        self.weights.pop(host, None)
        moved = sorted(self._by_host.pop(host, set()))
        for sid in moved:
            del self.where[sid]
        self._changed.add(host)
        self._place(moved)
        return moved

    def restore(self, host: str, strategy_ids: Iterable[str]) -> None:
        """Put back what an admitted host already runs (a driver that restarted). A
        strategy already placed elsewhere stays there, and the host is marked changed
        so that it is told."""
        mine = self._by_host.setdefault(host, set())
        for sid in strategy_ids:
            if sid in self.where:
                if self.where[sid] != host:
                    self._changed.add(host)
                continue
            self.where[sid] = host
            mine.add(sid)
            self.waiting.discard(sid)

    def sync(self, strategy_ids: Iterable[str]) -> None:
        """The strategies that exist now: new ones are placed, gone ones dropped."""
        ids = set(strategy_ids)
        for sid in [s for s in self.where if s not in ids]:
            host = self.where.pop(sid)
            self._by_host[host].discard(sid)
            self._changed.add(host)
        self.waiting &= ids
        self._place(sorted(ids - self.where.keys() - self.waiting))

    def take_changed(self) -> set[str]:
        """The hosts whose set changed since the last call."""
        changed, self._changed = self._changed, set()
        return changed

    def _place(self, ids: list[str]) -> None:
        if not self.weights:
            self.waiting.update(ids)
            return
        load = {host: len(self._by_host.setdefault(host, set())) for host in self.weights}
        for sid in ids:
            host = min(self.weights, key=lambda h: ((load[h] + 1) / self.weights[h], h))
            self.where[sid] = host
            self._by_host[host].add(sid)
            load[host] += 1
            self._changed.add(host)
            self.waiting.discard(sid)


__all__ = ["Assignment"]
