"""The plugin's hooks one by one: what it reports, what it refuses and why, feeds."""

from __future__ import annotations

import copy
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pandas as pd
import pytest
from backtrader.strategies import SMA_CrossOver
from bt_support import BARS, SEED, assert_same_as_oracle_json

from qsm_backtrader import plugin
from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.errors import ClassRefused, EngineError, InvalidStrategy, QsmError, SnapshotError
from strategy_manager.core.registry import EngineRegistry


def create(driver, spec):
    return plugin.qsm_create_engine(spec=spec, context=driver.context(spec))


def test_engine_info_through_the_registry():
    entry = next(e for e in EngineRegistry.from_entry_points().entries() if e.name == "backtrader")
    assert entry.status == "ok", entry.error
    assert entry.version == version("backtrader")
    assert set(entry.capabilities) >= {"snapshot", "restore"}


def test_importing_the_plugin_does_not_import_backtrader():
    code = "import sys, qsm_backtrader.plugin as p; p.qsm_engine_info(); print('backtrader' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_strategy_parameter_names_the_known_ones(driver):
    with pytest.raises(InvalidStrategy, match=r"u:SYM:k: params for SMA_CrossOver: unknown 'fsat'; known: .*fast, slow"):
        create(driver, driver.spec(params={"fsat": 3}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"feed": {"csv": None}}, r"field 'params.backtrader.feed': needs exactly one of 'csv', 'parquet', 'factory' or 'store'"),
        ({"feed": {"csv": "a.csv", "factory": "m:f"}}, r"got \['csv', 'factory'\]"),
        ({"cahs": 5}, r"field 'params.backtrader': extra fields found \(cahs\)"),
        ({"cash": "lots"}, r"field 'params.backtrader.cash': invalid value for type, expected float"),
        ({"feed": {"timeframe": "hours"}}, r"'params.backtrader.feed.timeframe': must be one of 'ticks'"),
        ({"feed": {"pace": -1}}, r"pace must be 0"),
        ({"cerebro": {"stdstat": False}}, r"params.backtrader.cerebro: unknown 'stdstat'; known: .*stdstats"),
        ({"cerebro": {"cheat_on_open": True}}, r"cheat_on_open not supported"),
        ({"broker": {"cash": 1.0}}, r"params.backtrader.broker: unknown 'cash'; known: checksubmit"),
        ({"commission": {"comision": 0.1}}, r"params.backtrader.commission: .*'comision'"),
        ({"sizer": {"factory": "backtrader.sizers:FixedSize", "kwargs": {"stak": 1}}},
         r"sizer.kwargs for FixedSize: unknown 'stak'; known: stake"),
        ({"sizer": {"factory": "backtrader.strategies:SMA_CrossOver"}},
         r"params.backtrader.sizer.factory 'backtrader.strategies:SMA_CrossOver' refused: module"),
        ({"sizer": {"factory": "test_bt_hooks:Crashing"}},
         r"'Crashing' is not a subclass of backtrader.sizer.Sizer"),
        ({"feed": {"reader": {"dtfmt": "%Y"}}}, r"feed.reader for GenericCSVData: unknown 'dtfmt'; known: .*dtformat"),
    ],
)
def test_bad_adapter_settings_are_refused_with_the_reason(driver, settings, message):
    spec = driver.spec(feed=settings.pop("feed", None), **settings)
    with pytest.raises(QsmError, match=message):
        create(driver, spec)


def test_missing_settings_and_missing_engine_class(driver):
    spec = driver.spec()
    no_settings = copy.deepcopy(spec.params)
    del no_settings["backtrader"]
    with pytest.raises(InvalidStrategy, match=r"'params.backtrader' must be an object with at least a 'feed'"):
        create(driver, spec.__class__(**{**_fields(spec), "params": no_settings}))
    with pytest.raises(InvalidStrategy, match="needs an engine_class"):
        create(driver, spec.__class__(**{**_fields(spec), "engine_class": None}))


