"""Where the store is: the project's .qsm, else the user data directory; a config dir
that is named must exist; read-only commands never create a store."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_cli


@pytest.fixture
def outside(tmp_path):
    """An empty folder outside any project, with data_dir set nowhere."""
    folder = tmp_path / "somewhere"
    folder.mkdir()
    env = {"QSM_DATA_DIR": "", "XDG_DATA_HOME": str(tmp_path / "xdg")}
    return folder, env


def cli_in(folder, env, *args):
    environ = {k: v for k, v in os.environ.items() if k not in ("QSM_DATA_DIR", "QSM_CONFIG_DIR")}
    environ.update({k: v for k, v in env.items() if v})
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "strategy_manager.cli", *args],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["schedule"],
    ["strategies", "list"],
    ["strategies", "export"],
    ["state", "show", "u:S:k"],
    ["strategies", "enable", "u:S:k"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_say_there_is_no_store_and_create_none(outside, command):
    folder, env = outside
    result = cli_in(folder, env, *command)
    store = folder.parent / "xdg" / "quant-strategy-manager" / "store.sqlite3"
    assert result.returncode == 2
    assert result.stderr == (
        f"error: no store at {store}: nothing was imported or run with this configuration "
        "(see 'strategy-manager config')\n"
    )
    assert list(folder.iterdir()) == []  # nothing left in the folder you stand in
    assert not store.parent.exists()


def test_outside_a_project_the_store_is_in_the_user_data_directory(outside):
    folder, env = outside
    store = folder.parent / "xdg" / "quant-strategy-manager" / "store.sqlite3"
    report = json.loads(cli_in(folder, env, "config", "--json").stdout)["store"]
    assert (report["path"], report["exists"]) == (str(store), False)
    text = cli_in(folder, env, "config").stdout
    assert f"store: embedded SQLite at {store} (no MONGO_URI at any level; the user data directory" in text
    assert "  not created yet: 'strategies import' or 'run' creates it" in text

    added = cli_in(folder, env, "strategies", "add", "--symbol", "S", "--strategy-key", "k", "--engine", "demo")
    assert added.returncode == 0, added.stderr
    assert store.is_file() and list(folder.iterdir()) == []
    assert json.loads(cli_in(folder, env, "config", "--json").stdout)["store"]["exists"] is True
    assert "default:S:k" in cli_in(folder, env, "strategies", "list").stdout


@pytest.mark.parametrize("marker", ["config", ".qsm"])
def test_in_a_project_folder_the_store_is_its_qsm_folder(outside, marker):
    folder, env = outside
    (folder / marker).mkdir()
    added = cli_in(folder, env, "strategies", "add", "--symbol", "S", "--strategy-key", "k", "--engine", "demo")
    assert added.returncode == 0, added.stderr
    assert (folder / ".qsm" / "store.sqlite3").is_file()
    assert "store: embedded SQLite at .qsm/store.sqlite3 (no MONGO_URI at any level)\n" in cli_in(
        folder, env, "config"
    ).stdout


def test_the_default_config_dir_may_be_absent_a_named_one_may_not(outside):
    folder, env = outside
    assert cli_in(folder, env, "config").returncode == 0
    missing = cli_in(folder, env, "--config-dir", "conf", "config")
    assert (missing.returncode, missing.stderr) == (2, "error: config directory conf (from --config-dir): does not exist\n")
    (folder / "conf").mkdir()
    assert cli_in(folder, env, "--config-dir", "conf", "config").returncode == 0


def test_the_embedded_store_of_a_named_data_dir_is_created_by_run_only_when_asked(tmp_path):
    data = tmp_path / "data"
    out = run_cli("run", "--for", "0s", env={"QSM_DATA_DIR": str(data)})
    assert out.returncode == 0, out.stderr
    assert (data / "store.sqlite3").is_file()
