"""The store contract: every implementation passes the same tests.

Backends (see conftest): ``embedded`` (SQLite), ``mongoeco`` (MongoStore through a
real pymongo client over TCP to a wire-protocol server), ``mongodb`` (a real server
from ``QSM_TEST_MONGO_URI``; skipped without it).
"""

from __future__ import annotations

import itertools
import json
import threading
from datetime import timedelta

import pytest

from strategy_manager.core.errors import SnapshotError, StoreError
from strategy_manager.core.store import AccountHalt, SnapshotWrite, StatusRecord
from strategy_manager.core.store.codec import SnapshotBatchError

from .conftest import START


def doc(key: str = "k1", symbol: str = "600000.SH", **fields):
    return {"user_id": "u1", "symbol": symbol, "strategy_key": key, "engine": "demo", "params": {}, **fields}


def user_part(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in ("_id", "updated_at")}


# -- strategy documents --------------------------------------------------------------


def test_upsert_inserts_then_updates_the_same_natural_key(store):
    first = store.upsert_strategy(doc(params={"fast": 5}))
    second = store.upsert_strategy(doc(params={"fast": 7}))
    assert (first.inserted, second.inserted) == (True, False)
    assert first.ident == second.ident == "u1:600000.SH:k1"
    listed = store.list_strategies()
    assert len(listed) == 1
    assert listed[0]["params"] == {"fast": 7}


def test_upsert_sets_given_fields_and_keeps_the_others(store):
    store.upsert_strategy(doc(note="mine", params={"a": 1}))
    store.upsert_strategy(doc(params={"a": 2}))
    got = store.get_strategy("u1:600000.SH:k1")
    assert got["note"] == "mine" and got["params"] == {"a": 2}


def test_get_by_natural_key_and_by_id(store):
    store.upsert_strategy(doc())
    store.upsert_strategy(doc(key="k2", symbol="BTC:USDT"))
    by_key = store.get_strategy("u1:600000.SH:k1")
    assert isinstance(by_key["_id"], str) and by_key["_id"]
    assert store.get_strategy(by_key["_id"]) == by_key
    assert store.get_strategy("u1:BTC:USDT:k2")["symbol"] == "BTC:USDT"
    assert store.get_strategy("u1:600000.SH:nope") is None
    assert store.get_strategy("no-such-id") is None


def test_a_given_id_is_kept_on_insert(store):
    store.upsert_strategy({**doc(), "_id": "my-own-id"})
    assert store.get_strategy("my-own-id")["strategy_key"] == "k1"


def test_every_change_bumps_updated_at_and_the_change_token(store, clock):
    tokens = [store.change_token()]
    store.upsert_strategy(doc())
    tokens.append(store.change_token())
    created = store.get_strategy("u1:600000.SH:k1")["updated_at"]
    assert created == START and created.tzinfo is not None

    clock.advance(1.5)
    disabled = store.update_strategy("u1:600000.SH:k1", {"enabled": False})
    tokens.append(store.change_token())
    assert disabled["enabled"] is False and disabled["updated_at"] == START + timedelta(seconds=1.5)
    assert store.get_strategy("u1:600000.SH:k1")["enabled"] is False

    clock.advance(1)
    enabled = store.update_strategy(disabled["_id"], {"enabled": True})
    tokens.append(store.change_token())
    assert enabled["updated_at"] == START + timedelta(seconds=2.5)

    clock.advance(1)
    store.upsert_strategy(doc(params={"x": 1}))
    tokens.append(store.change_token())
    assert store.get_strategy("u1:600000.SH:k1")["updated_at"] == START + timedelta(seconds=3.5)

    store.upsert_strategy(doc(key="k2"))
    tokens.append(store.change_token())
    assert store.remove_strategy("u1:600000.SH:k2")
    tokens.append(store.change_token())
    assert all(before != after for before, after in itertools.pairwise(tokens)), tokens


def test_change_token_is_stable_without_changes(store):
    store.upsert_strategy(doc())
    store.save_snapshots([SnapshotWrite("u1:600000.SH:k1", "demo", {"n": 1}, START)])
    assert store.change_token() == store.change_token()


def test_remove(store):
    store.upsert_strategy(doc())
    assert store.remove_strategy("u1:600000.SH:k1") is True
    assert store.remove_strategy("u1:600000.SH:k1") is False
    assert store.get_strategy("u1:600000.SH:k1") is None
    assert store.list_strategies() == []


def test_update_of_an_unknown_strategy_is_a_store_error(store):
    with pytest.raises(StoreError, match=r"u9:X:y: not found"):
        store.update_strategy("u9:X:y", {"enabled": False})


