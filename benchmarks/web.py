"""The HTTP server of ``run --http`` at 5,000 strategies: a /metrics scrape, the first
render of the dashboard, and what the server adds to run's idle CPU.

    python benchmarks/web.py [--strategies 5000] [--idle-seconds 60] [--markdown FILE]

Two ``strategy-manager run`` processes over the same store, one after the other, on
a simulated clock standing on a Saturday (every strategy WAITING: what is measured
is the process at rest, not engines): one without --http, one with it. Targets: a
scrape under 50 ms, a first render under 1 s, and at most 0.5 % of a core more idle
CPU with the server on. The first render is the page's own mark ``qsm-first-render``
(the table drawn from its first API answer), in ms since navigation start, in
headless Chromium (Debian's package) driven by Playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store

SATURDAY = "2026-11-28T10:00+08:00"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seed(data_dir: Path, n: int) -> None:
    store = open_store(Settings(data_dir=str(data_dir)))
    for i in range(n):
        store.upsert_strategy(
            {
                "user_id": f"user{i % 50}",
                "symbol": f"{600000 + i}.SH",
                "strategy_key": "ma_cross",
                "engine": "demo",
                "params": {"fast": 5, "slow": 20},
            }
        )
    store.close()


def start_run(data_dir: Path, log: Path, http: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "strategy_manager.cli", "run", "--events", "json"]
    args += ["--clock", "sim", "--start", SATURDAY, "--speed", "1"]
    if http:
        args += ["--http", "127.0.0.1:0"]
    env = {**os.environ, "QSM_DATA_DIR": str(data_dir), "QSM_CONFIG_DIR": str(data_dir)}
    with log.open("w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float) -> float:
    """Percent of one core over ``seconds``."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - started)


def settled(data_dir: Path, n: int) -> bool:
    store = open_store(Settings(data_dir=str(data_dir)))
    try:
        return sum(r.state == "WAITING" for r in store.read_status()) == n
    finally:
        store.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(60)


def scrape_times(url: str, count: int) -> tuple[list[float], int]:
    times = []
    with httpx.Client(base_url=url) as client:
        size = len(client.get("/metrics").content)
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/metrics")
            times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200
    return times, size


def first_renders(url: str, count: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    marks = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            for _ in range(count):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                page.goto(url + "/")
                page.wait_for_function("() => performance.getEntriesByName('qsm-first-render').length")
                marks.append(page.evaluate("performance.getEntriesByName('qsm-first-render')[0].startTime"))
                context.close()
        finally:
            browser.close()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", type=int, default=5000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    n = args.strategies
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        seed(data, n)
        print(f"{n} strategies seeded", flush=True)

        plain = start_run(data, data / "plain.log", http=False)
        try:
            wait(lambda: settled(data, n), 180, f"{n} strategies WAITING")
            time.sleep(5)
            base = idle_cpu(plain.pid, args.idle_seconds)
        finally:
            stop(plain)
        print(f"idle CPU without the server: {base:.2f} % of a core", flush=True)

        served = start_run(data, data / "served.log", http=True)
        try:

            def url() -> str | None:
                for line in (data / "served.log").read_text().splitlines():
                    if '"event": "http"' in line:
                        return str(json.loads(line)["url"])
                return None

            address = wait(url, 60, "the server's address")
            wait(lambda: settled(data, n), 180, f"{n} strategies WAITING")
            total = httpx.get(f"{address}/api/strategies", params={"limit": 1}).json()["total"]
            assert total == n, total
            scrapes, size = scrape_times(address, 50)
            renders = first_renders(address, 5)
            time.sleep(5)
            with_server = idle_cpu(served.pid, args.idle_seconds)
        finally:
            stop(served)

    p50 = statistics.median(scrapes)
    p95 = sorted(scrapes)[int(0.95 * len(scrapes)) - 1]
    render = statistics.median(renders)
    extra = with_server - base
    rows = [
        (
            f"/metrics scrape, {n} strategies ({size // 1024} KiB)",
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
            f"{'PASS' if p95 < 50 else 'FAIL'} (target < 50 ms)",
        ),
        (
            f"first render of the dashboard, {n} strategies",
            f"median {render:.0f} ms of 5 ({', '.join(f'{r:.0f}' for r in renders)})",
            f"{'PASS' if render < 1000 else 'FAIL'} (target < 1 s)",
        ),
        (
            f"idle CPU of run, {n} strategies WAITING, {args.idle_seconds:g} s",
            f"{base:.2f} % without the server, {with_server:.2f} % with it: {extra:+.2f} %",
            f"{'PASS' if extra <= 0.5 else 'FAIL'} (target <= +0.5 % of a core)",
        ),
    ]
    table = ["| measurement | figure | verdict |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    for line in table:
        print(line)
    if args.markdown:
        args.markdown.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
