"""Where the command's log records go, how much of them, and in which format.

Level: warnings by default; ``-v`` info, ``-vv`` (or ``--debug``) debug; ``-q``
errors only. Format: ``text`` (one line: time, level, logger, message) or ``json``
(one object per line: time, level, logger, message, strategy_id when the record
has one, exception text when there is one). Destination: stderr, or ``--log-file``
(appended to).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from strategy_manager.core.errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        strategy_id = getattr(record, "strategy_id", None)
        if strategy_id is not None:
            data["strategy_id"] = strategy_id
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def level_for(verbose: int, quiet: int, debug: bool) -> int:
    if debug or verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    if quiet:
        return logging.ERROR
    return logging.WARNING


def configure(
    level: int, log_format: str, log_file: str | None, mask: logging.Filter | None = None
) -> None:
    """Send the root logger's records to one handler, as asked (through ``mask``)."""
    if log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--log-file {log_file}: cannot open: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    if mask is not None:
        handler.addFilter(mask)
    handler._qsm_cli = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):  # an earlier invocation's in the same process (tests)
        if getattr(old, "_qsm_cli", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)


def log_file_set() -> bool:
    """Whether this invocation's log records go to a file (``--log-file``)."""
    handlers = logging.getLogger().handlers
    return any(getattr(h, "_qsm_cli", False) and isinstance(h, logging.FileHandler) for h in handlers)
