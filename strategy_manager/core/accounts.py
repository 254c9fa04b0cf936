"""Accounts: strategies that share one broker session, and the kill switch.

The orchestrator's control thread keeps one :class:`AccountBook` and calls it at a
few points; the book keeps, for every account the strategies of this process
belong to:

* its definition: from the ``accounts`` setting when a document names it, or what
  the engine's ``qsm_session_account`` derived for a document that names none (run
  on the hook pool, once per document version);
* its session, for engines that declare ``sessions``: CLOSED, OPENING, OPEN,
  CLOSING, or FAILED with a time to try again. The session opens when the first
  strategy of the account is about to start, and closes ``session_grace_seconds``
  after the last one stopped (at once on shutdown), so a lunch break does not
  reconnect. Its *users* are the account's strategies whose engine is started or
  starting here. Session hooks run on the hook pool (``run``), one at a time per
  account, each with a deadline; their outcomes come back as events (``post``)
  that the control thread applies (:meth:`AccountBook.on_event`);
* its halt, from the store (``strategy-manager accounts halt``): polled through the
  store's ``halts_token`` with the documents, kept in memory, and part of every
  engine's fence (:meth:`AccountBook.fence`), so that no order of a halted account
  passes once this process has seen the halt.

Nothing here blocks or calls an engine hook on the control thread.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

from attrs import define, field

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.clock import Clock
from strategy_manager.core.context import Account, EngineContext, Member, SessionContext, account_dir
from strategy_manager.core.errors import ConfigError, HookError, InvalidStrategy, QsmError
from strategy_manager.core.registry import EngineHooks
from strategy_manager.core.settings import Settings, valid_account_name
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.store import AccountHalt, Snapshot, Store
from strategy_manager.core.supervision import judge, permanent

log = logging.getLogger("strategy_manager.accounts")

#: Runs a task on the hook pool: (key, function, timeout, name, on_timeout) -> its future.
RunOnPool = Callable[[Hashable, Callable[[], None], float, str, Callable[[], None]], "Future[Any]"]
Post = Callable[[str, str, Any], None]
Emit = Callable[[str, str, str], None]


class SessionState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPENING = "OPENING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    FAILED = "FAILED"


class _Pending:
    """The account of a strategy whose engine is deriving it."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()


@define(eq=False)
class AccountEntry:
    """One account as this process knows it."""

    account: Account
    hooks: EngineHooks
    state: SessionState = SessionState.CLOSED
    #: The open session, as the control thread knows it.
    session: Any = None
    #: The session the last open produced and no close has taken yet. Written and read
    #: only by the account's own hook tasks, which never run at the same time.
    live: Any = None
    users: set[str] = field(factory=set)
    #: What the session reported, or why it could not open.
    problem: str | None = None
    close_at: datetime | None = None
    retry_at: datetime | None = None
    failures: deque[float] = field(factory=deque)
    #: The open failed for a reason no retry can fix (bad account settings).
    hopeless: bool = False
    #: Close at once when the last user leaves (a halt with --cancel-orders).
    cancel_on_close: bool = False
    #: Grows with every open; a report from an older session is ignored.
    epoch: int = 0
    #: Who derived it first, for a document of a derived account that differs.
    derived_by: str | None = None
    #: The open session was opened with settings the account no longer has: it
    #: closes once its users left, and nobody new joins it.
    stale: bool = False

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def sessions(self) -> bool:
        return self.hooks.has_sessions


