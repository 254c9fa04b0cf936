"""``run --http`` from the command line: it serves while it runs, says where, refuses a
bad address in one line, and ``run`` without it imports none of the web stack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for

WEB_MODULES = ("starlette", "uvicorn", "prometheus_client", "anyio", "h11", "strategy_manager.web")


def seed() -> None:
    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    store.upsert_strategy(
        {"user_id": "u", "symbol": "AAA", "strategy_key": "k", "engine": "demo", "schedule": {"mode": "always"}}
    )
    store.close()


def test_run_without_http_imports_none_of_the_web_stack():
    seed()
    code = (
        "import sys\n"
        "from strategy_manager.cli import cli\n"
        "try:\n"
        "    cli.main(['run', '--for', '1s', '-q'], standalone_mode=False)\n"
        "finally:\n"
        f"    print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_MODULES!r} or m.startswith('strategy_manager.web')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    # and the same program with --http does import them: the check can fail
    served = code.replace("'-q']", "'-q', '--http', '127.0.0.1:0']")
    out = subprocess.run([sys.executable, "-c", served], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert "uvicorn" in out.stdout and "strategy_manager.web.server" in out.stdout


def test_run_http_serves_while_it_runs_and_says_where():
    seed()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "run", "--for", "60s", "--events", "json", "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "QSM_POLL_INTERVAL": "0.1"},
    )
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "http":
                url = event["url"]
                break
        assert url and url.startswith("http://127.0.0.1:")

        def running():
            items = httpx.get(f"{url}/api/strategies").json()["items"]
            return items and items[0]["state"] == "RUNNING"

        wait_for(running, 20, "u:AAA:k RUNNING through the API")
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_bad_or_busy_listen_address_is_one_line_and_exit_2():
    seed()
    out = run_cli("run", "--for", "1s", "--http", "127.0.0.1:http")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: http_listen '127.0.0.1:http': expected host:port such as 127.0.0.1:8650"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("run", "--for", "1s", "--http", f"127.0.0.1:{port}")
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"error: http_listen 127.0.0.1:{port}: cannot listen:")


def test_the_setting_http_listen_turns_the_server_on(tmp_path):
    seed()
    out = run_cli("run", "--for", "1s", env={"QSM_HTTP_LISTEN": "127.0.0.1:0"})
    assert out.returncode == 0, out.stderr
    assert "http: dashboard http://127.0.0.1:" in out.stdout


def test_config_show_masks_the_http_token():
    out = run_cli("config", "--show", "--json", env={"QSM_HTTP_TOKEN": "tok-visible-never"})
    assert out.returncode == 0, out.stderr
    assert "tok-visible-never" not in out.stdout
    assert '"***"' in out.stdout
