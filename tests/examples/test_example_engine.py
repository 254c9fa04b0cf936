"""examples/qsm-example-engine, installed with pip like any third-party adapter,
passes its own tests (the conformance kit) and runs under the orchestrator by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import ROOT, pip_install_target, run_cli

EXAMPLE = ROOT / "examples" / "qsm-example-engine"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return pip_install_target(tmp_path_factory.mktemp("site"), EXAMPLE)


def test_its_own_tests_pass_against_the_installed_copy(site, tmp_path):
    # Run from a folder outside the repository so nothing but the installed copy is found.
    tests = tmp_path / "tests"
    subprocess.run(["cp", "-r", str(EXAMPLE / "tests"), str(tests)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed" in result.stdout


def test_the_orchestrator_runs_it_by_name(site):
    env = {"PYTHONPATH": str(site)}
    engines = {e["name"]: e for e in json.loads(run_cli("engines", "--json", env=env).stdout)}
    assert engines["example"]["status"] == "ok"
    assert engines["example"]["distribution"] == "qsm-example-engine"

    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    store.upsert_strategy(
        {
            "user_id": "u",
            "symbol": "600000.SH",
            "strategy_key": "grid",
            "engine": "example",
            "params": {"interval": 0.001},
            "schedule": {"mode": "always"},
        }
    )
    out = run_cli("run", "--for", "2s", "--poll-interval", "0.1", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started   u:600000.SH:grid  fresh" in out.stdout
    assert "u:600000.SH:grid                         STOPPED   starts=1" in out.stdout
    snapshot = store.latest_snapshot("u:600000.SH:grid")
    assert snapshot is not None and snapshot.engine == "example"
    assert snapshot.state["tick"] > 100
