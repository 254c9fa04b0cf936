"""The adapter's settings: the ``vnpy`` object inside a document's ``params``.

They live in ``params`` (not beside it) so that changing the gateway or the resume
policy changes the document's runtime fingerprint and recreates the worker. Every
other key of ``params`` is a parameter of the strategy class. The format is
documented in ``qsm_vnpy/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import define, field

from strategy_manager.core.spec import StrategySpec, converter, split_engine_params, structure_section

SETTINGS_KEY = "vnpy"

OnMismatch = Literal["halt", "trust_broker", "trust_snapshot"]


@define(frozen=True)
class GatewaySettings:
    #: The gateway's name in vnpy (``CTP``, ``REPLAY`` ...); see :data:`qsm_vnpy.gateways.KNOWN`.
    name: str
    #: ``package.module.Class`` of a gateway not in the known table.
    cls: str | None = None
    #: What vnpy's ``MainEngine.connect`` passes to the gateway (the keys of its
    #: ``default_setting``), limited to the keys a document may set; the rest, and
    #: every secret, comes from ``engine_options.vnpy.gateways`` (see gateways.py).
    setting: dict[str, Any] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise ValueError(f"gateway name must be a non-empty name, got {self.name!r}")


#: What a strategy's own replay may set (the rest belongs to the replay account).
STREAM_KEYS = ("start", "pace", "hold_after_bars", "history_limit")


@define(frozen=True)
class StreamSettings:
    """One strategy's replay on a replay account: where it starts, how fast it plays."""

    #: Bars before this time are history (served to ``load_bar``); the replay starts here.
    start: str | None = None
    #: Replay speed in bars per second; 0 means as fast as possible.
    pace: float = 0.0
    #: Stop playing after this many bars and wait (until stopped); for tests and demos.
    hold_after_bars: int | None = None
    #: How many trades a snapshot keeps (the newest).
    history_limit: int = 1000

    def __attrs_post_init__(self) -> None:
        if self.start is not None:
            try:
                datetime.fromisoformat(self.start)
            except ValueError:
                raise ValueError(f"start must be an ISO date-time, got {self.start!r}") from None
        if self.pace < 0:
            raise ValueError(f"pace must be 0 (as fast as possible) or positive, got {self.pace}")
        if self.hold_after_bars is not None and self.hold_after_bars < 1:
            raise ValueError(f"hold_after_bars must be at least 1, got {self.hold_after_bars}")
        if self.history_limit < 0:
            raise ValueError(f"history_limit must not be negative, got {self.history_limit}")

    def start_time(self, timezone: str) -> datetime | None:
        if self.start is None:
            return None
        moment = datetime.fromisoformat(self.start)
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


