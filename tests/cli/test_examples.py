"""``strategy-manager examples``: the examples installed distributions ship, imported
and run from a folder outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from strategy_manager.core.examples import find_examples
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli


def test_list_names_each_example_with_its_distribution():
    out = run_cli("examples", "list", "--json")
    assert out.returncode == 0, out.stderr
    found = {e["name"]: e for e in json.loads(out.stdout)}
    assert {"demo", "backtrader", "vnpy", "vnpy-ctp"} <= set(found)
    assert found["demo"]["distribution"] == "quant-strategy-manager"
    assert found["backtrader"]["distribution"] == "qsm-backtrader"
    assert found["vnpy"]["distribution"] == "qsm-vnpy"
    assert found["vnpy"]["before"].startswith("python -m qsm_vnpy.examples.minute_bars ")
    assert all(e["error"] is None and os.path.isfile(e["file"]) for e in found.values())
    text = run_cli("examples", "list").stdout.splitlines()
    assert text[0].split() == ["NAME", "DISTRIBUTION", "ABOUT"]
    assert any(line.startswith("vnpy ") and "qsm-vnpy" in line for line in text)


def test_every_example_is_a_valid_array_of_documents():
    from strategy_manager.core.spec import parse_strategy
    from strategy_manager.core.store import transfer

    for example in find_examples():
        entries = transfer.read_entries(example.path())
        assert entries, example.name
        for entry in entries:
            assert entry.error is None, (example.name, entry)
            parse_strategy(entry.document)


def test_import_several_examples_at_once_and_say_what_to_make_first():
    out = run_cli("examples", "import", "demo", "backtrader", "vnpy")
    assert out.returncode == 1, out.stderr  # the demo's strategy of an engine not installed is refused
    assert out.stdout.splitlines() == [
        "demo item 6: invalid: demo:600519.SH:needs_ib: engine 'ib' is not installed "
        "(installed: backtrader, demo, python, vnpy)",
        "9 inserted, 0 updated, 1 invalid",
        "vnpy: before 'run', make its files: python -m qsm_vnpy.examples.minute_bars bars-002050.csv --days 25 --seed 3",
    ]
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    assert {d["engine"] for d in store.list_strategies()} == {"demo", "backtrader", "vnpy"}
    forced = run_cli("examples", "import", "--force", "demo", "backtrader", "vnpy")
    assert forced.returncode == 0 and forced.stdout.splitlines()[0] == "1 inserted, 9 updated, 0 invalid"
    assert {d["engine"] for d in store.list_strategies()} == {"demo", "ib", "backtrader", "vnpy"}
    again = json.loads(run_cli("examples", "import", "--force", "demo", "--json").stdout)
    assert again["counts"] == {"inserted": 0, "updated": 6, "invalid": 0}
    assert again["documents"][0]["where"] == "demo item 1"


def test_an_unknown_example_is_one_line_and_nothing_is_imported():
    out = run_cli("examples", "import", "demo", "nope")
    assert out.returncode == 2
    assert out.stderr.startswith("error: example nope: not installed (installed: backtrader, demo, vnpy")
    assert not os.path.exists(os.path.join(os.environ["QSM_DATA_DIR"], "store.sqlite3"))


def test_the_vnpy_example_runs_outside_the_repository(tmp_path):
    """The bar-file module and the documents work from any folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "qsm_vnpy.examples.minute_bars", "data/bars-002050.csv", "--days", "1"],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout == "wrote 240 bars to data/bars-002050.csv\n"
    assert len((folder / "data" / "bars-002050.csv").read_text().splitlines()) == 241
    refused = subprocess.run(
        [sys.executable, "-m", "qsm_vnpy.examples.minute_bars", str(folder / "data" / "bars-002050.csv" / "x")],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert "Traceback" not in refused.stderr


def test_the_vnpy_example_imports_and_trades_from_an_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    subprocess.run(
        [sys.executable, "-m", "qsm_vnpy.examples.minute_bars", "bars-002050.csv", "--days", "25", "--seed", "3"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    assert run_cli("examples", "import", "vnpy", cwd=folder).returncode == 0
    # A simulated clock stands still while the engines start, however slow the machine.
    sim = ("--clock", "sim", "--start", "2026-11-24T10:00+08:00", "--speed", "60")
    out = run_cli("run", *sim, "--for", "6m", "--poll-interval", "0.1", cwd=folder, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started   demo:002050.SZ:double_ma  fresh" in out.stdout
    assert "started   demo:002050.SZ:breakout  fresh" in out.stdout
    assert "summary: 2 strategies; 2 STOPPED" in out.stdout, out.stdout
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    assert store.latest_snapshot("demo:002050.SZ:breakout").state["bars_seen"] > 0


def test_the_vnpy_accounts_example_runs_two_accounts_with_one_session_each(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "qsm_vnpy.examples.paper_accounts", "--days", "12"],
        cwd=folder, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "wrote config/production.json with the accounts paper-a and paper-b" in made.stdout
    env = {"QSM_CONFIG_DIR": str(folder / "config")}
    assert run_cli("examples", "import", "vnpy-accounts", cwd=folder, env=env).returncode == 0
    out = run_cli("run", "--for", "6s", "--poll-interval", "0.1", cwd=folder, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    opened = [line.split()[4] for line in out.stdout.splitlines() if line.endswith("session opened")]
    assert sorted(opened) == ["paper-a", "paper-b"]  # one session each, five strategies
    assert "summary: 5 strategies; 5 STOPPED" in out.stdout, out.stdout
    listed = {a["account"]: a for a in json.loads(run_cli("accounts", "--json", cwd=folder, env=env).stdout)}
    assert [len(listed[n]["strategies"]) for n in ("paper-a", "paper-b")] == [3, 2]
    assert all(s["positions"] is not None for n in listed for s in listed[n]["strategies"])
