"""A strategy document can never run code: hostile documents, generated with hypothesis
and written by hand from the reported exploits, go through the real command line.

Each payload is made harmless: if any of them ran, it would touch a marker file. The
documents go in three ways while (or before) ``strategy-manager run`` runs: through
``strategies import``, written straight into the embedded SQLite store, and written
straight into MongoDB (the wire-protocol server). The processes that load documents
run under an audit hook (``instrumented.py``) that records every import, every
attempt to start a process and every touch of the marker. Then:

* the marker never appears, and nothing tried to open it or start a process;
* no module is imported that the same run of only the legitimate documents does not
  import, except modules the operator or an adapter admits;
* the legitimate documents around the hostile ones run (or fail) exactly as alone,
  checked while ``run`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "instrumented.py"

#: Modules a document may cause to be imported besides those the legitimate documents
#: need: the operator's import path package and what the adapters vouch for.
ADMITTED = (
    "qsm_user",
    "backtrader.strategies",
    "backtrader.sizers",
    "backtrader.feeds",
    "qsm_backtrader",
    "vnpy_ctastrategy.strategies",
    "qsm_vnpy.examples",
)

SETTLED = {"RUNNING", "FINISHED", "FAILED", "WAITING", "BLOCKED", "DISABLED", "PAUSED"}

USER_ENGINES = textwrap.dedent("""
    import os
    import shutil
    import subprocess
    from os import system
    from subprocess import Popen

    class Counter:
        def __init__(self, symbol, params):
            self.n = 0
        def start(self):
            self.n += 1
        def stop(self):
            pass
        def snapshot(self):
            return {"n": self.n}
        def restore(self, state):
            self.n = state["n"]

    class Failing(Counter):
        def start(self):
            raise RuntimeError("exchange login refused")
""")


def evil_module(marker: Path) -> str:
    return textwrap.dedent(f"""
        open({str(marker)!r}, "a").write("imported {{}}\\n".format(__name__))

        class Evil:
            def __init__(self, *args, **kwargs):
                open({str(marker)!r}, "a").write("constructed\\n")
    """)


class Operator:
    """One operator's machine: config, import path, the marker and the payload modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "PWNED"
        self.imports = root / "imports"
        (self.imports / "qsm_user").mkdir(parents=True)
        (self.imports / "qsm_user" / "__init__.py").write_text("")
        (self.imports / "qsm_user" / "engines.py").write_text(USER_ENGINES)
        for shadow in ("json", "wave", "backtrader", "qsm_evil", "this"):
            (self.imports / shadow).mkdir()  # a name collision must admit nothing
        self.outside = root / "outside"  # on PYTHONPATH, but not admitted
        self.outside.mkdir()
        (self.outside / "qsm_evil.py").write_text(evil_module(self.marker))
        self.config = root / "config"
        self.config.mkdir()
        self.data = root / "data"
        from qsm_vnpy.examples.minute_bars import write_csv

        self.bars = write_csv(root / "bars.csv", days=12, seed=5)

    def env(self, report: Path, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "QSM_CONFIG_DIR": str(self.config),
            "QSM_DATA_DIR": str(self.data),  # write_config points it elsewhere per test
            "QSM_TEST_AUDIT_REPORT": str(report),
            "QSM_TEST_MARKER": str(self.marker),
            "PYTHONPATH": str(self.outside),
            "HOME": str(self.root),
            **extra,
        }

    def write_config(self, data_dir: Path, **settings: Any) -> None:
        self.data = data_dir
        (self.config / "production.json").write_text(
            json.dumps(
                {
                    "import_paths": [str(self.imports)],
                    "restart_max": 1,
                    "backoff_base": 0.01,
                    "backoff_cap": 0.05,
                    "poll_interval": 0.1,
                    "resync_interval": 1.0,
                    "snapshot_interval": 3600,
                    "engine_options": {
                        "vnpy": {"gateways": {"CTP": {"密码": "operator-Secret-8812", "用户名": "88120001"}}}
                    },
                    **settings,
                },
                ensure_ascii=False,
            )
        )

    def cli(
        self, name: str, *args: str, **env: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        report = self.root / f"{name}.audit.json"
        result = subprocess.run(
            [sys.executable, str(RUNNER), *args],
            env=self.env(report, **env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return result, json.loads(report.read_text())

    def run_until(
        self, name: str, condition: settled, while_running: Callable[[], None] = lambda: None, **env: str
    ) -> tuple[str, dict[str, Any]]:
        """``strategy-manager run`` until ``condition``; returns its output and audit."""
        report = self.root / f"{name}.audit.json"
        log = self.root / f"{name}.log"  # a file, not a pipe: a full pipe would stall the run
        with log.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, str(RUNNER), "run"], env=self.env(report, **env), stdout=sink, stderr=sink
            )
            try:
                while_running()
                try:
                    wait_for(lambda: condition() or process.poll() is not None, 240, name)
                except AssertionError:
                    process.send_signal(signal.SIGUSR1)  # every thread's stack, into the log
                    raise AssertionError(f"{name}: not settled: {condition!r}; see {log}") from None
                assert process.poll() is None, f"{name}: run ended early: {log.read_text()[-3000:]}"
            finally:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=120)
        output = log.read_text()
        assert process.returncode == 0, output[-3000:]
        return output, json.loads(report.read_text())