@define(frozen=True)
class ReplayAccountSettings:
    """The ``setting`` of a ``REPLAY`` account: the paper broker and its bar files."""

    #: A folder of ``<symbol>.csv`` files or a pattern holding ``{symbol}`` (the
    #: document's symbol): one file of 1-minute bars per symbol. (A strategy that
    #: runs on its own names its file.)
    csv: str
    #: The time zone of naive times in the files and in ``start``.
    timezone: str = "Asia/Shanghai"
    pricetick: float = 0.01
    size: float = 1.0
    #: symbol -> the position the paper broker reports for it when the first
    #: strategy of the symbol starts (by default what the strategies' paper
    #: positions add up to). Setting it simulates a broker that disagrees.
    positions: dict[str, float] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known time zone") from None
        for name in ("pricetick", "size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.csv:
            raise ValueError("csv must name a folder or a pattern with {symbol}")

    def csv_for(self, symbol: str) -> Path:
        """The file of ``symbol``: the pattern filled in, or ``<folder>/<symbol>.csv``."""
        if "{symbol}" in self.csv:
            return Path(self.csv.replace("{symbol}", symbol))
        folder = Path(self.csv)
        return folder if folder.suffix.lower() == ".csv" and not folder.is_dir() else folder / f"{symbol}.csv"


@define(frozen=True)
class ReplaySettings:
    """The ``setting`` of the ``REPLAY`` gateway of a strategy that runs on its own: a
    file of 1-minute bars played as ticks, and the strategy's own replay."""

    csv: str
    #: Bars before this time are history (served to ``load_bar``); the replay starts here.
    start: str | None = None
    #: The time zone of naive times in the file and in ``start``.
    timezone: str = "Asia/Shanghai"
    pricetick: float = 0.01
    size: float = 1.0
    #: Replay speed in bars per second; 0 means as fast as possible.
    pace: float = 0.0
    #: Stop playing after this many bars and wait (until stopped); for tests and demos.
    hold_after_bars: int | None = None
    #: The position the paper broker reports at connect; by default the snapshot's
    #: (0 on a fresh start). Setting it simulates a broker that disagrees.
    position: float | None = None
    #: How many trades a snapshot keeps (the newest).
    history_limit: int = 1000

    def __attrs_post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known time zone") from None
        if self.start is not None:
            try:
                datetime.fromisoformat(self.start)
            except ValueError:
                raise ValueError(f"start must be an ISO date-time, got {self.start!r}") from None
        for name in ("pricetick", "size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pace < 0:
            raise ValueError(f"pace must be 0 (as fast as possible) or positive, got {self.pace}")
        if self.hold_after_bars is not None and self.hold_after_bars < 1:
            raise ValueError(f"hold_after_bars must be at least 1, got {self.hold_after_bars}")
        if self.history_limit < 0:
            raise ValueError(f"history_limit must not be negative, got {self.history_limit}")

    def start_time(self) -> datetime | None:
        return self.stream().start_time(self.timezone)

    def stream(self) -> StreamSettings:
        return StreamSettings(self.start, self.pace, self.hold_after_bars, self.history_limit)

    def account(self, symbol: str) -> ReplayAccountSettings:
        """The paper broker of a strategy of ``symbol`` on its own: its file, its contract."""
        positions = {symbol: self.position} if self.position is not None else {}
        return ReplayAccountSettings(self.csv, self.timezone, self.pricetick, self.size, positions)


@define(frozen=True)
class AdapterSettings:
    #: The gateway; on an account, the account's (a document may then leave it out).
    gateway: GatewaySettings | None = None
    #: What to do when the restored ``pos`` differs from the broker's position.
    on_mismatch: OnMismatch = "halt"
    #: The vnpy symbol (``rb2501.SHFE``); by default mapped from the document's symbol.
    vt_symbol: str | None = None
    #: Seconds to wait for the gateway's contract after connecting.
    connect_timeout: float = 30.0
    #: Seconds a live gateway gets to report positions before the resume check.
    position_wait: float = 3.0
    #: Seconds the strategy's ``on_init`` (history loading) may take.
    init_timeout: float = 60.0

    def __attrs_post_init__(self) -> None:
        for name in ("connect_timeout", "position_wait", "init_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


converter.register_structure_hook(
    GatewaySettings,
    lambda raw, _t: _gateway(raw),
)


def _gateway(raw: Any) -> GatewaySettings:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    raw = dict(raw)
    if "class" in raw:
        raw["cls"] = raw.pop("class")
    unknown = sorted(set(raw) - {"name", "cls", "setting"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; expected name, class, setting")
    return GatewaySettings(**{k: _typed(k, v) for k, v in raw.items()})


def _typed(key: str, value: Any) -> Any:
    expected = dict if key == "setting" else (str, type(None)) if key == "cls" else str
    if not isinstance(value, expected):
        raise ValueError(f"'{key}' has the wrong type ({type(value).__name__})")
    return value


def split_params(spec: StrategySpec) -> tuple[AdapterSettings, dict[str, Any]]:
    """The adapter's settings and the strategy's own parameters, from ``spec.params``."""
    return split_engine_params(  # type: ignore[no-any-return]
        spec, SETTINGS_KEY, AdapterSettings, "a 'gateway' (see qsm_vnpy's README)"
    )


def replay_settings(setting: dict[str, Any], sid: str) -> ReplaySettings:
    """The replay gateway's setting (the document's under the operator's) structured."""
    where = f"params.{SETTINGS_KEY}.gateway.setting"
    return structure_section(setting, ReplaySettings, sid, where)


def stream_settings(setting: dict[str, Any], sid: str) -> StreamSettings:
    """A strategy's own replay settings on a replay account."""
    where = f"params.{SETTINGS_KEY}.gateway.setting"
    return structure_section(setting, StreamSettings, sid, where)


@define(frozen=True)
class AccountSettings:
    """A vnpy account in the ``accounts`` setting (or derived for a live gateway):
    ``{"engine": "vnpy", "gateway": "CTP", "setting": {...}}``."""

    #: The gateway's name in vnpy (``CTP``, ``REPLAY`` ...).
    gateway: str
    #: ``package.module.Class`` of a gateway not in the known table.
    cls: str | None = None
    #: What ``MainEngine.connect`` passes the gateway (over ``engine_options.vnpy.gateways.<NAME>``);
    #: for ``REPLAY``, the replay account's settings (:class:`ReplayAccountSettings`).
    setting: dict[str, Any] = field(factory=dict)
    #: Seconds the gateway has, after connecting, to report a first contract (a live
    #: gateway that reports none has not logged in).
    connect_timeout: float = 30.0

    def __attrs_post_init__(self) -> None:
        if not self.gateway or not self.gateway.isprintable():
            raise ValueError(f"gateway must be a gateway's name, got {self.gateway!r}")
        if self.connect_timeout < 0:
            raise ValueError(f"connect_timeout must not be negative, got {self.connect_timeout}")


def account_settings(raw: Mapping[str, Any], where: str) -> AccountSettings:
    """An account's settings structured; InvalidStrategy naming ``where`` (the account)."""
    data = dict(raw)
    if "class" in data:
        data["cls"] = data.pop("class")
    return structure_section(data, AccountSettings, where, "accounts")
