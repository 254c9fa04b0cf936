"""The conventions every command keeps: -h, --json, one-line errors with exit 2,
ISO times in JSON and zoned times for people, colours on a terminal only, aligned
tables, stdin for import, progress and quiet, confirmation before a removal,
verbosity and log formats, shell completion."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from strategy_manager.cli import cli
from strategy_manager.cli.run import SUMMARY_ATTENTION_LINES, summary_lines
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import OwnerRecord, SnapshotWrite, StatusRecord, open_store
from tests.cli.terminal import run_on_terminal
from tests.conftest import run_cli

ID = "u:600000.SH:k"
DOC = {"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo", "params": {"fast": 5}}
ZONED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")
ANSI = "\x1b["


def store():
    return open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))


def invoke(*args, input=None, env=None):
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def ok(*args, input=None):
    result = invoke(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


# -- help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["strategies"], ["strategies", "import"], ["state", "show"], ["examples", "import"]]
)
def test_dash_h_is_help_everywhere(command):
    short, long = invoke(*command, "-h"), invoke(*command, "--help")
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout and short.stdout.startswith("Usage: ")


# -- --json on every command that changes a document -------------------------------


def test_add_edit_enable_disable_remove_and_rollback_print_json():
    added = json.loads(
        ok("strategies", "add", "--user-id", "u", "--symbol", "600000.SH", "--strategy-key", "k",
           "--engine", "demo", "--params", '{"fast": 5}', "--json")
    )  # fmt: skip
    assert (added["action"], added["id"], added["document"]["params"]) == ("added", ID, {"fast": 5})
    assert ISO.match(added["document"]["updated_at"]), added["document"]["updated_at"]
    edited = json.loads(ok("strategies", "edit", ID, "--params", '{"slow": 9}', "--json"))
    assert (edited["action"], edited["document"]["params"]) == ("edited", {"fast": 5, "slow": 9})
    disabled = json.loads(ok("strategies", "disable", ID, "--json"))
    assert (disabled["action"], disabled["document"]["enabled"]) == ("disabled", False)
    enabled = json.loads(ok("strategies", "enable", added["document"]["_id"], "--json"))
    assert (enabled["action"], enabled["id"], enabled["document"]["enabled"]) == ("enabled", ID, True)
    (seq,) = store().save_snapshots([SnapshotWrite(ID, "demo", {"bar": 1}, datetime(2026, 1, 1, tzinfo=UTC))])
    rolled = json.loads(ok("state", "rollback", ID, "--seq", str(seq), "--json"))
    assert rolled == {"action": "rolled back", "id": ID, "from_seq": seq, "seq": seq + 1}
    removed = json.loads(ok("strategies", "remove", ID, "--json"))
    assert (removed["action"], removed["id"], removed["document"]["symbol"]) == ("removed", ID, "600000.SH")
    assert store().get_strategy(ID) is None


def test_json_times_are_iso_with_t_and_people_see_zoned_times():
    s = store()
    s.upsert_strategy(DOC)
    taken = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    s.save_snapshots([SnapshotWrite(ID, "demo", {"bar": 1}, taken)])
    s.write_owner(OwnerRecord(owner="host:1:ab", host="host", pid=1, heartbeat=datetime.now(UTC)))
    s.write_status(
        [StatusRecord(ID, "RUNNING", engine="demo", owner="host:1:ab", heartbeat=taken, next_transition="stop",
                      next_transition_at=datetime(2026, 11, 24, 7, 5, tzinfo=UTC))]
    )  # fmt: skip
    (record,) = json.loads(ok("status", "--json"))
    assert ISO.match(record["heartbeat"]) and ISO.match(record["next_transition_at"])
    shown = json.loads(ok("state", "show", ID, "--json"))
    assert ISO.match(shown["latest"]["taken_at"]) and ISO.match(shown["history"][0]["taken_at"])
    assert ISO.match(json.loads(ok("strategies", "list", "--json"))[0]["updated_at"])
    (item,) = json.loads(ok("schedule", ID, "--at", "2026-11-24T08:00+08:00", "--next", "1", "--json"))
    assert item["transitions"][0]["exchange_time"] == "2026-11-24T09:25:00+08:00"

    status_row = ok("status").splitlines()[1]
    assert len(ZONED.findall(status_row)) == 2, status_row  # heartbeat and next
    schedule_line = ok("schedule", ID, "--at", "2026-11-24T08:00+08:00", "--next", "1").splitlines()[1]
    assert schedule_line.split("(local")[0].strip().endswith("2026-11-24 09:25:00 +08:00"), schedule_line
    assert len(ZONED.findall(schedule_line)) == 2
    assert ZONED.search(ok("state", "show", ID).splitlines()[2])


# -- one line and exit 2 for every user error ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--clock", "sim", "--start", "2026-11-24T09:00+08:00", "--speed", "0"], "'--speed': 0.0 is not in"),
        (["run", "--poll-interval", "0"], "'--poll-interval': 0.0 is not in the range x>0"),
        (["run", "--poll-interval", "-1"], "'--poll-interval': -1.0 is not in the range x>0"),
        (["schedule", "--next", "-1"], "'--next': -1 is not in the range x>=1"),
        (["state", "show", ID, "--history", "-1"], "'--history': -1 is not in the range x>=1"),
        (["run", "--clock", "sim", "--start", "09:00"], "--start: '09:00' is not an ISO time"),
        (["run", "--clock", "sim"], "--clock sim needs --start"),
        (["strategies", "lst"], "No such command 'lst'"),
        (["strategies", "import", "/no/such/file.json"], "'/no/such/file.json'"),
        (["--config-dir", "/no/such/dir", "status"], "config directory /no/such/dir (from --config-dir): does not exist"),
        (["strategies", "enable", "a:b:c"], "no store at "),
    ],
)
def test_every_user_error_is_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_named_config_dir_from_the_environment_must_exist_too(tmp_path):
    result = run_cli("status", env={"QSM_CONFIG_DIR": str(tmp_path / "typo")})
    assert result.returncode == 2
    assert result.stderr == f"error: config directory {tmp_path / 'typo'} (from QSM_CONFIG_DIR): does not exist\n"


def test_debug_keeps_meaning_tracebacks():
    store().upsert_strategy(DOC)
    result = run_cli("--debug", "strategies", "enable", "nobody:X:y")
    assert result.returncode == 2  # the same exit status as without --debug, for scripts
    assert "Traceback" in result.stderr and "StoreError: strategy nobody:X:y: not found" in result.stderr


# -- import: stdin, one summary line, progress on a terminal, quiet --------------------


def many(n):
    return [{**DOC, "symbol": f"{i:06d}.SZ"} for i in range(n)]


def test_export_piped_into_import_through_stdin():
    s = store()
    for d in many(3):
        s.upsert_strategy(d)
    exported = ok("strategies", "export")
    assert ok("strategies", "import", "-", input=exported) == "0 inserted, 3 updated, 0 invalid\n"
    report = json.loads(ok("strategies", "import", "--json", "-", input=json.dumps([{**DOC, "symbol": "NEW"}])))
    assert report["counts"] == {"inserted": 1, "updated": 0, "invalid": 0}
    bad = invoke("strategies", "import", "-", input="[oops")
    assert bad.exit_code == 2 and bad.stderr == "error: <stdin>: line 1 column 2: Expecting value\n"


def test_a_large_import_prints_one_line_piped_a_progress_bar_on_a_terminal_and_nothing_quiet(tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps(many(1000)))
    piped = run_cli("strategies", "import", str(path))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "1000 inserted, 0 updated, 0 invalid\n" and piped.stderr == ""
    code, screen = run_on_terminal("strategies", "import", str(path))
    assert code == 0, screen
    assert "importing" in screen and "1000/1000" in screen  # the bar, at its end
    assert screen.rstrip().endswith("0 inserted, 1000 updated, 0 invalid")
    for args in (["-q", "strategies", "import", str(path)], ["strategies", "import", str(path), "--quiet"]):
        code, screen = run_on_terminal(*args)
        assert (code, screen) == (0, ""), args
    path.write_text(json.dumps([*many(2), {"user_id": "u"}]))
    quiet = run_cli("-q", "strategies", "import", str(path))
    assert quiet.returncode == 1
    assert quiet.stdout == "item 3: invalid: document: missing required field 'symbol'\n"


# -- short summaries, colours, aligned tables -------------------------------------------


def worker(i, state="STOPPED", error=None):
    return {"strategy_id": f"u:{i:06d}.SZ:k", "state": state, "restarts": 0, "last_error": error, "starts": 1}


def test_a_run_summary_stays_short_at_ten_thousand_strategies():
    healthy = [worker(i) for i in range(10_000)]
    assert summary_lines(healthy) == ["summary: 10000 strategies; 10000 STOPPED"]
    sick = healthy[:9_950] + [worker(i, "FAILED", "boom") for i in range(9_950, 10_000)]
    lines = summary_lines(sick)
    assert lines[0] == "summary: 10000 strategies; 50 FAILED, 9950 STOPPED"
    assert lines[1] == "needing attention (50):"
    assert len(lines) == 2 + SUMMARY_ATTENTION_LINES + 1
    assert lines[-1] == "  ... and 30 more: strategy-manager status"
    assert all("FAILED" in line and "boom" in line for line in lines[2:-1])


def test_states_needing_attention_are_coloured_on_a_terminal_only_and_never_with_no_color():
    s = store()
    s.upsert_strategy(DOC)
    s.write_status([StatusRecord(ID, "BLOCKED", engine="demo", last_error="engine 'ib' is not installed")])
    code, screen = run_on_terminal("status")
    assert code == 0 and f"{ANSI}" in screen and "BLOCKED" in screen
    code, screen = run_on_terminal("status", env={"NO_COLOR": "1"})
    assert code == 0 and ANSI not in screen and "BLOCKED" in screen
    piped = run_cli("status")
    assert ANSI not in piped.stdout and "BLOCKED" in piped.stdout
    s.write_status([StatusRecord(ID, "STOPPED", engine="demo")])
    code, screen = run_on_terminal("status")
    assert code == 0 and ANSI not in screen  # nothing to look at, nothing coloured


def test_tables_stay_aligned_for_long_ids():
    s = store()
    long = {**DOC, "user_id": "a-very-long-user-name-from-a-big-desk", "symbol": "IF2512.CFFEX", "strategy_key": "x" * 40}
    s.upsert_strategy(long)
    s.upsert_strategy(DOC)
    lines = ok("strategies", "list").splitlines()
    starts = {line.index("demo") for line in lines[1:]}
    assert len(starts) == 1 and lines[0].index("ENGINE") in starts, lines
    ids = [long_id := "a-very-long-user-name-from-a-big-desk:IF2512.CFFEX:" + "x" * 40, ID]
    s.write_owner(OwnerRecord(owner="host:1:ab", host="host", pid=1, heartbeat=datetime.now(UTC)))
    s.write_status([StatusRecord(i, "RUNNING", engine="demo", owner="host:1:ab") for i in ids])
    rows = ok("status").splitlines()
    assert {row.index("RUNNING") for row in rows[1:]} == {rows[0].index("STATE")}
    assert rows[1].startswith(long_id + "  ")


# -- remove asks on a terminal ---------------------------------------------------------


def test_remove_asks_on_a_terminal_unless_yes():
    store().upsert_strategy(DOC)
    code, screen = run_on_terminal("strategies", "remove", ID, answer="n\n")
    assert code == 1 and f"remove {ID}? (its snapshots are kept)" in screen
    assert store().get_strategy(ID) is not None
    code, screen = run_on_terminal("strategies", "remove", ID, answer="y\n")
    assert code == 0 and f"removed {ID}" in screen
    assert store().get_strategy(ID) is None
    store().upsert_strategy(DOC)
    code, screen = run_on_terminal("strategies", "remove", "--yes", ID)
    assert (code, screen.strip()) == (0, f"removed {ID}")


# -- verbosity and logs -----------------------------------------------------------------


#: A simulated clock stands still while the orchestrator claims and starts, so a
#: short run holds its events whatever the machine's load.
SIM = ("--clock", "sim", "--start", "2026-11-24T10:00+08:00", "--speed", "60")


def test_verbose_json_logs_go_to_the_log_file_and_quiet_keeps_only_errors(tmp_path):
    store().upsert_strategy({**DOC, "schedule": {"mode": "always"}})
    log = tmp_path / "logs" / "qsm.jsonl"
    out = run_cli("-v", "--log-format", "json", "--log-file", str(log), "run", *SIM, "--for", "1m", "--poll-interval", "0.1")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # everything went to the file
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and {"time", "level", "logger", "message"} <= set(records[0])
    assert "INFO" in {r["level"] for r in records} and "DEBUG" not in {r["level"] for r in records}
    assert all(ISO.match(r["time"]) for r in records)
    assert any(ID in r["message"] for r in records), records[:5]

    # an engine whose snapshot cannot be stored: an ERROR record on the way out
    store().upsert_strategy({**DOC, "strategy_key": "bad", "engine": "python", "schedule": {"mode": "always"},
                             "engine_class": "tests.core.user_engines.Unserializable", "params": {}})  # fmt: skip
    env = {"QSM_ENGINE_CLASS_ALLOW": "tests.core.user_engines"}
    default = run_cli("run", *SIM, "--for", "1m", "--poll-interval", "0.1", env=env)
    assert " ERROR " in default.stderr and " INFO " not in default.stderr
    assert "summary: 2 strategies" in default.stdout
    quiet = run_cli("-q", "run", *SIM, "--for", "1m", "--poll-interval", "0.1", env=env)
    assert quiet.returncode == 0 and quiet.stdout == ""  # no events, no summary
    assert " ERROR " in quiet.stderr and " INFO " not in quiet.stderr
    assert run_cli("run", "-q", "--for", "0s", env=env).stdout == ""


def test_run_events_as_json_lines():
    store().upsert_strategy({**DOC, "schedule": {"mode": "always"}})
    out = run_cli("run", *SIM, "--for", "1m", "--poll-interval", "0.1", "--events", "json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["event"] == "begin" and events[-1]["event"] == "summary"
    started = [e for e in events if e["event"] == "started"]
    assert started and started[0]["strategy_id"] == ID and started[0]["detail"] == "fresh"
    assert all(ISO.match(e["time"]) for e in events)
    assert events[-1]["counts"] == {"STOPPED": 1} and events[-1]["attention"] == []


# -- completion -------------------------------------------------------------------------


def complete(words: str, cword: int) -> list[str]:
    env = {"_STRATEGY_MANAGER_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    out = run_cli(env=env)
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if line]


def test_shell_completion_script_and_strategy_ids():
    script = run_cli("completion", "bash")
    assert script.returncode == 0 and "_STRATEGY_MANAGER_COMPLETE=bash_complete" in script.stdout
    assert complete("strategy-manager strategies remove u", 3) == []  # no store: nothing, and none made
    assert not Path(os.environ["QSM_DATA_DIR"]).exists()
    s = store()
    for d in (DOC, {**DOC, "symbol": "000001.SZ"}, {**DOC, "user_id": "other"}):
        s.upsert_strategy(d)
    assert complete("strategy-manager strategies remove u", 3) == ["u:000001.SZ:k", ID]
    assert complete("strategy-manager state show other", 3) == ["other:600000.SH:k"]
    assert "strategies" in complete("strategy-manager str", 1)
