"""The harness itself must see defects: an error output, unexecuted cells, controls that change
nothing, and processes left running."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab_page as lp
import lab_server as ls

BROKEN = "fixtures/explorer_broken.ipynb"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding processes by environment needs Linux's /proc")
def test_marked_processes_are_found_and_stopped():
    tag = secrets.token_hex(4)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            env={**os.environ, ls.MARKER: tag}, start_new_session=True)
    try:
        end = time.monotonic() + 10
        while proc.pid not in [pid for pid, _ in ls.marked_processes(tag)]:
            assert time.monotonic() < end, "a marked process was not found"
            time.sleep(0.05)
        assert ls.marked_processes(secrets.token_hex(4)) == []  # another tag finds nothing
        assert [pid for pid, _ in ls.stop_marked(tag)] == [proc.pid]
        assert ls.marked_processes(tag) == []
        assert proc.wait(timeout=10) == -15  # stopped by SIGTERM
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.browser
def test_harness_reports_errors_and_dead_controls(lab, lab_root, page, artifacts, browser_timeout):
    try:
        lp.open_notebook(page, lab, BROKEN, timeout_s=browser_timeout)
        run = lp.run_all_cells(page, lab_root / BROKEN, timeout_s=browser_timeout)
        assert [e.split(": ", 1)[1] for e in run.errors] == ["ZeroDivisionError: division by zero"]
        assert run.unexecuted == [4]  # Run All stops at the error: the last cell never runs
        assert run.widget_outputs == 1 and lp.rendered_widget_count(page) == 1
        assert lp.widget_problems(page) == []

        explorers = page.locator(lp.EXPLORERS_SELECTOR)
        assert explorers.count() == 1
        report = lp.explore(page, explorers.first, artifacts / "fixture-broken-explorer1.png", timeout_s=30)
        assert report.title == "Dead controls"
        assert report.kinds["slider"] == 1 and report.kinds["dropdown"] == 1
        moved = {t.kind: (t.before, t.after, t.changed) for t in report.tries}
        assert moved == {"slider": ("0.50", "0.80", False), "dropdown": ("red", "blue", False)}
        problems = report.problems()
        assert len(problems) == 2
        assert "no slider changed the figure" in problems[0] and "no dropdown changed" in problems[1]
        # The dropdown's 'blue' makes the draw raise: the Explorer says so where its picture was.
        said = lp.widget_problems(page)
        assert len(said) == 1 and "an Explorer says: could not draw" in said[0], said
        assert "ValueError: blue is not drawable" in said[0], said
    finally:
        lab.shutdown_kernels()
