"""The dashboard in a real browser: headless Chromium (Debian's package) driven by
Playwright, against ``strategy-manager run --http`` with 1,000 strategies.

It skips only when no Chromium is installed (CI installs it: .ci/run). Set
DASHBOARD_SCREENSHOTS to keep the screenshot (docs/images/dashboard.png is one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)"),
]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STRATEGIES = 1000


@pytest.fixture
def fleet(tmp_path):
    documents = [
        {
            "user_id": f"user{i % 7}",
            "symbol": f"S{i:04d}",
            "strategy_key": "k",
            "engine": "demo",
            "params": {"bar_seconds": 3600},
            "schedule": {"mode": "always"},
        }
        for i in range(STRATEGIES)
    ]
    file = tmp_path / "fleet.json"
    file.write_text(json.dumps(documents))
    out = run_cli("strategies", "import", str(file), "-q")
    assert out.returncode == 0, out.stderr
    log = tmp_path / "run.jsonl"
    with log.open("w") as out:  # a file, not a pipe nobody drains: run never blocks printing
        proc = subprocess.Popen(
            [sys.executable, "-m", "strategy_manager.cli", "run", "--events", "json", "--http", "127.0.0.1:0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "QSM_POLL_INTERVAL": "0.2", "QSM_HOOK_THREADS": "32"},
        )
    try:

        def served_at():
            lines = [json.loads(line) for line in log.read_text().splitlines() if '"event": "http"' in line]
            return lines and lines[0]["url"]

        url = wait_for(served_at, 60, "run to say where it serves", poll=0.1)

        def all_running():
            counts = httpx.get(f"{url}/api/strategies", params={"limit": 1}).json()["counts"]
            return counts == {"RUNNING": STRATEGIES}

        wait_for(all_running, 120, f"{STRATEGIES} strategies RUNNING", poll=0.5)
        yield url, [d["user_id"] + ":" + d["symbol"] + ":k" for d in documents]
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # headless, with a fresh profile of Playwright's own (a temporary --user-data-dir)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def test_the_page_shows_every_strategy_through_its_pages_and_follows_a_cli_change_live(fleet, page, tmp_path):
    url, ids = fleet
    page.goto(url + "/")
    page.wait_for_selector("tr[data-id]")
    assert page.inner_text("#range") == f"1-100 of {STRATEGIES}"
    assert page.inner_text("#live") == "live"
    assert page.inner_text("#counts").split() == ["all", str(STRATEGIES), "RUNNING", str(STRATEGIES)]

    seen: list[str] = []
    while True:
        seen += page.eval_on_selector_all("tr[data-id]", "rows => rows.map(r => r.dataset.id)")
        if page.is_disabled("#next"):
            break
        before = page.inner_text("#range")
        page.click("#next")
        page.wait_for_function("before => document.getElementById('range').textContent !== before", arg=before)
    assert len(seen) == STRATEGIES and set(seen) == set(ids)

    page.click("#first")
    page.wait_for_function("() => document.getElementById('range').textContent.startsWith('1-100')")
    target = page.eval_on_selector("tr[data-id]", "row => row.dataset.id")
    page.evaluate("window.__notReloaded = true")
    out = run_cli("strategies", "disable", target)
    assert out.returncode == 0, out.stderr
    changed = time.monotonic()
    # The row shows DISABLED within 2 s of the command, without a reload.
    page.wait_for_function(
        """id => {
            const row = document.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
            return row && row.querySelector('.state').textContent === 'DISABLED';
        }""",
        arg=target,
        timeout=2000,
    )
    assert time.monotonic() - changed < 2.0
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_function("() => document.getElementById('counts').textContent.includes('DISABLED')")

    shots = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "dashboard.png"))
    assert (shots / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page.click(f'tr[data-id="{target}"] a')
    page.wait_for_selector("#d-status dd")
    assert page.inner_text("#d-title") == target
    assert "DISABLED" in page.inner_text("#d-status")
    page.wait_for_function("() => document.querySelector('#d-events').textContent.includes('RUNNING -> DISABLED')")
    page.wait_for_selector("#d-timeline svg rect")
    page.screenshot(path=str(shots / "strategy.png"))
