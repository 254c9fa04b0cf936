"""The adapter's settings: the ``backtrader`` object inside a document's ``params``.

They live in ``params`` (not beside it) so that changing the feed, the cash or the
commission changes the document's runtime fingerprint and recreates the worker.
Every other key of ``params`` is a parameter of the strategy class. The format is
documented in ``qsm_backtrader/README.md``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from attrs import define, field

from strategy_manager.core.spec import StrategySpec, converter, split_engine_params

SETTINGS_KEY = "backtrader"

Timeframe = Literal[
    "ticks", "microseconds", "seconds", "minutes", "days", "weeks", "months", "years"
]


def _timeframe(raw: Any, _type: Any) -> str | None:
    """An optional timeframe, refused with the list of names (as a plain Literal is)."""
    if raw is None or raw in get_args(Timeframe):
        return raw  # type: ignore[no-any-return]
    raise ValueError("must be one of " + ", ".join(repr(name) for name in get_args(Timeframe)))


converter.register_structure_hook(Timeframe | None, _timeframe)


@define(frozen=True)
class FactoryRef:
    """A callable named ``package.module:name``, called with ``kwargs``."""

    factory: str
    kwargs: dict[str, Any] = field(factory=dict)


@define(frozen=True)
class FeedSettings:
    #: Exactly one of these four says where the bars come from.
    csv: str | None = None
    parquet: str | None = None
    factory: str | None = None
    #: Keyword arguments of ``getdata`` of the account's shared store (``{"dataname": "AAPL"}``).
    store: dict[str, Any] | None = None
    #: Keyword arguments for ``factory``.
    kwargs: dict[str, Any] = field(factory=dict)
    #: Extra parameters for backtrader's CSV or pandas feed class (``dtformat`` ...).
    reader: dict[str, Any] = field(factory=dict)
    #: The bars' timeframe; unset means days, which a CSV file of intraday bars refuses.
    timeframe: Timeframe | None = None
    compression: int = 1
    #: Replay speed in bars per second; 0 means as fast as possible.
    pace: float = 0.0
    #: Stop processing after this many bars and wait (until stopped); for tests and demos.
    hold_after_bars: int | None = None

    def __attrs_post_init__(self) -> None:
        sources = [name for name in ("csv", "parquet", "factory") if getattr(self, name)]
        sources += ["store"] if self.store is not None else []
        if len(sources) != 1:
            raise ValueError(
                f"needs exactly one of 'csv', 'parquet', 'factory' or 'store', got {sources or 'none'}"
            )
        if self.compression < 1:
            raise ValueError(f"compression must be at least 1, got {self.compression}")
        if self.pace < 0:
            raise ValueError(f"pace must be 0 (as fast as possible) or positive, got {self.pace}")
        if self.hold_after_bars is not None and self.hold_after_bars < 1:
            raise ValueError(f"hold_after_bars must be at least 1, got {self.hold_after_bars}")


@define(frozen=True)
class AdapterSettings:
    feed: FeedSettings
    cash: float = 10000.0
    #: Keyword arguments for ``broker.setcommission`` (``commission``, ``margin``, ``mult`` ...).
    commission: dict[str, Any] = field(factory=dict)
    sizer: FactoryRef | None = None
    #: Parameters of backtrader's ``BackBroker`` (``coc``, ``slip_perc`` ...), but cash.
    broker: dict[str, Any] = field(factory=dict)
    #: Parameters of ``Cerebro`` (``stdstats``, ``runonce``, ``exactbars`` ...).
    cerebro: dict[str, Any] = field(factory=dict)
    #: How many finished-order records a snapshot keeps (the newest).
    history_limit: int = 1000

    def __attrs_post_init__(self) -> None:
        if self.cash < 0:
            raise ValueError(f"cash must not be negative, got {self.cash}")
        if self.history_limit < 0:
            raise ValueError(f"history_limit must not be negative, got {self.history_limit}")


def split_params(spec: StrategySpec) -> tuple[AdapterSettings, dict[str, Any]]:
    """The adapter's settings and the strategy's own parameters, from ``spec.params``."""
    return split_engine_params(  # type: ignore[no-any-return]
        spec, SETTINGS_KEY, AdapterSettings, "a 'feed' (see qsm_backtrader's README)"
    )


@define(frozen=True)
class AccountSettings:
    """A backtrader account in the ``accounts`` setting:
    ``{"engine": "backtrader", "store": {"factory": "package.module:Store", "kwargs": {...}}}``."""

    #: The store every strategy of the account gets its live feeds from.
    store: FactoryRef
