"""In a fresh process: vnpy runs headless, writes nothing into the user's home or
working directory, prints nothing, leaves the working directory alone, and two
strategies running at once share no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from vn_support import document

SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from strategy_manager.core.classloader import ClassLoader
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import parse_strategy
    from qsm_vnpy import plugin

    assert not any(m.split(".")[0] in ("vnpy", "vnpy_ctastrategy") for m in sys.modules)
    data = Path(sys.argv[1])
    docs = json.loads(sys.argv[2])
    cwd = os.getcwd()
    running = []
    for doc in docs:
        spec = parse_strategy(doc)
        context = EngineContext(spec=spec, data_dir=data / "engines" / "vnpy" / spec.strategy_key,
                                classes=ClassLoader((), ()))
        engine = plugin.qsm_create_engine(spec=spec, context=context)
        plugin.qsm_start_engine(engine=engine, context=context)
        running.append((engine, context))
    finals = []
    for engine, context in running:
        context.join_threads(120)
        finals.append(plugin.qsm_snapshot_engine(engine=engine, context=context)["gateway"]["bars"])
        context.stop_event.set()
        plugin.qsm_stop_engine(engine=engine, context=context)
    print(json.dumps({"cwd_unchanged": os.getcwd() == cwd, "bars": finals,
                      "qt": sorted(m for m in sys.modules if m.startswith(("PySide6", "vnpy.trader.ui")))}))
""")


def test_vnpy_leaves_home_and_working_directory_alone(tmp_path, bars_csv):
    home, work, data = tmp_path / "home", tmp_path / "work", tmp_path / "data"
    home.mkdir()
    work.mkdir()
    docs = [document("a", bars_csv), document("b", bars_csv)]
    env = {**os.environ, "HOME": str(home)}
    env.pop("DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), json.dumps(docs)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"something printed besides the result: {result.stdout!r}"
    outcome = json.loads(lines[0])
    assert outcome == {"cwd_unchanged": True, "bars": [3600, 3600], "qt": []}
    assert list(home.iterdir()) == [] and list(work.iterdir()) == []
    folder = data / "engines" / "vnpy" / "home" / ".vntrader"
    written = sorted(p.name for p in folder.rglob("*"))
    # vnpy's own global settings only: no per-strategy file, no log file
    assert written == ["vt_setting.json", "wechat_setting.json"]
    assert json.loads((folder / "vt_setting.json").read_text())["log.file"] is False


SETTINGS_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from strategy_manager.core.classloader import ClassLoader
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import parse_strategy
    from qsm_vnpy import home, plugin

    def theirs(folder, settings):  # another process on the same data directory wrote last
        (folder / "vt_setting.json").write_text(json.dumps({"datafeed.username": "theirs"}))

    home._write_settings = theirs
    spec = parse_strategy(json.loads(sys.argv[2]))
    context = EngineContext(spec=spec, data_dir=Path(sys.argv[1]) / "engines" / "vnpy" / "k",
                            classes=ClassLoader((), ()),
                            options={"settings": {"datafeed.username": "ours"}})
    plugin.qsm_create_engine(spec=spec, context=context)
    from vnpy.trader.setting import SETTINGS
    print(json.dumps({k: SETTINGS[k] for k in ("datafeed.username", "log.file")}))
""")


def test_engine_options_settings_reach_vnpy_whoever_wrote_the_file_last(tmp_path, bars_csv):
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_SCRIPT, str(tmp_path), json.dumps(document("k", bars_csv))],
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"datafeed.username": "ours", "log.file": False}
