"""Who runs which strategy: leases in the store, and owners known to be dead.

An owner is ``host:pid``. Leases expire (``lease_seconds``) so a standby
orchestrator on another host takes over a dead one's strategies; on the same host
a dead process is recognised at once (its pid is gone) and its leases taken
without waiting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime

from strategy_manager.core.store import Lease, Store


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_local_owners(owners: Iterable[str | None]) -> frozenset[str]:
    """Owners ``host:pid`` on this host whose process no longer exists."""
    host = socket.gethostname()
    dead: set[str] = set()
    for owner in set(owners):
        name, _, pid = (owner or "").rpartition(":")
        if not owner or name != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(owner)
        except PermissionError:  # alive, someone else's
            pass
    return frozenset(dead)


class Leases:
    """Claims and renews this owner's leases, remembering which owners are dead."""

    def __init__(self, store: Store, owner: str, seconds: float) -> None:
        self.store, self.owner, self.seconds = store, owner, seconds
        self.dead: frozenset[str] = frozenset()

    def claim(self, wanted: Sequence[str], now: datetime) -> dict[str, Lease]:
        held = self.store.claim(wanted, self.owner, now, self.seconds, steal_from=self.dead)
        missing = [i for i in wanted if i not in held]
        if missing:  # held by a process of this host that no longer exists? take them now
            dead = dead_local_owners(self.store.lease_holders(missing).values()) - self.dead
            if dead:
                self.dead |= dead
                held |= self.store.claim(missing, self.owner, now, self.seconds, steal_from=self.dead)
        return held

    def release(self, ids: Sequence[str]) -> None:
        self.store.release(ids, self.owner)
