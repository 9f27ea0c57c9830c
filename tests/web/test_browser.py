"""The web app in a real browser (Playwright driving Debian's Chromium): an owner approves a paused
run from the inbox and watches it finish; a non-owner's approval is refused on the page; the kill
switch pressed on the page stops a worker's run. Each page's screenshot is saved (to docs/web/ when
TETHER_SCREENSHOTS names that folder)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import bash, script, token_for
from tests.queue.helpers import start_worker, stop, submit_json, wait_until
from tests.web.server import web_server
from tests.web.test_web import paused_run
from tether.ledger import Ledger

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it with apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def shot(page, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get("TETHER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def sign_in(browser, url: str, token: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{url}/runs")
    assert "/signin" in page.url
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/runs")
    return page


def test_an_owner_approves_from_the_inbox_and_the_run_page_shows_it_finish(browser, repo: Path, tmp_path: Path,
                                                                           sqlite_url: str):
    run_id = paused_run(repo, tmp_path, sqlite_url)
    alice, bob = (token_for(repo, name, "approver", sqlite_url) for name in ("alice", "bob"))
    ledger = Ledger(sqlite_url)
    with web_server(sqlite_url, repo) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        signin = context.new_page()
        signin.goto(f"{url}/signin")
        shot(signin, "signin", tmp_path)
        context.close()

        refused = sign_in(browser, url, bob)  # a non-owner, on the run's own page
        refused.goto(f"{url}/runs/{run_id}")
        refused.fill("input[name=reason]", "looks fine to me")
        refused.click("button.approve")
        assert "bob may not approve: owners are @qa" in refused.inner_text(".refusal")
        assert ledger.get_run(run_id).status == "awaiting_approval"

        watching = sign_in(browser, url, alice)
        shot(watching, "runs", tmp_path)
        watching.goto(f"{url}/runs/{run_id}")
        assert watching.inner_text("#status") == "awaiting_approval"
        assert watching.locator(".event.ask").count() >= 1  # the guard's ask is marked
        inbox = watching.context.new_page()
        inbox.goto(f"{url}/approvals")
        assert run_id in inbox.inner_text("main")
        assert "+    sounds = " in inbox.inner_text("pre.diff")  # the diff the owner approves
        shot(inbox, "approvals", tmp_path)
        inbox.fill(f"#req-{run_id} input[name=reason]", "reviewed the diff")
        inbox.click(f"#req-{run_id} button.approve")
        inbox.wait_for_url(f"{url}/runs/{run_id}")
        # the page opened before the decision follows the run live to its end
        watching.wait_for_function("document.getElementById('status').textContent === 'succeeded'", timeout=60_000)
        watching.wait_for_selector("text=Waiting for a decision", state="detached")  # the page reloaded, ended
        watching.wait_for_selector(".event.end")
        assert "approved by alice" in watching.inner_text("#timeline")
        shot(watching, "run", tmp_path)
        watching.click(".event button.link >> nth=1")  # a step's diff, fetched on demand
        watching.wait_for_selector("div.diff pre")
        for name in ("fleet", "evidence"):
            watching.goto(f"{url}/{name}")
            shot(watching, name, tmp_path)
    assert ledger.get_run(run_id).status == "succeeded" and ledger.verify(run_id).ok
    ledger.close()


def test_the_kill_switch_on_the_page_stops_a_workers_run(browser, repo: Path, tmp_path: Path, sqlite_url: str):
    model = script(tmp_path / "long.json", [*[bash(f"sleep 0.3 && echo {n}") for n in range(60)],
                                           {"tool_calls": [{"name": "submit"}]}])
    task_id = submit_json(sqlite_url, repo, "a long task", model)["task_id"]
    alice = token_for(repo, "alice", "approver", sqlite_url)
    ledger = Ledger(sqlite_url)
    worker = start_worker(sqlite_url, "w1", tmp_path / "worker.log")
    try:
        wait_until(lambda: ledger.has_run(task_id) and len(ledger.events(task_id)) >= 8, 120, "the run to be under way")
        with web_server(sqlite_url, repo) as url:
            page = sign_in(browser, url, alice)
            page.goto(f"{url}/fleet")
            page.fill("input[name=scope]", "all")
            page.fill("form.switch:not(.on) input[name=reason]", "incident 7")
            page.click("form.switch:not(.on) button")
            page.wait_for_selector("form.switch.on")
            pressed = time.time()
            wait_until(lambda: ledger.get_run(task_id).status == "stopped", 30, "the run to stop")
            assert time.time() - pressed < 10
            assert "incident 7" in ledger.get_run(task_id).summary["reason"]
            page.goto(f"{url}/runs/{task_id}")
            assert page.inner_text("#status") == "stopped"
            assert [e.payload["by"] for e in ledger.events("fleet")] == ["alice"]
    finally:
        stop([worker])
        ledger.close()
