"""The browser suite's fixtures: one `dagster dev` and one Chromium page per module.

`dagster dev` runs as `make dev` runs it (tests/dagster_dev.py: dagster.postgres.yaml in a
temporary DAGSTER_HOME, a database of its own on the session's local PostgreSQL server) over a
data dir whose landing zone is a private copy of the session's store, so that a test may land
batches in it.
Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright from pip; nothing is downloaded.
A failed test keeps its screenshots and the dagster dev log in a folder its report names.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.dagster_dev import running

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Clicks, page loads and expectations on a loaded machine; runs, backfills and sensors have
# waits of their own.
ACTION_TIMEOUT_MS = 60_000
expect.set_options(timeout=ACTION_TIMEOUT_MS)


@dataclass(frozen=True)
class DagsterUI:
    """A running `dagster dev` and where it keeps things."""

    url: str
    data: Path  # its data dir: warehouse, systems, outbox
    store: Path  # the store its landing zone links to: `orderflow-sim live` lands batches here
    log: Path  # dagster dev's output
    root: Path  # the module's tmp dir: data, dagster_home, the log, artifacts of failed tests

    def artifacts(self, test: str) -> Path:
        return self.root / "artifacts" / test


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory, store_dir, local_postgres, _instance_template) -> DagsterUI:
    root = tmp_path_factory.mktemp("browser")
    store = root / "store"
    shutil.copytree(store_dir, store, symlinks=True)
    with running(root, store, local_postgres, _instance_template) as dev:
        yield DagsterUI(dev.url, dev.data, store, dev.log, root)


@pytest.fixture(scope="module")
def browser_page(dagster_ui) -> Page:
    """One page for the module's scenarios."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                base_url=dagster_ui.url, viewport={"width": 1400, "height": 900}
            )
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            page = context.new_page()
            # A new browser's first visit asks to join Dagster's community, some time after the
            # app has loaded. Skipped here, before any scenario: appearing later it can open
            # under another dialog (Materialize all…), where nothing can click it.
            page.goto("/")
            skip = page.get_by_role("button", name="Skip")
            skip.click()
            expect(skip).to_be_hidden()
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(browser_page, dagster_ui, request) -> Page:
    """The module's page; the test's folder of screenshots is removed unless the test fails."""
    folder = dagster_ui.artifacts(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    yield browser_page
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    if not any(report is not None and report.failed for report in reports):
        shutil.rmtree(folder)


@pytest.fixture
def shot(page, dagster_ui, request):
    """`shot(name)`: a screenshot of the page now, kept if the test fails."""
    folder = dagster_ui.artifacts(request.node.name)
    taken = []

    def take(name: str) -> None:
        taken.append(name)
        page.screenshot(path=folder / f"{len(taken):02d}-{name}.png")

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure: a screenshot of the page as it failed, the dagster dev log, and their folder."""
    report = (yield).get_result()
    setattr(item, f"rep_{report.when}", report)
    ui = item.funcargs.get("dagster_ui")
    if not report.failed or report.when == "teardown" or ui is None:
        return
    folder = ui.artifacts(item.name)
    folder.mkdir(parents=True, exist_ok=True)
    page = item.funcargs.get("page")
    if page is not None:
        try:
            page.screenshot(path=folder / "at-failure.png", full_page=True)
        except Exception as error:  # the page itself may be what broke
            (folder / "at-failure.txt").write_text(f"no screenshot: {error!r}\n")
    if ui.log.exists():
        shutil.copy(ui.log, folder / "dagster-dev.log")
    report.sections.append(("browser artifacts", f"Screenshots and dagster dev log: {folder}"))