def test_update_may_not_collide_with_another_natural_key(store):
    store.upsert_strategy(doc())
    store.upsert_strategy(doc(key="k2"))
    with pytest.raises(StoreError, match=r"u1:600000\.SH:k2"):
        store.update_strategy("u1:600000.SH:k2", {"strategy_key": "k1"})
    assert store.get_strategy("u1:600000.SH:k2") is not None


def test_a_document_without_natural_key_is_refused(store):
    with pytest.raises(StoreError, match="user_id, symbol and strategy_key"):
        store.upsert_strategy({"user_id": "u", "symbol": 5, "strategy_key": "k"})
    assert store.list_strategies() == []


@pytest.mark.parametrize("name", ["a.b", "$where"])
def test_a_field_name_mongodb_would_reinterpret_is_refused(store, name):
    with pytest.raises(StoreError, match="cannot be stored"):
        store.upsert_strategy({**doc(), name: 1})
    assert store.list_strategies() == []


def test_unknown_fields_survive_a_round_trip_exactly(store):
    original = doc(
        params={
            "limit_up_rate": 0.09,
            "tiny": 1e-300,
            "big": 2**53 + 1,
            "neg": -0.0,
            "list": [1, "两", None],
        },
        zeta={"nested": {"deep": [True, False, {}]}, "empty": []},
        alpha='策略 \u00e9\t"quoted"',
        middle=None,
        enabled=True,
    )
    store.upsert_strategy(original)
    got = store.get_strategy("u1:600000.SH:k1")
    assert json.dumps(user_part(got), ensure_ascii=False) == json.dumps(original, ensure_ascii=False)
    assert list(user_part(store.list_strategies()[0])) == list(original)


# -- snapshots -------------------------------------------------------------------------

SID = "u1:600000.SH:k1"


def snap(state, sid=SID, lease=None, at=START):
    return SnapshotWrite(strategy_id=sid, engine="demo", state=state, taken_at=at, lease=lease)


def test_snapshot_sequence_grows_and_latest_is_the_newest(store):
    assert store.latest_snapshot(SID) is None
    seqs = [store.save_snapshots([snap({"n": n}, at=START + timedelta(seconds=n))])[0] for n in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    latest = store.latest_snapshot(SID)
    assert (latest.seq, latest.state, latest.engine) == (seqs[-1], {"n": 2}, "demo")
    assert latest.taken_at == START + timedelta(seconds=2)


def test_snapshot_state_round_trips(store):
    state = {"pos": {"600000.SH": 3}, "vals": [1.5, None, "x"], "n": 2**62, "flag": False, "t": (1, 2)}
    store.save_snapshots([snap(state)])
    assert store.latest_snapshot(SID).state == {**state, "t": [1, 2]}


def test_snapshot_history_is_bounded_and_newest_first(store):
    for n in range(6):
        store.save_snapshots([snap({"n": n})])
    history = store.snapshot_history(SID)
    assert [s.state["n"] for s in history] == [5, 4, 3]  # snapshot_history=3 in the test settings
    assert [s.seq for s in history] == sorted((s.seq for s in history), reverse=True)
    assert [s.state["n"] for s in store.snapshot_history(SID, limit=2)] == [5, 4]


def test_unencodable_state_names_the_strategy_and_key_and_keeps_the_previous(store):
    store.save_snapshots([snap({"ok": 1})])
    with pytest.raises(SnapshotError) as caught:
        store.save_snapshots([snap({"orders": [{"price": 1.0}, {"when": {1, 2}}]})])
    message = str(caught.value)
    assert SID in message and "orders[1].when" in message and "set" in message
    assert store.latest_snapshot(SID).state == {"ok": 1}


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"a": {"b": object()}}, "a.b"),
        ({"n": 2**70}, "n"),
        ({"x": {"$set": 1}}, "x.$set"),
        ({3: 1}, "non-string"),
    ],
)
def test_other_unencodable_states(store, state, where):
    with pytest.raises(SnapshotError, match=f"{SID}: snapshot state key .*{where}".replace("$", r"\$")):
        store.save_snapshots([snap(state)])
    assert store.latest_snapshot(SID) is None


def test_a_batch_with_one_bad_state_still_writes_the_others(store):
    store.save_snapshots([snap({"v": 0}, sid="a:X:1"), snap({"v": 0}, sid="b:X:1")])
    with pytest.raises(SnapshotBatchError) as caught:
        store.save_snapshots(
            [snap({"v": 1}, sid="a:X:1"), snap({"v": {1}}, sid="bad:X:1"), snap({"v": 1}, sid="b:X:1")]
        )
    assert "bad:X:1" in str(caught.value) and "a:X:1" not in str(caught.value)
    seqs = caught.value.seqs
    assert seqs[1] is None and seqs[0] is not None and seqs[2] is not None
    assert store.latest_snapshot("a:X:1").state == {"v": 1}
    assert store.latest_snapshot("b:X:1").state == {"v": 1}
    assert store.latest_snapshot("bad:X:1") is None


