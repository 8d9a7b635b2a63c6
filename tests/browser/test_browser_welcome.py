"""Notebook 00 as a new learner meets it: the README's `make lab`, then the course map.

The server is started with the very command `make lab` runs (read with `make -n`), in a
temporary copy of the repository's notebooks, and the browser opens the address the server
would open for a learner. The course map must render as a table that links to every notebook
of the README's list, each link naming the notebook's real file, and a link must open it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab_page as lp
import lab_server as ls

pytestmark = pytest.mark.browser

WELCOME = "notebooks/00_welcome.ipynb"

COURSE_MAP_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  for (const md of panel.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown')) {
    const heading = [...md.querySelectorAll('h1, h2, h3, h4')].find(h => /map/i.test(h.textContent));
    if (!heading) continue;
    const links = [...md.querySelectorAll('a[href]')].map(a => ({text: a.textContent.trim(),
      file: decodeURIComponent(a.getAttribute('href')).split(/[?#]/)[0].split('/').pop()}));
    return {heading: heading.textContent.replace(/\\u00b6/g, '').trim(),
            rows: md.querySelectorAll('table tbody tr').length, links};
  }
  return null;
}"""


def readme_notebook_numbers() -> list[str]:
    """The notebook numbers in the README's table of the notebooks ('00', '01', ...)."""
    text = (ls.REPO / "README.md").read_text()
    assert "make lab" in text, "README.md no longer tells learners to run `make lab`"
    # That section alone: later tables (the further reading) have a row a notebook too.
    section = text.split("\n## The notebooks\n", 1)[-1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*(\d\d)\s*\|", section, flags=re.M)


def make_lab_command() -> list[str]:
    """The `jupyter lab ...` command `make lab` runs, as make prints it without running it."""
    out = subprocess.run(["make", "-n", "-s", "lab", f"VENV={sys.prefix}"], cwd=ls.REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"`make -n lab` failed: {out.stderr[-1000:]}"
    lines = [shlex.split(line) for line in out.stdout.splitlines() if re.search(r"jupyter(-lab)? lab\b", line)]
    assert lines, f"`make lab` runs no `jupyter lab` command; make -n printed:\n{out.stdout}"
    command = lines[-1]
    if not Path(command[0]).is_absolute() and "/" in command[0]:
        command[0] = str(ls.REPO / command[0])
    assert WELCOME in command, f"`make lab` does not open {WELCOME}: {shlex.join(command)}"
    return command


@pytest.fixture
def learner_lab(browser_available, tmp_path, session_tag, browser_timeout):
    """`make lab`'s command in a temporary copy of the course, with stored outputs kept."""
    root = tmp_path / "course"
    ls.copy_tree(ls.REPO / "notebooks", root / "notebooks", strip=False)
    if (ls.REPO / "data").is_dir():
        (root / "data").symlink_to(ls.REPO / "data", target_is_directory=True)
    tag, url_file = f"{session_tag}-learner", tmp_path / "opened-url.txt"
    server = ls.LabServer(make_lab_command(), cwd=root, root_dir=root, work=tmp_path / "work", tag=tag,
                          record_browser_url=url_file)
    try:
        server.wait_ready(timeout=max(120.0, browser_timeout / 2))
        end = time.monotonic() + 30
        while not (url_file.exists() and url_file.read_text()):
            assert time.monotonic() < end, "jupyter lab did not open a browser for the learner"
            time.sleep(0.2)
        yield server, url_file.read_text().strip()
    finally:
        server.stop()
        left = ls.marked_processes(tag)
        assert not left, f"JupyterLab or kernel processes still running after teardown: {left}"


def test_welcome_opens_with_a_course_map_that_links_every_notebook(learner_lab, page, artifacts,
                                                                   browser_timeout):
    server, opened = learner_lab
    page.goto(opened, timeout=browser_timeout * 1000)  # the server's own page, token inside
    lp.wait_notebook_ready(page, browser_timeout)
    current = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    assert current.text_content().strip() == Path(WELCOME).name

    course_map = page.evaluate(COURSE_MAP_JS)
    assert course_map, f"{WELCOME} has no rendered markdown cell with a 'map' heading"
    numbers = readme_notebook_numbers()
    assert course_map["rows"] >= len(numbers), (
        f"the course map's table has {course_map['rows']} rows; the README lists {len(numbers)} notebooks")
    page.locator(".jp-RenderedMarkdown", has=page.locator("h1, h2, h3, h4", has_text=re.compile("map", re.I))) \
        .first.screenshot(path=str(artifacts / "welcome-course-map.png"))

    written = {p.name[:2]: p.name for p in (ls.REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    linked = {link["file"][:2]: link for link in course_map["links"] if link["file"].endswith(".ipynb")}
    missing = [n for n in numbers if n != "00" and n not in linked]
    assert not missing, f"the course map links no notebook for {', '.join(missing)}"
    wrong = {n: (linked[n]["file"], written[n]) for n in numbers if n in written and n in linked
             and linked[n]["file"] != written[n]}
    assert not wrong, f"course map links that name no notebook (link, real file): {wrong}"

    # Follow one link as a learner would: it opens that notebook in a new JupyterLab tab.
    target = next((written[n] for n in numbers if n != "00" and n in written), None)
    assert target, "no notebook of the README's list besides 00 exists: no link to follow"
    link = page.locator(".jp-RenderedMarkdown a", has_text=linked[target[:2]]["text"]).first
    link.scroll_into_view_if_needed()
    link.click()
    page.wait_for_function(
        """name => [...document.querySelectorAll('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel')]
             .some(e => e.textContent.trim() === name)""", arg=target, timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=60_000)
    page.screenshot(path=str(artifacts / "welcome-followed-link.png"))
    server.shutdown_kernels()