class AccountBook:
    def __init__(
        self,
        settings: Settings,
        classes: ClassLoader,
        clock: Clock,
        run: RunOnPool,
        post: Post,
        emit: Emit,
    ) -> None:
        self.settings = settings
        self.classes = classes
        self.clock = clock
        self._run = run
        self._post = post
        self._emit = emit
        #: strategy id -> its account's name, None (no account) or PENDING; changed
        #: through :meth:`_put` only, which keeps ``_members`` in step.
        self._of: dict[str, Any] = {}
        #: account name -> its strategies' ids (so a start costs its account, not all).
        self._members: dict[str, set[str]] = {}
        #: strategy id -> the version of its assignment: a late derivation is ignored.
        self._assigned: dict[str, int] = {}
        #: strategy id -> the fingerprint of the spec its account was found for.
        self._found_for: dict[str, str] = {}
        #: strategy id -> the account whose session its started engine uses.
        self._user_of: dict[str, str] = {}
        self._serial = 0
        self.entries: dict[str, AccountEntry] = {}
        #: Halted accounts; replaced whole, so the fence reads it from any thread.
        self.halts: dict[str, AccountHalt] = {}
        self._halted: frozenset[str] = frozenset()
        self._halt_token: Hashable = object()

    # -- which account a strategy trades in ------------------------------------------
    def assign(self, sid: str, spec: StrategySpec, hooks: EngineHooks) -> None:
        """Record the account of a new or changed document. Raises InvalidStrategy for
        an account the settings do not define, or one of another engine."""
        fingerprint = spec.runtime_fingerprint()
        if self._found_for.get(sid) == fingerprint and sid in self._of:
            return  # nothing the account depends on changed
        self._serial += 1
        self._assigned[sid] = self._serial
        self._put(sid, None, keep=False)
        self._found_for.pop(sid, None)
        if spec.account is not None:
            self._put(sid, self._configured(sid, spec.account, spec.engine, hooks).name)
        elif hooks.derives_accounts:
            self._put(sid, PENDING)
            self._derive(sid, spec, hooks, self._serial)
        else:
            self._put(sid, None)
        self._found_for[sid] = fingerprint

    def _put(self, sid: str, name: Any, keep: bool = True) -> None:
        """Record the strategy's account (``keep=False``: forget the strategy)."""
        old = self._of.pop(sid, None)
        if isinstance(old, str):
            members = self._members.get(old)
            if members is not None:
                members.discard(sid)
                if not members:
                    del self._members[old]
        if not keep:
            return
        self._of[sid] = name
        if isinstance(name, str):
            self._members.setdefault(name, set()).add(sid)

    def _configured(self, sid: str, name: str, engine: str, hooks: EngineHooks) -> AccountEntry:
        return self._entry(configured_account(self.settings, sid, name, engine), hooks)

    def _entry(self, account: Account, hooks: EngineHooks) -> AccountEntry:
        entry = self.entries.get(account.name)
        if entry is None:
            entry = self.entries[account.name] = AccountEntry(account, hooks)
        else:
            entry.hooks = hooks
        return entry

    def _derive(self, sid: str, spec: StrategySpec, hooks: EngineHooks, serial: int) -> None:
        context = EngineContext.for_spec(self.settings, spec, self.classes, self.clock)

        def op() -> None:
            try:
                result: Any = hooks.session_account(spec, context)
            except Exception as exc:
                result = exc
            self._post("account-derived", sid, (serial, spec, hooks, result))

        def late() -> None:
            late_error = HookError(f"{sid}: qsm_session_account did not return in time")
            self._post("account-derived", sid, (serial, spec, hooks, late_error))

        self._run(sid, op, self.settings.snapshot_timeout, "session account", late)

    def derived(self, sid: str, payload: Any) -> str | None:
        """Apply a derivation's outcome; return why the strategy cannot run, or None."""
        serial, spec, hooks, result = payload
        if self._assigned.get(sid) != serial:
            return None  # the document changed meanwhile; a new derivation is under way
        try:
            self._put(sid, self._derived_account(sid, spec, hooks, result))
        except QsmError as exc:
            self._put(sid, None)
            message = str(exc)
            return message[len(sid) + 2 :] if message.startswith(f"{sid}: ") else message
        return None

    def _derived_account(self, sid: str, spec: StrategySpec, hooks: EngineHooks, result: Any) -> str | None:
        if isinstance(result, QsmError):
            raise result
        if isinstance(result, BaseException):
            raise InvalidStrategy(
                f"{sid}: engine '{spec.engine}' failed to name its account: {type(result).__name__}: {result}"
            )
        if result is None:
            return None
        name = result.get("name") if isinstance(result, Mapping) else None
        settings = result.get("settings", {}) if isinstance(result, Mapping) else None
        if not isinstance(name, str) or not valid_account_name(name) or not isinstance(settings, Mapping):
            raise InvalidStrategy(
                f"{sid}: engine '{spec.engine}' derived an account that is not "
                "{'name': str, 'settings': {...}}"
            )
        if name in self.settings.accounts:  # the operator's definition wins
            return self._configured(sid, name, spec.engine, hooks).name
        account = Account(name, spec.engine, dict(settings), derived=True)
        entry = self.entries.get(name)
        others = sorted(self._members.get(name, set()) - {sid})
        if entry is not None and others and entry.account != account:
            raise InvalidStrategy(
                f"{sid}: derives account '{name}' with other settings than {entry.derived_by or others[0]} "
                "does; name an account for one of them (see the 'accounts' setting)"
            )
        if entry is None:
            self.entries[name] = AccountEntry(account, hooks, derived_by=sid)
        elif entry.account != account:  # its only strategy changed: a session of the new settings
            entry.account, entry.hooks, entry.derived_by = account, hooks, sid
            entry.stale = entry.state is not SessionState.CLOSED
        return name

    def unassign(self, sid: str) -> None:
        """The strategy's account is unknown now (its document cannot be read)."""
        self._put(sid, None, keep=False)
        self._assigned.pop(sid, None)
        self._found_for.pop(sid, None)

    def forget(self, sid: str) -> None:
        """The strategy's document is gone and its engine stopped."""
        self.unassign(sid)
        self.leave(sid)

    def members_of(self, name: str) -> list[str]:
        return sorted(self._members.get(name, ()))

    # -- halts -------------------------------------------------------------------------
    def poll_halts(self, store: Store) -> tuple[list[AccountHalt], list[str]] | None:
        """Read the halts if their token moved: (newly halted, resumed), else None."""
        token = store.halts_token()
        if token == self._halt_token:
            return None
        halts = {h.account: h for h in store.list_halts()}
        self._halt_token = token
        fresh = [h for name, h in halts.items() if name not in self.halts]
        resumed = [name for name in self.halts if name not in halts]
        self.halts = halts
        self._halted = frozenset(halts)
        for halt in fresh:
            entry = self.entries.get(halt.account)
            if entry is not None and halt.cancel_orders:
                entry.cancel_on_close = True
                self._maybe_close_later(entry, self.clock.now())
        for name in resumed:
            entry = self.entries.get(name)
            if entry is not None:
                entry.cancel_on_close = False
        return fresh, resumed

    def halted(self, sid: str) -> AccountHalt | None:
        name = self._of.get(sid)
        return self.halts.get(name) if isinstance(name, str) else None

    def fence(self, sid: str) -> Callable[[], bool]:
        """True while the strategy's account is not halted; cheap, from any thread.
        The account is looked up now: a start runs under the account it started in."""
        name = self._of.get(sid)
        if not isinstance(name, str):
            return lambda: True
        return lambda: name not in self._halted

    # -- sessions ------------------------------------------------------------------------
    def hold(self, sid: str, now: datetime) -> tuple[str, str] | None:
        """Why the strategy may not start now, as (state, reason); None when it may.
        Asks for its account's session to be opened when it is closed."""
        name = self._of.get(sid)
        if name is PENDING:
            return ("WAITING", "finding its account")
        if name is None:
            return None
        halt = self.halts.get(name)
        if halt is not None:
            return ("HALTED", describe_halt(halt))
        entry = self.entries.get(name)
        if entry is None or not entry.sessions:
            return None
        if entry.state is SessionState.OPEN and not entry.stale:
            return None
        if entry.state is SessionState.OPEN:
            self._maybe_close_later(entry, now)
        elif entry.state is SessionState.CLOSED:
            self._open(entry)
        elif entry.state is SessionState.FAILED:
            if entry.hopeless:
                return ("FAILED", f"account {name}: its session cannot open: {entry.problem}")
            if entry.retry_at is None or now >= entry.retry_at:
                self._open(entry)
            else:
                when = entry.retry_at.isoformat(timespec="seconds")
                return (
                    "BACKOFF",
                    f"account {name}: its session failed to open: {entry.problem}; retry {when}",
                )
        how = entry.state.lower()
        if entry.state is SessionState.OPENING and entry.problem:  # a retry: keep why it is one
            how += f"; the last try failed: {entry.problem}"
        return ("WAITING", f"waiting for the session of account {name} ({how})")

    def enter(self, sid: str) -> tuple[Account | None, Any]:
        """The strategy's engine is starting: it uses its account's session (if any)."""
        name = self._of.get(sid)
        entry = self.entries.get(name) if isinstance(name, str) else None
        if entry is None:
            return None, None
        self.leave(sid)
        entry.users.add(sid)
        self._user_of[sid] = entry.name
        entry.close_at = None
        return entry.account, entry.session if entry.state is SessionState.OPEN else None

    def leave(self, sid: str) -> None:
        """The strategy's engine has stopped (or never started, or was abandoned)."""
        name = self._user_of.pop(sid, None)
        entry = self.entries.get(name) if name is not None else None
        if entry is not None and sid in entry.users:
            entry.users.discard(sid)
            self._maybe_close_later(entry, self.clock.now())

    def _maybe_close_later(self, entry: AccountEntry, now: datetime) -> None:
        if entry.users or entry.state is not SessionState.OPEN:
            return
        if entry.cancel_on_close or entry.stale:
            self._close(entry, cancel_orders=entry.cancel_on_close)
        elif entry.close_at is None:
            entry.close_at = now + timedelta(seconds=self.settings.session_grace_seconds)
            if self.settings.session_grace_seconds <= 0:
                self._close(entry)

    def tick(self, now: datetime) -> list[str]:
        """Close the sessions whose grace period is over; return the strategies of the
        accounts whose failed session may be tried again now (their next start opens it)."""
        again: list[str] = []
        for entry in list(self.entries.values()):
            if (
                entry.state is SessionState.OPEN
                and not entry.users
                and entry.close_at is not None
                and now >= entry.close_at
            ):
                self._close(entry)
            elif entry.state is SessionState.FAILED and entry.retry_at is not None and now >= entry.retry_at:
                entry.retry_at = None  # due: no longer a time to wake up for
                again += self.members_of(entry.name)
        return again

    def next_due(self) -> datetime | None:
        """The earliest grace end or retry time."""
        times = [e.close_at for e in self.entries.values() if e.state is SessionState.OPEN and e.close_at] + [
            e.retry_at for e in self.entries.values() if e.state is SessionState.FAILED and e.retry_at
        ]
        return min(times, default=None)

    def _context(self, entry: AccountEntry, epoch: int, cancel_orders: bool = False) -> SessionContext:
        name = entry.name
        return SessionContext(
            account=entry.account,
            data_dir=account_dir(self.settings.data_dir, entry.account.engine, name),
            classes=self.classes,
            clock=self.clock,
            options=dict(self.settings.engine_options.get(entry.account.engine, {})),
            report=lambda problem: self._post("account-report", name, (epoch, problem)),
            cancel_orders=cancel_orders,
        )

    def _open(self, entry: AccountEntry) -> None:
        entry.epoch += 1
        entry.state = SessionState.OPENING
        entry.close_at = None
        epoch, hooks, account = entry.epoch, entry.hooks, entry.account
        context = self._context(entry, epoch)

        def op() -> None:
            try:
                session = hooks.open_session(account, context)
                if session is None:
                    raise HookError(f"account {account.name}: qsm_open_session returned None")
            except Exception as exc:
                self._post("account-open-failed", account.name, (epoch, exc))
                return
            entry.live = session
            self._post("account-opened", account.name, (epoch, session))

        def hung() -> None:
            timeout = HookError(
                f"account {account.name}: opening its session did not return within "
                f"{self.settings.start_timeout:g}s; abandoned"
            )
            self._post("account-open-failed", account.name, (epoch, timeout))

        self._run(("account", account.name), op, self.settings.start_timeout, "open session", hung)

    def _close(self, entry: AccountEntry, cancel_orders: bool = False) -> Future[Any]:
        entry.state = SessionState.CLOSING
        entry.close_at = None
        epoch, hooks, account = entry.epoch, entry.hooks, entry.account
        context = self._context(entry, epoch, cancel_orders)

        def op() -> None:
            session, entry.live = entry.live, None
            try:
                if session is not None:
                    hooks.close_session(session, account, context)
            except Exception as exc:
                log.error(
                    "account %s: closing its session raised %s: %s", account.name, type(exc).__name__, exc
                )
            self._post("account-closed", account.name, epoch)

        def hung() -> None:
            log.error("account %s: closing its session did not return in time; abandoned", account.name)
            self._post("account-closed", account.name, epoch)

        return self._run(("account", account.name), op, self.settings.stop_timeout, "close session", hung)

    def close_all(self) -> list[Future[Any]]:
        """Shutdown: close every session that is open or opening, at once."""
        return [
            self._close(e, e.cancel_on_close)
            for e in self.entries.values()
            if e.state in (SessionState.OPEN, SessionState.OPENING)
        ]

    def on_event(self, kind: str, name: str, payload: Any, now: datetime) -> list[str]:
        """Apply a session task's outcome; return the strategies whose status changed."""
        entry = self.entries.get(name)
        if entry is None:
            return []
        if kind == "account-opened":
            epoch, session = payload
            if epoch != entry.epoch or entry.state is not SessionState.OPENING:
                return []
            entry.state, entry.session, entry.problem = SessionState.OPEN, session, None
            entry.retry_at, entry.hopeless = None, False
            self._emit("account", name, "session opened")
            self._maybe_close_later(entry, now)
        elif kind == "account-open-failed":
            epoch, exc = payload
            if epoch != entry.epoch:
                return []
            s = self.settings
            verdict = judge(entry.failures, exc, now, 10**9, s.restart_window, s.backoff_base, s.backoff_cap)
            entry.state, entry.problem = SessionState.FAILED, _one_line(exc, name)
            entry.hopeless = permanent(exc) is not None or isinstance(exc, ConfigError)
            entry.retry_at = None if entry.hopeless else verdict.retry_at
            retry = "not retried" if entry.hopeless else f"retry in {verdict.delay:.1f}s"
            self._emit("account-error", name, f"session failed to open: {entry.problem}; {retry}")
        elif kind == "account-closed":
            if payload == entry.epoch and entry.state is SessionState.CLOSING:
                entry.state, entry.session, entry.stale, entry.problem = (
                    SessionState.CLOSED,
                    None,
                    False,
                    None,
                )
                self._emit("account", name, "session closed")
        elif kind == "account-report":
            epoch, problem = payload
            if epoch != entry.epoch or entry.state is not SessionState.OPEN or problem == entry.problem:
                return []
            entry.problem = None if problem is None else " ".join(str(problem).split())[:500]
            if problem is None:
                self._emit("account", name, "session well again")
            else:
                self._emit("account-error", name, f"session: {entry.problem}")
        return self.members_of(name)

    # -- what a start and the status need ---------------------------------------------
    def member_ids(
        self, specs: Iterable[StrategySpec], spec_of: Callable[[str], StrategySpec | None]
    ) -> set[str]:
        """The strategies that trade the symbol of one of ``specs`` in its account
        (``spec_of``: a strategy's current spec, None if it has none)."""
        found: set[str] = set()
        for spec in specs:
            name = self._of.get(spec.id)
            for sid in self._members.get(name, ()) if isinstance(name, str) else ():
                other = spec_of(sid)
                if other is not None and other.symbol == spec.symbol:
                    found.add(sid)
        return found

    def members(
        self,
        spec: StrategySpec,
        spec_of: Callable[[str], StrategySpec | None],
        stored: Mapping[str, Snapshot],
    ) -> dict[str, Member]:
        """The strategies of ``spec``'s account trading its symbol (itself included),
        each with its latest stored snapshot."""
        name = self._of.get(spec.id)
        found = {}
        for sid in self.members_of(name) if isinstance(name, str) else []:
            other = spec_of(sid)
            if other is None or other.symbol != spec.symbol:
                continue
            snap = stored.get(sid)
            found[sid] = Member(other, snap.state if snap is not None and snap.error is None else None)
        return found

    def status_details(self, sid: str) -> dict[str, Any]:
        name = self._of.get(sid)
        if not isinstance(name, str):
            return {}
        entry = self.entries.get(name)
        details: dict[str, Any] = {"account": name}
        if entry is not None and entry.sessions:
            details["session"] = str(entry.state)
            if entry.problem:
                details["session_error"] = entry.problem
        return details

    def problem(self, sid: str) -> str | None:
        """What the strategy's account session reports, in a status line."""
        name = self._of.get(sid)
        entry = self.entries.get(name) if isinstance(name, str) else None
        if entry is None or not entry.problem or entry.state is not SessionState.OPEN:
            return None
        return f"account {name}: session: {entry.problem}"


