"""Who runs which strategy: leases in the store, renewed in bulk on a thread of their
own, and the fence every engine of this process checks before it acts.

Every strategy has one lease in the store: an owner, an epoch that grows with every
change of owner, and an expiry. The :class:`LeaseKeeper` thread of each process

* renews all of its leases every ``lease_renew_seconds`` in one statement
  (``update ... where owner = me``), together with the process's heartbeat record;
* claims the leases the orchestrator wants and does not hold (free, expired, or
  held by a process of this machine that no longer exists), trying a refused one
  again when it expires;
* releases the ones the orchestrator no longer wants.

Self-fencing. A lease is valid here only until ``fence_seconds`` (``lease_seconds``
minus ``lease_margin_seconds``) after the last renewal that included it was *sent*,
measured on a clock that keeps counting while the process is paused. Past that,
:meth:`LeaseKeeper.valid` is False at once, without asking the store: every order an
adapter sends is refused and no snapshot is written, and the orchestrator is told to
stop the engines, all before the lease can expire in the store, where another process
could take it. Another process takes a lease only in an atomic update that checks
its expiry, so a late renewal and a takeover can never both succeed.

Owner ids are ``host:pid:random``, unique per process even where two containers share
a host name and a pid. Whether a pid on this machine still runs is judged only for
owners of the same boot and PID namespace, from their heartbeat records.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from attrs import define, field

from strategy_manager.core.clock import Clock, SystemClock, steady
from strategy_manager.core.errors import QsmError
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import Lease, OwnerRecord, Store

log = logging.getLogger("strategy_manager.leases")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip() if path.startswith("/proc") else os.readlink(path)
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def this_process(
    now: datetime, owner: str | None = None, details: Mapping[str, Any] | None = None
) -> OwnerRecord:
    """The heartbeat record of this process, with a fresh owner id unless given;
    ``details`` say more about where it runs (a Ray host's node id)."""
    host, pid = socket.gethostname(), os.getpid()
    return OwnerRecord(
        owner=owner or f"{host}:{pid}:{secrets.token_hex(4)}",
        host=host,
        pid=pid,
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        pid_namespace=_pid_namespace(),
        started_at=now,
        heartbeat=now,
        details=dict(details or {}),
    )


def dead_local_owners(
    holders: Iterable[str], owners: Iterable[OwnerRecord], me: OwnerRecord
) -> frozenset[str]:
    """The holders that were processes of this machine (same boot, same PID namespace)
    and no longer exist. Anything unknown counts as alive: its lease expires instead."""
    records = {r.owner: r for r in owners}
    dead: set[str] = set()
    for holder in set(holders):
        record = records.get(holder)
        if record is None or holder == me.owner or not me.boot_id or not me.pid_namespace:
            continue
        if (record.host, record.boot_id, record.pid_namespace) != (me.host, me.boot_id, me.pid_namespace):
            continue
        if record.stopped or not _pid_alive(record.pid):
            dead.add(holder)
    return frozenset(dead)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        pass
    # A process that has exited but is not reaped yet (a Ray worker whose node was
    # killed, until init reaps it) still answers kill(0), and does nothing any more.
    stat = _read(f"/proc/{pid}/stat")
    return not stat or stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


#: Leases claimed per store call: a round of thousands goes in chunks, renewals between.
CLAIM_CHUNK = 250
#: A refused lease is tried again this long after its stored expiry (the holder's
#: renewal, if any, lands first), or at the next round if that is sooner.
EXPIRY_GRACE_SECONDS = 0.02


@define(frozen=True)
class LeaseChange:
    """What the keeper learned, for the orchestrator to act on."""

    #: Leases now valid here: newly claimed, or renewed again after they had expired.
    claimed: dict[str, Lease] = field(factory=dict)
    #: Leases another process has now (the store says so).
    lost: frozenset[str] = frozenset()
    #: Leases this process could not renew in time: not valid here any more.
    expired: frozenset[str] = frozenset()
    #: Wanted, but held by another live process.
    elsewhere: frozenset[str] = frozenset()
    #: Held throughout, but renewed only after their fence had passed: an engine that
    #: checked its fence meanwhile is fenced for good and must be replaced.
    late: frozenset[str] = frozenset()


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        on_change: Callable[[LeaseChange], None],
        record: OwnerRecord | None = None,
        wall: Clock | None = None,
    ) -> None:
        self.store = store
        self.wall = wall or SystemClock()
        self.record = record or this_process(self.wall.now())
        self.owner = self.record.owner
        self.lease_seconds = settings.lease_seconds
        self.renew_seconds = settings.lease_renew_seconds
        self.fence_seconds = settings.fence_seconds
        self.keep_running = settings.on_lease_loss == "keep_running"
        self.on_change = on_change
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted: frozenset[str] = frozenset()
        self._held: dict[str, Lease] = {}
        self._valid_until: dict[str, float] = {}
        self._expired: set[str] = set()
        #: True when the store may hold leases of ours that we do not know of (a claim
        #: or release whose answer was lost): the next renewal reads them all back.
        self._uncertain = True
        self._next_claim = 0.0
        #: The claim round in progress: ids still to try, ids tried (see _claim).
        self._round: list[str] = []
        self._tried: set[str] = set()
        self._dead: frozenset[str] = frozenset()
        #: When the first lease refused in this round expires (steady seconds).
        self._soonest_expiry: float | None = None
        self.renewals = 0
        self.renewal_failures = 0
        self.last_renewal: float | None = None

    # -- asked by other threads ----------------------------------------------------------
    def valid(self, strategy_id: str, epoch: int) -> bool:
        """The fence: this process holds the lease at ``epoch`` and renewed it in time."""
        lease = self._held.get(strategy_id)
        if lease is None or lease.epoch != epoch:
            return False
        return self.keep_running or steady() < self._valid_until.get(strategy_id, 0.0)

    def lease(self, strategy_id: str) -> Lease | None:
        """The lease held here for ``strategy_id``, if it is valid now."""
        lease = self._held.get(strategy_id)
        return lease if lease is not None and self.valid(strategy_id, lease.epoch) else None

    def superseded(self, strategy_id: str, epoch: int) -> bool:
        """True once this process knows ``epoch`` is no longer its lease: it lost the
        lease, gave it up, or holds a newer epoch."""
        lease = self._held.get(strategy_id)
        return lease is None or lease.epoch != epoch

    def held(self) -> dict[str, Lease]:
        return dict(self._held)

    def want(self, strategy_ids: Collection[str]) -> None:
        """The leases the orchestrator wants held; the others are released."""
        wanted = frozenset(strategy_ids)
        with self._lock:
            new = wanted - self._wanted
            gone = self._wanted - wanted
            self._wanted = wanted
            if new:
                self._next_claim = 0.0
        if new or gone & self._held.keys():
            self._wake.set()

    def claim_now(self) -> None:
        """Try the wanted leases held elsewhere now rather than at the next retry (their
        holder is known to have gone quiet). The store still decides: a lease that has
        not expired stays where it is."""
        with self._lock:
            self._next_claim = 0.0
        self._wake.set()

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qsm-leases", daemon=True)
            self._thread.start()

    def stop(self, keep: Collection[str] = ()) -> None:
        """Stop renewing and give up every lease but ``keep`` (engines that could not be
        stopped: their leases expire instead). Never raises: if the store is away,
        the leases expire in ``lease_seconds``."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        release = [sid for sid in self._held if sid not in keep]
        with self._lock:
            self._held.clear()
            self._valid_until.clear()
        try:
            if release:
                self.store.release(release, self.owner)
            self.store.write_owner(self._heartbeat(stopped=not keep))
        except QsmError as exc:
            log.error(
                "could not release %d leases (they expire in %gs): %s", len(release), self.lease_seconds, exc
            )

    def _run(self) -> None:
        next_renew = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            now = steady()
            try:
                if now >= next_renew:
                    next_renew = now + self.renew_seconds
                    self._renew()
                self._release_unwanted()
                if now >= self._next_claim and self._unheld():
                    self._claim()
            except QsmError as exc:
                self.renewal_failures += 1
                self._round, self._tried = [], set()  # the store failed: claim again later
                self._next_claim = now + self._claim_interval()
                log.error("leases of %s: %s", self.owner, exc)
            self._notice_expiry()
            wait = next_renew - steady()
            if self._held and not self.keep_running:
                pending = [t for s, t in self._valid_until.items() if s not in self._expired]
                if pending:
                    wait = min(wait, min(pending) - steady())
            if self._unheld():
                wait = min(wait, self._next_claim - steady())
            self._wake.wait(max(wait, 0.001))

    def _unheld(self) -> list[str]:
        return sorted(self._wanted - self._held.keys())

    def _renew(self) -> None:
        sent = steady()
        now = self.wall.now()
        # The heartbeat first, stamped with the renewal's time: a process judged by its
        # heartbeat (silent for a lease = its leases have expired, as the Ray driver judges)
        # must never show one older than its latest renewal, even if it stops in between.
        try:
            self.store.write_owner(self._heartbeat(at=now))
        except QsmError as exc:  # the leases matter more: renew them all the same
            log.warning("heartbeat of %s not written: %s", self.owner, exc)
        known = None if self._uncertain else list(self._held)
        ours = self.store.renew(self.owner, now, self.lease_seconds, known)
        self.renewals += 1
        self.last_renewal = sent
        self._uncertain = False
        lost: set[str] = set()
        claimed: dict[str, Lease] = {}
        with self._lock:
            before = dict(self._valid_until)
            if ours is not None:  # the store says exactly what we hold
                for sid, lease in list(self._held.items()):
                    if ours.get(sid) != lease.epoch:
                        lost.add(sid)
                        del self._held[sid]
                        self._valid_until.pop(sid, None)
                for sid, epoch in ours.items():
                    if sid not in self._held:  # ours from a claim whose answer was lost
                        self._held[sid] = self._lease(sid, epoch)
                        claimed[sid] = self._held[sid]
            for sid in self._held:
                self._valid_until[sid] = sent + self.fence_seconds
            # A deadline that passed before this renewal took effect (the process or this
            # thread was held up) may have latched an engine's fence for good, though
            # nobody noticed it expire: the orchestrator replaces the engines that did.
            now_steady = steady()
            late = (
                set()
                if self.keep_running
                else {s for s in self._held if before.get(s, now_steady) < now_steady} - self._expired
            )
            # Leases that had expired here are valid again, unless this renewal took so
            # long that its own deadline has passed too.
            if sent + self.fence_seconds > steady():
                back = self._expired - lost
                claimed.update({sid: self._held[sid] for sid in back if sid in self._held})
                self._expired.clear()
            self._expired -= lost
        if late:
            log.warning(
                "%d leases renewed after their engines' fence had passed; engines that met "
                "their fence meanwhile are restarted (%s)",
                len(late),
                _some(late),
            )
            self.on_change(LeaseChange(late=frozenset(late)))
        if lost or claimed:
            if lost:
                log.warning("%d leases were taken by another process: %s", len(lost), _some(lost))
            self.on_change(LeaseChange(claimed=claimed, lost=frozenset(lost)))

    def _lease(self, sid: str, epoch: int) -> Lease:
        return Lease(strategy_id=sid, owner=self.owner, epoch=epoch, expires_at=self.wall.now())

    def _claim(self) -> None:
        """Claim the next chunk of the unheld leases. A round tries each of them once,
        a chunk at a time, with renewals in between: on a slow store, claiming
        thousands never holds up the renewal of the leases already held."""
        if not self._round:
            self._round, self._tried = self._unheld(), set()
        chunk, self._round = self._round[:CLAIM_CHUNK], self._round[CLAIM_CHUNK:]
        wanted = [sid for sid in chunk if sid in self._wanted and sid not in self._held]
        self._tried.update(chunk)
        if wanted:
            self._claim_ids(wanted)
        if not self._round:
            self._end_round(steady())

    def _end_round(self, now: float) -> None:
        """Claim again at once if ids came that this round did not try; else after a
        while (the rest are held elsewhere), or as soon as one of those leases expires."""
        untried = [sid for sid in self._unheld() if sid not in self._tried]
        self._round, self._tried = [], set()
        soonest, self._soonest_expiry = self._soonest_expiry, None
        later = now + self._claim_interval()
        self._next_claim = 0.0 if untried else later if soonest is None else min(later, soonest)

    def _note_expiries(self, refused: Iterable[Lease], now: datetime, sent: float) -> None:
        """Remember when the first of the leases just refused expires (on the steady clock,
        a moment after): a holder that has gone quiet loses it then, and this process
        tries again at that time rather than at its next round."""
        times = [
            sent + max((lease.expires_at - now).total_seconds(), 0.0) + EXPIRY_GRACE_SECONDS
            for lease in refused
            if lease.owner and lease.owner != self.owner
        ]
        if times:
            first = min(times)
            self._soonest_expiry = first if self._soonest_expiry is None else min(self._soonest_expiry, first)

    def _claim_interval(self) -> float:
        return max(self.renew_seconds, self.lease_seconds / 3)

    def _claim_ids(self, wanted: list[str]) -> None:
        sent = steady()
        now = self.wall.now()
        try:
            got = self.store.claim(wanted, self.owner, now, self.lease_seconds, steal_from=self._dead)
        except QsmError:
            self._uncertain = True  # it may have been applied
            raise
        missing = [sid for sid in wanted if sid not in got]
        if missing:  # held by a process of this machine that is gone? take them now
            leases = self.store.read_leases(missing)
            holders = {lease.owner for lease in leases.values() if lease.owner}
            dead = dead_local_owners(holders, self.store.read_owners(), self.record) - self._dead
            if dead:
                self._dead |= dead
                log.warning("taking over the leases of gone processes %s", ", ".join(sorted(dead)))
                try:
                    got |= self.store.claim(
                        missing, self.owner, now, self.lease_seconds, steal_from=self._dead
                    )
                except QsmError:
                    self._uncertain = True
                    raise
                missing = [sid for sid in wanted if sid not in got]
            self._note_expiries([leases[sid] for sid in missing if sid in leases], now, sent)
        with self._lock:
            for sid, lease in got.items():
                if sid in self._wanted:
                    self._held[sid] = lease
                    self._valid_until[sid] = sent + self.fence_seconds
            unwanted = [sid for sid in got if sid not in self._wanted]
        if unwanted:  # no longer wanted while we claimed them
            self._release(unwanted)
        self.on_change(
            LeaseChange(
                claimed={s: lease for s, lease in got.items() if s not in unwanted},
                elsewhere=frozenset(missing),
            )
        )

    def _release_unwanted(self) -> None:
        unwanted = [sid for sid in self._held if sid not in self._wanted]
        if unwanted:
            self._release(unwanted)

    def _release(self, ids: list[str]) -> None:
        with self._lock:
            for sid in ids:
                self._held.pop(sid, None)
                self._valid_until.pop(sid, None)
                self._expired.discard(sid)
        try:
            self.store.release(ids, self.owner)
        except QsmError:
            self._uncertain = True  # read back at the next renewal, released again then
            raise

    def _notice_expiry(self) -> None:
        if self.keep_running:
            return
        now = steady()
        expired = {
            sid for sid, until in self._valid_until.items() if now >= until and sid not in self._expired
        }
        if expired:
            self._expired |= expired
            log.error(
                "%d leases not renewed within %gs: their engines stop (%s)",
                len(expired),
                self.fence_seconds,
                _some(expired),
            )
            self.on_change(LeaseChange(expired=frozenset(expired)))

    def _heartbeat(self, stopped: bool = False, at: datetime | None = None) -> OwnerRecord:
        from attrs import evolve

        return evolve(self.record, heartbeat=at or self.wall.now(), leases=len(self._held), stopped=stopped)


def _some(ids: Iterable[str], shown: int = 5) -> str:
    ordered = sorted(ids)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


__all__ = ["LeaseChange", "LeaseKeeper", "dead_local_owners", "this_process"]