def _fields(spec: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(spec, recurse=False)


def test_engine_class_must_be_an_allowed_strategy(driver):
    with pytest.raises(ClassRefused, match=r"'backtrader\.indicators' is neither inside"):
        create(driver, driver.spec("backtrader.indicators.SMA"))
    with pytest.raises(ClassRefused, match=r"'GeneratedFeed' is not a subclass of backtrader\.strategy\.Strategy"):
        create(driver, driver.spec("qsm_backtrader.examples.prices.GeneratedFeed"))


def test_feed_files_that_cannot_be_used_are_named(driver, tmp_path):
    with pytest.raises(EngineError, match=r"u:SYM:k: feed csv '.*nope.csv' cannot be read"):
        create(driver, driver.spec(feed={"csv": str(tmp_path / "nope.csv")}))
    bad = tmp_path / "bad.csv"
    bad.write_text("when,open,close\n2020-01-01,1,2\n")
    with pytest.raises(EngineError, match=r"lacks column\(s\) high, low, datetime or date"):
        create(driver, driver.spec(feed={"csv": str(bad)}))


def _minute_csv(path, split_time: bool = False):
    """Two days of 1-minute bars, 09:30 to 11:29, optionally with date and time in two columns."""
    rows = ["date,time,open,high,low,close,volume" if split_time else "datetime,open,high,low,close,volume"]
    price = 20.0
    for day in ("2026-09-01", "2026-09-02"):
        for minute in range(120):
            stamp = f"{9 + (30 + minute) // 60:02d}:{(30 + minute) % 60:02d}:00"
            close = round(price + (0.05 if (minute // 7) % 2 else -0.05), 2)
            when = f"{day},{stamp}" if split_time else f"{day}T{stamp}"
            rows.append(f"{when},{price},{max(price, close) + 0.01},{min(price, close) - 0.01},{close},100")
            price = close
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("split_time", [False, True], ids=["datetime", "date-and-time"])
def test_intraday_bars_without_a_timeframe_are_refused_naming_it(driver, tmp_path, split_time):
    csv = _minute_csv(tmp_path / "minutes.csv", split_time)
    reader = {"dtformat": "%Y-%m-%d", "tmformat": "%H:%M:%S"} if split_time else {}
    with pytest.raises(InvalidStrategy) as caught:
        create(driver, driver.spec(feed={"csv": str(csv), "reader": reader}))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("u:SYM:k: feed csv ") and "has intraday bars (two on 2026-09-01)" in message
    assert "set params.backtrader.feed.timeframe" in message


def test_intraday_bars_with_a_timeframe_keep_their_times(driver, tmp_path):
    csv = _minute_csv(tmp_path / "minutes.csv")
    final = driver.run_to_end(driver.spec(feed={"csv": str(csv), "timeframe": "minutes"}))
    assert final["bars"] == 240 and final["last_bar"]["iso"] == "2026-09-02T11:29:00"
    assert final["history_total"] > 10  # SMA_CrossOver traded on them


def test_relative_csv_paths_resolve_against_data_root(driver, prices_csv):
    spec = driver.spec(feed={"csv": prices_csv.name})
    context = driver.context(spec, data_root=str(prices_csv.parent))
    engine = plugin.qsm_create_engine(spec=spec, context=context)
    assert engine.data.p.dataname == str(prices_csv)


def test_feed_factories_are_checked(driver):
    with pytest.raises(ClassRefused, match="'os' is neither inside"):
        create(driver, driver.spec(feed={"csv": None, "factory": "os:getcwd"}))
    with pytest.raises(ClassRefused, match="'generate_bars' is a function, not a class"):
        spec = driver.spec(feed={"csv": None, "factory": "qsm_backtrader.examples.prices:generate_bars",
                                 "kwargs": {"count": 3}})
        create(driver, spec)
    with pytest.raises(ClassRefused, match=r"'Crashing' is not a subclass of backtrader\.feed\.AbstractDataBase"):
        create(driver, driver.spec(feed={"csv": None, "factory": "test_bt_hooks:Crashing"}))
    with pytest.raises(EngineError, match=r"feed factory 'backtrader.feeds:GenericCSVData' raised TypeError"):
        create(driver, driver.spec(feed={"csv": None, "factory": "backtrader.feeds:GenericCSVData"}))


@pytest.mark.parametrize(
    "factory",
    [
        "backtrader.feeds:bt.os.system",  # walking from a vouched module to os.system
        "backtrader.feeds.vchart:os.system",
        "backtrader.feeds.vchart.os.popen",  # the dotted form of the same walk
        "backtrader.feeds:os",  # a module reached through a vouched one
        "backtrader.feeds.vchart:open",  # a builtin function
        "backtrader.feeds:DataBase",  # a feed class, but defined in backtrader.feed: a re-export
        "backtrader.feeds.ibdata:inspect.importlib.import_module",
    ],
)
def test_a_document_cannot_call_what_a_vouched_module_imports(driver, tmp_path, factory):
    """The reported exploit: a feed factory reaching os.system through backtrader.feeds,
    called with the document's kwargs. Nothing is called; the marker never appears."""
    marker = tmp_path / "pwned"
    kwargs = {"command": f"touch {marker}", "name": "qsm_never_imported"}
    with pytest.raises(ClassRefused) as refused:
        create(driver, driver.spec(feed={"csv": None, "factory": factory, "kwargs": kwargs}))
    assert "\n" not in str(refused.value)
    assert not marker.exists()
    assert "qsm_never_imported" not in sys.modules


def test_a_factory_feed_of_the_same_bars_gives_the_same_run(driver, sma_oracle):
    feed = {"csv": None, "factory": "qsm_backtrader.examples.prices:GeneratedFeed",
            "kwargs": {"bars": BARS, "seed": SEED}}
    assert_same_as_oracle_json(driver.run_to_end(driver.spec(feed=feed)), sma_oracle)


def test_a_parquet_feed_of_the_same_bars_gives_the_same_run(driver, sma_oracle, prices_csv, tmp_path):
    pytest.importorskip("pyarrow", reason="parquet feeds need pyarrow, an optional dependency")
    frame = pd.read_csv(prices_csv, parse_dates=["date"])
    # parquet timestamps are taken as they are; the CSV feed stamps daily bars at the session end
    frame["date"] += pd.Timedelta(hours=23, minutes=59, seconds=59, microseconds=999990)
    frame.to_parquet(tmp_path / "prices.parquet")
    spec = driver.spec(feed={"csv": None, "parquet": str(tmp_path / "prices.parquet")})
    assert_same_as_oracle_json(driver.run_to_end(spec), sma_oracle)


def test_snapshot_before_start_and_after_restore(driver):
    engine, context = driver.create(driver.spec())
    assert plugin.qsm_snapshot_engine(engine=engine, context=context) is None
    snap = driver.stop(*driver.hold_at(200))
    engine, context = driver.create(driver.spec(), snapshot=snap)
    assert plugin.qsm_snapshot_engine(engine=engine, context=context) == snap


def _corrupt(snap: dict[str, Any], how: str) -> dict[str, Any]:
    snap = copy.deepcopy(snap)
    if how == "format":
        snap["format"] = "qsm-backtrader/0"
    elif how == "broker":
        del snap["broker"]
    elif how == "cash":
        snap["broker"]["cash"] = "100"
    elif how == "class":
        snap["strategy_class"] = "backtrader.strategies.Other"
    elif how == "linked":
        snap["submitted"][0]["linked"] = True
    elif how == "bars":
        snap["last_bar"] = None
    return snap


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("format", r"snapshot key 'format' is 'qsm-backtrader/0'"),
        ("broker", r"snapshot key 'broker' is missing"),
        ("cash", r"snapshot key 'broker.cash' is missing or not a number"),
        ("class", r"snapshot was taken from 'backtrader.strategies.Other'"),
        ("linked", r"snapshot holds order ref \d+ of a bracket or OCO group in 'submitted'"),
        ("bars", r"snapshot keys 'bars' and 'last_bar' disagree"),
    ],
)
def test_snapshots_that_cannot_be_restored_exactly_are_refused(driver, sma_oracle, how, message):
    buy = next(o for o in sma_oracle["orders"][4:] if o.isbuy())
    bars = sma_oracle["dates"].index(_day(buy.created.dt)) + 1
    snap = driver.stop(*driver.hold_at(bars))
    assert snap["submitted"]
    engine, context = driver.create(driver.spec())
    with pytest.raises(SnapshotError, match="u:SYM:k: " + message):
        plugin.qsm_restore_engine(engine=engine, snapshot=_corrupt(snap, how), context=context)


def _day(num: float) -> str:
    import backtrader as bt

    return bt.num2date(num).date().isoformat()


class Opaque(SMA_CrossOver):
    qsm_state = ["handle"]

    def __init__(self) -> None:
        super().__init__()
        self.handle = object()


class Counting(SMA_CrossOver):
    """Keeps its state through get_state()/set_state() instead of qsm_state."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def next(self) -> None:
        self.seen += 1
        super().next()

    def get_state(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]


def test_state_a_snapshot_cannot_keep_is_named(driver):
    engine, context = driver.hold_at(100, driver.spec(f"{__name__}.Opaque", feed={"hold_after_bars": 100}))
    with pytest.raises(SnapshotError, match=r"u:SYM:k: strategy attribute 'handle' holds a object"):
        plugin.qsm_snapshot_engine(engine=engine, context=context)


def test_get_state_and_set_state_carry_the_strategy_state(driver, sma_oracle):
    name = f"{__name__}.Counting"
    whole = driver.run_to_end(driver.spec(name))
    # next() runs from bar 31: the crossover of a 30-bar SMA needs one bar more
    assert whole["strategy_state"] == {"get_state": {"seen": BARS - 30}}
    snap = driver.stop(*driver.hold_at(1000, driver.spec(name, feed={"hold_after_bars": 1000})))
    assert snap["strategy_state"] == {"get_state": {"seen": 1000 - 30}}
    final = driver.run_to_end(driver.spec(name), snapshot=snap)
    assert final["strategy_state"] == whole["strategy_state"]
    assert_same_as_oracle_json(final, sma_oracle)


def test_the_classloader_is_used_for_every_class(driver):
    spec = driver.spec("test_bt_hooks.Crashing")
    assert plugin.qsm_create_engine(spec=spec, context=driver.context(spec))  # allowed by the driver
    context = driver.context(spec)
    context.classes = ClassLoader((), ["backtrader.sizers"])  # the operator allows no test module
    with pytest.raises(ClassRefused, match="'test_bt_hooks' is neither inside"):
        plugin.qsm_create_engine(spec=spec, context=context)


class Crashing(SMA_CrossOver):
    def next(self) -> None:
        if len(self) == 50:
            raise RuntimeError("bad bar")
        super().next()


def test_a_crash_in_the_strategy_is_reported_and_leaves_no_snapshot(driver):
    import threading

    spec = driver.spec(f"{__name__}.Crashing")
    engine, context = driver.create(spec)
    crashed: list[BaseException] = []
    done = threading.Event()
    context.on_crash = lambda exc: (crashed.append(exc), done.set())
    plugin.qsm_start_engine(engine=engine, context=context)
    assert done.wait(30)
    assert isinstance(crashed[0], RuntimeError) and str(crashed[0]) == "bad bar"
    assert plugin.qsm_snapshot_engine(engine=engine, context=context) is None


def test_the_example_documents_run(driver):
    import json
    from importlib.resources import files

    from strategy_manager.core.spec import parse_strategy

    documents = json.loads(files("qsm_backtrader.examples").joinpath("strategies.json").read_text())
    for document in documents:
        spec = parse_strategy(document)
        feed = spec.params["backtrader"]["feed"]
        assert feed["pace"] > 0  # paced for the demo; run this test at full speed
        fast = {**spec.params, "backtrader": {**spec.params["backtrader"], "feed": {**feed, "pace": 0}}}
        final = driver.run_to_end(parse_strategy({**document, "params": fast}))
        assert final["bars"] == feed["kwargs"]["bars"]
        assert final["history_total"] > 10
