"""The resume check, per account and symbol.

At a restore, before the strategy trades, the broker's position in its symbol is
compared with the sum of the positions of every strategy of the account trading
that symbol: this one's restored ``pos``, the ``pos`` of those running in the same
session now, and the last snapshot's ``pos`` of those that are not running (their
position is still at the broker). The gateway's open orders for the symbol are
compared with those the strategies know (this snapshot's, the running strategies',
and the stopped ones' last snapshots'). A strategy on its own is compared alone.

On a difference, ``on_mismatch`` applies to every strategy of the account and
symbol (when their documents say different things, ``halt``):

* ``halt`` keeps them stopped: the starting one is refused with the facts (the
  numbers and which strategies), the running ones are halted too, and no strategy
  of the account may send an order in the symbol until a later check agrees;
* ``trust_broker`` sets this strategy's ``pos`` to the broker's and adopts the
  unknown orders, when it is the only strategy of the symbol (a difference cannot
  be split among several: then it halts);
* ``trust_snapshot`` keeps the positions and leaves unknown orders alone.

Live gateways report positions and orders asynchronously: the first check after a
connection waits ``position_wait`` seconds.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from attrs import define, field
from vnpy.trader.object import OrderData
from vnpy_ctastrategy.template import CtaTemplate

from qsm_vnpy import orders
from strategy_manager.core.errors import EngineHalted, QsmError

if TYPE_CHECKING:
    from qsm_vnpy.cta import CtaRunner


@define
class Holder:
    """A strategy of the account trading the symbol."""

    sid: str
    pos: float
    #: restoring, starting, running or stopped.
    how: str
    policy: str


@define
class Comparison:
    holders: list[Holder]
    broker: float
    #: This snapshot's orders still open at the gateway.
    mine: list[str] = field(factory=list)
    unknown: list[OrderData] = field(factory=list)
    gone: list[str] = field(factory=list)
    #: The symbol's other strategies in the session, running or starting (halted with
    #: this one on ``halt``).
    running: list[CtaRunner] = field(factory=list)

    @property
    def total(self) -> float:
        return sum(h.pos for h in self.holders)


def check(runner: CtaRunner, strategy: CtaTemplate, restored: dict[str, Any] | None) -> list[str]:
    """Compare, apply ``on_mismatch``; return the snapshot's orders to attach again.
    Raises EngineHalted when the strategy (and its symbol in the account) must stay stopped."""
    session = runner.session
    assert session is not None and session.cta is not None
    if session.replay is None:
        waited = time.monotonic() - session.connected_at
        if waited < runner.settings.position_wait:
            runner.context.stop_event.wait(runner.settings.position_wait - waited)
    peers = _peers(runner)
    found: Comparison = session.call(lambda: _compare(runner, strategy, restored, peers))
    vt, gateway = runner.vt_symbol, session.gateway_name
    group = len(found.holders) > 1
    facts = []
    if not math.isclose(found.broker, found.total, abs_tol=1e-9):
        if group:
            parts = ", ".join(f"{h.sid} {h.pos:g} ({h.how})" for h in found.holders)
            facts.append(
                f"position mismatch on {vt} in account {session.name}: {parts} sum to "
                f"{found.total:g}, gateway {gateway} reports {found.broker:g}"
            )
        else:
            facts.append(
                f"position mismatch on {vt}: the snapshot has pos {found.holders[0].pos:g}, "
                f"gateway {gateway} reports {found.broker:g}"
            )
    unknown = found.unknown
    if restored is not None and restored["format"] == 1 and unknown:  # written before orders were saved
        runner.context.logger.info(
            "the snapshot predates saved orders; %d open order(s) at gateway %s are not checked",
            len(unknown),
            gateway,
        )
        unknown = []
    if unknown:
        listed = ", ".join(orders.describe(order) for order in unknown)
        knows = f"no strategy of account {session.name} knows" if group else "the snapshot does not know"
        facts.append(f"gateway {gateway} has open order(s) on {vt} {knows}: {listed}")
    if found.gone:
        runner.context.logger.info(
            "order(s) %s of the snapshot no longer open at gateway %s (filled or cancelled meanwhile)",
            ", ".join(found.gone),
            gateway,
        )
    cta = session.cta
    if not facts:
        cta.halted.pop(vt, None)
        return found.mine
    policies = {h.policy for h in found.holders}
    policy = policies.pop() if len(policies) == 1 else "halt"
    why = "" if len(policies) <= 1 else "; their documents' on_mismatch differ"
    if policy == "trust_broker" and group:
        count = len(found.holders)
        policy, why = "halt", f"; trust_broker cannot split a difference among {count} strategies"
    if policy == "halt":
        if group:
            text = (
                f"{'; '.join(facts)}{why}; on_mismatch 'halt' keeps the {len(found.holders)} strategies of "
                f"{vt} in account {session.name} stopped (fix the account, then change a document or "
                "'strategies enable' them)"
            )
            cta.halted[vt] = f"the resume check halted {vt} in account {session.name}"
            for other in found.running:
                other.halt(text)
        else:
            text = (
                f"{'; '.join(facts)}; on_mismatch 'halt' keeps it stopped "
                "(set params.vnpy.on_mismatch to 'trust_broker' or 'trust_snapshot' to resume)"
            )
        raise EngineHalted(f"{runner.sid}: {text}")
    if policy == "trust_broker":
        strategy.pos = found.broker
        runner.context.logger.warning(
            "%s; trusting the broker: pos set to %g, its open orders are the strategy's",
            "; ".join(facts),
            found.broker,
        )
        return found.mine + [order.vt_orderid for order in unknown]
    runner.context.logger.warning(
        "%s; trusting the snapshot: pos stays %g, unknown orders are left alone",
        "; ".join(facts),
        strategy.pos,
    )
    return found.mine


@define
class _Peer:
    sid: str
    pos: float
    policy: str
    orders: set[str]


def _peers(runner: CtaRunner) -> list[_Peer]:
    """The account's strategies of the symbol that are not running in the session,
    from their latest snapshots."""
    from qsm_vnpy.settings import split_params

    session = runner.session
    assert session is not None
    found = []
    for sid, member in runner.context.members.items():
        if sid == runner.sid or sid in session.runners:
            continue
        snapshot = member.snapshot or {}
        variables = snapshot.get("variables")
        pos = variables.get("pos") if isinstance(variables, dict) else None
        if snapshot.get("vt_symbol") != runner.vt_symbol or not isinstance(pos, int | float):
            continue
        try:
            policy = split_params(member.spec)[0].on_mismatch
        except QsmError:
            policy = "halt"
        known = {o.get("vt_orderid") for o in snapshot.get("orders", []) if isinstance(o, dict)}
        found.append(_Peer(sid, float(pos), policy, {k for k in known if isinstance(k, str)}))
    return found


def _compare(
    runner: CtaRunner, strategy: CtaTemplate, restored: dict[str, Any] | None, peers: list[_Peer]
) -> Comparison:
    """The facts, on the event thread (nothing moves meanwhile)."""
    session = runner.session
    assert session is not None and session.cta is not None and session.main is not None
    cta, vt = session.cta, runner.vt_symbol
    running = [r for r in session.runners.values() if r is not runner and r.vt_symbol == vt]
    how = "restoring" if restored else "starting"
    holders = [Holder(runner.sid, float(strategy.pos), how, runner.settings.on_mismatch)]
    for r in running:
        other = cta.strategies.get(r.sid)
        inited = other is not None and other.inited  # its variables are back
        pos = float(other.pos) if inited else r.restored_pos
        holders.append(Holder(r.sid, pos, "running" if r.started else "starting", r.settings.on_mismatch))
    holders += [Holder(p.sid, p.pos, "stopped", p.policy) for p in peers]
    mine = {saved["vt_orderid"] for saved in (restored or {}).get("orders", [])}
    known = set(mine)
    for r in running:
        known |= cta.strategy_orderid_map.get(r.sid, set())
    for p in peers:
        known |= p.orders
    open_orders = [o for o in session.main.get_all_active_orders() if o.vt_symbol == vt]
    open_ids = {o.vt_orderid for o in open_orders}
    return Comparison(
        holders=holders,
        broker=session.broker_position(vt),
        mine=sorted(mine & open_ids),
        unknown=sorted((o for o in open_orders if o.vt_orderid not in known), key=lambda o: o.vt_orderid),
        gone=sorted(mine - open_ids),
        running=running,
    )
