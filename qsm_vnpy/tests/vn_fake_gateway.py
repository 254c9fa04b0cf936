"""A live gateway's shape for the tests: its connection and credentials in
``default_setting``. Imported only through the class loader, after the plugin has
pointed vnpy at its folder."""

from __future__ import annotations

from typing import Any

from vnpy.trader.gateway import BaseGateway


class FakeCtpGateway(BaseGateway):
    default_name = "FAKE"
    default_setting: dict[str, Any] = {
        "用户名": "",
        "密码": "",
        "经纪商代码": "",
        "交易服务器": "",
        "行情服务器": "",
        "授权编码": "",
    }
    exchanges = []

    def connect(self, setting: dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def subscribe(self, req: Any) -> None: ...
    def send_order(self, req: Any) -> str:
        return ""

    def cancel_order(self, req: Any) -> None: ...
    def query_account(self) -> None: ...
    def query_position(self) -> None: ...


def not_a_gateway() -> None:
    """Named as a gateway class by a test: refused, never called."""
