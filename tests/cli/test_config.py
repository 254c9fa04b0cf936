"""``strategy-manager config``: precedence, sources, the store choice, masking, bad files."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from strategy_manager.cli import cli
from tests.conftest import ROOT


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    path = tmp_path / "config"
    path.mkdir()
    monkeypatch.setenv("QSM_CONFIG_DIR", str(path))
    return path


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def report(*args, env=None):
    result = invoke("config", "--show", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


LEVELS = ["env", ".env", "production.json", "default"]


@pytest.mark.parametrize("highest", LEVELS)
def test_each_level_beats_the_ones_below_it(config_dir, highest):
    """The same key at every level from ``highest`` down; the highest one wins."""
    present = LEVELS[LEVELS.index(highest) :]
    env = {"MONGO_DB": None, "QSM_POLL_INTERVAL": None}
    if "production.json" in present:
        (config_dir / "production.json").write_text('{"mongo_db": "from_json", "poll_interval": 3}')
    if ".env" in present:
        (config_dir / ".env").write_text("MONGO_DB=from_dotenv\nQSM_POLL_INTERVAL=2\n")
    if "env" in present:
        env = {"MONGO_DB": "from_env", "QSM_POLL_INTERVAL": "1.5"}
    expected = {
        "env": ("from_env", 1.5),
        ".env": ("from_dotenv", 2.0),
        "production.json": ("from_json", 3.0),
        "default": ("finance", 1.0),
    }[highest]
    settings = report(env=env)["settings"]
    assert (settings["mongo_db"]["value"], settings["poll_interval"]["value"]) == expected
    assert settings["mongo_db"]["source"] == settings["poll_interval"]["source"] == highest


def test_text_report_names_source_files_and_the_embedded_store_and_why(config_dir, tmp_path):
    (config_dir / "production.json").write_text('{"mongo_db": "from_json"}')
    result = invoke("config", env={"MONGO_DB": None})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"  production.json  found    {config_dir / 'production.json'}" in lines
    assert f"  .env             missing  {config_dir / '.env'}" in lines
    data_dir = tmp_path / "data"
    result = invoke("config", env={"MONGO_DB": None, "QSM_DATA_DIR": str(data_dir)})
    assert (
        f"store: embedded SQLite at {data_dir / 'store.sqlite3'} (no MONGO_URI at any level)" in result.stdout
    )
    mongo_db = next(line for line in lines if line.startswith("mongo_db "))
    assert mongo_db.split()[:3] == ["mongo_db", "production.json", "MONGO_DB"]
    assert "from_json" not in result.stdout  # values only with --show


def test_a_fresh_clone_uses_the_embedded_store_with_the_committed_defaults(tmp_path):
    """The repository's own config/: no MONGO_URI anywhere, so the embedded store."""
    result = invoke("--config-dir", str(ROOT / "config"), "config", env={"QSM_DATA_DIR": None})
    assert result.exit_code == 0, result.output
    assert "store: embedded SQLite at .qsm/store.sqlite3 (no MONGO_URI at any level)" in result.stdout
    assert "(from --config-dir)" in result.stdout.splitlines()[0]
    copy = tmp_path / "cfg"
    copy.mkdir()
    shutil.copy(ROOT / "config" / ".env.example", copy / ".env")  # the example must load as it is
    assert invoke("--config-dir", str(copy), "config").exit_code == 0


def test_the_config_dir_option_beats_the_environment_variable(config_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "production.json").write_text('{"mongo_db": "other"}')
    result = invoke("--config-dir", str(other), "config", "--show", "--json", env={"MONGO_DB": None})
    data = json.loads(result.stdout)
    assert data["config_dir"] == str(other) and data["config_dir_source"] == "--config-dir"
    assert data["settings"]["mongo_db"]["value"] == "other"
    assert report()["config_dir_source"] == "QSM_CONFIG_DIR"


