"""Where strategy documents, snapshots and runtime status live.

:func:`open_store` picks the implementation: MongoDB when ``mongo_uri`` is set at any
configuration level, else the embedded SQLite file under ``data_dir``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strategy_manager.core.store.protocol import (
    INVALID,
    AccountHalt,
    Lease,
    OwnerRecord,
    Snapshot,
    SnapshotWrite,
    StatusRecord,
    Store,
    UpsertResult,
)

if TYPE_CHECKING:
    from strategy_manager.core.clock import Clock
    from strategy_manager.core.settings import Settings


def describe_location(settings: Settings) -> str:
    """Where the configured store is, safe to print: the file, or the masked URI and database."""
    from strategy_manager.core.masking import mask_uri

    if settings.mongo_uri:
        return f"{mask_uri(settings.mongo_uri)} database {settings.mongo_db}"
    return str(settings.embedded_path)


def open_store(settings: Settings, clock: Clock | None = None) -> Store:
    """The configured store, ready to use; StoreError if it cannot be reached or opened."""
    if settings.mongo_uri:
        from strategy_manager.core.store.mongo import MongoStore

        return MongoStore(settings, clock)
    from strategy_manager.core.store.embedded import EmbeddedStore

    return EmbeddedStore(settings, clock)


__all__ = [
    "INVALID",
    "AccountHalt",
    "Lease",
    "OwnerRecord",
    "Snapshot",
    "SnapshotWrite",
    "StatusRecord",
    "Store",
    "UpsertResult",
    "describe_location",
    "open_store",
]
