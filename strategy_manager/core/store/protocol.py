"""The store contract the orchestrator and the CLI use; MongoDB and SQLite implement it.

Three collections (names from settings):

* strategies: the users' documents, returned as they are stored (``_id`` as a
  string). We write them only through the explicit methods below, each of which
  sets ``updated_at`` so polling sees the change.
* snapshots: engine state per strategy, each write a new document with a sequence
  number that only grows; the latest is read back on start; ``snapshot_history``
  are kept.
* status: one record per strategy, replaced when it changes.
* leases: one per strategy: its owner, an epoch that grows with every change of
  owner, and an expiry.
* owners: one heartbeat record per orchestrator process, renewed with its leases;
  a strategy whose owner's heartbeat is old is STALE.
* halts: one record per halted account (``strategy-manager accounts halt``); every
  orchestrator polls them (``halts_token``) and keeps the account's strategies
  stopped while the record exists.

A row that cannot be decoded is never dropped silently: ``list_strategies`` returns
it as a document holding :data:`INVALID` (the reason) and whatever key fields could
be read, so it is reported against itself alone.

A strategy is named by an *ident*: its natural key ``user_id:symbol:strategy_key``
or its document ``_id``.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from attrs import define, field

from strategy_manager.core.spec import INVALID as INVALID  # re-exported for the stores


@define(frozen=True)
class Snapshot:
    strategy_id: str
    seq: int
    taken_at: datetime
    engine: str
    state: dict[str, Any]
    #: Why the stored state could not be read back (then ``state`` is empty): a
    #: restore from it must fail for this strategy alone, never start from nothing.
    error: str | None = None
    #: The lease the writer held: (owner, epoch); None for an unfenced write.
    lease: tuple[str, int] | None = None


@define(frozen=True)
class SnapshotWrite:
    strategy_id: str
    engine: str
    state: dict[str, Any]
    taken_at: datetime
    #: The writer's lease: (owner, epoch). When given, the write is rejected unless
    #: that lease is still the current one for the strategy (fencing).
    lease: tuple[str, int] | None = None


@define(frozen=True)
class Lease:
    strategy_id: str
    owner: str
    #: Grows by one each time ownership passes to a new owner.
    epoch: int
    expires_at: datetime


@define(frozen=True)
class StatusRecord:
    strategy_id: str
    state: str
    engine: str | None = None
    owner: str | None = None
    heartbeat: datetime | None = None
    restarts: int = 0
    last_error: str | None = None
    next_transition: str | None = None
    next_transition_at: datetime | None = None
    details: dict[str, Any] = field(factory=dict)


@define(frozen=True)
class OwnerRecord:
    """One orchestrator process, as its heartbeat describes it."""

    owner: str
    host: str
    pid: int
    #: The kernel's boot id and the process's PID namespace: a pid means the same
    #: process only where both match.
    boot_id: str = ""
    pid_namespace: str = ""
    started_at: datetime | None = None
    heartbeat: datetime | None = None
    #: Strategies whose lease it held at its last heartbeat.
    leases: int = 0
    #: Set by a clean shutdown; a stopped owner holds nothing.
    stopped: bool = False
    details: dict[str, Any] = field(factory=dict)


@define(frozen=True)
class AccountHalt:
    """An account halted by the kill switch: none of its strategies may run."""

    account: str
    reason: str = ""
    #: Also cancel every open order of the account at the broker.
    cancel_orders: bool = False
    halted_at: datetime | None = None
    #: Who halted it (user@host, or the process that did).
    by: str = ""


@define(frozen=True)
class UpsertResult:
    ident: str
    inserted: bool


@runtime_checkable
class Store(Protocol):
    kind: str
    #: A human description: the file path or the masked URI.
    location: str

    # -- strategy documents -------------------------------------------------
    def list_strategies(self) -> list[dict[str, Any]]:
        """Every document, in one query."""
        ...

    def get_strategy(self, ident: str) -> dict[str, Any] | None: ...

    def upsert_strategy(self, document: dict[str, Any]) -> UpsertResult:
        """Insert, or replace the fields of, the document with the same natural key."""
        ...

    def update_strategy(self, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set top-level fields of one document; return it. StoreError if absent."""
        ...

    def remove_strategy(self, ident: str) -> bool: ...

    def change_token(self) -> Hashable:
        """Cheap; differs whenever any document was inserted, changed or removed."""
        ...

    def watch(self) -> Iterator[None] | None:
        """An iterator that yields once per change notification, or None when the
        store cannot notify (then the caller polls ``change_token``)."""
        ...

    # -- snapshots ----------------------------------------------------------
    def save_snapshots(self, writes: Sequence[SnapshotWrite]) -> list[int]:
        """Write many snapshots in one round; return their sequence numbers.

        Raises SnapshotError naming the strategy and key for a state that cannot be
        encoded, or for a write whose ``lease`` is no longer current; the others in the
        batch are still written (``SnapshotBatchError.seqs`` has their numbers).
        """
        ...

    def latest_snapshot(self, strategy_id: str) -> Snapshot | None: ...

    def latest_snapshots(self, strategy_ids: Sequence[str]) -> dict[str, Snapshot]:
        """The latest snapshot of each id that has one, in a few bulk reads."""
        ...

    def snapshot_history(self, strategy_id: str, limit: int = 20) -> list[Snapshot]:
        """The kept snapshots, newest first."""
        ...

    # -- ownership ----------------------------------------------------------
    def claim(
        self,
        strategy_ids: Sequence[str],
        owner: str,
        now: datetime,
        seconds: float,
        steal_from: Collection[str] = (),
    ) -> dict[str, Lease]:
        """Take or renew, atomically per strategy, the lease of each id that is free,
        expired, already ``owner``'s, or held by one of ``steal_from`` (owners known
        to be dead, such as a killed process on this host). Returns the leases
        ``owner`` now holds. Taking a lease from someone else increments its epoch."""
        ...

    def renew(
        self, owner: str, now: datetime, seconds: float, held: Collection[str] | None
    ) -> dict[str, int] | None:
        """Extend every lease ``owner`` holds, in one statement, to ``now + seconds``.

        ``held`` is what the caller believes it holds. When the number of leases
        renewed equals ``len(held)``, returns None: exactly those were renewed.
        Otherwise (or when ``held`` is None) returns every lease ``owner`` holds now,
        id to epoch: the ones missing were taken by someone else."""
        ...

    def read_leases(self, strategy_ids: Sequence[str]) -> dict[str, Lease]:
        """The lease of each leased id as stored: its current (or last) owner, empty
        when released, its epoch and expiry; ids never leased are absent."""
        ...

    def release(self, strategy_ids: Sequence[str], owner: str) -> None:
        """Give up ``owner``'s leases (no owner, expired); others' are untouched.
        The epoch stays, so the next owner's is higher."""
        ...

    def write_owner(self, record: OwnerRecord) -> None:
        """Insert or replace one orchestrator's heartbeat record."""
        ...

    def read_owners(self) -> list[OwnerRecord]: ...

    # -- account halts ------------------------------------------------------
    def halt_account(self, halt: AccountHalt) -> None:
        """Insert, or replace, the halt of ``halt.account`` (durably: every
        orchestrator must see it, also after a restart)."""
        ...

    def resume_account(self, account: str) -> bool:
        """Remove the account's halt; True if it was halted."""
        ...

    def list_halts(self) -> list[AccountHalt]:
        """Every halted account, by name."""
        ...

    def halts_token(self) -> Hashable:
        """Cheap; differs whenever a halt was added, replaced or removed."""
        ...

    # -- runtime status -----------------------------------------------------
    def write_status(self, records: Sequence[StatusRecord]) -> None: ...

    def read_status(self) -> list[StatusRecord]: ...

    def close(self) -> None: ...
