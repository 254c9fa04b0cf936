"""The contract between the core and an engine plugin.

An engine plugin is a module (or any object) named by an entry point in the group
``quant_strategy_manager.engines``; the entry point's name is the engine name that
strategy documents put in their ``engine`` field. The plugin implements the hooks
below with ``@hookimpl``; it may leave out ``qsm_restore_engine`` and
``qsm_snapshot_engine`` if it keeps no state, and must implement the other four.

The core drives one *engine* (the object ``qsm_create_engine`` returns) per
strategy. ``qsm_validate_engine`` is optional too, and recommended: it lets a bad
document be refused before it is stored or started. So is ``qsm_update_params``:
an engine that implements it takes a params-only edit without a restart. ``context`` is the strategy's
:class:`~strategy_manager.core.context.EngineContext`: its spec, a private data
directory, a logger, the clock, ``options`` (the engine's section of the
``engine_options`` setting), ``load_class`` for every class a document names,
``spawn`` and ``stop_event`` for engines that need a thread, and ``lease_valid()``,
the fence every order must pass.

The stop and thread contract (the same words are in docs/writing-an-adapter.md, and
the conformance kit's messages cite its rules by number):

1. Every hook is called on a core thread, never on one of the engine's own, and the
   core never calls two hooks of one engine at the same time. Different strategies'
   engines are driven concurrently.
2. ``qsm_start_engine`` returns promptly (seconds). Work that lasts runs on threads
   from ``context.spawn``: an exception there is a crash of the strategy; a return
   while ``context.stop_event`` is not set is the engine finishing.
3. To stop an engine the core sets ``context.stop_event`` first; the engine's threads
   watch it and end. They get up to a second, then the core takes the final
   ``qsm_snapshot_engine`` and calls ``qsm_stop_engine``.
4. ``qsm_stop_engine`` releases what the engine holds and returns within a few
   seconds; once it has returned no thread of the engine runs (the core joins those
   from ``context.spawn``; the engine joins any other it started). It may be called
   on an engine that never started, or whose start failed.
5. An engine whose stop hook has not returned, or whose threads still run,
   ``stop_timeout`` seconds after the stop (10 by default; the conformance kit allows
   5) is abandoned and reported against its strategy; the others never wait for it.

Other rules for every hook:

* A document is data, never code. Every class a document names (``engine_class``,
  a feed, a gateway ...) is loaded with ``context.load_class(dotted, kind=Base,
  trusted=(...))``, which admits only classes defined in the operator's modules or
  in modules the adapter vouches for at that call, of the kind the adapter then
  uses them as; an adapter calls nothing else a document names. Settings that
  carry credentials or connections come from ``context.options`` and win over
  anything in the document.
* Fencing: before sending any order, an engine calls ``context.lease_valid()`` and
  sends nothing when it is False. The core stops a strategy whose lease it can no
  longer prove, but a stop takes time; the fence takes effect at once.
* An exception from a hook fails that one strategy only: the core records it with
  the strategy id and engine name, and the supervisor restarts the strategy with
  backoff (or marks it FAILED). Raise :class:`~strategy_manager.core.errors.QsmError`
  subclasses with a one-line message when the cause is the user's input:
  ``HookError`` and ``SnapshotError`` are in :mod:`strategy_manager.core.errors`.
* Plugins import their engine library lazily, inside the hooks: importing the plugin
  module must be cheap, because ``strategy-manager engines`` imports every plugin.

Accounts and shared sessions (optional). Strategies that trade in one broker
account can share one connection to it, a *session*, as vnpy runs every CTA
strategy of an account in one ``MainEngine``. A document names its account
(``"account": "NAME"``, defined in the ``accounts`` setting), or its engine derives
a default one (``qsm_session_account``). An engine that declares the capability
``"sessions"`` implements ``qsm_open_session`` and ``qsm_close_session``: the core
opens an account's session before the first of its strategies starts, hands it to
every engine of the account as ``context.session``, and closes it
``session_grace_seconds`` after the last one stopped (at once on shutdown). The
session is shared; orders are not: every engine still asks its own strategy's
``context.lease_valid()`` before each order. Session hooks run on the hook pool,
one at a time per account, never on the control thread, each with a deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from strategy_manager.core.context import Account, EngineContext, SessionContext
    from strategy_manager.core.spec import StrategySpec

PROJECT = "quant_strategy_manager"
ENTRY_POINT_GROUP = "quant_strategy_manager.engines"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def qsm_engine_info() -> dict[str, Any]:  # type: ignore[empty-body]
    """Describe the engine this plugin provides.

    When: once, when the registry loads the plugin (``strategy-manager engines``,
    orchestrator start-up). Must not import the engine library if that is slow.

    Returns a dict with:

    * ``name`` (str, required): the engine name; must equal the entry point's name.
    * ``version`` (str, required): the version of the engine library or plugin.
    * ``capabilities`` (list of str): any of ``"snapshot"`` (implements
      ``qsm_snapshot_engine``) and ``"restore"`` (implements ``qsm_restore_engine``),
      plus free-form extras.
    * ``description`` (str): one line for listings.
    * ``secret_options`` (list of key paths): places in the engine's section of the
      ``engine_options`` setting that hold secrets, e.g. ``[["settings",
      "datafeed.password"]]``; a path covers everything below it and ``"*"`` matches
      any key. They are masked wherever settings or text are shown, besides
      ``gateways`` (always masked) and any URI's credentials.

    Raising marks the plugin broken; every other engine keeps working.
    """


@hookspec(firstresult=True)
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    """Check that ``spec`` can run on this engine, without starting anything.

    When: before a document is stored by ``strategies add``, ``edit`` and
    ``import``, and when the orchestrator sees a new or changed document, before it
    creates a worker (see :func:`strategy_manager.core.validation.validate_document`).
    It is called on any thread (the command line's, the orchestrator's control loop
    or one of its hook threads), possibly for several strategies at once and while
    other strategies' engines run; it is never called on a created engine. Keep it
    to checks: no connection, no thread, no order, no shared state changed. Import
    the engine library only if a check needs it (to check a class's kind, say),
    preparing it as create would (qsm_vnpy points vnpy at its folder first).

    Arguments: ``spec`` is the parsed document; ``context`` is a fresh context for
    it (``context.load_class`` and ``context.options`` as in create; its data
    directory may not exist yet).

    Check what a retry could never fix: ``engine_class`` present, admitted and of
    the right kind (load it with ``context.load_class(dotted, kind=...)``); params
    accepted by it, their names and, where the engine can tell, their types
    (:func:`strategy_manager.core.validation.check_params` helps); the adapter's
    own settings section. Leave what may change by the time the strategy starts (a
    file to replay, a server to reach) to ``qsm_create_engine`` and
    ``qsm_start_engine``.

    Returns None. Raising a :class:`~strategy_manager.core.errors.QsmError`
    (``InvalidStrategy``, ``ClassRefused`` ...) with one line naming the strategy
    and the field means the document cannot run as written: the command line
    refuses it (exit status 2; ``--force`` stores it anyway) and the orchestrator
    reports it as BLOCKED with the message, without retries, until the document
    changes. Any other exception is treated the same, reported with its type, as a
    bug in the plugin.
    """


@hookspec(firstresult=True)
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> Any:
    """Build the engine for one strategy, without starting it.

    When: each time a worker for ``spec`` is (re)created: first start, after a
    document change, after a crash. Nothing trades yet.

    Arguments: ``spec`` is the validated strategy document (``spec.params``,
    ``spec.engine_class`` ...); use ``context.load_class(spec.engine_class,
    kind=...)`` to import user code, which enforces the configured import paths and
    allow-list and checks the class's kind before it is used.

    Returns the engine object, opaque to the core and passed back to every other
    hook. Must not return None.

    Raising (bad params, unknown class, ...) fails this strategy; the message should
    name the offending parameter or class.
    """


@hookspec(firstresult=True)
def qsm_restore_engine(engine: Any, snapshot: dict[str, Any], context: EngineContext) -> None:
    """Put a previously taken snapshot back into a freshly created engine.

    When: after ``qsm_create_engine`` and before ``qsm_start_engine``, if the store
    holds a snapshot for this strategy. Never called on a started engine.

    Arguments: ``snapshot`` is exactly the dict an earlier ``qsm_snapshot_engine``
    returned (possibly from another process or version of the plugin).

    Returns nothing. Raise :class:`~strategy_manager.core.errors.SnapshotError`
    naming the bad key if the snapshot is corrupt or of an unknown shape; the core
    then reports the strategy instead of starting it from a wrong state.
    """


@hookspec(firstresult=True)
def qsm_start_engine(engine: Any, context: EngineContext) -> None:
    """Start trading.

    When: after create (and restore), when the schedule says the strategy should run.

    Must return promptly (rule 2 of the stop and thread contract above). An engine
    that runs a loop of its own (``cerebro.run()``, a replay) runs it on a thread from
    ``context.spawn``.

    Raising means the engine did not start; the supervisor retries with backoff.
    Raise :class:`~strategy_manager.core.errors.EngineHalted` instead when a person
    must look first (a restored position the broker contradicts): the strategy is
    marked FAILED at once, without retries, with the message as its status reason.
    """


@hookspec(firstresult=True)
def qsm_stop_engine(engine: Any, context: EngineContext) -> None:
    """Stop trading and release the engine's resources.

    When: at the schedule's stop, on removal or change of the document, on
    shutdown; also after a failed start, to clean up. ``context.stop_event`` is
    already set, and the final snapshot taken, when this is called (rule 3 of the
    stop and thread contract above).

    Must return within a few seconds, and leave no thread of the engine running
    (rules 4 and 5).

    Raising is logged against the strategy; the core forgets the engine anyway.
    """


@hookspec(firstresult=True)
def qsm_snapshot_engine(engine: Any, context: EngineContext) -> dict[str, Any] | None:
    """Return the engine's state, so a later ``qsm_restore_engine`` can resume it.

    When: every ``snapshot_interval`` while running, and on every stop (schedule
    close or pause, document change, shutdown). On a stop it comes after
    ``context.stop_event`` was set and the threads from ``context.spawn`` had up to
    a second to end, and before ``qsm_stop_engine`` (rule 3). It may still be called while
    the engine's own threads run: return a consistent copy (for example the state
    as of the last completed bar). On an engine created and restored but not yet
    started it returns the restored state unchanged (the conformance kit checks).

    Returns plain JSON-compatible data (dict, list, str, int, float, bool, None)
    that only this plugin needs to understand; the core stores it atomically and
    never interprets it. None means "nothing to save" and keeps the previous one.

    Raising keeps the previous snapshot and is reported against the strategy.
    """


@hookspec(firstresult=True)
def qsm_update_params(engine: Any, spec: StrategySpec, context: EngineContext) -> bool | None:
    """Give a running engine a changed document's ``params`` in place (optional).

    When: the document of a running strategy changed in its ``params`` alone (its
    engine, ``engine_class``, calendar, schedule and account the same), once
    ``qsm_validate_engine`` has accepted the new document. On a hook pool thread,
    never the control thread, never at the same time as another hook of the
    engine; the engine's own threads keep running meanwhile, so apply the params
    between two of its events. ``spec`` is the new document; ``context`` is the
    engine's own (the core sets ``context.spec`` to ``spec`` once this returns True).

    Returns True once the engine runs as a restart with ``spec`` would have left it:
    every param the new document gives, and the default of any it no longer gives.
    Params that only seed a fresh engine (a starting cash that the snapshot then
    carries) may be left alone, as a restart from the snapshot would. Returns False
    or None when it cannot (a param that needs a new connection, say), having
    changed nothing: the core then stops the engine with a snapshot and starts it
    again with the new document, as it does for engines without this hook.

    It has ``snapshot_timeout`` seconds; past that the core restarts the strategy
    (its stop waits for this hook to return). Raising is logged against the
    strategy and also means a restart.
    """


@hookspec(firstresult=True)
def qsm_session_account(spec: StrategySpec, context: EngineContext) -> dict[str, Any] | None:
    """The default account of a document that names none (optional).

    When: once per document version, before its first start, on a hook pool thread
    (never the control thread); also by ``strategy-manager accounts`` on the command
    line's thread. Keep it to reading the document and ``context.options``: no
    connection, no thread.

    Returns None when the strategy shares no session (the engine connects by itself,
    as before accounts existed), or ``{"name": str, "settings": {...}}``: the
    account's name (``"vnpy:CTP"``, say) and the settings its session is opened with,
    as ``qsm_open_session`` reads them from ``account.settings``. Every document of
    one derived account must derive the same settings; one that differs is BLOCKED,
    naming the other. An account of that name in the ``accounts`` setting wins over
    the derived one.

    Raising is reported against the strategy as BLOCKED, like a refused document.
    """


@hookspec(firstresult=True)
def qsm_open_session(account: Account, context: SessionContext) -> Any:
    """Connect to the broker account that strategies share (capability ``"sessions"``).

    When: before the first strategy of ``account`` starts in this process, and again
    after a close or a failed open (with backoff); on a hook pool thread, never the
    control thread, never at the same time as another session hook of the account.
    It has ``start_timeout`` seconds; past that the session is abandoned, reported
    against every strategy of the account, and opened anew later.

    Arguments: ``account.settings`` are the account's connection settings (from the
    operator's ``accounts`` setting, credentials included, or what
    ``qsm_session_account`` derived); ``context`` gives the class loader, the
    engine's options, a private folder and ``report``.

    Returns the session: any object, opaque to the core, handed to every engine of
    the account as ``context.session`` and back to ``qsm_close_session``. Must not
    return None. A session that loses its connection later reconnects by itself
    (with backoff) and says so through ``context.report(problem)`` and
    ``context.report(None)``: the problem shows on every strategy of the account.

    Raising means no session: every strategy of the account waits, showing the error,
    and the open is retried with backoff; a :class:`~strategy_manager.core.errors.QsmError`
    such as ``ConfigError`` or ``InvalidStrategy`` (bad account settings) is not
    retried until the orchestrator restarts.
    """


@hookspec(firstresult=True)
def qsm_close_session(session: Any, account: Account, context: SessionContext) -> None:
    """Disconnect an account's session.

    When: ``session_grace_seconds`` after the last strategy of the account stopped
    here (so that a lunch break does not reconnect), at once when the orchestrator
    shuts down, and at once after the account was halted with ``--cancel-orders``
    (then ``context.cancel_orders`` is True: cancel every open order of the account
    at the broker first). Every engine of the account has stopped by then. On a hook
    pool thread, with ``stop_timeout`` seconds; past that it is abandoned and logged.

    Must leave no thread of the session running. Raising is logged against the
    account; the core forgets the session anyway.
    """


@hookspec(firstresult=True)
def qsm_snapshot_positions(snapshot: dict[str, Any], spec: StrategySpec) -> dict[str, float] | None:
    """The net positions a snapshot of this engine holds, by symbol (optional).

    When: ``strategy-manager accounts`` sums them per account and symbol; any thread,
    never on a running engine. Pure: read the dict, import nothing slow.

    Returns ``{symbol: net quantity}`` (long positive, short negative), using the
    document's symbols where the engine can, or None when the snapshot holds none.
    Raising is shown as an unreadable position for that strategy only.
    """