# -- the documents --------------------------------------------------------------------------
def canaries(op: Operator) -> list[dict[str, Any]]:
    """Legitimate documents of every engine: they run among the hostile ones as alone."""
    always = {"user_id": "canary", "strategy_key": "ok", "schedule": {"mode": "always"}}
    return [
        {**always, "symbol": "DEMO.SH", "engine": "demo", "params": {"bar_seconds": 0.05}},
        {**always, "symbol": "PY.SH", "engine": "python", "engine_class": "qsm_user.engines.Counter"},
        {
            **always,
            "symbol": "BT.SH",
            "engine": "backtrader",
            "engine_class": "backtrader.strategies.SMA_CrossOver",
            "params": {
                "backtrader": {
                    "feed": {
                        "factory": "qsm_backtrader.examples.prices:GeneratedFeed",
                        "kwargs": {"bars": 300, "seed": 3},
                        "hold_after_bars": 100,
                    },
                    "sizer": {"factory": "backtrader.sizers:FixedSize", "kwargs": {"stake": 10}},
                }
            },
        },
        {
            **always,
            "symbol": "002050.SZ",
            "engine": "vnpy",
            "engine_class": "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy",
            "params": {
                "vnpy": {
                    "gateway": {
                        "name": "REPLAY",
                        "setting": {
                            "csv": str(op.bars),
                            "start": "2026-09-14T09:30:00",
                            "hold_after_bars": 50,
                        },
                    }
                }
            },
        },
        # legitimate failures: the error paths (tracebacks, restarts) belong to the baseline
        {**always, "symbol": "FAIL.SH", "engine": "python", "engine_class": "qsm_user.engines.Failing"},
        {**always, "symbol": "BAD.SH", "engine": "demo", "params": {"fast": 30, "slow": 5}},
    ]


CANARY_STATES = {
    "canary:DEMO.SH:ok": {"RUNNING"},
    "canary:PY.SH:ok": {"RUNNING"},
    "canary:BT.SH:ok": {"RUNNING"},
    "canary:002050.SZ:ok": {"RUNNING"},
    "canary:FAIL.SH:ok": {"FAILED"},
    "canary:BAD.SH:ok": {"FAILED", "BLOCKED"},
}


def payloads(marker: Path) -> list[dict[str, Any]]:
    """Keyword arguments that would touch the marker if the named thing were called."""
    return [
        {"command": f"touch {marker}"},  # os.system
        {"cmd": f"touch {marker}"},  # os.popen
        {"args": ["touch", str(marker)], "shell": False},  # subprocess.Popen
        {"name": "qsm_evil"},  # importlib.import_module
        {"source": f"open({str(marker)!r}, 'w')"},  # eval, exec
        {"file": str(marker), "mode": "w"},  # open
        {"path_name": str(HERE / "payload.py")},  # runpy.run_path
    ]


