"""Every notebook with an Explorer, run in JupyterLab in headless Chromium.

For each: Run All Cells ends with no error output and every code cell executed; every widget
renders; moving a slider or picking a dropdown value changes the figure (the image bytes are
compared); screenshots of each Explorer go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest

import lab_page as lp
import lab_server as ls

pytestmark = pytest.mark.browser

FIXTURE = "fixtures/explorer_ok.ipynb"
COURSE = sorted(p for p in (ls.REPO / "notebooks").glob("*.ipynb") if ls.notebook_uses_explorer(p))
CASES = [pytest.param(FIXTURE, id="fixture")] + [pytest.param(f"notebooks/{p.name}", id=p.stem) for p in COURSE]


@pytest.mark.parametrize("relpath", CASES)
def test_widgets_render_and_respond(relpath, lab, lab_root, page, artifacts, browser_timeout):
    stem = Path(relpath).stem
    start = time.monotonic()
    try:
        lp.open_notebook(page, lab, relpath, timeout_s=browser_timeout)
        opened = time.monotonic() - start
        run = lp.run_all_cells(page, lab_root / relpath, timeout_s=browser_timeout - (time.monotonic() - start))
        assert not run.errors, f"{relpath}: error output after Run All Cells: {run.errors}"
        assert not run.unexecuted, f"{relpath}: code cells left unexecuted: {run.unexecuted}"
        broken = lp.widget_problems(page)
        assert not broken, f"{relpath}: {broken}"
        assert run.widget_outputs >= 1, f"{relpath} uses gptoss_edu.widgets but displays no widget"
        rendered = lp.rendered_widget_count(page)
        assert rendered == run.widget_outputs, (
            f"{relpath}: {run.widget_outputs} widget outputs but {rendered} rendered widgets")

        explore_start = time.monotonic()
        explorers = page.locator(lp.EXPLORERS_SELECTOR)
        assert explorers.count() >= 1, f"{relpath}: widgets rendered, but none is an Explorer"
        reports = [lp.explore(page, explorers.nth(k), artifacts / f"{stem}-explorer{k + 1}.png", timeout_s=30)
                   for k in range(explorers.count())]
        page.screenshot(path=str(artifacts / f"{stem}.png"))
        summary = {"notebook": relpath, "open_seconds": round(opened, 1),
                   "run_all_seconds": round(run.seconds, 1),
                   "explore_seconds": round(time.monotonic() - explore_start, 1),
                   "total_seconds": round(time.monotonic() - start, 1),
                   "explorers": [asdict(r) for r in reports]}
        (artifacts / f"{stem}.json").write_text(json.dumps(summary, indent=1))
        problems = [p for r in reports for p in r.problems()]
        assert not problems, f"{relpath}: " + "; ".join(problems)
    finally:
        lab.shutdown_kernels()
