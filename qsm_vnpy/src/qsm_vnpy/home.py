"""Import vnpy headless, with its ``.vntrader`` folder under our data directory.

vnpy decides where it writes when ``vnpy.trader.utility`` is first imported: the
working directory's ``.vntrader`` if there is one, otherwise ``~/.vntrader``
(created on the spot). It then reads ``vt_setting.json`` from there, and its logger
adds a console sink and a daily log file. None of that may touch the user's home
or print to our standard output, so the first import happens here, once per
process, with ``HOME`` pointed at ``<data_dir>/engines/vnpy/home`` (under a lock,
restored right after) and a ``vt_setting.json`` written first that switches vnpy's
own logging off. vnpy's log events are forwarded to each strategy's logger instead
(see :mod:`qsm_vnpy.cta`).

vnpy keeps the folder in a module global, so it is one per process; what is per
strategy never goes there: the adapter's CTA engine keeps settings and variables in
memory and hands them to our snapshots, so concurrent strategies share no file.
Processes on the same data directory share the folder: the settings file is
replaced whole, and each process applies its own settings in memory after the
import, whoever wrote the file last.

If vnpy was already imported (by user code, say), its folder is redirected to ours
for everything vnpy writes from then on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

#: What vnpy's global settings are, before ``engine_options.vnpy.settings``.
QUIET_SETTINGS: dict[str, Any] = {"log.active": False, "log.console": False, "log.file": False}

_lock = threading.Lock()
_folder: Path | None = None


def vnpy_folder() -> Path | None:
    """The ``.vntrader`` folder vnpy uses in this process, once prepared."""
    return _folder


def prepare(root: Path, settings: dict[str, Any] | None = None) -> Path:
    """Make vnpy importable without side effects; return its ``.vntrader`` folder.

    ``root`` is the engine's folder under the data directory. ``settings`` are
    vnpy global settings (``database.name``, ``datafeed.name`` ...) applied over
    the quiet defaults. Idempotent: later calls return the first folder.
    """
    global _folder
    with _lock:
        if _folder is not None:
            return _folder
        home = (root / "home").resolve()
        folder = home / ".vntrader"
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {**QUIET_SETTINGS, **(settings or {})}
        # vnpy reads only its log settings at import; the rest (datafeed and database
        # credentials among them) is applied in memory below and never written to disk.
        _write_settings(folder, {k: v for k, v in wanted.items() if k.startswith("log.")})
        if "vnpy.trader.utility" in sys.modules:
            _redirect(folder)
        else:
            _first_import(home, folder)
        from vnpy.trader.setting import SETTINGS

        # Ours, even if another process sharing the data directory wrote its own file.
        SETTINGS.update(wanted)
        _quiet_services()
        _folder = folder
        return folder


def _first_import(home: Path, folder: Path) -> None:
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        import vnpy.trader.setting  # noqa: F401  (reads vt_setting.json)
        import vnpy.trader.utility as utility
        from vnpy.trader.logger import logger
    finally:
        if saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved
    if folder != utility.TEMP_DIR:
        # The working directory had a .vntrader folder, which vnpy prefers; it read
        # that folder's settings and may have added log sinks. Every loguru sink now
        # is vnpy's (its logger removes all others on import), so dropping them is safe.
        logger.remove()
        _redirect(folder)


def _write_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Write ``vt_setting.json`` whole or not at all: another orchestrator process
    on the same data directory may be importing vnpy from this folder right now."""
    partial = folder / f"vt_setting.json.{os.getpid()}"
    partial.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    os.replace(partial, folder / "vt_setting.json")


def _redirect(folder: Path) -> None:
    import vnpy.trader.utility as utility

    utility.TRADER_DIR, utility.TEMP_DIR = folder.parent, folder


def _quiet_services() -> None:
    """vnpy prints to stdout when no datafeed is configured and fails when the
    configured database driver is missing; give it quiet stand-ins instead."""
    import importlib.util

    import vnpy.trader.database as database
    import vnpy.trader.datafeed as datafeed
    from vnpy.trader.setting import SETTINGS

    if datafeed.datafeed is None and not SETTINGS.get("datafeed.name"):
        datafeed.datafeed = datafeed.BaseDatafeed()
    driver = f"vnpy_{SETTINGS.get('database.name', 'sqlite')}"
    if database.database is None and importlib.util.find_spec(driver) is None:
        from qsm_vnpy.nulldb import NullDatabase

        database.database = NullDatabase()
