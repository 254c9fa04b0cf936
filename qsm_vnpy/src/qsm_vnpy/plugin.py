"""Hook implementations for engine ``vnpy``.

Thin on purpose: vnpy (which loads numpy, pandas and talib) and the adapter's
modules are imported inside the hooks, after :mod:`qsm_vnpy.home` has pointed
vnpy's folder at our data directory. Importing this module imports no vnpy.

Two kinds of ``engine_class``:

* a ``CtaTemplate`` subclass runs inside vnpy's MainEngine and CtaEngine with the
  document's gateway (:mod:`qsm_vnpy.cta`); the CTA strategies of one account share
  one of each and one gateway connection (:mod:`qsm_vnpy.session`);
* any other class is the user's own real-time engine, constructed as
  ``Cls(symbol, params)`` and driven by ``start()``/``stop()`` with optional
  ``snapshot()``/``restore(state)``, as engine ``python`` does. It keeps its own
  connections, account or not.

Accounts. A document names one (``"account": "NAME"``, in the ``accounts``
setting: ``{"engine": "vnpy", "gateway": "CTP", "setting": {...}}``); a CTA
document that names none and trades on a live gateway is in the account
``vnpy:<GATEWAY>`` (``qsm_session_account``): one login per gateway name, as
``engine_options.vnpy.gateways.<NAME>`` holds one set of credentials. A replay
strategy that names no account replays a file of its own, alone.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import attrs

from strategy_manager.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import StrategySpec

#: Modules whose CtaTemplate subclasses documents may name without configuration.
CTA_MODULES = ("vnpy_ctastrategy.strategies", "qsm_vnpy.examples")
#: Modules whose user engines (any class) documents may name without configuration.
ENGINE_MODULES = ("qsm_vnpy.examples.breakout_engine",)
#: Places in ``engine_options.vnpy`` that hold secrets, masked wherever settings are
#: shown (every value under ``gateways`` is masked by the core in any case).
SECRET_OPTIONS = [
    ["gateways"],
    ["settings", "datafeed.username"],
    ["settings", "datafeed.password"],
    ["settings", "database.user"],
    ["settings", "database.password"],
]


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _timeout(context: EngineContext, name: str) -> float:
    return float(context.options.get(name, 5.0))


def _is_cta(engine: Any) -> bool:
    from qsm_vnpy.cta import CtaRunner

    return isinstance(engine, CtaRunner)


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    return {
        "name": "vnpy",
        "version": _version("vnpy"),
        "capabilities": [
            "snapshot",
            "restore",
            "sessions",
            "cta",
            "user-engine",
            "replay-gateway",
            "resume-check",
        ],
        "description": "vnpy CTA strategies on any vnpy gateway, or a user's own real-time engine",
        "secret_options": SECRET_OPTIONS,
    }


@attrs.define(frozen=True)
class CtaPlan:
    """A CTA document, checked: what :class:`qsm_vnpy.cta.CtaRunner` is built from."""

    settings: Any
    params: dict[str, Any]
    vt_symbol: str
    gateway_name: str
    #: The gateway class the document (or its account) names, or None for a known gateway's.
    gateway: Any
    #: What a session of its own connects with (not used on an account's session).
    setting: dict[str, Any]
    #: On the replay: the paper broker (the account's, or the document's own file).
    replay: Any = None
    #: On the replay: the strategy's own replay (start, pace ...).
    stream: Any = None


def check(spec: StrategySpec, context: EngineContext) -> tuple[type, CtaPlan | None]:
    """Load and check what the document names, without starting anything: its class,
    and for a CTA strategy its params (names and types), symbol, gateway and the
    gateway setting a document may give (on an account: what the account leaves to
    it). Returns the class and, for a CTA strategy, the plan; a user engine is
    checked as engine ``python`` checks it."""
    from qsm_vnpy import home
    from strategy_manager.core.errors import InvalidStrategy

    if not spec.engine_class:
        raise InvalidStrategy(
            f"{spec.id}: engine 'vnpy' needs an engine_class (a CtaTemplate subclass or an engine class)"
        )
    options = context.options
    home.prepare(context.data_dir.parent, dict(options.get("settings", {})))
    cls = engine_class(spec.engine_class, context)

    from vnpy_ctastrategy.template import CtaTemplate

    if not issubclass(cls, CtaTemplate):
        from strategy_manager.plugins import python_engine

        python_engine.check_class(spec, cls)
        return cls, None

    from qsm_vnpy.gateways import check_installed, gateway_setting, is_replay, named_gateway
    from qsm_vnpy.settings import replay_settings, split_params
    from qsm_vnpy.symbols import to_vt_symbol
    from strategy_manager.core.validation import check_params

    settings, params = split_params(spec)
    accepted = {str(name): getattr(cls, str(name), None) for name in getattr(cls, "parameters", [])}
    check_params(spec.id, f"params for {cls.__name__}", params, accepted)
    vt_symbol = settings.vt_symbol or to_vt_symbol(spec.symbol, options.get("exchange_map"), spec.id)
    if context.account is not None:
        return cls, _on_account(spec, context, settings, params, vt_symbol)
    if settings.gateway is None:
        raise InvalidStrategy(
            f"{spec.id}: field 'params.vnpy.gateway' is needed when the strategy names no account "
            "(see qsm_vnpy's README)"
        )
    named = named_gateway(settings.gateway.name, settings.gateway.cls, context)
    setting = gateway_setting(settings.gateway, named, context)
    if named is None:
        check_installed(settings.gateway.name, spec.id)
    if is_replay(settings.gateway.name, named):
        own = replay_settings(setting, spec.id)
        plan = CtaPlan(
            settings, params, vt_symbol, settings.gateway.name, named, {}, own.account(spec.symbol)
        )
        return cls, attrs.evolve(plan, stream=own.stream())
    return cls, CtaPlan(settings, params, vt_symbol, settings.gateway.name, named, setting)


def _on_account(
    spec: StrategySpec, context: EngineContext, settings: Any, params: dict[str, Any], vt_symbol: str
) -> CtaPlan:
    """The plan of a CTA strategy on an account: the account's gateway, and what of
    it the document may set (on a replay account, its own replay's settings)."""
    from qsm_vnpy.gateways import check_installed, is_replay, named_gateway, operator_setting
    from qsm_vnpy.settings import STREAM_KEYS, ReplayAccountSettings, account_settings, stream_settings
    from strategy_manager.core.errors import InvalidStrategy
    from strategy_manager.core.spec import structure_section

    account = context.account
    assert account is not None
    where = f"account {account.name}"
    found = account_settings(account.settings, where)
    named = named_gateway(found.gateway, found.cls, context, what=f"accounts.{account.name}.class")
    if named is None:
        check_installed(found.gateway, spec.id)
    given = settings.gateway
    if given is not None and (given.name != found.gateway or (given.cls or None) != (found.cls or None)):
        raise InvalidStrategy(
            f"{spec.id}: field 'params.vnpy.gateway' names gateway {given.name}, but account "
            f"{account.name} is on gateway {found.gateway}"
        )
    setting = dict(given.setting) if given is not None else {}
    if is_replay(found.gateway, named):
        extra = sorted(set(setting) - set(STREAM_KEYS))
        if extra:
            raise InvalidStrategy(
                f"{spec.id}: params.vnpy.gateway.setting: {', '.join(extra)} belong to the replay account "
                f"{account.name} (a strategy on it may set: {', '.join(STREAM_KEYS)})"
            )
        replay = structure_section(found.setting, ReplayAccountSettings, where, "accounts.setting")
        return CtaPlan(
            settings, params, vt_symbol, found.gateway, named, {}, replay, stream_settings(setting, spec.id)
        )
    if setting and not account.derived:
        raise InvalidStrategy(
            f"{spec.id}: params.vnpy.gateway.setting: {', '.join(sorted(setting))} may not be set by a "
            f"document on account {account.name}: its connection comes from the account"
        )
    operator = operator_setting(found.gateway, context.options)
    connect = {**found.setting, **operator} if account.derived else {**operator, **found.setting}
    return CtaPlan(settings, params, vt_symbol, found.gateway, named, connect)


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    check(spec, context)


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> Any:
    cls, plan = check(spec, context)
    if plan is None:
        from strategy_manager.plugins import python_engine

        return python_engine.make_engine(spec, cls, context)

    from qsm_vnpy.cta import CtaRunner
    from qsm_vnpy.gateways import gateway_class

    if plan.gateway is None:
        plan = attrs.evolve(plan, gateway=gateway_class(plan.gateway_name, None, context))
    return CtaRunner(context, plan, cls)


@hookimpl
def qsm_session_account(spec: StrategySpec, context: EngineContext) -> dict[str, Any] | None:
    """A CTA strategy on a live gateway that names no account is in ``vnpy:<GATEWAY>``;
    a replay strategy or a user engine shares no session."""
    _, plan = check(spec, context)
    if plan is None or plan.replay is not None:
        return None
    gateway = plan.settings.gateway
    settings: dict[str, Any] = {"gateway": plan.gateway_name, "setting": dict(gateway.setting)}
    if gateway.cls:
        settings["class"] = gateway.cls
    return {"name": f"vnpy:{plan.gateway_name}", "settings": settings}


@hookimpl
def qsm_open_session(account: Any, context: Any) -> Any:
    from qsm_vnpy import home
    from qsm_vnpy.gateways import gateway_class, is_replay, operator_setting
    from qsm_vnpy.settings import ReplayAccountSettings, account_settings
    from strategy_manager.core.spec import structure_section

    home.prepare(context.data_dir.parents[1], dict(context.options.get("settings", {})))
    from qsm_vnpy.session import VnpySession

    where = f"account {account.name}"
    found = account_settings(account.settings, where)
    cls = gateway_class(found.gateway, found.cls, context)
    replay = None
    if is_replay(found.gateway, cls if found.cls else None):
        replay = structure_section(found.setting, ReplayAccountSettings, where, "accounts.setting")
        connect: dict[str, Any] = {}
    else:
        operator = operator_setting(found.gateway, context.options)
        connect = {**found.setting, **operator} if account.derived else {**operator, **found.setting}
    session = VnpySession(
        account.name,
        cls,
        found.gateway,
        connect,
        context.logger,
        replay=replay,
        connect_timeout=found.connect_timeout,
        report=context.report,
    )
    return session.open()


@hookimpl
def qsm_close_session(session: Any, account: Any, context: Any) -> None:
    session.close(cancel_orders=context.cancel_orders)


@hookimpl
def qsm_snapshot_positions(snapshot: dict[str, Any], spec: StrategySpec) -> dict[str, float] | None:
    """A CTA snapshot's ``pos`` under the document's symbol; a user engine's holds none."""
    variables = snapshot.get("variables")
    pos = variables.get("pos") if isinstance(variables, dict) else None
    if not isinstance(pos, int | float) or isinstance(pos, bool):
        return None
    return {spec.symbol: float(pos)}


def engine_class(dotted: str, context: EngineContext) -> type:
    """The class ``engine_class`` names: a user engine (any class) from the operator's
    modules or :data:`ENGINE_MODULES`, else a ``CtaTemplate`` subclass, which the
    adapter also accepts from :data:`CTA_MODULES`."""
    from vnpy_ctastrategy.template import CtaTemplate

    if context.classes.admits(dotted, ENGINE_MODULES):
        return context.load_class(dotted, kind=object, trusted=ENGINE_MODULES)
    return context.load_class(dotted, kind=CtaTemplate, trusted=CTA_MODULES)


@hookimpl
def qsm_restore_engine(engine: Any, snapshot: dict[str, Any], context: EngineContext) -> None:
    if _is_cta(engine):
        engine.restore(snapshot)
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_restore_engine(engine=engine, snapshot=snapshot, context=context)


@hookimpl
def qsm_start_engine(engine: Any, context: EngineContext) -> None:
    if _is_cta(engine):
        engine.start()
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_start_engine(engine=engine, context=context)


@hookimpl
def qsm_stop_engine(engine: Any, context: EngineContext) -> None:
    if _is_cta(engine):
        engine.stop()
    else:
        from strategy_manager.plugins import python_engine

        python_engine.qsm_stop_engine(engine=engine, context=context)


@hookimpl
def qsm_update_params(engine: Any, spec: StrategySpec, context: EngineContext) -> bool | None:
    """A CTA strategy takes new class parameters in place (vnpy's ``edit_strategy``); a
    change under ``params.vnpy`` (gateway, symbol ...) or a user engine restarts."""
    if not _is_cta(engine):
        return None
    from qsm_vnpy.settings import split_params

    settings, params = split_params(spec)
    result: bool = engine.update_params(settings, params, _timeout(context, "snapshot_timeout"))
    return result


@hookimpl
def qsm_snapshot_engine(engine: Any, context: EngineContext) -> dict[str, Any] | None:
    if _is_cta(engine):
        result: dict[str, Any] | None = engine.snapshot(_timeout(context, "snapshot_timeout"))
        return result
    from strategy_manager.plugins import python_engine

    return python_engine.qsm_snapshot_engine(engine=engine, context=context)
