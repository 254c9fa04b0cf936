"""The stores under test: embedded SQLite, MongoStore over the mongoeco wire server,
and a real MongoDB when ``QSM_TEST_MONGO_URI`` is set."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import Store, open_store
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

START = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)


class StepClock:
    """Moves only when told to; a store's ``updated_at`` comes from it."""

    def __init__(self, start: datetime = START) -> None:
        self.instant = start

    def now(self) -> datetime:
        return self.instant

    def advance(self, seconds: float) -> None:
        self.instant += timedelta(seconds=seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.is_set()

    def real_seconds(self, seconds: float) -> float:
        return 0.0


@attrs.define
class Backend:
    name: str
    base: Settings
    opened: list[Store] = attrs.field(factory=list)

    def settings(self, **changes: Any) -> Settings:
        return attrs.evolve(self.base, **changes)

    def open(self, clock: Any = None, **changes: Any) -> Store:
        store = open_store(self.settings(**changes), clock)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


def _mongo_db_name() -> str:
    return f"qsm_test_{uuid.uuid4().hex[:12]}"


#: The backends this run can reach; test_backends.py says why one is left out.
REAL_MONGO_URI = os.environ.get("QSM_TEST_MONGO_URI")
HAS_WIRE_SERVER = sys.version_info >= (3, 13)
BACKENDS = ["embedded"] + (["mongoeco"] if HAS_WIRE_SERVER else []) + (["mongodb"] if REAL_MONGO_URI else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    base = Settings(data_dir=str(tmp_path / "data"), snapshot_history=3, mongo_timeout_ms=3000)
    if request.param == "mongoeco":
        uri = request.getfixturevalue("mongoeco_uri")
        base = attrs.evolve(base, mongo_uri=uri, mongo_db=_mongo_db_name())
    elif request.param == "mongodb":
        base = attrs.evolve(base, mongo_uri=REAL_MONGO_URI, mongo_db=_mongo_db_name())
    chosen = Backend(request.param, base)
    yield chosen
    chosen.close()
    if base.mongo_uri:
        from pymongo import MongoClient

        with MongoClient(base.mongo_uri, serverSelectionTimeoutMS=3000) as client:
            client.drop_database(base.mongo_db)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(backend: Backend, clock: StepClock) -> Store:
    return backend.open(clock)