HOSTILE_MODULES = [
    "os", "posix", "subprocess", "builtins", "importlib", "runpy", "pty", "code", "pickle",
    "shutil", "ctypes", "this", "wave", "json", "qsm_evil",
    "backtrader", "backtrader.feed", "backtrader.feeds", "backtrader.feeds.vchart", "backtrader.sizers",
    "backtrader.strategies", "qsm_backtrader.examples.prices", "qsm_backtrader.livefeed",
    "vnpy_ctastrategy", "vnpy_ctastrategy.strategies", "vnpy.trader.gateway", "qsm_vnpy.examples",
    "qsm_vnpy.examples.breakout_engine", "qsm_user", "qsm_user.engines", "strategy_manager.core.store",
]  # fmt: skip
HOSTILE_ATTRS = [
    "system", "popen", "Popen", "eval", "exec", "import_module", "run_path", "spawn", "InteractiveConsole",
    "open", "loads", "os", "bt", "inspect", "importlib", "subprocess", "Evil", "Counter", "Failing",
    "GeneratedFeed", "FixedSize", "SMA_CrossOver", "DoubleMaStrategy", "BreakoutEngine", "CtaTemplate",
    "DataBase", "BaseGateway", "__class__", "__builtins__", "__loader__", "open_store",
]  # fmt: skip


