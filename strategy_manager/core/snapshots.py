"""SnapshotWriter: the one thread that writes snapshots, so no other thread ever
waits on the store for them.

Snapshots are queued with :meth:`SnapshotWriter.add` (the newest per strategy wins)
and written in bulk. A snapshot leaves memory only once the store has acknowledged
it: if the store is away, it stays and is tried again with full-jitter backoff.

Fencing. A snapshot carries the lease it was taken under. It is written only while
that lease is valid in this process (the fence), waits while it is not (the lease
could not be renewed lately, and may come back), and is dropped once the lease is
known to belong to someone else. The store checks the lease once more as it writes.
A snapshot that cannot be encoded, or that the store refuses, is reported against
its strategy and dropped, since retrying cannot help.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

from strategy_manager.core.errors import QsmError, SnapshotError, StoreError, StoreLost
from strategy_manager.core.store import SnapshotWrite, Store
from strategy_manager.core.store.codec import SnapshotBatchError

log = logging.getLogger("strategy_manager.snapshots")

#: How long the writer waits for more snapshots before writing a batch.
LINGER_SECONDS = 0.05

#: (strategy id, sequence number or None, problem or None)
Report = Callable[[str, int | None, str | None], None]


class FenceOracle(Protocol):
    """What the writer asks about a write's lease (the LeaseKeeper answers)."""

    def valid(self, strategy_id: str, epoch: int) -> bool: ...

    def superseded(self, strategy_id: str, epoch: int) -> bool: ...


class Unfenced:
    """Every lease valid: for a writer outside an orchestrator."""

    def valid(self, strategy_id: str, epoch: int) -> bool:
        return True

    def superseded(self, strategy_id: str, epoch: int) -> bool:
        return False


class SnapshotWriter:
    def __init__(
        self,
        store: Store,
        backoff_base: float,
        backoff_cap: float,
        fence: FenceOracle | None = None,
        report: Report | None = None,
    ) -> None:
        self.store = store
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.fence: FenceOracle = fence or Unfenced()
        self.report = report or (lambda sid, seq, problem: None)
        self._pending: dict[str, SnapshotWrite] = {}
        self._cv = threading.Condition()
        self._retry_at = 0.0
        self._failures = 0
        self._writing = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.fatal: StoreLost | None = None
        self.written = 0

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self, strategy_id: str) -> SnapshotWrite | None:
        """The newest snapshot of ``strategy_id`` not yet in the store, if any."""
        with self._cv:
            return self._pending.get(strategy_id)

    def pending_ids(self) -> set[str]:
        with self._cv:
            return set(self._pending)

    def add(self, write: SnapshotWrite) -> None:
        with self._cv:
            self._pending[write.strategy_id] = write
            self._cv.notify_all()

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qsm-snapshots", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and (not self._pending or time.monotonic() < self._retry_at):
                    wait = None if not self._pending else self._retry_at - time.monotonic()
                    self._cv.wait(wait if wait is None else max(wait, 0.001))
                if self._stopping:
                    return
            time.sleep(LINGER_SECONDS)  # let a snapshot round's results gather into one batch
            if not self.write_once() and self._pending:
                with self._cv:  # nothing writable yet (fences down): look again shortly
                    self._retry_at = max(self._retry_at, time.monotonic() + self.backoff_base)

    def flush(self, timeout: float) -> int:
        """Write what can be written within ``timeout`` seconds (at shutdown, with the
        thread stopped); return how many snapshots are left unwritten."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            if not self.write_once():
                break
        return len(self._pending)

    def write_once(self) -> bool:
        """One batch of every writable pending snapshot; False if there was none or the
        store is away (the writes stay pending)."""
        with self._cv:
            if self._writing:
                return False
            batch, dropped = [], []
            for sid, write in list(self._pending.items()):
                if write.lease is None or self.fence.valid(sid, write.lease[1]):
                    batch.append(write)
                elif self.fence.superseded(sid, write.lease[1]):
                    dropped.append(write)
                    del self._pending[sid]
            self._writing = bool(batch)
        for write in dropped:
            self.report(write.strategy_id, None, "snapshot not written: its lease passed to another process")
        if not batch:
            return False
        try:
            seqs = self._save(batch)
        finally:
            with self._cv:
                self._writing = False
        if seqs is None:
            return False
        with self._cv:
            for write in batch:  # a newer snapshot taken meanwhile stays pending
                if self._pending.get(write.strategy_id) is write:
                    del self._pending[write.strategy_id]
            self._failures = 0
            self._retry_at = 0.0
        for write, seq in zip(batch, seqs, strict=True):
            self.report(write.strategy_id, seq, None)
        self.written += sum(seq is not None for seq in seqs)
        return True

    def _save(self, batch: list[SnapshotWrite]) -> list[int | None] | None:
        """Per write its sequence number, or None where it was refused (reported);
        None overall when the store is away."""
        try:
            seqs: list[int | None] = list(self.store.save_snapshots(batch))
        except StoreLost as exc:
            self.fatal = exc
            self._backoff(exc, batch)
            return None
        except StoreError as exc:
            self._backoff(exc, batch)
            return None
        except SnapshotBatchError as exc:
            seqs = list(exc.seqs)
            for write, seq in zip(batch, seqs, strict=True):
                if seq is None:
                    reason = next((f for f in exc.failures if f.startswith(write.strategy_id)), str(exc))
                    log.error("%s", reason)
                    self.report(write.strategy_id, None, reason)
        except SnapshotError as exc:  # the whole batch refused: report each
            log.error("snapshot write failed: %s", exc)
            for write in batch:
                self.report(write.strategy_id, None, str(exc))
            seqs = [None] * len(batch)
        except QsmError as exc:
            self._backoff(exc, batch)
            return None
        return seqs

    def _backoff(self, exc: QsmError, batch: list[SnapshotWrite]) -> None:
        with self._cv:
            self._failures += 1
            cap = min(self.backoff_cap, self.backoff_base * 2**self._failures)
            self._retry_at = time.monotonic() + random.uniform(0, cap)
        log.error("snapshot write failed, %d kept for retry: %s", len(batch), exc)