# -- leases ----------------------------------------------------------------------------


def test_claim_renew_refuse_and_take_over_after_expiry(store):
    a = store.claim([SID], "host-a:1", START, 15)
    assert a[SID].owner == "host-a:1" and a[SID].epoch == 1
    assert a[SID].expires_at == START + timedelta(seconds=15)

    renewed = store.claim([SID], "host-a:1", START + timedelta(seconds=5), 15)
    assert renewed[SID].epoch == 1 and renewed[SID].expires_at == START + timedelta(seconds=20)

    assert store.claim([SID], "host-b:2", START + timedelta(seconds=19), 15) == {}

    taken = store.claim([SID], "host-b:2", START + timedelta(seconds=21), 15)
    assert taken[SID].owner == "host-b:2" and taken[SID].epoch == 2
    assert store.claim([SID], "host-a:1", START + timedelta(seconds=22), 15) == {}


def test_claim_returns_only_the_leases_held(store):
    store.claim(["x:A:1"], "other", START, 60)
    held = store.claim(["x:A:1", "x:B:1", "x:B:1"], "me", START, 60)
    assert set(held) == {"x:B:1"}


def test_release_lets_another_owner_take_over_at_once(store):
    store.claim([SID], "a", START, 60)
    store.release([SID], "b")  # not b's to release
    assert store.claim([SID], "b", START + timedelta(seconds=1), 60) == {}
    store.release([SID], "a")
    taken = store.claim([SID], "b", START + timedelta(seconds=1), 60)
    assert taken[SID].epoch == 2


def test_a_dead_owners_live_lease_is_taken_when_named_and_leases_are_readable(store):
    store.claim(["x:A:1", "x:B:1"], "host:111", START, 60)
    leases = store.read_leases(["x:A:1", "x:B:1", "x:C:1"])
    assert {sid: (lease.owner, lease.epoch) for sid, lease in leases.items()} == {
        "x:A:1": ("host:111", 1),
        "x:B:1": ("host:111", 1),
    }
    assert leases["x:A:1"].expires_at == START + timedelta(seconds=60)
    assert store.claim(["x:A:1"], "host:222", START + timedelta(seconds=1), 60) == {}
    taken = store.claim(["x:A:1"], "host:222", START + timedelta(seconds=1), 60, steal_from={"host:111"})
    assert taken["x:A:1"].owner == "host:222" and taken["x:A:1"].epoch == 2
    assert store.read_leases(["x:A:1"])["x:A:1"].owner == "host:222"


def test_claims_of_many_ids_work_in_one_call(store):
    ids = [f"x:S{i}:1" for i in range(600)]
    assert len(store.claim(ids, "me", START, 60)) == 600
    assert len(store.read_leases(ids)) == 600


def test_a_stale_owners_fenced_snapshot_is_rejected(store):
    old = store.claim([SID], "a", START, 10)[SID]
    store.save_snapshots([snap({"by": "a"}, lease=(old.owner, old.epoch))])
    new = store.claim([SID], "b", START + timedelta(seconds=11), 10)[SID]
    assert new.epoch == old.epoch + 1
    with pytest.raises(SnapshotError, match=f"{SID}: snapshot refused.*epoch {old.epoch}.*held by b"):
        store.save_snapshots([snap({"by": "a, stale"}, lease=(old.owner, old.epoch))])
    assert store.latest_snapshot(SID).state == {"by": "a"}
    store.save_snapshots([snap({"by": "b"}, lease=(new.owner, new.epoch))])
    assert store.latest_snapshot(SID).state == {"by": "b"}


def test_a_fenced_write_without_any_lease_is_rejected(store):
    with pytest.raises(SnapshotError, match="no lease exists"):
        store.save_snapshots([snap({"n": 1}, lease=("a", 1))])


def test_unfenced_snapshots_do_not_disturb_leases(store):
    store.save_snapshots([snap({"n": 1})])
    lease = store.claim([SID], "a", START, 10)[SID]
    store.save_snapshots([snap({"n": 2}, lease=(lease.owner, lease.epoch))])
    assert store.latest_snapshot(SID).state == {"n": 2}


def test_two_store_handles_see_one_lease(backend, clock):
    one, two = backend.open(clock), backend.open(clock)
    assert one.claim([SID], "a", START, 10)
    assert two.claim([SID], "b", START + timedelta(seconds=1), 10) == {}
    assert two.claim([SID], "b", START + timedelta(seconds=10), 10)[SID].epoch == 2


