"""What only the MongoDB store has to prove, against the mongoeco wire server."""

from __future__ import annotations

import socket
import time

import attrs
import pytest

from strategy_manager.core.errors import StoreError
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store

pymongo = pytest.importorskip("pymongo")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_a_quick_clear_error_with_the_password_masked():
    uri = f"mongodb://trader:s3cret-pw@127.0.0.1:{closed_port()}/?directConnection=true"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        open_store(Settings(mongo_uri=uri, mongo_timeout_ms=300))
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < 3, elapsed
    assert "s3cret-pw" not in message and "trader" not in message and "mongodb://***@127.0.0.1" in message
    assert "within 300 ms" in message and "\n" not in message


def test_a_malformed_uri_is_a_clear_error_without_the_password():
    with pytest.raises(StoreError) as caught:
        open_store(Settings(mongo_uri="mongodb://u:pw-secret@host:notaport/", mongo_timeout_ms=300))
    assert "pw-secret" not in str(caught.value)
    assert "MongoDB mongodb://***@***/" in str(caught.value)


@pytest.fixture
def mongo_settings(mongoeco_uri):
    import uuid

    settings = Settings(
        mongo_uri=mongoeco_uri, mongo_db=f"qsm_{uuid.uuid4().hex[:10]}", mongo_timeout_ms=3000
    )
    yield settings
    with pymongo.MongoClient(mongoeco_uri) as client:
        client.drop_database(settings.mongo_db)


def test_indexes_are_created_once_and_opening_again_is_harmless(mongo_settings):
    open_store(mongo_settings).close()
    open_store(mongo_settings).close()
    with pymongo.MongoClient(mongo_settings.mongo_uri) as client:
        indexes = client[mongo_settings.mongo_db][mongo_settings.strategies_collection].index_information()
    natural = indexes["qsm_natural_key"]
    assert natural["unique"] and [k for k, _ in natural["key"]] == ["user_id", "symbol", "strategy_key"]


def test_a_conflicting_existing_index_is_a_clear_error(mongo_settings):
    with pymongo.MongoClient(mongo_settings.mongo_uri) as client:
        client[mongo_settings.mongo_db][mongo_settings.strategies_collection].create_index(
            [("user_id", 1), ("symbol", 1), ("strategy_key", 1)], name="qsm_natural_key"
        )
    with pytest.raises(StoreError, match="creating index qsm_natural_key on watchlist_strategies"):
        open_store(mongo_settings)


def test_documents_written_by_hand_are_found_by_objectid_or_string_id(mongo_settings):
    store = open_store(mongo_settings)
    with pymongo.MongoClient(mongo_settings.mongo_uri) as client:
        coll = client[mongo_settings.mongo_db][mongo_settings.strategies_collection]
        oid = coll.insert_one(
            {"user_id": "u", "symbol": "S", "strategy_key": "a", "engine": "demo"}
        ).inserted_id
        coll.insert_one({"_id": "custom", "user_id": "u", "symbol": "S", "strategy_key": "b", "engine": 5})
    assert store.get_strategy(str(oid))["strategy_key"] == "a"
    assert store.get_strategy(str(oid))["_id"] == str(oid)
    assert store.get_strategy("custom")["engine"] == 5  # invalid, but listed as it is
    assert [d["strategy_key"] for d in store.list_strategies()] == ["a", "b"]
    updated = store.update_strategy(str(oid), {"enabled": False})
    assert updated["enabled"] is False and updated["_id"] == str(oid)
    assert store.remove_strategy(str(oid))
    store.close()


def test_an_exported_objectid_comes_back_as_an_objectid(mongo_settings):
    from bson import ObjectId

    store = open_store(mongo_settings)
    oid = ObjectId()
    store.upsert_strategy(
        {"_id": str(oid), "user_id": "u", "symbol": "S", "strategy_key": "k", "engine": "demo"}
    )
    with pymongo.MongoClient(mongo_settings.mongo_uri) as client:
        raw = client[mongo_settings.mongo_db][mongo_settings.strategies_collection].find_one(
            {"strategy_key": "k"}
        )
    assert raw["_id"] == oid
    store.close()


def test_watch_asks_the_server_and_polls_when_it_has_no_change_streams(mongo_settings):
    store = open_store(mongo_settings)
    assert store.watch() is None  # mongoeco, like a standalone server, refuses $changeStream
    store.close()


def test_operations_after_the_server_goes_away_raise_store_error(mongoeco_uri, tmp_path):
    from mongoeco._pytest_runtime import ProxyThread

    server = ProxyThread("memory", tmp_path, "7.0", "auto-installed")
    uri = server.start()
    store = open_store(attrs.evolve(Settings(), mongo_uri=uri, mongo_timeout_ms=300))
    server.close()
    with pytest.raises(StoreError, match="listing strategies"):
        store.list_strategies()
    store.close()


def test_a_lease_created_by_another_between_the_look_and_the_creation_stays_theirs(
    mongo_settings, monkeypatch
):
    from datetime import UTC, datetime

    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    one, two = open_store(mongo_settings), open_store(mongo_settings)
    create = one._create_leases

    def beaten(ids, owner, expires):  # the other process creates one of them first
        two.claim([ids[0]], "b", start, 60)
        return create(ids, owner, expires)

    monkeypatch.setattr(one, "_create_leases", beaten)
    held = one.claim(["x:A:1", "x:B:1"], "a", start, 60)
    assert set(held) == {"x:B:1"} and held["x:B:1"].epoch == 1
    assert {s: lease.owner for s, lease in one.read_leases(["x:A:1", "x:B:1"]).items()} == {
        "x:A:1": "b",
        "x:B:1": "a",
    }
    assert two.claim(["x:A:1"], "b", start, 60)["x:A:1"].epoch == 1  # untouched: still b's first lease
    one.close()
    two.close()
