"""``strategy-manager strategies ...`` and ``state show`` on the embedded store (and one
round through MongoDB via the wire server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from strategy_manager.cli import cli
from strategy_manager.cli.output import shown_time
from strategy_manager.core.settings import load_settings
from strategy_manager.core.store import OwnerRecord, SnapshotWrite, StatusRecord, open_store
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


def ok(*args, env=None):
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def store():
    opened = open_store(load_settings().settings)
    yield opened
    opened.close()


DOC = {"user_id": "u1", "symbol": "600000.SH", "strategy_key": "ma", "engine": "demo", "params": {"fast": 5}}


def write_lines(path, *lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


def test_import_a_json_array_then_again_updates(tmp_path, store):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([DOC, {**DOC, "strategy_key": "other"}]))
    out = ok("strategies", "import", str(path))
    assert out.splitlines() == ["2 inserted, 0 updated, 0 invalid"]  # one line, however many
    path.write_text(json.dumps([{**DOC, "params": {"fast": 8}}]))
    assert ok("strategies", "import", str(path)).splitlines()[-1] == "0 inserted, 1 updated, 0 invalid"
    assert store.get_strategy("u1:600000.SH:ma")["params"] == {"fast": 8}


HOSTILE = [
    (json.dumps({**DOC, "strategy_key": "wrong_type", "params": "fast=5"}), "field 'params'"),
    (
        json.dumps({"user_id": "u1", "symbol": "600000.SH", "strategy_key": "no_engine"}),
        "missing required field 'engine'",
    ),
    (json.dumps({**DOC, "strategy_key": "huge", "params": {"blob": "x" * 1_100_000}}), "bytes, the limit is"),
    (
        b'{"user_id": "u1", "symbol": "600000.SH", "strategy_key": "bytes", "engine": "demo", "note": "\xff\xfe"}',
        "not UTF-8 text",
    ),
    (json.dumps({**DOC, "strategy_key": "surrogate", "note": "\ud800"}), "not valid UTF-8"),
    (json.dumps({**DOC, "strategy_key": "dollar", "params": {"$where": "1"}}), "may not start with '$'"),
    (json.dumps({**DOC, "strategy_key": "dotted", "a.b": 1}), "may not start with '$' or contain '.'"),
    (json.dumps({**DOC, "strategy_key": "bigint", "params": {"n": 2**70}}), "beyond 64 bits"),
    (json.dumps({**DOC, "strategy_key": "nan", "params": {"n": float("nan")}}), "which JSON cannot hold"),
    (
        '{"user_id": "u1", "user_id": "u2", "symbol": "S", "strategy_key": "dup", "engine": "demo"}',
        "duplicate key 'user_id'",
    ),
    ('{"user_id": "u1", "symbol": ', "column 29: Expecting value"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({**DOC, "strategy_key": "colon:key"}), "without ':'"),
]


def test_import_json_lines_reports_each_bad_line_and_lands_the_good_ones(tmp_path, store):
    path = write_lines(
        tmp_path / "s.jsonl",
        json.dumps(DOC),
        *(line for line, _ in HOSTILE),
        "",
        json.dumps({**DOC, "strategy_key": "last"}),
    )
    result = invoke("strategies", "import", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(HOSTILE) + 1  # the invalid ones, then the summary
    for n, (_, reason) in enumerate(HOSTILE, 2):
        assert lines[n - 2].startswith(f"line {n}: invalid: "), lines[n - 2]
        assert reason in lines[n - 2], (reason, lines[n - 2])
        assert len(lines[n - 2]) < 400
    assert lines[-1] == f"2 inserted, 0 updated, {len(HOSTILE)} invalid"
    assert [d["strategy_key"] for d in store.list_strategies()] == ["last", "ma"]


def test_import_report_as_json(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", json.dumps(DOC), "{}")
    result = invoke("strategies", "import", "--json", str(path))
    report = json.loads(result.stdout)
    assert report["counts"] == {"inserted": 1, "updated": 0, "invalid": 1}
    assert report["documents"][1] == {
        "where": "line 2",
        "result": "invalid",
        "ident": None,
        "reason": "document: missing required field 'user_id'",
    }


def test_a_broken_json_array_is_one_error_naming_file_and_position(tmp_path, store):
    path = tmp_path / "s.json"
    path.write_text('[\n  {"user_id": "u"},\n  oops\n]')
    result = invoke("strategies", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}: line 3 column 3: Expecting value\n"
    assert store.list_strategies() == []


def _deep(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


@pytest.mark.parametrize("levels", [40, 5_000, 100_000])
def test_a_deeply_nested_document_is_refused_and_its_neighbours_go_in(tmp_path, store, levels):
    """Deep nesting used to end the import in a RecursionError traceback, losing every document."""
    before = json.dumps({**DOC, "strategy_key": "before"})
    deep = json.dumps({**DOC, "strategy_key": "deep", "params": {"x": "HOLE"}}).replace('"HOLE"', _deep(levels))
    braces = json.dumps({**DOC, "strategy_key": "braces", "params": {"x": "HOLE"}}).replace(
        '"HOLE"', '{"a": ' * levels + "1" + "}" * levels
    )
    after = json.dumps({**DOC, "strategy_key": "after", "note": "[{ not structure }]"})
    array = tmp_path / "s.json"
    array.write_text(f"[{before},\n{deep},\n{braces},\n{after}]")
    lines = write_lines(tmp_path / "s.jsonl", before, deep, braces, after)
    for path, where in ((array, "item"), (lines, "line")):
        result = invoke("strategies", "import", str(path))
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        out = result.stdout.splitlines()  # the invalid ones, then the summary
        assert out[0].startswith(f"{where} 2: invalid: ") and "nested deeper than 32 levels" in out[0], out
        assert out[1].startswith(f"{where} 3: invalid: ") and "nested deeper than 32 levels" in out[1]
        assert out[-1].endswith(", 2 invalid") and "0 inserted, 0 updated" not in out[-1], out
        assert {d["strategy_key"] for d in store.list_strategies()} == {"before", "after"}


def test_a_deeply_nested_params_option_is_one_line(store):
    store.upsert_strategy(DOC)
    for args in (
        ["edit", "u1:600000.SH:ma", "--params", '{"x": ' + _deep(100_000) + "}"],
        ["add", "--symbol", "S", "--strategy-key", "k", "--engine", "demo", "--params", _deep(100_000, "{\"a\":", "}")],
    ):
        result = invoke("strategies", *args)
        assert result.exit_code == 2, result.output
        assert "Invalid value for --params: nested deeper than 32 levels (the limit)" in result.stderr
        assert "Traceback" not in result.output


def test_export_then_import_into_an_empty_store_is_lossless(tmp_path, store, monkeypatch):
    odd = {
        **DOC,
        "strategy_key": "odd",
        "zeta": {"nested": [1, 2.5, None, {"x": "两"}]},
        "alpha": 1e-300,
        "when": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "enabled": False,
    }
    store.upsert_strategy(odd)
    store.upsert_strategy(DOC)
    first = ok("strategies", "export")
    exported = json.loads(first)
    assert [d["strategy_key"] for d in exported] == ["ma", "odd"]
    (tmp_path / "dump.json").write_text(first)

    monkeypatch.setenv("QSM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert (
        ok("strategies", "import", str(tmp_path / "dump.json")).splitlines()[-1]
        == "2 inserted, 0 updated, 0 invalid"
    )
    second = json.loads(ok("strategies", "export"))

    def without_time(docs):
        return [{k: v for k, v in d.items() if k != "updated_at"} for d in docs]

    assert json.dumps(without_time(second)) == json.dumps(without_time(exported))
    assert exported[1]["when"] == {"$date": "2026-01-02T03:04:05.678Z"}


def test_list_shows_invalid_documents_with_field_and_reason(store):
    store.upsert_strategy(DOC)
    store.upsert_strategy({**DOC, "strategy_key": "broken", "engine": 5})
    store.upsert_strategy({**DOC, "strategy_key": "off", "enabled": False})
    lines = ok("strategies", "list").splitlines()
    assert lines[0].split() == ["ID", "ENGINE", "ENABLED", "STATUS"]
    assert lines[1].split() == [
        "u1:600000.SH:broken",
        "-",
        "yes",
        "INVALID:",
        "field",
        "'engine':",
        "expected",
        "a",
        "string,",
        "got",
        "int",
        "5",
    ]
    assert lines[2].split() == ["u1:600000.SH:ma", "demo", "yes", "not", "run", "yet"]
    assert len(lines) == 3  # the disabled one is hidden
    rows = json.loads(ok("strategies", "list", "--all", "--json"))
    assert [(r["id"], r["valid"], r["enabled"]) for r in rows] == [
        ("u1:600000.SH:broken", False, True),
        ("u1:600000.SH:ma", True, True),
        ("u1:600000.SH:off", True, False),
    ]
    assert rows[0]["error"] == "field 'engine': expected a string, got int 5"
    assert all(isinstance(r["_id"], str) for r in rows)


def test_add_validates_and_refuses_an_existing_id(store):
    out = ok(
        "strategies",
        "add",
        "--user-id",
        "u1",
        "--symbol",
        "002050.SZ",
        "--strategy-key",
        "dragon",
        "--engine",
        "vnpy",
        "--engine-class",
        "scripts.dragon.Engine",
        "--params",
        '{"limit_up_rate": 0.09}',
        "--schedule",
        '{"lunch_break": "pause"}',
        "--disabled",
        "--force",  # scripts.dragon is not importable here; the orchestrator's machine may differ
    )
    assert out == "added u1:002050.SZ:dragon\n"
    saved = store.get_strategy("u1:002050.SZ:dragon")
    assert {k: saved[k] for k in ("enabled", "engine", "engine_class", "params", "schedule")} == {
        "enabled": False,
        "engine": "vnpy",
        "engine_class": "scripts.dragon.Engine",
        "params": {"limit_up_rate": 0.09},
        "schedule": {"lunch_break": "pause"},
    }
    again = invoke(
        "strategies",
        "add",
        "--user-id",
        "u1",
        "--symbol",
        "002050.SZ",
        "--strategy-key",
        "dragon",
        "--engine",
        "demo",
    )
    assert (
        again.exit_code == 2
        and again.stderr
        == "error: strategy u1:002050.SZ:dragon: already exists (use 'strategies edit' or 'import')\n"
    )
    bad_json = invoke(
        "strategies", "add", "--symbol", "S", "--strategy-key", "k", "--engine", "demo", "--params", "{x"
    )
    assert bad_json.exit_code == 2 and "--params" in bad_json.stderr
    bad_schedule = invoke(
        "strategies",
        "add",
        "--symbol",
        "S",
        "--strategy-key",
        "k",
        "--engine",
        "demo",
        "--schedule",
        '{"mode": "sometimes"}',
    )
    assert bad_schedule.exit_code == 2
    assert bad_schedule.stderr.startswith("error: default:S:k: field 'schedule.mode': must be one of")
    assert store.get_strategy("default:S:k") is None


def test_enable_disable_by_natural_key_and_by_id_bump_updated_at(store):
    store.upsert_strategy(DOC)
    before = store.get_strategy("u1:600000.SH:ma")
    assert ok("strategies", "disable", "u1:600000.SH:ma") == "disabled u1:600000.SH:ma\n"
    after = store.get_strategy("u1:600000.SH:ma")
    assert after["enabled"] is False and after["updated_at"] >= before["updated_at"]
    token = store.change_token()
    assert ok("strategies", "enable", before["_id"]) == "enabled u1:600000.SH:ma\n"
    assert store.get_strategy(before["_id"])["enabled"] is True
    assert store.change_token() != token


def test_edit_merges_params_and_refuses_what_would_not_run(store):
    store.upsert_strategy({**DOC, "params": {"fast": 5, "slow": 20, "risk": {"stop": 0.05, "take": 0.15}}})
    out = ok(
        "strategies",
        "edit",
        "u1:600000.SH:ma",
        "--params",
        '{"slow": 30, "fast": null, "risk": {"take": 0.2}}',
        "--force",  # 'risk' is not a demo parameter: stored all the same
    )
    assert out.startswith("edited u1:600000.SH:ma: params ")
    assert store.get_strategy("u1:600000.SH:ma")["params"] == {
        "slow": 30,
        "risk": {"stop": 0.05, "take": 0.2},
    }
    refused = invoke("strategies", "edit", "u1:600000.SH:ma", "--params", '{"a.b": 1}')
    assert refused.exit_code == 2 and "'a.b'" in refused.stderr and refused.stderr.count("\n") == 1
    assert "a.b" not in store.get_strategy("u1:600000.SH:ma")["params"]
    not_object = invoke("strategies", "edit", "u1:600000.SH:ma", "--params", "[1]")
    assert not_object.exit_code == 2


def test_remove_and_unknown_ids_are_one_line_errors(store):
    store.upsert_strategy(DOC)
    assert ok("strategies", "remove", "u1:600000.SH:ma") == "removed u1:600000.SH:ma\n"
    assert store.get_strategy("u1:600000.SH:ma") is None
    for command in (["remove"], ["enable"], ["disable"], ["edit", "--params", "{}"]):
        verb, *rest = command
        result = invoke("strategies", verb, "u1:600000.SH:ma", *rest)
        assert result.exit_code == 2, command
        assert result.stderr == "error: strategy u1:600000.SH:ma: not found\n"


def test_state_show_prints_latest_snapshot_history_and_status(store):
    store.upsert_strategy(DOC)
    sid = "u1:600000.SH:ma"
    for n in range(3):
        store.save_snapshots(
            [
                SnapshotWrite(
                    sid,
                    "demo",
                    {"bars": n, "pos": {"600000.SH": n * 100}},
                    datetime(2026, 11, 24, 1, 30 + n, tzinfo=UTC),
                )
            ]
        )
    beat = datetime.now(UTC)
    store.write_owner(OwnerRecord(owner="host:1:ab", host="host", pid=1, heartbeat=beat))
    store.write_status([StatusRecord(sid, "RUNNING", engine="demo", owner="host:1:ab", restarts=1)])
    out = ok("state", "show", sid)
    taken = shown_time(datetime(2026, 11, 24, 1, 32, tzinfo=UTC))  # local time, with its offset
    assert f"latest snapshot: seq 3, taken {taken}, engine demo" in out
    assert '"600000.SH": 200' in out
    assert f"status: RUNNING, owner host:1:ab, restarts 1, heartbeat {shown_time(beat)}" in out
    assert "history (3 kept, newest first):" in out
    data = json.loads(ok("state", "show", store.get_strategy(sid)["_id"], "--json"))
    assert data["strategy_id"] == sid
    assert data["latest"]["state"] == {"bars": 2, "pos": {"600000.SH": 200}}
    assert [h["seq"] for h in data["history"]] == [3, 2, 1]
    assert data["status"]["state"] == "RUNNING"
    unknown = invoke("state", "show", "nobody:X:y")
    assert unknown.exit_code == 2 and unknown.stderr == "error: strategy nobody:X:y: not found\n"


def test_strategies_commands_work_against_mongodb(mongoeco_uri, tmp_path):  # noqa: F811
    env = {"MONGO_URI": mongoeco_uri, "MONGO_DB": "qsm_cli_test"}
    path = tmp_path / "s.json"
    path.write_text(json.dumps([DOC]))
    assert (
        ok("strategies", "import", str(path), env=env).splitlines()[-1] == "1 inserted, 0 updated, 0 invalid"
    )
    rows = json.loads(ok("strategies", "list", "--json", env=env))
    assert [r["id"] for r in rows] == ["u1:600000.SH:ma"]
    assert ok("strategies", "disable", rows[0]["_id"], env=env) == "disabled u1:600000.SH:ma\n"
    assert json.loads(ok("strategies", "list", "--json", env=env)) == []
    assert ok("config", env=env).count("store: MongoDB at mongodb://127.0.0.1:") == 1
    assert ok("strategies", "remove", "u1:600000.SH:ma", env=env) == "removed u1:600000.SH:ma\n"


def test_an_unreachable_mongodb_is_a_one_line_error():
    result = invoke(
        "strategies", "list", env={"MONGO_URI": "mongodb://u:pw@127.0.0.1:1/", "QSM_MONGO_TIMEOUT_MS": "200"}
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: MongoDB mongodb://***@127.0.0.1:1/ database finance: no server answered within 200 ms"
    )
    assert result.stderr.count("\n") == 1 and "pw" not in result.stderr.replace("***", "")


# -- fail fast: the engine checks a document before it is stored ---------------------------
def add_args(*extra):
    return ["strategies", "add", "--user-id", "u1", "--symbol", "600000.SH", "--strategy-key", "k", *extra]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--engine", "nosuchengine"], "engine 'nosuchengine' is not installed (installed: "),
        (["--engine", "demo", "--params", '{"fast": "five"}'], "params for demo: 'fast' must be an integer, got 'five'"),
        (["--engine", "demo", "--params", '{"fast": 30}'], "params for demo: need 0 < fast < slow, got 30, 20"),
        (["--engine", "python", "--engine-class", "os.system"], "engine_class 'os.system' refused: module 'os'"),
        (["--engine", "python"], "engine 'python' needs an engine_class"),
        (["--engine", "vnpy"], "engine 'vnpy' needs an engine_class"),  # the README's 'From Python' shape
    ],
)
def test_add_refuses_what_its_engine_refuses_and_force_stores_it(store, extra, reason):
    refused = invoke(*add_args(*extra))
    assert refused.exit_code == 2, refused.output
    assert refused.stderr == f"error: u1:600000.SH:k: {reason}" + refused.stderr.split(reason, 1)[1]
    assert refused.stderr.count("\n") == 1 and refused.stdout == ""
    assert store.get_strategy("u1:600000.SH:k") is None
    assert ok(*add_args(*extra, "--force")) == "added u1:600000.SH:k\n"
    assert store.get_strategy("u1:600000.SH:k")["engine"] == extra[1]


def test_force_does_not_store_a_malformed_document(store):
    result = invoke(*add_args("--engine", "demo", "--params", '{"$where": 1}', "--force"))
    assert result.exit_code == 2 and "may not start with '$'" in result.stderr
    assert store.get_strategy("u1:600000.SH:k") is None


def test_edit_refuses_params_the_engine_refuses_and_changes_nothing(store):
    store.upsert_strategy(DOC)
    refused = invoke("strategies", "edit", "u1:600000.SH:ma", "--params", '{"fast": "five"}')
    assert refused.exit_code == 2
    assert refused.stderr == "error: u1:600000.SH:ma: params for demo: 'fast' must be an integer, got 'five'\n"
    assert store.get_strategy("u1:600000.SH:ma")["params"] == {"fast": 5}
    ok("strategies", "edit", "u1:600000.SH:ma", "--params", '{"fast": "five"}', "--force")
    assert store.get_strategy("u1:600000.SH:ma")["params"] == {"fast": "five"}


def test_import_reports_each_document_its_engine_refuses_and_the_others_go_in(tmp_path, store):
    documents = [
        DOC,
        {**DOC, "strategy_key": "typo", "params": {"fats": 3}},
        {**DOC, "strategy_key": "nope", "engine": "nosuchengine"},
        {**DOC, "strategy_key": "os", "engine": "python", "engine_class": "os.system"},
        {**DOC, "strategy_key": "last"},
        {**DOC, "strategy_key": "bad key", "params": {"$x": 1}},
    ]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(documents))
    result = invoke("strategies", "import", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "item 2: invalid: u1:600000.SH:typo: params for demo: unknown 'fats'; known: bar_seconds, bars, cash, fast, lot, slow",
        "item 3: invalid: u1:600000.SH:nope: engine 'nosuchengine' is not installed (installed: backtrader, demo, python, vnpy)",
        "item 4: invalid: u1:600000.SH:os: engine_class 'os.system' refused: module 'os' is neither inside the import "
        "paths (none set) nor under an allowed prefix (none set); add it to import_paths or engine_class_allow",
        "item 6: invalid: u1:600000.SH:bad key: key '$x' under '$.params' may not start with '$' or contain '.'",
        "2 inserted, 0 updated, 4 invalid",
    ]
    assert sorted(d["strategy_key"] for d in store.list_strategies()) == ["last", "ma"]
    forced = invoke("strategies", "import", "--force", str(path))
    assert forced.exit_code == 1 and forced.stdout.splitlines()[-1] == "3 inserted, 2 updated, 1 invalid"
    assert sorted(d["strategy_key"] for d in store.list_strategies()) == ["last", "ma", "nope", "os", "typo"]
