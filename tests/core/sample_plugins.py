"""Plugins with one defect each, loaded through real EntryPoint objects by the registry tests."""

from __future__ import annotations

from typing import Any

from strategy_manager.core.hookspecs import hookimpl


class Good:
    def __init__(self, name: str = "good") -> None:
        self.name = name

    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        return {"name": self.name, "version": "1.0", "capabilities": [], "description": "ok"}

    @hookimpl
    def qsm_create_engine(self, spec: Any, context: Any) -> Any:
        return {"spec": spec}

    @hookimpl
    def qsm_start_engine(self, engine: Any, context: Any) -> None:
        engine["started"] = True

    @hookimpl
    def qsm_stop_engine(self, engine: Any) -> None:  # a subset of the arguments is allowed
        engine["stopped"] = True


good = Good()
other = Good("other")


class Misspelled(Good):
    @hookimpl
    def qsm_start_engin(self, engine: Any, context: Any) -> None: ...


misspelled = Misspelled("misspelled")


class Unmarked(Good):
    def qsm_snapshot_engine(self, engine: Any, context: Any) -> dict[str, Any]:
        return {}


unmarked = Unmarked("unmarked")


class WrongSignature(Good):
    @hookimpl
    def qsm_create_engine(self, spec: Any, context: Any, extra: Any) -> Any: ...


wrong_signature = WrongSignature("wrong_signature")


class Missing:
    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        return {"name": "missing", "version": "1"}


missing = Missing()


class ClaimsSnapshot(Good):
    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        return {"name": self.name, "version": "1", "capabilities": ["snapshot"]}


claims_snapshot = ClaimsSnapshot("claims_snapshot")
wrong_name = Good("not-its-entry-point-name")


class InfoRaises(Good):
    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        raise RuntimeError("no version file")


info_raises = InfoRaises("info_raises")
