"""Snapshot writes that survive a store outage.

Every write goes through :class:`SnapshotWriter`. If the store is unreachable, the
newest snapshot of each strategy is kept and written again, with full-jitter
backoff, until the store takes it; a snapshot that cannot be encoded, or whose
lease was fenced off, is reported and dropped, since retrying cannot help.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence

from strategy_manager.core.errors import QsmError, StoreError
from strategy_manager.core.store import SnapshotWrite, Store

log = logging.getLogger("strategy_manager.snapshots")


class SnapshotWriter:
    def __init__(self, store: Store, backoff_base: float, backoff_cap: float) -> None:
        self.store = store
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._pending: dict[str, SnapshotWrite] = {}
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._failures = 0

    def __len__(self) -> int:
        return len(self._pending)

    def save(self, writes: Sequence[SnapshotWrite]) -> None:
        """Write ``writes`` and whatever is pending; StoreError if the store is away
        (they are kept), other problems are logged."""
        with self._lock:
            for write in writes:
                self._pending[write.strategy_id] = write
            batch = list(self._pending.values())
            self._pending.clear()
        if not batch:
            return
        try:
            self.store.save_snapshots(batch)
        except StoreError as exc:
            with self._lock:
                for write in batch:  # a newer snapshot taken meanwhile wins
                    self._pending.setdefault(write.strategy_id, write)
            log.error("snapshot write failed, %d kept for retry: %s", len(batch), exc)
            raise
        except QsmError as exc:  # not encodable, or fenced off
            log.error("snapshot write failed: %s", exc)

    def retry(self, monotonic_now: float) -> None:
        """Try the pending snapshots again once their backoff has passed."""
        if not self._pending or monotonic_now < self._retry_at:
            return
        try:
            self.save([])
        except StoreError:
            self._failures += 1
            cap = min(self.backoff_cap, self.backoff_base * 2**self._failures)
            self._retry_at = monotonic_now + random.uniform(0, cap)
        else:
            self._failures = 0