def tricks(op: Operator) -> list[dict[str, Any]]:
    """The reported exploits and their relatives, by hand."""
    marker = op.marker
    touch = {"command": f"touch {marker}"}
    bt_feed: Callable[..., dict[str, Any]] = lambda factory, kwargs=touch: {  # noqa: E731
        "engine": "backtrader",
        "engine_class": "backtrader.strategies.SMA_CrossOver",
        "params": {"backtrader": {"feed": {"factory": factory, "kwargs": kwargs}}},
    }
    bt_sizer: Callable[..., dict[str, Any]] = lambda factory, kwargs=touch: {  # noqa: E731
        "engine": "backtrader",
        "engine_class": "backtrader.strategies.SMA_CrossOver",
        "params": {
            "backtrader": {
                "feed": {"factory": "qsm_backtrader.examples.prices:GeneratedFeed"},
                "sizer": {"factory": factory, "kwargs": kwargs},
            }
        },
    }
    python: Callable[..., dict[str, Any]] = lambda cls, params=touch: {  # noqa: E731
        "engine": "python",
        "engine_class": cls,
        "params": params,
    }
    vnpy_gateway: Callable[..., dict[str, Any]] = lambda gateway: {  # noqa: E731
        "engine": "vnpy",
        "engine_class": "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy",
        "params": {"vnpy": {"gateway": gateway}},
    }
    docs = [
        bt_feed("backtrader.feeds:bt.os.system"),
        bt_feed("backtrader.feeds.vchart.os.popen", {"cmd": f"touch {marker}"}),
        bt_feed("backtrader.feeds.vchart:os.popen", {"cmd": f"touch {marker}"}),
        bt_feed("backtrader.feeds:inspect.importlib.import_module", {"name": "qsm_evil"}),
        bt_feed("backtrader.feeds.ibdata:inspect.importlib.import_module", {"name": "qsm_evil"}),
        bt_feed("backtrader.feeds:os"),
        bt_feed("backtrader.feeds:DataBase"),
        bt_feed("qsm_user.engines:system"),
        bt_feed("qsm_user.engines:Popen", {"args": ["touch", str(marker)]}),
        bt_feed("qsm_evil:Evil"),
        bt_feed("json:JSONDecoder"),
        bt_sizer("backtrader.sizers:bt.os.system"),
        bt_sizer("backtrader.sizers.fixedsize:os.system"),
        bt_sizer("qsm_user.engines:Popen", {"args": ["touch", str(marker)]}),
        {
            **bt_feed("qsm_backtrader.examples.prices:GeneratedFeed", {}),
            "engine_class": "backtrader:os.system",
        },
        {**bt_feed("qsm_backtrader.examples.prices:GeneratedFeed", {}), "engine_class": "qsm_evil.Evil"},
        python("os.system"),
        python("subprocess.Popen", {"args": ["touch", str(marker)]}),
        python("builtins.eval", {"source": f"open({str(marker)!r}, 'w')"}),
        python("builtins.open", {"file": str(marker), "mode": "w"}),
        python("posix.system"),
        python("importlib.import_module", {"name": "qsm_evil"}),
        python("runpy.run_path"),
        python("pty.spawn"),
        python("this.d"),
        python("qsm_evil.Evil"),
        python("qsm_evil:Evil"),
        python("qsm_user.engines.Popen", {"args": ["touch", str(marker)]}),
        python("qsm_user.engines.system"),
        python("qsm_user.engines.os"),
        python("qsm_user.engines:subprocess.Popen"),
        python("qsm_user.engines.Counter.__init__.__globals__"),
        python("wave.open"),
        python("json.JSONDecoder"),
        python("strategy_manager.core.store.open_store"),
        python("qsm_user.engines.__builtins__"),
        {**python("vnpy_ctastrategy.strategies:CtaTemplate"), "engine": "vnpy"},
        {**python("qsm_evil.Evil"), "engine": "vnpy"},
        {**python("vnpy.trader.gateway:os.system"), "engine": "vnpy"},
        vnpy_gateway({"name": "X", "class": "vnpy.trader.gateway:os.system"}),
        vnpy_gateway({"name": "X", "class": "qsm_evil.Evil"}),
        vnpy_gateway({"name": "X", "class": "qsm_user.engines.Counter"}),
        vnpy_gateway({"name": "CTP", "setting": {"交易服务器": "tcp://evil.example:41205"}}),
        vnpy_gateway({"name": "CTP", "setting": {"行情服务器": "tcp://evil.example:41213", "用户名": "x"}}),
        vnpy_gateway(
            {"name": "REPLAY", "setting": {"csv": str(op.bars), "交易服务器": "tcp://evil.example:1"}}
        ),
        # identifiers that would forge status lines, nesting and size beyond the limits
        {"engine": "demo", "strategy_key": "a\nforged RUNNING"},
        {"engine": "demo", "strategy_key": "esc\x1b[2J"},
        {"engine": "demo", "user_id": "nul\x00"},
        {"engine": "demo", "strategy_key": "rtl\u202e"},
        {"engine": "demo", "params": {"x": _nested(200)}},
        {"engine": "demo", "params": {"blob": "x" * 1_100_000}},
        {"engine": "demo", "params": {"$where": "sleep(1000)"}},
    ]
    return docs


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def hostile_documents(marker: Path) -> st.SearchStrategy[dict[str, Any]]:
    """Generated documents: each names things a hostile row would name."""
    leaf = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
    )
    json_value = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )
    dotted = st.builds(
        lambda module, walk, attr, sep: module + sep + ".".join([*walk, attr]),
        st.sampled_from(HOSTILE_MODULES),
        st.lists(st.sampled_from(HOSTILE_ATTRS), max_size=3),
        st.sampled_from(HOSTILE_ATTRS),
        st.sampled_from([".", ":"]),
    )
    name = st.one_of(dotted, dotted, dotted, st.text(max_size=20), json_value)
    kwargs = st.one_of(
        st.sampled_from(payloads(marker)), st.dictionaries(st.text(max_size=8), json_value, max_size=3)
    )
    feed = st.one_of(
        st.builds(lambda f, k: {"factory": f, "kwargs": k}, name, kwargs),
        st.builds(lambda k: {"csv": str(marker), "reader": k}, kwargs),
    )
    sizer = st.one_of(st.none(), st.builds(lambda f, k: {"factory": f, "kwargs": k}, name, kwargs))
    backtrader = st.builds(
        lambda cls, params, feed, sizer: {
            "engine": "backtrader",
            "engine_class": cls,
            "params": {**params, "backtrader": {"feed": feed, **({"sizer": sizer} if sizer else {})}},
        },
        name,
        kwargs,
        feed,
        sizer,
    )
    gateway = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["REPLAY", "CTP", "XTP", "X"]),
            "setting": st.dictionaries(
                st.sampled_from(["交易服务器", "行情服务器", "用户名", "密码", "csv", "pace", "start"]),
                st.one_of(st.just("tcp://evil.example:41205"), st.just(str(marker)), json_value),
                max_size=3,
            ),
        },
        optional={"class": name},
    )
    vnpy = st.builds(
        lambda cls, params, gw: {
            "engine": "vnpy",
            "engine_class": cls,
            "params": {**params, "vnpy": {"gateway": gw}},
        },
        name,
        kwargs,
        gateway,
    )
    python = st.builds(
        lambda cls, params: {"engine": "python", "engine_class": cls, "params": params}, name, kwargs
    )
    other = st.builds(
        lambda engine, params: {"engine": engine, "params": params},
        st.sampled_from(["demo", "nope", "python ", "backtrader.feeds"]),
        kwargs,
    )
    return st.one_of(backtrader, backtrader, vnpy, python, python, other)


