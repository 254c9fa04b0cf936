"""The HTTP API of a served run, endpoint by endpoint, against a real orchestrator,
the embedded store and the demo engine, over real HTTP on a free port."""

from __future__ import annotations

import json
import queue
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from strategy_manager.core.clock import steady
from strategy_manager.core.errors import StoreError
from strategy_manager.web.openapi import describe
from tests.conftest import wait_for
from tests.web.served import DOCUMENT_SECRET, TOKEN, served

AAA, BBB, DDD, EEE = "u:AAA:k", "u:BBB:k", "u:DDD:k", "u:EEE:k"
CCC = "alice:CCC:k"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with served(tmp_path_factory.mktemp("web")) as s:
        for ident in (AAA, BBB, CCC):
            s.wait_state(ident, "RUNNING")
        yield s


def one_line_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) >= {"error"}, body
    assert "\n" not in body["error"] and "Traceback" not in response.text
    return body["error"]


# -- probes -----------------------------------------------------------------------------
def test_healthz_says_ok(srv):
    r = srv.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_while_the_store_answers_and_the_leases_are_renewed(srv):
    r = srv.client.get("/readyz")
    assert (r.status_code, r.json()["status"]) == (200, "ready")


def test_readyz_is_not_ready_when_the_store_fails(srv, monkeypatch):
    class Broken:
        def change_token(self):
            raise StoreError("embedded store: database is locked")

    monkeypatch.setattr(srv.web.api, "store", Broken())
    r = srv.client.get("/readyz")
    assert r.status_code == 503
    assert "store unreachable: embedded store: database is locked" in one_line_error(r)


def test_readyz_is_not_ready_when_the_leases_were_not_renewed_within_lease_seconds(srv, monkeypatch):
    monkeypatch.setattr(srv.orchestrator.keeper, "last_renewal", steady() - 100)
    r = srv.client.get("/readyz")
    assert r.status_code == 503
    assert "leases last renewed" in one_line_error(r)


# -- metrics ----------------------------------------------------------------------------
def samples(srv, name: str) -> dict[tuple, float]:
    text = srv.client.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_strategies_by_state_and_engine(srv):
    r = srv.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    by = samples(srv, "qsm_strategies")
    assert by[(("engine", "demo"), ("state", "RUNNING"))] == 3
    assert by[(("engine", "demo"), ("state", "DISABLED"))] == 1
    assert by[(("engine", "ib"), ("state", "BLOCKED"))] == 1


def test_metrics_time_every_hook_the_store_the_loop_and_count_lease_renewals(srv):
    def hooks():
        counts = samples(srv, "qsm_hook_duration_seconds_count")
        return all(counts.get((("engine", "demo"), ("hook", h)), 0) >= 1 for h in ("create", "start", "snapshot"))

    wait_for(hooks, 15, "create, start and snapshot hooks timed")
    def store():
        counts = samples(srv, "qsm_store_call_duration_seconds_count")
        ops = ("list_strategies", "claim", "renew", "write_status", "save_snapshots")
        return all(counts.get((("op", op),), 0) >= 1 for op in ops)

    wait_for(store, 15, "store calls timed")
    assert samples(srv, "qsm_lease_renewals_total")[()] >= 1
    assert samples(srv, "qsm_leases_held")[()] == 3
    assert 0 <= samples(srv, "qsm_lease_renewal_age_seconds")[()] < srv.settings.lease_seconds
    assert samples(srv, "qsm_control_loop_turn_seconds_count")[()] >= 1
    wait_for(lambda: samples(srv, "qsm_control_loop_lag_seconds_count").get((), 0) >= 1, 10, "a timed wake")


def test_metrics_give_snapshot_sizes_and_ages(srv):
    wait_for(lambda: samples(srv, "qsm_snapshot_size_bytes_count").get((), 0) >= 3, 10, "three snapshots")
    assert samples(srv, "qsm_snapshot_size_bytes_sum")[()] > 0
    ages = wait_for(lambda: samples(srv, "qsm_snapshot_age_seconds_count").get((), 0) == 3, 10, "3 ages")
    assert ages
    assert 0 <= samples(srv, "qsm_snapshot_oldest_age_seconds")[()] < 60


def test_metrics_count_restarts_and_failures_from_the_events(srv):
    srv.web.metrics.event("error", AAA)
    srv.web.metrics.event("failed", BBB)
    assert samples(srv, "qsm_restarts_total")[(("engine", "demo"),)] >= 1
    assert samples(srv, "qsm_failures_total")[(("engine", "demo"), ("kind", "failed"))] >= 1


