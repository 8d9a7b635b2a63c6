"""Fixtures for the browser tests: one JupyterLab server and one headless Chromium per session.

Without Chromium (or Playwright) the tests fail under CI=true, saying how to install it, and
skip elsewhere with the same message.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest

import lab_server as ls

# The fixture notebooks are run by the browser tests, not collected by nbval.
collect_ignore_glob = ["fixtures/*"]

ARTIFACTS = ls.REPO / "test-artifacts" / "browser"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("browser", "JupyterLab in headless Chromium (tests/browser)")
    group.addoption("--browser-timeout", type=float, default=240.0,
                    help="seconds each notebook may take to open and run all its cells (default 240)")


def in_ci() -> bool:
    """Whether this run is CI's (CI=true), where a missing browser is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_browser() -> str:
    """Why the browser tests cannot run here ('' when they can)."""
    reasons = []
    if not (ls.CHROMIUM.is_file() and os.access(ls.CHROMIUM, os.X_OK)):
        reasons.append(f"Chromium is not installed ({ls.CHROMIUM} is missing): run "
                       f"scripts/install_browser.sh (as root, or with sudo)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reasons.append("Playwright for Python is missing: install the dev extra "
                       "(.venv/bin/pip install -e '.[dev]'); no `playwright install` is needed, "
                       "the tests use Debian's Chromium")
    return "; ".join(reasons)


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Fail (CI) or skip (elsewhere) when Chromium or Playwright is missing."""
    reason = missing_browser()
    if reason and in_ci():
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_timeout(request: pytest.FixtureRequest) -> float:
    return request.config.getoption("--browser-timeout")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and reports go (test-artifacts/browser/, gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def session_tag() -> str:
    """Marks this session's processes (in their environment) so teardown can find them."""
    return secrets.token_hex(8)


@pytest.fixture(scope="session")
def browser(browser_available, tmp_path_factory, session_tag):
    """Headless Chromium with a fresh profile; teardown checks that none of it is left running."""
    b = ls.Browser(tmp_path_factory.mktemp("chromium-profile"), tag=f"{session_tag}-chromium")
    yield b
    killed = b.close()
    left = ls.marked_processes(f"{session_tag}-chromium") + ls.playwright_drivers()
    assert not left, f"Chromium or Playwright processes still running after teardown: {left}"
    if killed:  # stopped, but they should have gone with the browser: say so
        print(f"\nbrowser tests: had to kill {json.dumps(killed)}")


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory) -> Path:
    """A temporary root with copies of notebooks/ and the fixture notebooks, outputs cleared,
    so running cells never touches the repository's notebooks."""
    root = tmp_path_factory.mktemp("lab-root")
    ls.copy_tree(ls.REPO / "notebooks", root / "notebooks", strip=True)
    ls.copy_tree(Path(__file__).parent / "fixtures", root / "fixtures", strip=True)
    if (ls.REPO / "data").is_dir():  # for notebooks that read ../data
        (root / "data").symlink_to(ls.REPO / "data", target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def lab(browser_available, lab_root, tmp_path_factory, session_tag, browser_timeout):
    """A JupyterLab server on 127.0.0.1 with a random token, serving lab_root."""
    tag = f"{session_tag}-lab"
    server = ls.LabServer([sys.executable, "-m", "jupyterlab"], cwd=lab_root, root_dir=lab_root,
                          work=tmp_path_factory.mktemp("lab-work"), tag=tag)
    try:
        server.wait_ready(timeout=max(120.0, browser_timeout / 2))
        yield server
    finally:
        log = server.log_path
        killed = server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, ARTIFACTS / "jupyter-lab.log")
        left = ls.marked_processes(tag)
        assert not left, f"JupyterLab or kernel processes still running after teardown: {left}"
        if killed:  # kernels or the server that ignored the polite shutdown: stopped, but say so
            print(f"\nbrowser tests: had to kill {json.dumps(killed)}")


@pytest.fixture
def page(browser, request, artifacts):
    """A fresh tab; a screenshot of it is saved when the test fails."""
    tab = browser.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        name = request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
        try:
            tab.screenshot(path=str(artifacts / f"FAILED-{name}.png"))
        except Exception:  # a crashed tab cannot be photographed; the failure says why
            pass
    tab.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
