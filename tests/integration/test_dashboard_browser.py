"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium (its driver
from Debian too, Selenium Manager off), the real ``claude-cluster serve`` process, a real
state repo and real agent processes. The page must find the agents and the tasks, follow a
task submitted as a person does (a commit to main) to succeeded without a reload, and show
its timeline; the screenshot is saved under the test's tmp_path."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, commit_files, make_state, poll, task_doc, task_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEADLINE = 60.0  # seconds for anything the page waits on; each wait fails loudly
URL = re.compile(r"https?://127\.0\.0\.1:(\d+)")


class Serve:
    """A real ``claude-cluster serve`` process on an ephemeral port of 127.0.0.1."""

    def __init__(self, state: Path, workdir: Path, *extra: str, token: str | None = None) -> None:
        self.log_path = workdir / "serve.log"
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", CLUSTER_WORKDIR=str(workdir / "serve-work"))
        env.pop("CLUSTER_SERVE_TOKEN", None)
        if token is not None:
            env["CLUSTER_SERVE_TOKEN"] = token
        argv = [sys.executable, "-m", "cluster", "serve", "--state", str(state),
                "--bind", "127.0.0.1", "--port", "0", "--refresh", "0.5", *extra]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        port = poll(self._port, DEADLINE, lambda: f"serve to say its address:\n{self.tail()}")
        self.url = f"http://127.0.0.1:{port}"

    def _port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.tail()}")
        found = URL.search(self.log_path.read_text(errors="replace"))
        return found.group(1) if found else None

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium that reaches nothing but 127.0.0.1 (no updates, sync or QUIC)."""
    # The driver's path is given, so Selenium Manager is skipped; offline all the same, so
    # that nothing ever tries to download a driver or a browser.
    monkeypatch.setenv("SE_OFFLINE", "true")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: setup.sh installs Debian's chromium and "
                        "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-default-apps", "--window-size=1600,1250",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Any]:
    started: list[Serve] = []

    def start(state: Path, *extra: str, token: str | None = None) -> Serve:
        server = Serve(state, tmp_path, *extra, token=token)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_for(driver: Any, what: str, predicate: Any) -> Any:
    """WebDriverWait with the test's deadline; the timeout names what never showed."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page redraws on every change: an element found a moment ago may be gone; ask again.
    wait = WebDriverWait(driver, DEADLINE, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))
    try:
        return wait.until(predicate)
    except TimeoutException as exc:
        raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}; the page said:\n"
                             f"{page_text(driver)}") from exc


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)[-3000:]


def row_state(driver: Any, task: str) -> str | None:
    """The data-state of the task's row, read in one step (rows are redrawn on changes)."""
    state = driver.execute_script(
        "const row = document.querySelector(`tr[data-testid='task-${arguments[0]}']`);"
        "return row ? row.dataset.state : null;", task)
    return str(state) if state is not None else None


def click(element: Any) -> bool:
    element.click()
    return True


def timeline_of(driver: Any) -> dict[str, Any] | None:
    """The open detail panel's timeline: its entries' kinds and its text, or None."""
    found: dict[str, Any] | None = driver.execute_script(
        "const t = document.querySelector('[data-testid=task-detail]:not([hidden]) "
        "[data-testid=timeline]');"
        "return t ? {kinds: [...t.querySelectorAll('li')].map(li => li.dataset.kind),"
        " text: t.innerText} : null;")
    return found