# -- reading strategies ------------------------------------------------------------------
def page(srv, **params):
    r = srv.client.get("/api/strategies", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_list_has_every_strategy_with_counts_per_state(srv):
    data = page(srv)
    assert data["total"] == 5
    assert data["counts"] == {"BLOCKED": 1, "DISABLED": 1, "RUNNING": 3}
    assert data["engines"] == ["demo", "ib"]
    row = next(r for r in data["items"] if r["id"] == AAA)
    assert row["owner"] == srv.orchestrator.owner and row["host"] == srv.orchestrator.record.host
    assert (row["engine"], row["symbol"], row["user_id"], row["account"]) == ("demo", "AAA", "u", "acct-1")


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"state": "RUNNING"}, {AAA, BBB, CCC}),
        ({"state": "DISABLED,BLOCKED"}, {DDD, EEE}),
        ({"engine": "ib"}, {EEE}),
        ({"user": "alice"}, {CCC}),
        ({"symbol": "BBB"}, {BBB}),
        ({"account": "acct-2"}, {BBB}),
        ({"q": "ccc"}, {CCC}),
        ({"q": "disabled"}, {DDD}),
        ({"state": "RUNNING", "user": "u"}, {AAA, BBB}),
    ],
)
def test_the_list_filters(srv, params, ids):
    assert {r["id"] for r in page(srv, **params)["items"]} == ids


def test_the_counts_ignore_the_state_filter_but_follow_the_others(srv):
    assert page(srv, state="RUNNING", user="u")["counts"] == {"BLOCKED": 1, "DISABLED": 1, "RUNNING": 2}


def test_the_list_is_paginated_and_the_pages_hold_every_strategy_once(srv):
    seen = []
    for offset in range(0, 6, 2):
        data = page(srv, offset=offset, limit=2)
        assert data["total"] == 5 and len(data["items"]) <= 2
        seen += [r["id"] for r in data["items"]]
    assert sorted(seen) == sorted({AAA, BBB, CCC, DDD, EEE}) and len(seen) == 5


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"state": "SLEEPING"}, "state 'SLEEPING' is not one of"),
        ({"limit": "0"}, "limit must be from 1 to 1000"),
        ({"limit": "lots"}, "limit must be an integer"),
        ({"offset": "-1"}, "offset must be from 0"),
        ({"colour": "red"}, "unknown query parameter 'colour'"),
    ],
)
def test_a_bad_query_is_a_400_with_one_line(srv, params, words):
    r = srv.client.get("/api/strategies", params=params)
    assert r.status_code == 400
    assert words in one_line_error(r)


def test_one_strategy_has_its_status_masked_document_snapshots_and_events(srv):
    wait_for(lambda: srv.client.get(f"/api/strategies/{CCC}").json()["snapshots"], 10, "a snapshot of CCC")
    r = srv.client.get(f"/api/strategies/{CCC}")
    assert r.status_code == 200
    data = r.json()
    assert data["id"] == CCC and data["status"]["state"] == "RUNNING"
    assert data["document"]["api_key"] == "***" and DOCUMENT_SECRET not in r.text
    assert data["document"]["symbol"] == "CCC"
    latest = data["snapshots"][0]
    assert latest["seq"] >= 1 and latest["bytes"] > 0 and latest["engine"] == "demo"
    assert any(e["kind"] == "started" for e in data["events"])


def test_one_strategy_by_its_document_id(srv):
    doc_id = srv.raw_store.get_strategy(AAA)["_id"]
    assert srv.client.get(f"/api/strategies/{doc_id}").json()["id"] == AAA


@pytest.mark.parametrize(("path", "status"), [("/api/strategies/u:NOPE:k", 404), ("/api/strategies/a%01b", 400)])
def test_a_bad_id_is_a_4xx_with_one_line(srv, path, status):
    r = srv.client.get(path)
    assert r.status_code == status
    one_line_error(r)


def test_an_unknown_path_or_method_is_json_too(srv):
    assert srv.client.get("/nothing/here").status_code == 404
    one_line_error(srv.client.get("/nothing/here"))
    r = srv.client.delete(f"/api/strategies/{AAA}")
    assert r.status_code == 405
    one_line_error(r)


def test_an_internal_error_is_a_500_with_one_line_and_no_traceback(srv, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError(f"boom with {TOKEN}\nsecond line")

    monkeypatch.setattr(srv.web.api.fleet, "query", boom)
    r = srv.client.get("/api/strategies")
    assert r.status_code == 500
    assert one_line_error(r) == "internal error (RuntimeError); see the orchestrator's log"
    assert TOKEN not in r.text


def test_the_openapi_description_names_every_route(srv):
    r = srv.client.get("/api/openapi.json")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(describe()))
    from starlette.routing import Route

    paths = {route.path.replace("{ident:path}", "{ident}") for route in srv.web.app.routes if isinstance(route, Route)}
    documented = set(r.json()["paths"])
    assert paths - {"/", "/strategies/{ident}"} <= documented, paths - documented


