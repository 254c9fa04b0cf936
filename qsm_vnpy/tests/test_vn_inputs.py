"""Bad documents and files get one-line errors naming the field or file and the
reason; symbols map to vnpy's exchanges."""

from __future__ import annotations

import pytest
from vn_support import document

from qsm_vnpy import plugin
from qsm_vnpy.symbols import to_vt_symbol
from strategy_manager.core.errors import ClassRefused, InvalidStrategy
from strategy_manager.core.spec import parse_strategy


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("002050.SZ", "002050.SZSE"),
        ("600000.SH", "600000.SSE"),
        ("600000.SS", "600000.SSE"),
        ("430047.BJ", "430047.BSE"),
        ("rb2501.SHFE", "rb2501.SHFE"),
        ("IF2512.CFFEX", "IF2512.CFFEX"),
        ("00700.HK", "00700.SEHK"),
    ],
)
def test_symbols_map_to_vnpy_exchanges(symbol, expected):
    assert to_vt_symbol(symbol) == expected


def test_the_exchange_map_is_configurable_and_unknown_suffixes_are_named():
    assert to_vt_symbol("AAPL.US", {"US": "SMART"}) == "AAPL.SMART"
    with pytest.raises(InvalidStrategy, match="exchange 'XX' is not a vnpy exchange"):
        to_vt_symbol("123.XX", sid="s")
    with pytest.raises(InvalidStrategy, match="has no exchange suffix"):
        to_vt_symbol("002050", sid="s")


def _create(driver, doc, **options):
    spec = parse_strategy(doc)
    return plugin.qsm_create_engine(spec=spec, context=driver.context(spec, **options))