def test_the_dashboard_follows_a_submitted_task_to_succeeded_without_a_reload(
        tmp_path: Path, agents: Any, serving: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    state = make_state(tmp_path, {"fold_delay_seconds": 0.5})
    person = tmp_path / "person"
    commit_files(state, task_files([
        task_doc("warm-up", labels=["demo"]),
        task_doc("ui-later", specialty="frontend", labels=["ui"]),  # nobody serves frontend
    ]), person)
    for name in ("alpha", "beta"):
        agents(state, name, specialty="backend", lease=10, heartbeat=0.5, poll_s=0.3)
    server = serving(state)

    browser.get(server.url + "/")
    load_id = wait_for(browser, "the page's load id",
                       lambda d: d.execute_script("return window.dashboardLoadId"))
    for name in ("alpha", "beta"):
        wait_for(browser, f"agent card {name}",
                 lambda d, n=name: d.find_elements(By.CSS_SELECTOR, f'[data-testid="agent-{n}"]'))
    wait_for(browser, "warm-up to show succeeded",
             lambda d: row_state(d, "warm-up") == "succeeded")
    assert row_state(browser, "ui-later") == "pending"
    for name in ("alpha", "beta"):
        wait_for(browser, f"agent {name} online", lambda d, n=name: d.execute_script(
            "const card = document.querySelector(`[data-testid='agent-${arguments[0]}']`);"
            "return card && card.dataset.status === 'online';", n))
    verdict = browser.find_element(By.CSS_SELECTOR, '[data-testid="verdict"]')
    assert "2 of 2 agents online" in verdict.text, verdict.text

    # The filters narrow the table through the API's own filters, and widen it back.
    specialty = Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="filter-specialty"]'))
    wait_for(browser, "frontend among the specialty filter's options",
             lambda d: "frontend" in [o.text for o in specialty.options])
    specialty.select_by_value("frontend")
    wait_for(browser, "only ui-later under specialty=frontend",
             lambda d: row_state(d, "warm-up") is None and row_state(d, "ui-later"))
    specialty.select_by_value("")
    wait_for(browser, "both tasks again", lambda d: row_state(d, "warm-up") == "succeeded")

    # A person submits a task: a commit to main. The page follows it without a reload.
    commit_files(state, task_files([task_doc("submitted", command="echo built",
                                             labels=["demo"])]), person, "add submitted")
    wait_for(browser, "the submitted task's row",
             lambda d: row_state(d, "submitted") is not None)
    wait_for(browser, "the submitted task to show succeeded",
             lambda d: row_state(d, "submitted") == "succeeded")
    assert browser.execute_script("return window.dashboardLoadId") == load_id, "page reloaded"
    live = browser.find_element(By.CSS_SELECTOR, '[data-testid="live"]')
    assert live.get_attribute("data-mode") == "stream", live.text  # server-sent events

    wait_for(browser, "a click on the submitted task's row", lambda d: click(
        d.find_element(By.CSS_SELECTOR, 'tr[data-testid="task-submitted"]')))
    timeline = wait_for(browser, "the submitted task's timeline with its result", lambda d: (
        (t := timeline_of(d)) and "result" in t["kinds"] and t))
    kinds, text = timeline["kinds"], timeline["text"]
    # added: while the task file is in tasks/ (folding archives it, and its added_at with it)
    assert kinds.index("claim") < kinds.index("result") == len(kinds) - 1, kinds
    assert "added" not in kinds or kinds[0] == "added", kinds
    assert "succeeded" in text and any(name in text for name in ("alpha", "beta")), text
    heading = browser.find_element(By.CSS_SELECTOR, "#detail-heading")
    assert heading.is_displayed() and heading.text == "submitted"

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)), "no screenshot"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"dashboard screenshot: {shot}")
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe


def test_with_a_token_the_browser_asks_once_and_the_page_streams(
        tmp_path: Path, agents: Any, serving: Any, browser: Any) -> None:
    """A token-guarded server: the browser answers the 401's Basic challenge with the token
    (given here as the URL's credentials, as a person types it into the prompt) and sends it
    with every request of the page, the event stream too."""
    from selenium.webdriver.common.by import By

    state = make_state(tmp_path, {"fold_delay_seconds": 0.5})
    person = tmp_path / "person"
    commit_files(state, task_files([task_doc("first")]), person)
    agents(state, "alpha", specialty="backend", lease=10, heartbeat=0.5, poll_s=0.3)
    token = f"dashboard-{secrets.token_hex(16)}"
    server = serving(state, token=token)

    browser.get(server.url.replace("http://", f"http://person:{token}@") + "/")
    wait_for(browser, "first to show succeeded", lambda d: row_state(d, "first") == "succeeded")
    wait_for(browser, "agent card alpha",
             lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="agent-alpha"]'))
    load_id = browser.execute_script("return window.dashboardLoadId")
    commit_files(state, task_files([task_doc("second")]), person, "add second")
    wait_for(browser, "second to show succeeded", lambda d: row_state(d, "second") == "succeeded")
    assert browser.execute_script("return window.dashboardLoadId") == load_id, "page reloaded"
    live = browser.find_element(By.CSS_SELECTOR, '[data-testid="live"]')
    assert live.get_attribute("data-mode") == "stream", live.text
    assert token not in server.tail()
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
