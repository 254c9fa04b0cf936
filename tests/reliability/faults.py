"""Fault injectors shared by the reliability tests and the soak run."""

from __future__ import annotations

from typing import Any

from strategy_manager.core.errors import StoreError


class FlakyStore:
    """The real store behind a switch: while ``down``, every call fails as a lost
    connection does (StoreError), and ``failed`` counts the calls refused."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.down, self.failed = inner, False, 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.failed += 1
                raise StoreError(f"store: {name}: unavailable (injected fault)")
            return target(*args, **kwargs)

        return call