# -- status ----------------------------------------------------------------------------


def test_status_is_written_replaced_and_read(store):
    beat = START + timedelta(seconds=3)
    store.write_status(
        [
            StatusRecord(SID, "RUNNING", engine="demo", owner="h:1", heartbeat=beat, details={"starts": 1}),
            StatusRecord(
                "u2:X:k",
                "FAILED",
                restarts=3,
                last_error="boom",
                next_transition="start",
                next_transition_at=beat,
                details={"odd": object()},
            ),
        ]
    )
    store.write_status([StatusRecord(SID, "STOPPED", engine="demo", owner="h:1", heartbeat=beat)])
    records = {r.strategy_id: r for r in store.read_status()}
    assert set(records) == {SID, "u2:X:k"}
    assert records[SID].state == "STOPPED" and records[SID].heartbeat == beat and records[SID].details == {}
    failed = records["u2:X:k"]
    assert (failed.restarts, failed.last_error, failed.next_transition_at) == (3, "boom", beat)
    assert failed.details["odd"].startswith("<object")


# -- account halts ---------------------------------------------------------------------


def test_a_halt_is_stored_replaced_listed_and_resumed(store):
    assert store.list_halts() == []
    first = AccountHalt("paper", "runaway losses", False, START, by="ops@desk")
    store.halt_account(first)
    store.halt_account(AccountHalt("ctp:main", "", True, START + timedelta(seconds=1), by="cli"))
    assert store.list_halts() == [AccountHalt("ctp:main", "", True, START + timedelta(seconds=1), "cli"), first]
    replaced = AccountHalt("paper", "again", True, START + timedelta(seconds=2), by="other")
    store.halt_account(replaced)
    assert [h for h in store.list_halts() if h.account == "paper"] == [replaced]
    assert store.resume_account("paper") is True
    assert store.resume_account("paper") is False
    assert [h.account for h in store.list_halts()] == ["ctp:main"]


def test_the_halts_token_moves_on_every_change_and_only_then(store):
    tokens = [store.halts_token()]
    assert store.halts_token() == tokens[0]
    store.upsert_strategy(doc())  # documents do not move it
    assert store.halts_token() == tokens[0]
    store.halt_account(AccountHalt("paper", "x", halted_at=START))
    tokens.append(store.halts_token())
    store.halt_account(AccountHalt("paper", "x", halted_at=START))  # the same halt written again
    tokens.append(store.halts_token())
    store.resume_account("paper")
    tokens.append(store.halts_token())
    store.halt_account(AccountHalt("paper", "x", halted_at=START))
    tokens.append(store.halts_token())
    assert all(before != after for before, after in itertools.pairwise(tokens)), tokens
    assert store.halts_token() == tokens[-1]


def test_a_halt_written_through_one_handle_is_seen_by_another(backend, clock):
    one, two = backend.open(clock), backend.open(clock)
    before = two.halts_token()
    one.halt_account(AccountHalt("paper", "kill switch", halted_at=START, by="cli"))
    assert two.halts_token() != before
    assert [h.reason for h in two.list_halts()] == ["kill switch"]


# -- notification ----------------------------------------------------------------------


def test_watch_either_declines_or_yields_on_a_change(store):
    changes = store.watch()
    if changes is None:  # no change notification here: the caller polls change_token()
        return
    seen = threading.Event()

    def follow():
        for _ in changes:
            seen.set()
            return

    threading.Thread(target=follow, daemon=True).start()
    store.upsert_strategy(doc())
    assert seen.wait(10)


def test_one_claim_takes_every_expired_or_released_lease_and_no_live_one(store):
    ids = ["x:LIVE:1", "x:EXPIRED:1", "x:RELEASED:1", "x:DEAD:1"]
    store.claim(ids[:3], "a", START, 10)
    store.claim(ids[3:], "gone", START, 60)
    store.release(["x:RELEASED:1"], "a")
    later = START + timedelta(seconds=11)
    assert set(store.claim(["x:LIVE:1"], "a", later, 10)) == {"x:LIVE:1"}  # a renews this one only
    taken = store.claim(ids, "b", later + timedelta(seconds=1), 10, steal_from={"gone"})
    assert {sid: lease.epoch for sid, lease in taken.items()} == {
        "x:EXPIRED:1": 2,
        "x:RELEASED:1": 2,
        "x:DEAD:1": 2,
    }
    leases = store.read_leases(ids)
    assert {sid: lease.owner for sid, lease in leases.items()} == {
        "x:LIVE:1": "a",
        "x:EXPIRED:1": "b",
        "x:RELEASED:1": "b",
        "x:DEAD:1": "b",
    }