# -- writes -------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["enable", "disable", "restart"])
def test_a_write_without_a_token_is_401_and_with_a_wrong_one_403(srv, action):
    r = srv.client.post(f"/api/strategies/{AAA}/{action}")
    assert r.status_code == 401 and "Bearer" in one_line_error(r)
    r = srv.client.post(f"/api/strategies/{AAA}/{action}", headers=srv.auth("wrong-token"))
    assert r.status_code == 403 and one_line_error(r) == "wrong token"
    r = srv.client.post(f"/api/strategies/{AAA}/{action}", headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401


def test_disable_then_enable_goes_through_the_store_and_the_orchestrator_follows(srv):
    r = srv.client.post(f"/api/strategies/{BBB}/disable", headers=srv.auth())
    assert (r.status_code, r.json()) == (200, {"action": "disabled", "id": BBB})
    assert srv.raw_store.get_strategy(BBB)["enabled"] is False
    srv.wait_state(BBB, "DISABLED")
    r = srv.client.post(f"/api/strategies/{BBB}/enable", headers=srv.auth(), json={})
    assert (r.status_code, r.json()["action"]) == (200, "enabled")
    srv.wait_state(BBB, "RUNNING")


def test_restart_stops_with_a_snapshot_and_starts_again(srv):
    starts = srv.row(AAA)["starts"]
    r = srv.client.post(f"/api/strategies/{AAA}/restart", headers=srv.auth())
    assert (r.status_code, r.json()) == (202, {"action": "restart requested", "id": AAA})
    wait_for(lambda: (row := srv.row(AAA))["starts"] > starts and row["state"] == "RUNNING", 15, "restarted")
    kinds = [k for k, i, _d in srv.events if i == AAA]
    assert kinds[kinds.index("restart") :][:3] == ["restart", "stopped", "started"]


@pytest.mark.parametrize(("ident", "status"), [(DDD, 409), (EEE, 409), ("u:NOPE:k", 404)])
def test_restart_of_what_does_not_run_here_is_refused(srv, ident, status):
    r = srv.client.post(f"/api/strategies/{ident}/restart", headers=srv.auth())
    assert r.status_code == status
    one_line_error(r)


@pytest.mark.parametrize(("body", "words"), [(b"{not json", "body: not JSON"), (b'{"force": true}', "takes no parameters")])
def test_a_write_with_a_bad_body_is_a_400(srv, body, words):
    r = srv.client.post(f"/api/strategies/{AAA}/enable", headers=srv.auth(), content=body)
    assert r.status_code == 400 and words in one_line_error(r)


def test_a_write_of_an_unknown_strategy_is_a_404(srv):
    r = srv.client.post("/api/strategies/u:NOPE:k/disable", headers=srv.auth())
    assert r.status_code == 404 and "u:NOPE:k: not found" in one_line_error(r)


# -- the event stream -------------------------------------------------------------------------
def read_stream(srv, found: queue.Queue, stop: threading.Event) -> None:
    with httpx.Client(base_url=srv.web.url, timeout=None) as client, client.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                found.put((name, json.loads(line[6:])))
            elif line.startswith(": connected"):
                found.put(("connected", None))


def test_the_event_stream_carries_transitions_and_status_rows(srv):
    found: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=read_stream, args=(srv, found, stop), daemon=True)
    reader.start()
    assert found.get(timeout=10) == ("connected", None)
    srv.client.post(f"/api/strategies/{CCC}/disable", headers=srv.auth())
    seen = []
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            name, data = found.get(timeout=max(0.01, deadline - time.monotonic()))
            seen.append((name, data))
            if name == "transition" and data["strategy_id"] == CCC and data["detail"] == "RUNNING -> DISABLED":
                break
        else:
            raise AssertionError(f"no transition of {CCC} in {seen}")
        assert any(n == "status" and any(r["id"] == CCC and r["state"] == "DISABLED" for r in d) for n, d in seen)
    finally:
        stop.set()
        srv.client.post(f"/api/strategies/{CCC}/enable", headers=srv.auth())
    srv.wait_state(CCC, "RUNNING")


def test_no_response_holds_a_secret(srv):
    bodies = [
        srv.client.get(path, headers=srv.auth()).text
        for path in ("/api/strategies?limit=1000", f"/api/strategies/{CCC}", "/metrics", "/api/events/recent", "/readyz")
    ]
    for body in bodies:
        assert TOKEN not in body and DOCUMENT_SECRET not in body


# -- reads behind the token -------------------------------------------------------------------
def test_with_http_auth_reads_the_reads_need_the_token_but_not_the_probes_or_the_page(tmp_path):
    with served(tmp_path, documents=[], http_auth_reads=True) as s:
        for path in ("/api/strategies", "/metrics", "/api/events/recent", "/api/openapi.json"):
            assert s.client.get(path).status_code == 401, path
            assert s.client.get(path, headers=s.auth("nope")).status_code == 403, path
            assert s.client.get(path, headers=s.auth()).status_code == 200, path
        for path in ("/healthz", "/", "/static/app.js"):
            assert s.client.get(path).status_code == 200, path


def test_without_a_configured_token_writes_are_refused(tmp_path):
    with served(tmp_path, documents=[], http_token=None) as s:
        r = s.client.post("/api/strategies/u:AAA:k/disable", headers=s.auth())
        assert r.status_code == 403 and "no http_token is configured" in one_line_error(r)
