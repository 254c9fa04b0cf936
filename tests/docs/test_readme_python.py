"""The README's "From Python" example runs as shown: it logs the strategy's events
and stops cleanly on Ctrl-C, writing every strategy's final status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index("From Python:") :]
    return re.search(r"```python\n(.*?)```", after, re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_from_python_example_logs_events_and_stops_cleanly_on_ctrl_c(tmp_path):
    data, config = tmp_path / "data", tmp_path / "config"
    config.mkdir()
    env = {
        **os.environ,
        "QSM_DATA_DIR": str(data),
        "QSM_CONFIG_DIR": str(config),
        "QSM_SCHEDULE_MODE": "always",  # whatever day the test runs on
    }
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _example()], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "started default:002050.SZ:ma_cross" in log.read_text(), 30, "the started event logged")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "interrupted: snapshotting and stopping every strategy" in text
    (status,) = open_store(Settings(data_dir=str(data))).read_status()
    assert status.strategy_id == "default:002050.SZ:ma_cross" and status.state == "STOPPED"