def configured_account(settings: Settings, sid: str, name: str, engine: str) -> Account:
    """The account ``name`` of the ``accounts`` setting, for strategy ``sid`` of
    ``engine``; InvalidStrategy if the settings do not define it or it is another
    engine's."""
    definition = settings.accounts.get(name)
    if definition is None:
        known = ", ".join(sorted(settings.accounts)) or "none"
        raise InvalidStrategy(
            f"{sid}: account '{name}' is not defined in the settings (accounts defined: {known})"
        )
    if definition.get("engine") != engine:
        raise InvalidStrategy(
            f"{sid}: account '{name}' is for engine '{definition.get('engine')}', "
            f"not for this document's engine '{engine}'"
        )
    return Account(name, engine, {k: v for k, v in definition.items() if k != "engine"})


def describe_halt(halt: AccountHalt) -> str:
    """The status line of a strategy of a halted account."""
    when = f" at {halt.halted_at.isoformat(timespec='seconds')}" if halt.halted_at else ""
    by = f" by {halt.by}" if halt.by else ""
    reason = f": {halt.reason}" if halt.reason else ""
    return (
        f"account {halt.account} halted{by}{when}{reason} ('strategy-manager accounts resume {halt.account}')"
    )


def _one_line(exc: BaseException, name: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    prefix = f"account {name}: "
    text = text[len(prefix) :] if text.startswith(prefix) else text
    return text[:500]
