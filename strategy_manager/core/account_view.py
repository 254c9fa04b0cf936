"""What ``strategy-manager accounts`` shows, read from the store alone (it works from
any machine, while orchestrators run or not): every account, its halt, its session
as the orchestrators running its strategies last reported it, its strategies with
their states, and the net position of each symbol, summed over the strategies'
latest snapshots (as each engine reads its own, ``qsm_snapshot_positions``).

A strategy's account is the one its document names; for a document that names none,
the one the orchestrator that runs it reported (an engine's derived account), if any.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from attrs import define, field

from strategy_manager.core.errors import QsmError
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import StrategySpec, parse_strategy
from strategy_manager.core.store import AccountHalt, StatusRecord, Store

log = logging.getLogger("strategy_manager.accounts")


@define
class StrategyLine:
    strategy_id: str
    symbol: str
    state: str
    #: symbol -> net quantity, from its latest snapshot; None: unknown.
    positions: dict[str, float] | None = None
    #: Why the positions are unknown.
    note: str | None = None


@define
class AccountLine:
    name: str
    engine: str | None
    #: Defined in the ``accounts`` setting (else derived by an engine, or only named).
    defined: bool
    halt: AccountHalt | None = None
    session: str | None = None
    session_error: str | None = None
    strategies: list[StrategyLine] = field(factory=list)
    #: symbol -> the net position of every strategy whose position is known.
    positions: dict[str, float] = field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        halt = self.halt
        return {
            "account": self.name,
            "engine": self.engine,
            "defined": self.defined,
            "halted": None
            if halt is None
            else {
                "reason": halt.reason,
                "by": halt.by,
                "at": halt.halted_at,
                "cancel_orders": halt.cancel_orders,
            },
            "session": self.session,
            "session_error": self.session_error,
            "strategies": [
                {
                    "strategy_id": s.strategy_id,
                    "symbol": s.symbol,
                    "state": s.state,
                    "positions": s.positions,
                    "note": s.note,
                }
                for s in self.strategies
            ],
            "positions": self.positions,
        }


def overview(settings: Settings, store: Store, registry: EngineRegistry) -> list[AccountLine]:
    """Every account: those of the settings, those documents name or orchestrators
    reported, and halted ones; by name."""
    status = {r.strategy_id: r for r in store.read_status()}
    specs: dict[str, StrategySpec] = {}
    for document in store.list_strategies():
        try:
            spec = parse_strategy(document)
        except QsmError:
            continue
        specs[spec.id] = spec
    lines: dict[str, AccountLine] = {}

    def line(name: str, engine: str | None) -> AccountLine:
        if name not in lines:
            definition = settings.accounts.get(name)
            defined_engine = definition.get("engine") if definition is not None else None
            lines[name] = AccountLine(name, defined_engine or engine, definition is not None)
        return lines[name]

    for name in settings.accounts:
        line(name, None)
    members: dict[str, list[str]] = defaultdict(list)
    for sid, spec in specs.items():
        account = spec.account or _reported(status.get(sid))
        if account is not None:
            line(account, spec.engine)
            members[account].append(sid)
    for halt in store.list_halts():
        line(halt.account, None).halt = halt
    stored = store.latest_snapshots(sorted(s for ids in members.values() for s in ids))
    for name, entry in lines.items():
        newest: StatusRecord | None = None
        for sid in sorted(members.get(name, [])):
            spec, record = specs[sid], status.get(sid)
            strategy = StrategyLine(sid, spec.symbol, record.state if record else "-")
            _positions(strategy, spec, stored.get(sid), registry)
            entry.strategies.append(strategy)
            for symbol, quantity in (strategy.positions or {}).items():
                entry.positions[symbol] = entry.positions.get(symbol, 0.0) + quantity
            if record is None or record.details.get("session") is None:
                continue
            if newest is None or _beat(record) > _beat(newest):
                newest = record
        if newest is not None:
            entry.session = newest.details.get("session")
            entry.session_error = newest.details.get("session_error")
    return [lines[name] for name in sorted(lines)]


def _reported(record: StatusRecord | None) -> str | None:
    name = record.details.get("account") if record is not None else None
    return name if isinstance(name, str) else None


def _beat(record: StatusRecord) -> float:
    return record.heartbeat.timestamp() if record.heartbeat is not None else 0.0


def _positions(strategy: StrategyLine, spec: StrategySpec, snapshot: Any, registry: EngineRegistry) -> None:
    if snapshot is None:
        strategy.note = "no snapshot yet"
        return
    if snapshot.error is not None:
        strategy.note = "snapshot unreadable"
        return
    try:
        hooks = registry.resolve(spec.engine)
        found = hooks.snapshot_positions(snapshot.state, spec)
        if found is None:
            strategy.note = "its engine reports no positions"
            return
        strategy.positions = {str(k): float(v) for k, v in found.items()}
    except Exception as exc:
        log.warning("%s: positions of its snapshot unreadable: %s: %s", spec.id, type(exc).__name__, exc)
        strategy.note = "positions unreadable"
