"""The host without Ray: an orchestrator that runs what it is assigned, latest version
wins; and Ray stays out of every process that does not choose ``executor: ray``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from strategy_manager.core.errors import ConfigError
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.scaleout.host import StrategyHost
from tests.conftest import run_cli, wait_for


def _settings(tmp_path) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"), poll_interval=0.05, lease_seconds=1.5, lease_renew_seconds=0.25
    )


def _running(store) -> set[str]:
    return {r.strategy_id for r in store.read_status() if r.state == "RUNNING"}


def test_a_host_runs_exactly_its_assignment_and_an_older_version_never_wins(tmp_path):
    settings = _settings(tmp_path)
    store = open_store(settings)
    for i in range(3):
        store.upsert_strategy(
            {
                "user_id": "u",
                "symbol": f"S{i}",
                "strategy_key": "k",
                "engine": "demo",
                "schedule": {"mode": "always"},
            }
        )
    host = StrategyHost(settings, node="n1", token="tok")
    try:
        assert host.ready()["owner"].endswith(":tok")
        assert host.assign(["u:S0:k", "u:S1:k"], version=2) == 2
        assert host.assign(["u:S2:k"], version=1) == 2  # late, and ignored
        wait_for(lambda: _running(store) == {"u:S0:k", "u:S1:k"}, 20, "the assignment running")
        assert host.assignment() == (2, ["u:S0:k", "u:S1:k"])
        assert host.counts() == {"RUNNING": 2}
        owner = next(o for o in store.read_owners() if o.owner == host.ready()["owner"])
        assert owner.details == {"executor": "ray", "ray_node": "n1"}
        host.assign(["u:S1:k", "u:S2:k"], version=3)
        wait_for(lambda: _running(store) == {"u:S1:k", "u:S2:k"}, 20, "the new assignment running")
    finally:
        assert host.stop() == "stopped"
    assert host.until_ended() == "stopped"


def test_a_host_on_another_machine_refuses_an_embedded_store(tmp_path):
    with pytest.raises(ConfigError, match=r"embedded store .* is a file on the driver's machine.*MONGO_URI"):
        StrategyHost(_settings(tmp_path), node="n1", token="tok", driver_boot_id="another-machine")


def test_a_threads_run_and_every_module_but_the_drivers_ray_calls_import_no_ray(tmp_path):
    code = textwrap.dedent(
        """
        import pkgutil, sys, importlib
        import strategy_manager
        from strategy_manager.cli import cli
        cli.main(["run", "--for", "0.3s"], standalone_mode=False)
        for info in pkgutil.walk_packages(strategy_manager.__path__, "strategy_manager."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
        print("ray" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_executor_ray_without_ray_installed_says_how_to_install_it():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None  # as if it were not installed
        from strategy_manager.cli import main
        sys.argv = ["strategy-manager", "run", "--executor", "ray", "--ray-address", "127.0.0.1:1"]
        main()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (out.returncode, out.stderr.strip()) == (
        2,
        "error: executor ray: Ray is not installed; pip install 'quant-strategy-manager[ray]'",
    )


def test_executor_ray_needs_an_address_the_system_clock_and_no_http_server():
    no_address = run_cli("run", "--executor", "ray")
    assert no_address.returncode == 2
    assert "executor ray needs the cluster's address: --ray-address host:port" in no_address.stderr
    sim = run_cli(
        "run",
        "--executor",
        "ray",
        "--ray-address",
        "auto",
        "--clock",
        "sim",
        "--start",
        "2026-11-24T09:00+08:00",
    )
    assert sim.returncode == 2 and "--clock sim runs in one process" in sim.stderr
    http = run_cli("run", "--executor", "ray", "--ray-address", "auto", "--http", "127.0.0.1:0")
    assert http.returncode == 2 and "with --executor ray the strategies run in the hosts" in http.stderr
    bad = run_cli("run", env={"QSM_EXECUTOR": "dask"})
    assert bad.returncode == 2 and "setting executor: must be one of threads, ray, got 'dask'" in bad.stderr
