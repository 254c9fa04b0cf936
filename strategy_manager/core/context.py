"""EngineContext: what the core hands every hook of one strategy's engine."""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define, field

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.errors import ClassRefused
from strategy_manager.core.spec import StrategySpec

if TYPE_CHECKING:
    from strategy_manager.core.settings import Settings

log = logging.getLogger("strategy_manager.engine")

T = TypeVar("T")


class StrategyLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Puts the strategy id in front of every message and in ``record.strategy_id``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('strategy_id')}] {msg}", kwargs


def safe_dirname(strategy_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", strategy_id)


def strategy_dir(data_dir: str | Path, engine: str, strategy_id: str) -> Path:
    """``<data_dir>/engines/<engine>/<strategy>``: a strategy's private folder."""
    return _engine_dir(str(data_dir), engine) / safe_dirname(strategy_id)


@functools.lru_cache(maxsize=256)
def _engine_dir(data_dir: str, engine: str) -> Path:
    return Path(data_dir) / "engines" / engine


class Fence:
    """Whether one engine may still act. Latched: once down, it stays down for that
    engine, even if the lease later comes back (a new engine gets a new fence).

    ``on_latch`` is called (from the engine's thread) when the fence goes down by its
    own check, not when it is revoked: the engine met its fence and may have refused
    an order, so it is restarted once its lease is good again (see :meth:`recoverable`).
    """

    def __init__(
        self, check: Callable[[], bool] = lambda: True, on_latch: Callable[[], None] | None = None
    ) -> None:
        self._check = check
        self._on_latch = on_latch
        self._down = False
        self._revoked = False

    def __call__(self) -> bool:
        if self._down:
            return False
        if self._check():
            return True
        self._down = True
        if self._on_latch is not None:
            self._on_latch()
        return False

    def revoke(self) -> None:
        self._revoked = self._down = True

    @property
    def down(self) -> bool:
        return self._down

    def recoverable(self) -> bool:
        """Down by its own check, which would pass now: the engine met its fence while a
        renewal was late, the lease is good again, and a new engine may take over."""
        return self._down and not self._revoked and self._check()


@define(frozen=True)
class Account:
    """A broker account whose strategies share one session (see the ``accounts`` setting)."""

    name: str
    #: The engine of its strategies.
    engine: str
    #: Its settings but ``engine``: connection settings and credentials, from the
    #: operator's ``accounts`` setting, or what the adapter derived for a default
    #: account (``derived``). Never shown unmasked.
    settings: Mapping[str, Any] = field(factory=dict)
    #: The adapter named it for documents without ``account`` (``qsm_session_account``).
    derived: bool = False


@define(frozen=True)
class Member:
    """Another strategy of the same account, as the core knew it when this one started."""

    spec: StrategySpec
    #: Its latest stored snapshot (None: it has none, or it could not be read).
    snapshot: dict[str, Any] | None = None


@define
class SessionContext:
    """What the core hands the session hooks of one account."""

    account: Account
    #: A folder private to the account's sessions: ``<data_dir>/engines/<engine>/accounts/<name>``.
    data_dir: Path
    classes: ClassLoader = field(factory=lambda: ClassLoader((), ()))
    clock: Clock = field(factory=SystemClock)
    #: The engine's section of the ``engine_options`` setting.
    options: Mapping[str, Any] = field(factory=dict)
    #: Tell the core how the session is: a problem in one line (a disconnect, a login
    #: refused), or None once it is well again. Safe from any thread, never blocks.
    report: Callable[[str | None], None] = field(default=lambda problem: None)
    #: For ``qsm_close_session``: cancel every open order of the account at the
    #: broker before disconnecting (the account was halted with ``--cancel-orders``).
    cancel_orders: bool = False
    logger: logging.LoggerAdapter = field(init=False)  # type: ignore[type-arg]

    def __attrs_post_init__(self) -> None:
        self.logger = StrategyLogger(
            logging.getLogger(f"strategy_manager.engine.{self.account.engine}"),
            {"strategy_id": f"account {self.account.name}"},
        )

    def private_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def load_class(
        self, dotted: str, kind: type[T], trusted: Iterable[str] = (), what: str = "class"
    ) -> type[T]:
        """A class the account's settings name, under the same rules as
        :meth:`EngineContext.load_class`."""
        try:
            return self.classes.load(dotted, kind, trusted, what)
        except ClassRefused as exc:
            raise ClassRefused(f"account {self.account.name}: {exc}") from None


def account_dir(data_dir: str | Path, engine: str, account: str) -> Path:
    """Where an account's sessions keep their files."""
    return Path(data_dir) / "engines" / engine / "accounts" / safe_dirname(account)


@define
class EngineContext:
    spec: StrategySpec
    #: A folder private to this strategy and engine; created on first use.
    data_dir: Path
    classes: ClassLoader = field(factory=lambda: ClassLoader((), ()))
    clock: Clock = field(factory=SystemClock)
    #: The engine's section of the ``engine_options`` setting.
    options: Mapping[str, Any] = field(factory=dict)
    #: Set when the core wants the engine to stop; engine threads should watch it.
    stop_event: threading.Event = field(factory=threading.Event)
    logger: logging.LoggerAdapter = field(init=False)  # type: ignore[type-arg]
    #: Called with the exception when a spawned thread dies of one.
    on_crash: Callable[[BaseException], None] = field(default=lambda exc: None)
    #: Called when a spawned thread returns while no stop was asked.
    on_finish: Callable[[], None] = field(default=lambda: None)
    threads: list[threading.Thread] = field(factory=list)
    #: The fence: True while this process holds the strategy's lease (set by the core).
    fence: Fence = field(factory=Fence)
    #: The lease epoch this engine runs under: grows with every change of owner, so
    #: it tells apart what two owners of one strategy did (client order ids, logs).
    lease_epoch: int = 0
    #: The account the strategy trades in, when it has one.
    account: Account | None = None
    #: The account's open session (what ``qsm_open_session`` returned), shared with
    #: every other strategy of the account in this process; None when the strategy
    #: has none (no account, an engine without sessions, a test): the engine then
    #: connects by itself.
    session: Any = None
    #: Every strategy of the account trading the same symbol that the core knows (this
    #: one included, and a disabled one: its position is still at the broker), by id,
    #: with its latest stored snapshot as of this start: what a resume check needs to
    #: sum the account's position in the symbol.
    members: Mapping[str, Member] = field(factory=dict)

    @classmethod
    def for_spec(
        cls,
        settings: Settings,
        spec: StrategySpec,
        classes: ClassLoader | None = None,
        clock: Clock | None = None,
    ) -> EngineContext:
        """The context the core gives ``spec``'s engine: its private folder under the
        data directory, the operator's class rules, the engine's options and the
        account the document names (without a session)."""
        definition = settings.accounts.get(spec.account) if spec.account else None
        account = (
            Account(spec.account, spec.engine, {k: v for k, v in definition.items() if k != "engine"})
            if spec.account and definition is not None
            else None
        )
        return cls(
            spec=spec,
            data_dir=strategy_dir(settings.data_dir, spec.engine, spec.id),
            classes=classes or ClassLoader(settings.import_paths, settings.engine_class_allow),
            clock=clock or SystemClock(),
            options=dict(settings.engine_options.get(spec.engine, {})),
            account=account,
        )

    def __attrs_post_init__(self) -> None:
        self.logger = StrategyLogger(
            logging.getLogger(f"strategy_manager.engine.{self.spec.engine}"),
            {"strategy_id": self.spec.id},
        )

    @property
    def strategy_id(self) -> str:
        return self.spec.id

    def lease_valid(self) -> bool:
        """True while this process may act for the strategy: it holds the strategy's
        lease and renewed it in time. Cheap (no store call); safe from any thread.

        Adapters call it immediately before sending every order (and a paper broker
        before filling one): False means send nothing, because another process may
        own the strategy now. Once False for an engine, it stays False for it.
        """
        return self.fence()

    def private_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def load_class(
        self, dotted: str, kind: type[T], trusted: Iterable[str] = (), what: str = "engine_class"
    ) -> type[T]:
        """The class a document names (``engine_class``, a feed, a gateway ...), checked
        before the adapter calls it: its module is admitted by the operator's
        ``import_paths`` or ``engine_class_allow`` or by ``trusted``, the class is
        defined there (not imported from elsewhere), and it is a subclass of ``kind``.

        ``kind`` is the base class the adapter will use the result as (``object`` for
        any class); ``trusted`` lists module prefixes the adapter vouches for, for
        classes of this ``kind`` only; ``what`` names the document field in errors.
        Raises :class:`~strategy_manager.core.errors.ClassRefused` in one line.
        See :mod:`strategy_manager.core.classloader` for the rules.
        """
        try:
            return self.classes.load(dotted, kind, trusted, what)
        except ClassRefused as exc:
            raise ClassRefused(f"{self.spec.id}: {exc}") from None

    def spawn(self, target: Callable[[], Any], name: str = "run") -> threading.Thread:
        """Run ``target`` on a new daemon thread the core watches and joins on stop.

        An exception in ``target`` is reported as a crash of the strategy; a return
        while ``stop_event`` is not set is reported as the engine finishing.
        """

        def body() -> None:
            try:
                target()
            except BaseException as exc:
                if not self.stop_event.is_set():
                    self.logger.exception("engine thread %s died", name)
                    self.on_crash(exc)
                return
            if not self.stop_event.is_set():
                self.on_finish()

        thread = threading.Thread(target=body, name=f"{self.spec.id}/{name}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join_threads(self, timeout: float) -> list[threading.Thread]:
        """Join spawned threads within ``timeout`` seconds; return those still alive."""
        import time

        deadline = time.monotonic() + timeout
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        self.threads = alive
        return alive