def _doc(bars_csv, **changes):
    doc = document("k", bars_csv)
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        if value is None:
            target.pop(last)
        else:
            target[last] = value
    return doc


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"params__vnpy": None}, "field 'params.vnpy' must be an object with at least a 'gateway'"),
        ({"params__vnpy__gateway": None}, "params.vnpy.gateway"),
        ({"params__vnpy__on_mismatch": "ignore"}, "must be one of 'halt', 'trust_broker', 'trust_snapshot'"),
        ({"params__vnpy__gateway__name": "NOPE"}, "gateway 'NOPE' is not one of"),
        ({"params__vnpy__gateway__name": "CTP", "params__vnpy__gateway__setting": {}},
         "gateway 'CTP' needs the package vnpy_ctp"),
        ({"params__vnpy__gateway__name": "CTP"}, "'csv', 'start' may not be set by a document for gateway 'CTP'"),
        ({"params__vnpy__gateway__colour": "red"}, "unknown key(s) colour"),
        ({"params__fast_windw": 5}, "params for DoubleMaStrategy: unknown 'fast_windw'; known: fast_window, slow_window"),
        ({"params__fast_window": "ten"}, "params for DoubleMaStrategy: 'fast_window' must be an integer, got 'ten'"),
        ({"engine_class": None}, "needs an engine_class"),
        ({"params__vnpy__gateway__setting__pace": -1}, "pace must be 0"),
        ({"params__vnpy__gateway__setting__start": "soon"}, "start must be an ISO date-time"),
        ({"params__vnpy__gateway__setting__timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"params__vnpy__gateway__setting__csv": None}, "params.vnpy.gateway.setting.csv"),
    ],
)
def test_bad_documents_are_refused_in_one_line(driver, bars_csv, changes, message):
    with pytest.raises(InvalidStrategy) as caught:
        _create(driver, _doc(bars_csv, **changes))
    text = str(caught.value)
    assert message in text
    assert text.startswith("u:002050.SZ:k: ") and "\n" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,open\n", "missing column(s) datetime, high, low, close"),
        ("datetime,open,high,low,close\n2026-09-01T09:30:00,1,2,0.5,x\n", "line 2"),
        (
            "datetime,open,high,low,close\n2026-09-01T09:30:00,1,2,0.5,1\n2026-09-01T09:30:00,1,2,0.5,1\n",
            "does not come after the previous bar",
        ),
        ("datetime,open,high,low,close\n2026-09-01T09:30:30,1,2,0.5,1\n", "is not on the minute"),
        ("datetime,open,high,low,close\n2026-09-01T09:30:00,1,0.9,0.5,1\n", "0 < low <= open, close <= high"),
        ("datetime,open,high,low,close\n", "has no bars"),
    ],
)
def test_bad_replay_files_fail_the_start_naming_file_and_line(driver, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    engine, context = driver.create(parse_strategy(document("k", bad)))
    with pytest.raises(InvalidStrategy) as caught:
        plugin.qsm_start_engine(engine=engine, context=context)
    assert message in str(caught.value) and "bad.csv" in str(caught.value)


def test_a_missing_replay_file_is_named(driver, tmp_path):
    engine, context = driver.create(parse_strategy(document("k", tmp_path / "absent.csv")))
    with pytest.raises(InvalidStrategy, match=r"absent\.csv': cannot be read"):
        plugin.qsm_start_engine(engine=engine, context=context)


def test_the_operators_gateway_settings_win_over_the_documents(driver, bars_csv):
    doc = document("k", bars_csv)
    doc["params"]["vnpy"]["gateway"]["setting"]["pace"] = 5
    runner = _create(driver, doc, gateways={"REPLAY": {"pace": 1, "size": 10}})
    assert runner.plan.stream.pace == 1 and runner.plan.replay.size == 10  # what the replay runs with


OPERATOR = {"用户名": "8000123", "密码": "operator-pw", "交易服务器": "tcp://broker.example:41205"}


def _fake_doc(bars_csv, setting):
    doc = document("k", bars_csv)
    doc["params"]["vnpy"]["gateway"] = {"name": "FAKE", "class": "vn_fake_gateway.FakeCtpGateway", "setting": setting}
    return doc


@pytest.mark.parametrize("key", ["交易服务器", "行情服务器", "用户名", "经纪商代码"])
def test_a_document_cannot_redirect_the_operators_credentials(driver, bars_csv, key):
    """A document pointing the front address (or the account) elsewhere is refused:
    the operator's user name and password must never be sent to the document's server."""
    with pytest.raises(InvalidStrategy) as caught:
        _create(driver, _fake_doc(bars_csv, {key: "tcp://evil.example:1"}), gateways={"FAKE": OPERATOR})
    text = str(caught.value)
    assert f"params.vnpy.gateway.setting: {key!r} may not be set by a document for gateway 'FAKE'" in text
    assert "evil" not in text and "operator-pw" not in text and "\n" not in text


def test_a_gateway_connects_with_the_operators_settings_and_the_keys_the_operator_lets_documents_set(
    driver, bars_csv
):
    runner = _create(driver, _fake_doc(bars_csv, {}), gateways={"FAKE": OPERATOR})
    assert runner.plan.setting == OPERATOR
    doc = _fake_doc(bars_csv, {"授权编码": "doc-code", "交易服务器": "tcp://evil.example:1"})
    runner = _create(
        driver, doc, gateways={"FAKE": OPERATOR}, document_keys={"FAKE": ["授权编码", "交易服务器"]}
    )
    assert runner.plan.setting == {**OPERATOR, "授权编码": "doc-code"}  # the operator's front still wins


def test_a_gateway_class_must_be_a_base_gateway(driver, bars_csv):
    doc = document("k", bars_csv)
    doc["params"]["vnpy"]["gateway"] = {"name": "X", "class": "vn_fake_gateway.not_a_gateway"}
    with pytest.raises(ClassRefused, match=r"params\.vnpy\.gateway\.class .* is a function, not a class"):
        _create(driver, doc)


def test_engine_info_reports_vnpy_version_and_capabilities():
    from importlib.metadata import version

    info = plugin.qsm_engine_info()
    assert info["version"] == version("vnpy")
    assert {"snapshot", "restore", "cta", "user-engine", "replay-gateway", "resume-check"} <= set(
        info["capabilities"]
    )
