"""Where strategy documents, snapshots and runtime status live."""

from strategy_manager.core.store.protocol import (
    Lease,
    Snapshot,
    SnapshotWrite,
    StatusRecord,
    Store,
    UpsertResult,
)

__all__ = ["Lease", "Snapshot", "SnapshotWrite", "StatusRecord", "Store", "UpsertResult"]
