"""No output of the real command line contains a secret: each vnpy gateway key and
each form of MongoDB credential, through config, run, status, state show, logs,
errors, JSON and --debug."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import attrs
import pytest

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

#: Every gateway key the issue names, each with a value found nowhere else.
GATEWAY_SECRETS = {
    "密码": "ctp-密码-Pw7731",
    "授权编码": "AUTH0000CODE4412",
    "用户名": "investor-58812",
    "pwd": "pwd-value-99213",
    "Bearer": "bearer-eyJhbGciOi-6617",
}
#: A vnpy global setting the adapter declares secret.
DATAFEED_SECRET = "datafeed-pass-3309"

ECHO_GATEWAY = textwrap.dedent("""
    import json
    from vnpy.trader.gateway import BaseGateway

    class EchoGateway(BaseGateway):
        '''A gateway that puts its whole setting into its error, as careless ones do.'''

        default_name = "ECHO"
        default_setting = {}
        exchanges = []

        def connect(self, setting):
            raise RuntimeError(f"login refused with {setting!r} / {json.dumps(setting)}")

        def close(self): ...
        def subscribe(self, req): ...
        def send_order(self, req): return ""
        def cancel_order(self, req): ...
        def query_account(self): ...
        def query_position(self): ...
""")

STRATEGY = "u:002050.SZ:echo"


def _outputs(*results: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(r.stdout + r.stderr for r in results)


@pytest.fixture(scope="module")
def gateway_run(tmp_path_factory) -> dict[str, str]:
    """A vnpy strategy whose gateway echoes the operator's secrets in its error, run
    by the real CLI until the refused login is recorded; then every view of it."""
    root = tmp_path_factory.mktemp("secrets")
    imports = root / "imports"
    imports.mkdir()
    (imports / "qsm_echo_gateway.py").write_text(ECHO_GATEWAY)
    config = root / "config"
    config.mkdir()
    (config / "production.json").write_text(
        json.dumps(
            {
                "import_paths": [str(imports)],
                "restart_max": 1,
                "backoff_base": 0.05,
                "backoff_cap": 0.1,
                "poll_interval": 0.1,
                "engine_options": {
                    "vnpy": {
                        "gateways": {"ECHO": GATEWAY_SECRETS},
                        "settings": {"datafeed.password": DATAFEED_SECRET},
                    }
                },
            },
            ensure_ascii=False,
        )
    )
    document = {
        "user_id": "u",
        "symbol": "002050.SZ",
        "strategy_key": "echo",
        "engine": "vnpy",
        "engine_class": "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy",
        "params": {"vnpy": {"gateway": {"name": "ECHO", "class": "qsm_echo_gateway.EchoGateway"}}},
        "schedule": {"mode": "always"},
    }
    (root / "doc.json").write_text(json.dumps([document]))
    env = {"QSM_CONFIG_DIR": str(config), "QSM_DATA_DIR": str(root / "data"), "HOME": str(root)}
    results = [run_cli("strategies", "import", str(root / "doc.json"), env=env)]
    assert results[0].returncode == 0, results[0].stderr
    log = root / "run.log"  # a file, not a pipe: a full pipe would stall the run
    sink = log.open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "--debug", "run"],
        env={**os.environ, **env},
        stdout=sink,
        stderr=sink,
    )
    try:

        def refused() -> bool:  # its account's session retries the login with backoff
            out = run_cli("status", "--json", env=env)
            records = json.loads(out.stdout or "[]")
            return any("login refused with" in (r.get("last_error") or "") for r in records)

        wait_for(refused, 180, "the echoing gateway's strategy to show the refused login")
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
        sink.close()
    store = open_store(Settings(data_dir=str(root / "data")))
    stored = json.dumps([attrs.asdict(r) for r in store.read_status()], default=str, ensure_ascii=False)
    store.close()
    views = {
        "run": log.read_text(),
        "the store's status rows": stored,  # as any reader finds them, with no settings to mask by
        "status": _outputs(run_cli("status", env=env)),
        "status --json": _outputs(run_cli("status", "--json", env=env)),
        "--debug status": _outputs(run_cli("--debug", "status", env=env)),
        "state show": _outputs(run_cli("state", "show", STRATEGY, env=env)),
        "state show --json": _outputs(run_cli("state", "show", STRATEGY, "--json", env=env)),
        "strategies list": _outputs(run_cli("strategies", "list", env=env)),
        "config": _outputs(run_cli("config", env=env)),
        "config --show": _outputs(run_cli("config", "--show", env=env)),
        "config --json --show": _outputs(run_cli("config", "--json", "--show", env=env)),
        "--debug config --show": _outputs(run_cli("--debug", "config", "--show", env=env)),
    }
    return views


def test_the_gateway_run_really_failed_with_the_echoed_setting(gateway_run):
    """The views below are only proof if the secrets did reach the error and the logs."""
    assert "login refused with" in gateway_run["status"]
    assert "login refused with" in gateway_run["run"]
    assert "***" in gateway_run["run"] and "DEBUG" in gateway_run["run"]  # --debug logs
    assert "***" in gateway_run["status --json"]
    assert "login refused with" in gateway_run["the store's status rows"]


@pytest.mark.parametrize("key", [*GATEWAY_SECRETS, "datafeed.password"])
def test_no_view_shows_a_gateway_secret(gateway_run, key):
    secret = GATEWAY_SECRETS.get(key, DATAFEED_SECRET)
    escaped = json.dumps(secret)[1:-1]
    for view, text in gateway_run.items():
        assert secret not in text and escaped not in text, f"{key} shown by {view!r}"


# -- MongoDB URIs -----------------------------------------------------------------------
URI_FORMS = {
    "userinfo": (
        "mongodb://trader:Uinfo-Pass-4410@{host}/?directConnection=true",
        ["Uinfo-Pass-4410", "trader"],
    ),
    "tlsCertificateKeyFilePassword": (
        "mongodb://{host}/?directConnection=true&tlsCertificateKeyFilePassword=KeyFile-Pass-7781",
        ["KeyFile-Pass-7781"],
    ),
    "authMechanismProperties": (
        "mongodb://AKIAEXAMPLEID:aws-secret-key-2291@{host}/?directConnection=true&authMechanism=MONGODB-AWS"
        "&authMechanismProperties=AWS_SESSION_TOKEN:Session-Token-5512",
        ["Session-Token-5512", "aws-secret-key-2291", "AKIAEXAMPLEID"],
    ),
    "typo'd scheme": ("mongodb:/trader:Typo-Pass-6623@{host}/?directConnection=true", ["Typo-Pass-6623"]),
}

COMMANDS = [
    ["config"],
    ["config", "--show"],
    ["config", "--json", "--show"],
    ["--debug", "config", "--show"],
    ["status"],
    ["status", "--json"],
    ["--debug", "status"],
    ["strategies", "list", "--json"],
    ["state", "show", "u:X:k"],
    ["run", "--for", "1s"],
    ["--debug", "run", "--for", "1s"],
]


@pytest.mark.parametrize("form", list(URI_FORMS))
def test_no_output_shows_a_mongodb_credential(mongoeco_uri, form):  # noqa: F811
    template, secrets = URI_FORMS[form]
    uri = template.format(host=urlsplit(mongoeco_uri).netloc)
    env = {"MONGO_URI": uri, "QSM_MONGO_TIMEOUT_MS": "300"}
    for command in COMMANDS:
        result = run_cli(*command, env=env)
        text = result.stdout + result.stderr
        assert "MONGO_URI" in text or "MongoDB" in text or "mongodb" in text, (command, text)
        for secret in secrets:
            assert secret not in text, f"{form}: {secret} shown by {' '.join(command)}:\n{text}"


def test_a_malformed_dotenv_json_value_is_not_echoed(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / ".env").write_text(
        'QSM_ENGINE_OPTIONS={"vnpy": {"gateways": {"CTP": {"密码": "dotenv-Pass-1"}}}\n'
    )
    for command in (["config"], ["--debug", "config", "--show"], ["status"]):
        result = run_cli(*command, env={"QSM_CONFIG_DIR": str(config)})
        assert result.returncode == 2, result.stderr
        assert "engine_options is not valid JSON" in result.stderr
        assert "dotenv-Pass-1" not in result.stdout + result.stderr


def test_production_json_secrets_are_not_echoed_in_type_errors(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "production.json").write_text(json.dumps({"mongo_uri": ["mongodb://u:List-Pass-2@h"]}))
    result = run_cli("config", env={"QSM_CONFIG_DIR": str(config)})
    assert result.returncode == 2
    assert "mongo_uri must be a string" in result.stderr
    assert "List-Pass-2" not in result.stdout + result.stderr


def test_a_uri_without_secrets_is_shown_whole():
    result = run_cli("config", env={"MONGO_URI": "mongodb://db.example:27017/?replicaSet=rs0"})
    assert "store: MongoDB at mongodb://db.example:27017/?replicaSet=rs0 database finance" in result.stdout