def keyed(documents: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Each document under its own natural key (unless it sets its own), always scheduled."""
    return [
        {
            "user_id": "h",
            "symbol": f"{prefix}{n}.SH",
            "strategy_key": "k",
            "schedule": {"mode": "always"},
            **doc,
        }
        for n, doc in enumerate(documents)
    ]


# -- the checks -----------------------------------------------------------------------------
def _admitted(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ADMITTED)


def assert_harmless(op: Operator, audit: dict[str, Any], baseline: dict[str, Any], where: str) -> None:
    assert not op.marker.exists(), f"{where}: the marker was written: {op.marker.read_text()!r}"
    assert audit["marker"] == [], f"{where}: the marker was opened: {audit['marker']}"
    assert audit["spawns"] == [], f"{where}: a process was started: {audit['spawns']}"
    assert audit["sockets"] == [], f"{where}: a document's server was contacted: {audit['sockets']}"
    known = set(baseline["modules"]) | set(baseline["imports"])
    extra = sorted(m for m in {*audit["modules"], *audit["imports"]} if m not in known and not _admitted(m))
    assert extra == [], f"{where}: modules outside the allow-list were imported: {extra}"


def states(store: Any) -> dict[str, str]:
    return {r.strategy_id: r.state for r in store.read_status()}


class settled:
    """True once every canary is as expected and ``count`` strategies are settled."""

    def __init__(self, store: Any, count: int | Callable[[], int | None]) -> None:
        self.store, self.seen = store, {}
        self.count: Callable[[], int | None] = count if callable(count) else lambda: count

    def __call__(self) -> bool:
        count = self.count()  # None: not everything is written yet
        self.seen = seen = states(self.store)
        canaries_ok = all(seen.get(i) in s for i, s in CANARY_STATES.items())
        return count is not None and canaries_ok and len(seen) >= count and set(seen.values()) <= SETTLED

    def __repr__(self) -> str:
        from collections import Counter

        canaries = {i: self.seen.get(i) for i in CANARY_STATES}
        return (
            f"{len(self.seen)} of {self.count()} strategies: {dict(Counter(self.seen.values()))}; {canaries}"
        )


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    yield Operator(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def baseline(operator: Operator) -> dict[str, Any]:
    """What a run of only the legitimate documents imports, on the embedded store."""
    return run_baseline(operator, "baseline", Settings(data_dir=str(operator.root / "baseline-data")))


def run_baseline(op: Operator, name: str, settings: Settings) -> dict[str, Any]:
    op.write_config(Path(settings.data_dir), mongo_uri=settings.mongo_uri, mongo_db=settings.mongo_db)
    store = open_store(settings)
    try:
        for doc in canaries(op):
            store.upsert_strategy(doc)
        _output, audit = op.run_until(name, settled(store, len(CANARY_STATES)))
    finally:
        store.close()
    return audit


BATCH = 200


def generated(marker: Path, count: int = BATCH) -> list[dict[str, Any]]:
    """``count`` hostile documents, each one example hypothesis generates (no shrinking:
    a failure is shown with the whole batch and the documents' natural keys)."""
    found: list[dict[str, Any]] = []

    @given(hostile_documents(marker))
    @hsettings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def collect(document: dict[str, Any]) -> None:
        found.append(document)

    collect()
    assert len(found) >= count * 0.9, len(found)
    return found


@pytest.mark.slow
def test_hostile_documents_imported_through_the_cli_run_nothing(operator, baseline):
    op = operator
    data = op.root / "import-data"
    op.write_config(data)

    hand_written = keyed(tricks(op), "T")
    documents = [*hand_written, *keyed(generated(op.marker), "G"), *canaries(op)]
    assert len(documents) >= 250
    path = op.root / "hostile.jsonl"
    path.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in documents) + "\n")
    # the engines check each document first: every trick is refused, in one line each
    result, audit = op.cli("import", "strategies", "import", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()  # one line per refused document, then the summary
    assert all(": invalid: " in line for line in lines[:-1]), lines[-3:]
    assert lines[-1].endswith(f", {len(lines) - 1} invalid"), lines[-1]
    assert all(len(line) < 700 for line in lines)
    refused = {int(line.split(":")[0].removeprefix("line ")) for line in lines[:-1]}
    accepted = [n for n in range(1, len(hand_written) + 1) if n not in refused]
    assert accepted == [], [json.dumps(documents[n - 1])[:200] for n in accepted]
    assert_harmless(op, audit, baseline, "strategies import")
    # stored anyway (--force: what parses), they must still run nothing
    result, audit = op.cli("import-force", "strategies", "import", "--force", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert_harmless(op, audit, baseline, "strategies import --force")
    store = open_store(Settings(data_dir=str(data)))
    stored = len(store.list_strategies())
    assert stored >= len(CANARY_STATES)
    output, audit = op.run_until("run-after-import", settled(store, stored))
    assert_harmless(op, audit, baseline, "run after import")
    assert "operator-Secret-8812" not in output and "88120001" not in output
    store.close()


@pytest.mark.slow
def test_hostile_documents_written_into_the_embedded_store_while_run_runs_run_nothing(operator, baseline):
    op = operator
    data = op.root / "embedded-data"
    op.write_config(data)
    store = open_store(Settings(data_dir=str(data)))
    for doc in canaries(op):
        store.upsert_strategy(doc)
    written: list[int] = []

    def write(documents: list[dict[str, Any]]) -> None:
        for doc in documents:
            store.upsert_strategy(doc)  # straight into the store: no validation on the way
        written.append(len(documents))

    def while_running() -> None:
        wait_for(lambda: all(states(store).get(i) in s for i, s in CANARY_STATES.items()), 240, "canaries")
        write([*keyed(tricks(op), "ET"), *keyed(generated(op.marker), "EG")])

    total = lambda: len(CANARY_STATES) + sum(written)  # noqa: E731
    output, audit = op.run_until(
        "embedded", settled(store, lambda: total() if written else None), while_running=while_running
    )
    assert sum(written) >= 250
    assert_harmless(op, audit, baseline, "embedded store")
    assert "operator-Secret-8812" not in output and "88120001" not in output
    store.close()


@pytest.mark.slow
def test_hostile_documents_written_into_mongodb_while_run_runs_run_nothing(operator, mongoeco_uri):  # noqa: F811
    from bson.errors import BSONError
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    op = operator
    mongo_baseline = run_baseline(
        op,
        "mongodb-baseline",
        Settings(
            data_dir=str(op.root / "mongo-baseline"), mongo_uri=mongoeco_uri, mongo_db=f"base_{os.getpid()}"
        ),
    )
    database = f"hostile_{os.getpid()}"
    op.write_config(op.root / "mongo-data", mongo_uri=mongoeco_uri, mongo_db=database)
    settings = Settings(data_dir=str(op.root / "mongo-data"), mongo_uri=mongoeco_uri, mongo_db=database)
    store = open_store(settings)
    for doc in canaries(op):
        store.upsert_strategy(doc)
    client: MongoClient[dict[str, Any]] = MongoClient(mongoeco_uri)
    collection = client[database][settings.strategies_collection]
    written: list[int] = []

    def write(documents: list[dict[str, Any]]) -> None:
        for doc in documents:  # straight into the collection, as another program would
            with contextlib.suppress(PyMongoError, BSONError, OverflowError):  # MongoDB refuses: never arrives
                collection.insert_one(dict(doc))
        written.append(len(documents))

    def while_running() -> None:
        wait_for(lambda: all(states(store).get(i) in s for i, s in CANARY_STATES.items()), 240, "canaries")
        write([*keyed(tricks(op), "MT"), *keyed(generated(op.marker), "MG")])

    try:
        output, audit = op.run_until(
            "mongodb",
            settled(store, lambda: collection.count_documents({}) if written else None),
            while_running=while_running,
        )
        assert sum(written) >= 250
        assert_harmless(op, audit, mongo_baseline, "MongoDB store")
        assert "operator-Secret-8812" not in output and "88120001" not in output
    finally:
        store.close()
        client.drop_database(database)
        client.drop_database(f"base_{os.getpid()}")
        client.close()
