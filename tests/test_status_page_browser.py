"""The status page in a real headless Chromium (Debian's, driven by Playwright): it loads with
no console errors, lists a queue the test made (from GET /_queues), and its re-run button moves
a dead letter back to `scheduled`; on a node with API tokens it asks for a token, keeps it for
the tab and shows the queues with it.

Under CI=true a missing browser fails this test; elsewhere it is skipped with a warning that
says plainly that it did not run. `.ci/run` installs the browser.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from miyamoto.logic.api_tokens import parse_api_tokens

from .live_node import call, node_in_thread

CHROMIUM = os.environ.get("MIYAMOTO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_ENV = "MIYAMOTO_STATUS_PAGE_SCREENSHOT"
"""Set to a path to save a screenshot of the page there (docs/status-page.png is made so)."""
WAIT_MS = 10_000
QUEUE = "page-test"


def browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    return None


@pytest.fixture
def browser_available() -> None:
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the status page browser test must run under CI, but: {problem}")
    message = f"the status page browser test DID NOT RUN: {problem}"
    warnings.warn(message, stacklevel=1)
    pytest.skip(message)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection there is refused, at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def wait_for_state(port: int, task_id: str, state: str) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        status, task = call(port, "GET", f"/{QUEUE}/{task_id}")
        if status == 200 and task["state"] == state:
            return
        assert time.monotonic() < deadline, (status, task)
        time.sleep(0.02)


@contextmanager
def browser_page(profile: Path) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh Chromium profile, and the console errors and page errors it logs."""
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            yield page, console_errors
        finally:
            context.close()


def test_the_status_page_shows_a_queue_and_reruns_a_dead_letter(
    browser_available: None, refused_port: int, tmp_path: Path
) -> None:
    hook = f"http://127.0.0.1:{refused_port}/hook"
    with node_in_thread() as port:
        status, dead = call(
            port, "POST", f"/{QUEUE}", {"url": hook, "id": "dead-1", "retry_limit": 0}
        )
        assert status == 200, dead
        status, later = call(
            port, "POST", f"/{QUEUE}", {"url": hook, "id": "later", "countdown": 600}
        )
        assert status == 200, later
        wait_for_state(port, "dead-1", "failed")
        # Paused, the re-run task stays `scheduled` instead of failing again at once.
        assert call(port, "POST", f"/{QUEUE}/_pause")[0] == 200

        with browser_page(tmp_path / "profile") as (page, console_errors):
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")

            queue_row = page.locator(f'#queue-rows tr[data-queue="{QUEUE}"]')
            queue_row.wait_for(timeout=WAIT_MS)
            cells = queue_row.locator("td").all_inner_texts()
            # queue, scheduled, delivering, retrying, failed, ...
            assert cells[:5] == [QUEUE, "1", "0", "0", "1"], cells
            assert page.locator("#cluster-role").inner_text() == "leader"
            assert not page.locator("#token-form").is_visible()  # an open API needs none

            dead_row = page.locator('#dead-rows tr[data-id="dead-1"]')
            dead_row.wait_for(timeout=WAIT_MS)
            assert "refused" in dead_row.inner_text()
            if SCREENSHOT_ENV in os.environ:
                page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)

            dead_row.get_by_role("button", name="re-run").click()
            dead_row.wait_for(state="detached", timeout=WAIT_MS)
            assert page.locator("#notice").inner_text() == "dead-1 scheduled again"
            status, task = call(port, "GET", f"/{QUEUE}/dead-1")
            assert (status, task["state"], task["attempts"]) == (200, "scheduled", 0)
            page.locator(f'#queue-rows tr[data-queue="{QUEUE}"] td').nth(1).filter(
                has_text="2"
            ).wait_for(timeout=WAIT_MS)
    assert console_errors == []


ADMIN_TOKEN = "admin-token-0123456789"
READ_TOKEN = "read-token-0123456789"


def test_with_api_tokens_the_page_asks_for_a_token_and_keeps_it_for_the_tab(
    browser_available: None, tmp_path: Path
) -> None:
    tokens = parse_api_tokens(f"setup {ADMIN_TOKEN} enqueue,read,admin\nviewer {READ_TOKEN} read\n")
    with node_in_thread(api_tokens=tokens) as port:
        task = {"url": "http://127.0.0.1:9/hook", "countdown": 600}
        assert call(port, "POST", f"/{QUEUE}", task)[0] == 401
        assert call(port, "POST", f"/{QUEUE}", task, token=ADMIN_TOKEN)[0] == 200

        with browser_page(tmp_path / "profile") as (page, console_errors):
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.locator("#token-form").wait_for(state="visible", timeout=WAIT_MS)
            assert "needs a token" in page.locator("#banner").inner_text()

            page.locator("#token").fill(READ_TOKEN)
            page.get_by_role("button", name="Use token").click()
            queue_row = page.locator(f'#queue-rows tr[data-queue="{QUEUE}"]')
            queue_row.wait_for(timeout=WAIT_MS)
            assert queue_row.locator("td").nth(1).inner_text() == "1"
            assert not page.locator("#token-form").is_visible()
            # A read-only token may not see destination holds: said there, not page-wide.
            holds_note = page.locator("#holds-note")
            holds_note.wait_for(state="visible", timeout=WAIT_MS)
            assert "lacks the 'admin' scope" in holds_note.inner_text()
            assert not page.locator("#banner").is_visible()
            stored = page.evaluate("sessionStorage.getItem('miyamoto.token')")
            assert stored == READ_TOKEN

            page.reload(wait_until="load")  # the tab keeps the token: no second prompt
            page.locator(f'#queue-rows tr[data-queue="{QUEUE}"]').wait_for(timeout=WAIT_MS)
            assert not page.locator("#token-form").is_visible()
    # The browser logs each 401 and 403 answer as a failed resource load; nothing else.
    unexpected = [e for e in console_errors if "401" not in e and "403" not in e]
    assert unexpected == []
