"""Typed settings and where each value came from.

Precedence, highest first: the process environment, ``config/.env``, ``config/
production.json``, the built-in defaults below. The config directory is the
``--config-dir`` option, else ``QSM_CONFIG_DIR``, else ``./config``; one that is named
must exist, the default may be absent.

``data_dir`` set nowhere is ``.qsm`` in a project folder (the current directory holds
``config/`` or ``.qsm/``), else the user's data directory (platformdirs), so a command
run from any other folder never leaves a store there.

Settings are built once (:func:`load_settings`) and passed down; no other module
reads ``os.environ``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import define, field

from strategy_manager.core.errors import ConfigError

Source = Literal["env", ".env", "production.json", "default"]

DEFAULT_CALENDAR_MAP = {".SH": "XSHG", ".SZ": "XSHG", ".BJ": "XSHG", ".HK": "XHKG", "": "XNYS"}


def _meta(env: str | None = None, doc: str = "") -> dict[str, Any]:
    return {"env": env, "doc": doc}


@define(frozen=True)
class Settings:
    """Every setting. ``metadata['env']`` is the environment variable that sets it."""

    mongo_uri: str | None = field(
        default=None,
        metadata=_meta("MONGO_URI", "MongoDB URI; unset means the embedded SQLite store"),
    )
    mongo_db: str = field(default="finance", metadata=_meta("MONGO_DB", "MongoDB database name"))
    mongo_timeout_ms: int = field(
        default=5000,
        metadata=_meta("QSM_MONGO_TIMEOUT_MS", "server selection timeout before a clear error"),
    )
    strategies_collection: str = field(
        default="watchlist_strategies",
        metadata=_meta("QSM_STRATEGIES_COLLECTION", "the users' strategy documents"),
    )
    snapshots_collection: str = field(
        default="strategy_snapshots",
        metadata=_meta("QSM_SNAPSHOTS_COLLECTION", "engine state snapshots"),
    )
    status_collection: str = field(
        default="strategy_status",
        metadata=_meta("QSM_STATUS_COLLECTION", "runtime status per strategy"),
    )
    leases_collection: str = field(
        default="strategy_leases",
        metadata=_meta("QSM_LEASES_COLLECTION", "ownership lease per strategy"),
    )
    owners_collection: str = field(
        default="strategy_owners",
        metadata=_meta("QSM_OWNERS_COLLECTION", "one heartbeat record per orchestrator process"),
    )
    halts_collection: str = field(
        default="account_halts",
        metadata=_meta("QSM_HALTS_COLLECTION", "halted accounts (strategy-manager accounts halt)"),
    )
    data_dir: str = field(
        default=".qsm",
        metadata=_meta(
            "QSM_DATA_DIR",
            "embedded store file and engines' private folders; unset outside a project folder: "
            "the user data directory",
        ),
    )
    engines: tuple[str, ...] | None = field(
        default=None,
        metadata=_meta("QSM_ENGINES", "engines to load (comma list); unset loads all installed"),
    )
    enable: Mapping[str, bool] = field(
        factory=dict,
        metadata=_meta(
            None,
            "per-engine switches: ENABLE_<ENGINE>=true or false (env, .env), "
            "enable_<engine> or an enable object (production.json)",
        ),
    )
    import_paths: tuple[str, ...] = field(
        default=(),
        metadata=_meta("QSM_IMPORT_PATHS", "folders searched for engine_class modules"),
    )
    engine_class_allow: tuple[str, ...] = field(
        default=(),
        metadata=_meta("QSM_ENGINE_CLASS_ALLOW", "module prefixes engine_class may name (comma list)"),
    )
    poll_interval: float = field(
        default=1.0, metadata=_meta("QSM_POLL_INTERVAL", "seconds between store polls")
    )
    resync_interval: float = field(
        default=30.0, metadata=_meta("QSM_RESYNC_INTERVAL", "seconds between full reconciles")
    )
    snapshot_interval: float = field(
        default=60.0, metadata=_meta("QSM_SNAPSHOT_INTERVAL", "seconds between snapshots")
    )
    snapshot_history: int = field(
        default=20, metadata=_meta("QSM_SNAPSHOT_HISTORY", "snapshots kept per strategy")
    )
    default_calendar: str = field(
        default="XSHG", metadata=_meta("QSM_DEFAULT_CALENDAR", "calendar when none is derived")
    )
    calendar_map: Mapping[str, str] = field(
        factory=lambda: dict(DEFAULT_CALENDAR_MAP),
        metadata=_meta("QSM_CALENDAR_MAP", "symbol suffix to calendar ('' = no suffix)"),
    )
    schedule_mode: str = field(default="calendar", metadata=_meta("QSM_SCHEDULE_MODE", "calendar or always"))
    pre_open_minutes: int = field(
        default=5, metadata=_meta("QSM_PRE_OPEN_MINUTES", "start this long before the open")
    )
    post_close_minutes: int = field(
        default=5, metadata=_meta("QSM_POST_CLOSE_MINUTES", "stop this long after the close")
    )
    lunch_break: str = field(
        default="keep_running", metadata=_meta("QSM_LUNCH_BREAK", "keep_running or pause")
    )
    calendar_end_policy: str = field(
        default="weekdays",
        metadata=_meta("QSM_CALENDAR_END_POLICY", "past a calendar's last session: weekdays or stop"),
    )
    holidays: Mapping[str, tuple[str, ...]] = field(
        factory=dict,
        metadata=_meta("QSM_HOLIDAYS", "extra closed dates per calendar, JSON object"),
    )
    restart_max: int = field(
        default=5, metadata=_meta("QSM_RESTART_MAX", "restarts in restart_window before FAILED")
    )
    restart_window: float = field(
        default=300.0, metadata=_meta("QSM_RESTART_WINDOW", "seconds over which restarts count")
    )
    backoff_base: float = field(
        default=1.0, metadata=_meta("QSM_BACKOFF_BASE", "first restart delay cap, seconds")
    )
    backoff_cap: float = field(
        default=60.0, metadata=_meta("QSM_BACKOFF_CAP", "longest restart delay, seconds")
    )
    stop_timeout: float = field(
        default=10.0, metadata=_meta("QSM_STOP_TIMEOUT", "seconds an engine gets to stop")
    )
    lease_seconds: float = field(
        default=15.0, metadata=_meta("QSM_LEASE_SECONDS", "ownership lease of a strategy, seconds")
    )
    lease_renew_seconds: float = field(
        default=2.0,
        metadata=_meta(
            "QSM_LEASE_RENEW_SECONDS",
            "seconds between lease renewals; lease_seconds is at least 3 times this",
        ),
    )
    lease_margin_seconds: float | None = field(
        default=None,
        metadata=_meta(
            "QSM_LEASE_MARGIN_SECONDS",
            "a process stops its engines this long before its lease could expire "
            "(unset: a third of lease_seconds); covers clock skew between hosts",
        ),
    )
    on_lease_loss: str = field(
        default="stop",
        metadata=_meta(
            "QSM_ON_LEASE_LOSS",
            "stop (engines stop when leases cannot be renewed) or keep_running "
            "(unsafe with more than one orchestrator)",
        ),
    )
    start_timeout: float = field(
        default=120.0,
        metadata=_meta("QSM_START_TIMEOUT", "seconds create, restore and start may take together"),
    )
    snapshot_timeout: float = field(
        default=10.0, metadata=_meta("QSM_SNAPSHOT_TIMEOUT", "seconds a snapshot hook may take")
    )
    hook_threads: int = field(default=16, metadata=_meta("QSM_HOOK_THREADS", "threads that run engine hooks"))
    engine_options: Mapping[str, Mapping[str, Any]] = field(
        factory=dict,
        metadata=_meta("QSM_ENGINE_OPTIONS", "per-engine options, JSON object by engine name"),
    )
    accounts: Mapping[str, Mapping[str, Any]] = field(
        factory=dict,
        metadata=_meta(
            "QSM_ACCOUNTS",
            "broker accounts strategies share a session of, JSON object by account name: "
            '{"engine": ..., connection settings}; every value but engine is masked',
        ),
    )
    session_grace_seconds: float = field(
        default=7200.0,
        metadata=_meta(
            "QSM_SESSION_GRACE_SECONDS",
            "an account's session stays open this long after its last strategy stopped "
            "(a lunch break does not reconnect)",
        ),
    )
    http_listen: str | None = field(
        default=None,
        metadata=_meta(
            "QSM_HTTP_LISTEN",
            "host:port where run serves the HTTP API, dashboard and metrics (needs the web extra); "
            "unset: no server",
        ),
    )
    http_token: str | None = field(
        default=None,
        metadata=_meta(
            "QSM_HTTP_TOKEN",
            "bearer token the HTTP API's writes need (and its reads with http_auth_reads); masked everywhere",
        ),
    )
    http_auth_reads: bool = field(
        default=False,
        metadata=_meta("QSM_HTTP_AUTH_READS", "the HTTP API's reads and /metrics need the token too"),
    )
    executor: str = field(
        default="threads",
        metadata=_meta(
            "QSM_EXECUTOR",
            "threads (this process runs every strategy) or ray (strategies spread over a Ray "
            "cluster's nodes; needs the ray extra)",
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=_meta("QSM_RAY_ADDRESS", "the Ray cluster executor ray joins: host:port, or auto"),
    )

    @property
    def store_kind(self) -> str:
        return "mongodb" if self.mongo_uri else "embedded"

    @property
    def embedded_path(self) -> Path:
        return Path(self.data_dir) / "store.sqlite3"

    @property
    def lease_margin(self) -> float:
        """How long before its lease expires a process stops its engines."""
        return self.lease_seconds / 3 if self.lease_margin_seconds is None else self.lease_margin_seconds

    @property
    def fence_seconds(self) -> float:
        """How long after a successful renewal was sent a process may act on its leases."""
        return self.lease_seconds - self.lease_margin

    def engine_enabled(self, name: str) -> bool:
        """An engine loads when the ``engines`` list (if set) names it, unless switched off."""
        switch = self.enable.get(name.lower())
        if switch is not None:
            return switch
        return self.engines is None or name in self.engines


@define(frozen=True)
class LoadedSettings:
    settings: Settings
    #: setting name -> the source its value came from
    sources: Mapping[str, Source]
    config_dir: Path
    #: file name -> found (True) or missing (False)
    files: Mapping[str, bool]
    #: how the config directory was chosen: "--config-dir", "QSM_CONFIG_DIR" or "default"
    config_dir_source: str = "default"
    #: why ``data_dir`` is what it is, when no source set it: "project folder" or "user data directory"
    data_dir_default: str | None = None


_FIELDS = {f.name: f for f in attrs.fields(Settings)}
_BY_ENV = {f.metadata["env"]: f.name for f in attrs.fields(Settings) if f.metadata.get("env")}
_ENABLE = re.compile(r"^ENABLE_([A-Z0-9_]+)$")


def find_config_dir(option: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    if option:
        return Path(option)
    if environ.get("QSM_CONFIG_DIR"):
        return Path(environ["QSM_CONFIG_DIR"])
    return Path("config")


def default_data_dir() -> tuple[str, str]:
    """``data_dir`` when no source sets it, and why: ``.qsm`` in a project folder (the
    current directory holds ``config/`` or ``.qsm/``), else the user data directory."""
    if Path("config").is_dir() or Path(".qsm").is_dir():
        return ".qsm", "project folder"
    import platformdirs

    return platformdirs.user_data_dir("quant-strategy-manager", appauthor=False), "user data directory"


def load_settings(
    config_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from all four levels; raises ConfigError on a malformed file
    or a named config directory that does not exist."""
    environ = os.environ if environ is None else environ
    directory = find_config_dir(config_dir, environ)
    chosen_by = (
        "--config-dir" if config_dir else "QSM_CONFIG_DIR" if environ.get("QSM_CONFIG_DIR") else "default"
    )
    if chosen_by != "default" and not directory.is_dir():
        raise ConfigError(f"config directory {directory} (from {chosen_by}): does not exist")
    json_path = directory / "production.json"
    env_path = directory / ".env"
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    enable: dict[str, bool] = {}
    enable_sources: list[Source] = []

    def put(name: str, raw: Any, source: Source, origin: str) -> None:
        values[name] = _coerce(name, raw, origin)
        sources[name] = source

    if json_path.is_file():
        for key, raw in _read_json(json_path).items():
            if key.startswith("enable_") and isinstance(raw, bool):
                enable[key[len("enable_") :]] = raw
                enable_sources.append("production.json")
            elif key == "enable" and isinstance(raw, dict):
                for name, on in raw.items():
                    enable[str(name).lower()] = _coerce_bool(on, f"{json_path}: enable.{name}")
                enable_sources.append("production.json")
            elif key in _FIELDS and key != "enable":
                put(key, raw, "production.json", f"{json_path}: key '{key}'")
            else:
                raise ConfigError(f"{json_path}: unknown key '{key}'")
    for layer, source in ((_read_dotenv(env_path), ".env"), (environ, "env")):
        for var, raw in layer.items():
            if var in _BY_ENV:
                put(_BY_ENV[var], raw, source, f"{source} variable {var}")  # type: ignore[arg-type]
            elif match := _ENABLE.match(var):
                enable[match.group(1).lower()] = _coerce_bool(raw, f"{source} variable {var}")
                enable_sources.append(source)  # type: ignore[arg-type]
    if enable:
        values["enable"] = enable
        sources["enable"] = enable_sources[-1]
    data_dir_default = None
    if "data_dir" not in values:
        values["data_dir"], data_dir_default = default_data_dir()
    for name in _FIELDS:
        sources.setdefault(name, "default")
    try:
        settings = Settings(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
    validate_settings(settings)
    return LoadedSettings(
        settings=settings,
        sources=sources,
        config_dir=directory,
        files={"production.json": json_path.is_file(), ".env": env_path.is_file()},
        config_dir_source=chosen_by,
        data_dir_default=data_dir_default,
    )


DAY = 86_400.0
#: (setting, lowest, highest): every number must be finite and in its range.
NUMERIC_RANGES: tuple[tuple[str, float, float], ...] = (
    ("mongo_timeout_ms", 1, 600_000),
    ("poll_interval", 0, 3600),
    ("resync_interval", 0, DAY),
    ("snapshot_interval", 0, DAY),
    ("snapshot_history", 1, 100_000),
    ("pre_open_minutes", 0, 1440),
    ("post_close_minutes", 0, 1440),
    ("restart_max", 0, 1_000_000),
    ("restart_window", 0, 30 * DAY),
    ("backoff_base", 0, DAY),
    ("backoff_cap", 0, DAY),
    ("stop_timeout", 0, 3600),
    ("lease_seconds", 0, DAY),
    ("lease_renew_seconds", 0, DAY),
    ("lease_margin_seconds", 0, DAY),
    ("start_timeout", 0, DAY),
    ("snapshot_timeout", 0, 3600),
    ("hook_threads", 1, 1024),
    ("session_grace_seconds", 0, 7 * DAY),
)
POSITIVE = {
    "poll_interval",
    "resync_interval",
    "snapshot_interval",
    "restart_window",
    "backoff_base",
    "backoff_cap",
    "stop_timeout",
    "lease_seconds",
    "lease_renew_seconds",
    "lease_margin_seconds",
    "start_timeout",
    "snapshot_timeout",
}


def validate_settings(s: Settings) -> None:
    """ConfigError naming the setting unless every value is usable (finite, in range, consistent)."""
    choices = {
        "schedule_mode": ("calendar", "always"),
        "lunch_break": ("keep_running", "pause"),
        "calendar_end_policy": ("weekdays", "stop"),
        "on_lease_loss": ("stop", "keep_running"),
        "executor": ("threads", "ray"),
    }
    for name, allowed in choices.items():
        if getattr(s, name) not in allowed:
            raise ConfigError(
                f"setting {name}: must be one of {', '.join(allowed)}, got {getattr(s, name)!r}"
            )
    for name, low, high in NUMERIC_RANGES:
        value = getattr(s, name)
        if value is None:
            continue
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigError(f"setting {name}: must be a number from {low:g} to {high:g}, got {value}")
        if name in POSITIVE and value <= 0:
            raise ConfigError(f"setting {name}: must be positive, got {value}")
    _validate_accounts(s.accounts)
    if s.backoff_cap < s.backoff_base:
        raise ConfigError(
            f"setting backoff_cap: must be at least backoff_base ({s.backoff_base:g}), got {s.backoff_cap:g}"
        )
    if s.lease_seconds < 3 * s.lease_renew_seconds:
        raise ConfigError(
            f"setting lease_seconds: must be at least 3 x lease_renew_seconds "
            f"({3 * s.lease_renew_seconds:g}), got {s.lease_seconds:g}"
        )
    if s.fence_seconds < 2 * s.lease_renew_seconds:
        raise ConfigError(
            f"setting lease_margin_seconds: leaves {s.fence_seconds:g}s of lease_seconds, less than two "
            f"renewals ({2 * s.lease_renew_seconds:g}s); lower it or raise lease_seconds"
        )


#: The longest account name; names are shown in status lines and logs.
MAX_ACCOUNT_NAME = 200


def valid_account_name(name: Any) -> bool:
    """A name an account may have: printable text without surrounding blanks."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_ACCOUNT_NAME
        and name.isprintable()
        and name.strip() == name
    )


def _validate_accounts(accounts: Mapping[str, Any]) -> None:
    """ConfigError naming the account unless each is an object naming its engine.
    Values are never echoed: they hold credentials."""
    for name, definition in accounts.items():
        if not valid_account_name(name):
            raise ConfigError(
                f"setting accounts: account name {str(name)[:40]!r} must be printable text of at most "
                f"{MAX_ACCOUNT_NAME} characters without surrounding blanks"
            )
        if not isinstance(definition, Mapping):
            raise ConfigError(
                f"setting accounts: account {name!r} must be an object (the value is not shown)"
            )
        engine = definition.get("engine")
        if not isinstance(engine, str) or not engine:
            raise ConfigError(
                f"setting accounts: account {name!r} needs an 'engine' naming the engine of its strategies"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deep") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    import io

    result: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            text = binding.original.string.strip()
            # Never echo a value: the line may hold a password.
            shown = text.split("=", 1)[0][:40] + "=..." if "=" in text else text[:20]
            raise ConfigError(f"{path}: line {line}: cannot parse {shown!r}")
        if binding.key is not None and binding.value is not None:
            result[binding.key] = binding.value
    return result


def _coerce_bool(raw: Any, origin: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{origin}: expected true or false (the value is not shown)")


def _coerce(name: str, raw: Any, origin: str) -> Any:
    """Turn a JSON value or an environment string into the field's type, strictly."""
    kind = str(_FIELDS[name].type)  # annotations are strings here
    text = isinstance(raw, str)
    try:
        if kind == "bool":
            return _coerce_bool(raw, origin)
        if kind in ("int",):
            value = int(raw) if text else raw
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError
            return value
        if kind in ("float", "float | None"):
            if (raw is None or (text and not raw.strip())) and "None" in kind:
                return None
            value = float(raw) if text else raw
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind in ("str", "str | None"):
            if raw is None and "None" in kind:
                return None
            if not isinstance(raw, str):
                raise ValueError
            return raw if raw or "None" not in kind else None
        if kind.startswith("tuple"):
            items = _split_list(raw) if text else raw
            if items is None and "None" in kind:
                return None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(items)
        # Mappings: JSON objects, given as JSON text in the environment.
        value = json.loads(raw) if text else raw
        if not isinstance(value, dict):
            raise ValueError
        if name == "holidays":
            return {cal: tuple(days) for cal, days in value.items()}
        return value
    except json.JSONDecodeError as exc:
        # Never echo the value: it may hold a password.
        raise ConfigError(
            f"{origin}: {name} is not valid JSON (column {exc.colno}: {exc.msg}; the value is not shown)"
        ) from None
    except RecursionError:
        raise ConfigError(f"{origin}: {name} is nested too deep") from None
    except (ValueError, TypeError):
        expected = _EXPECTED.get(kind, "a JSON object")
        raise ConfigError(f"{origin}: {name} must be {expected} (the value is not shown)") from None


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "str | None": "a string",
    "tuple[str, ...]": "a list of strings",
    "tuple[str, ...] | None": "a list of strings",
}


def _split_list(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        value = json.loads(raw)
        if not isinstance(value, list):
            raise ValueError
        return value
    separator = os.pathsep if ";" in raw or (os.pathsep == ":" and ":" in raw) else ","
    return [part.strip() for part in raw.split(separator) if part.strip()]