def test_a_mongo_uri_selects_mongodb_and_its_password_is_never_printed(config_dir):
    (config_dir / ".env").write_text(
        "MONGO_URI=mongodb://trader:hunter2@db.example:27017/?authSource=admin\n"
    )
    for args in (["config"], ["config", "--show"], ["config", "--json"], ["config", "--show", "--json"]):
        result = invoke(*args, env={"MONGO_URI": None})
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output
    text = invoke("config", env={"MONGO_URI": None}).stdout
    assert (
        f"store: MongoDB at mongodb://***@db.example:27017/?authSource=admin database finance "
        f"(MONGO_URI from {config_dir / '.env'})"
    ) in text
    data = report(env={"MONGO_URI": None})
    assert data["store"] == {
        "kind": "mongodb",
        "location": "mongodb://***@db.example:27017/?authSource=admin database finance",
        "reason": f"MONGO_URI from {config_dir / '.env'}",
    }
    assert data["settings"]["mongo_uri"]["value"] == "mongodb://***@db.example:27017/?authSource=admin"


def test_an_empty_mongo_uri_is_named_as_the_reason_for_the_embedded_store(config_dir):
    assert report(env={"MONGO_URI": ""})["store"]["reason"] == "MONGO_URI is empty in environment"


def test_secret_looking_keys_are_masked(config_dir):
    (config_dir / "production.json").write_text(
        json.dumps(
            {"engine_options": {"vnpy": {"gateway": "CTP", "password": "hunter2", "api_key": "k-123"}}}
        )
    )
    result = invoke("config", "--show")
    assert "hunter2" not in result.stdout and "k-123" not in result.stdout
    options = report()["settings"]["engine_options"]["value"]
    assert options == {"vnpy": {"gateway": "CTP", "password": "***", "api_key": "***"}}


def test_malformed_production_json_is_one_line_naming_file_and_position(config_dir):
    (config_dir / "production.json").write_text('{\n  "mongo_db": "x",\n  "poll_interval": 1,,\n}\n')
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {config_dir / 'production.json'}: line 3 column 22: ")
    assert "Traceback" not in result.output


def test_malformed_dotenv_is_one_line_naming_file_and_line_without_the_value(config_dir):
    (config_dir / ".env").write_text('MONGO_DB=ok\nMONGO_URI="mongodb://u:hunter2@h\nQSM_DATA_DIR=x\n')
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {config_dir / '.env'}: line 2: cannot parse 'MONGO_URI=...'\n"


def test_a_wrongly_typed_value_names_its_origin(config_dir):
    (config_dir / "production.json").write_text('{"poll_interval": "often"}')
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 2
    assert "production.json: key 'poll_interval'" in result.stderr and result.stderr.count("\n") == 1


def test_accounts_come_from_the_environment_and_only_their_engines_are_shown(config_dir):
    accounts = {"ctp-main": {"engine": "vnpy", "gateway": "CTP", "setting": {"密码": "ctp-pass-77"}}}
    env = {"QSM_ACCOUNTS": json.dumps(accounts)}
    result = invoke("config", "--show", env=env)
    assert result.exit_code == 0 and "ctp-pass-77" not in result.output
    shown = report(env=env)["settings"]["accounts"]
    assert shown["value"] == {"ctp-main": {"engine": "vnpy", "gateway": "***", "setting": {"密码": "***"}}}
    assert shown["source"] == "env" and shown["variable"] == "QSM_ACCOUNTS"


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ({"a": {"gateway": "CTP"}}, "account 'a' needs an 'engine'"),
        ({"a": "CTP"}, "account 'a' must be an object (the value is not shown)"),
        ({" a": {"engine": "vnpy"}}, "account name ' a' must be printable text"),
    ],
)
def test_a_malformed_account_is_one_line_naming_it(config_dir, accounts, message):
    (config_dir / "production.json").write_text(json.dumps({"accounts": accounts}))
    result = invoke("config")
    assert result.exit_code == 2 and message in result.output and "CTP" not in result.output
