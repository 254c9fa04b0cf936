"""An account's shared store: one connection that every strategy of the account takes
its live feeds from (IB's one client id, an exchange's rate limit).

An account of engine ``backtrader`` names a store factory in the ``accounts``
setting::

    {"accounts": {"ib-main": {"engine": "backtrader",
                              "store": {"factory": "backtrader.stores:IBStore",
                                        "kwargs": {"host": "127.0.0.1", "port": 7497, "clientId": 7}}}}}

The factory is a class (never a function), loaded under the core's class rules
(the operator's ``import_paths`` and ``engine_class_allow``, or ``backtrader.stores``)
and checked to have a ``getdata`` method. When the first strategy of the account is
about to start, the core opens the account's session: the factory is called once,
with the account's ``kwargs`` (its connection settings, masked wherever settings are
shown), plus ``account=<the account's name>`` when the factory takes an ``account``
keyword. Every strategy of the account whose document's feed is ``{"store":
{...}}`` gets its feed from that one store: ``store.getdata(**feed.store)``. When
the session closes (the grace period after the account's last strategy stopped, or
shutdown) the store's ``stop()`` is called, if it has one.

backtrader's own stores are singletons per class in a process (``MetaSingleton``):
two accounts with the same store class share one store, whatever their kwargs.
"""

from __future__ import annotations

import inspect
from typing import Any

from qsm_backtrader.settings import AccountSettings
from strategy_manager.core.context import Account, EngineContext, SessionContext
from strategy_manager.core.errors import EngineError, InvalidStrategy
from strategy_manager.core.spec import structure_section

#: Modules whose store classes an account may name without configuration.
STORE_MODULES = ("backtrader.stores",)


def account_settings(account: Account) -> AccountSettings:
    where = f"account {account.name}"
    found: AccountSettings = structure_section(dict(account.settings), AccountSettings, where, "accounts")
    return found


def store_class(account: Account, context: EngineContext | SessionContext) -> type:
    """The account's store factory: a class with ``getdata``, loaded under the class rules."""
    settings = account_settings(account)
    what = f"accounts.{account.name}.store.factory"
    cls = context.load_class(settings.store.factory, kind=object, trusted=STORE_MODULES, what=what)
    if not callable(getattr(cls, "getdata", None)):
        raise InvalidStrategy(f"account {account.name}: {what} {cls.__name__} has no getdata method")
    return cls


class StoreSession:
    """The store of one account, shared by its strategies."""

    def __init__(self, account: Account, store: Any) -> None:
        self.account = account
        self.store = store
        #: How many feeds the strategies took from it.
        self.feeds = 0

    @classmethod
    def open(cls, account: Account, context: SessionContext) -> StoreSession:
        factory = store_class(account, context)
        kwargs = dict(account_settings(account).store.kwargs)
        try:
            accepts = "account" in inspect.signature(factory).parameters
        except (TypeError, ValueError):
            accepts = False
        if accepts:
            kwargs["account"] = account.name
        try:
            store = factory(**kwargs)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            raise EngineError(
                f"account {account.name}: store {factory.__name__} raised {type(exc).__name__}: {reason}"
            ) from exc
        return cls(account, store)

    def getdata(self, kwargs: dict[str, Any], sid: str) -> Any:
        """A feed of the store for strategy ``sid``."""
        import backtrader as bt

        try:
            feed = self.store.getdata(**kwargs)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            raise EngineError(
                f"{sid}: getdata of account {self.account.name}'s store raised {type(exc).__name__}: {reason}"
            ) from exc
        if not isinstance(feed, bt.feed.AbstractDataBase):
            got, name = type(feed).__name__, self.account.name
            raise EngineError(f"{sid}: the store of account {name} returned {got}, not a data feed")
        self.feeds += 1
        return feed

    def close(self) -> None:
        stop = getattr(self.store, "stop", None)
        if callable(stop):
            stop()
