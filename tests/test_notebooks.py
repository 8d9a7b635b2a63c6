"""The stored notebooks as a reader finds them: links that resolve, every cell run, no error shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LINK = re.compile(r"\]\((?:\./)?([^)#\s]+\.ipynb)(?:#[^)]*)?\)")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


# Names earlier versions of the notebooks imported from where they no longer live (DEVELOPERS.md): a learner's
# kept notebook still runs after an update. Module, name, where it lives now.
OLDER_NOTEBOOK_IMPORTS = [
    ("gptoss_edu.widgets.kvcache", "format_bytes", "gptoss_edu.memory.short_bytes"),  # 05 and 06, to 2026-12-06
    ("gptoss_edu.widgets.chat", "memory_explorer", "gptoss_edu.widgets.memory.memory_explorer"),  # 12, to 2026-12-01
]


@pytest.mark.parametrize("module, name, now", OLDER_NOTEBOOK_IMPORTS, ids=lambda v: v if "." not in v else "")
def test_names_older_notebooks_import_still_import(module, name, now):
    import importlib

    where, _, attr = now.rpartition(".")
    assert getattr(importlib.import_module(module), name) is getattr(importlib.import_module(where), attr)


def test_the_notebooks_are_numbered_from_00_without_a_gap():
    # The course's fourteen, and any a teacher adds after them (14_..., 15_...).
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) >= 14 and numbers == [f"{i:02d}" for i in range(len(numbers))], (
        f"notebooks/ holds {numbers}: number them 00, 01, ... in order, one notebook to a number")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_links_to_notebooks_resolve(path):
    for cell in cells(path):
        if cell["cell_type"] == "markdown":
            for target in LINK.findall("".join(cell["source"])):
                assert (path.parent / target).is_file(), f"{path.name} links to {target}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_ends_with_a_link_to_the_next(path):
    # DEVELOPERS.md: link a notebook from the one before it; the last one leads back to the start.
    later = NOTEBOOKS[NOTEBOOKS.index(path) + 1:]
    target = (later[0] if later else NOTEBOOKS[0]).name
    last = [c for c in cells(path) if c["cell_type"] == "markdown"][-1]
    assert target in LINK.findall("".join(last["source"])), (
        f"{path.name}'s last markdown cell should link to [{target[:2]} · ...](./{target}), the notebook a "
        f"reader opens next")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_ran_and_none_shows_an_error(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code if "".join(c["source"]).strip()), \
        f"{path.name} has code cells stored without running them"
    errors = [o.get("ename") for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} stores error outputs: {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_cell_s_printed_text_is_stored_in_one_piece(path):
    # nbclient stores each flush as an output; GitHub and nbviewer show each on a line of its own, so a streamed
    # reply reads one word a line. scripts/execute_notebooks.py joins them, as JupyterLab does when it saves.
    for i, c in enumerate(cells(path)):
        streams = [o.get("name") if o.get("output_type") == "stream" else None for o in c.get("outputs", [])]
        split = [s for s, t in zip(streams, streams[1:]) if s is not None and s == t]
        assert not split, f"{path.name}, cell {i}: its {split[0]} is stored in several pieces"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_unchecked_cell_says_why(path):
    # nbval skips a cell whose first line is NBVAL_IGNORE_OUTPUT: its second says why, e.g. "# (timings)".
    for i, c in enumerate(cells(path)):
        lines = "".join(c["source"]).splitlines()
        if c["cell_type"] == "code" and lines and "NBVAL_IGNORE_OUTPUT" in lines[0]:
            assert len(lines) > 1 and re.fullmatch(r"# \(.+\)", lines[1]), \
                f"{path.name}, cell {i}: after '# NBVAL_IGNORE_OUTPUT', a line '# (why its output varies)'"


def test_readme_lists_every_notebook():
    readme = (REPO / "README.md").read_text()
    for path in NOTEBOOKS:
        # A link, not only a row: on GitHub the README is the course's front door.
        assert re.search(rf"^\| {path.name[:2]} \| \[[^]]+\]\(notebooks/{re.escape(path.name)}\) \|", readme, re.M), \
            f"README's notebook table lacks a row linking to notebooks/{path.name}"


def _shows_explorer(cell: dict) -> bool:
    return any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               and "".join(o["data"].get("text/plain", "")).startswith("Explorer(") for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_explorer_is_followed_by_its_picture_for_a_static_page(path):
    """GitHub draws no widgets: after each Explorer, before the next section, a stored picture shows what it draws."""
    found = cells(path)
    for i, cell in enumerate(found):
        if not _shows_explorer(cell):
            continue
        for later in found[i + 1:]:
            if later["cell_type"] == "markdown" and "".join(later["source"]).lstrip().startswith("#"):
                pytest.fail(f"{path.name}: the Explorer of code cell {i} has no stored picture before the next section")
            if any("image/png" in o.get("data", {}) for o in later.get("outputs", [])):
                break


def sanitized(text: str) -> str:
    """``text`` as nbval compares it, after tests/nbval_sanitize.cfg's replacements."""
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_float32_rounding_is_the_same_on_every_cpu_and_real_numbers_are_compared():
    # Stored on one CPU, compared on another: rounding-sized differences (and an exact zero) must
    # match whatever their digits; the numbers a notebook states must not be hidden.
    for a, b in (("max |ours - transformers| = 1.4e-06", "max |ours - transformers| = 1.8e-06"),
                 ("largest difference 0.0e+00 (tolerance 1e-4)", "largest difference 7.6e-06 (tolerance 1e-4)"),
                 ("max difference 2e-07", "max difference 1e-07"), ("block 0   6.0e-08", "block 0   6.7e-08")):
        assert sanitized(a) == sanitized(b) != a
    for kept in ("2^-27 = 7.451e-09", "low  1.50e-10  9.99e-01", "positions 5-9 by 0.38", "tolerance 1e-4",
                 "val loss 4.089", "differs by 3.2e-03", "1.0e+00"):
        assert sanitized(kept) == kept


def test_a_gpu_that_nbval_hides_reads_as_the_stored_cpu_mode():
    """On a GPU machine notebook 12 said why torch saw none (the empty CUDA_VISIBLE_DEVICES nbval sets): a failure."""
    stored = "CPU MODE: there is no CUDA GPU here.\nEvery cell below runs"
    for reason in ("CUDA_VISIBLE_DEVICES is set to '', which hides every GPU from torch: unset it, then start Python "
                   "(or JupyterLab) again", "torch 2.11.0 (CUDA 13.0) cannot use it (driver 580.65.06): see the warning"):
        assert sanitized(f"CPU MODE: torch cannot use the NVIDIA H100 80GB HBM3 here: {reason}.\nEvery cell below "
                         "runs") == sanitized(stored)
    for kept in ("GPU MODE: NVIDIA H100 80GB HBM3 has 78.00 GiB free: the plan fits with 60.00 GiB to spare.",
                 "CPU MODE: NVIDIA L4 has 2.00 GiB free and the plan of gpt-oss-20b needs 13.35 GiB: lower CONTEXT"):
        assert sanitized(kept) == kept


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_stores_when_it_ran(path):
    """Timestamps made every re-run's diff hundreds of lines: scripts/execute_notebooks.py records none."""
    timed = [i for i, cell in enumerate(cells(path)) if "execution" in cell.get("metadata", {})]
    assert not timed, f"{path.name}: cells {timed[:5]} store their run's timestamps (metadata.execution)"


def test_notebook_00s_map_lists_every_notebook():
    """Only the browser test read it, so a notebook added without its row passed `make test-fast`."""
    maps = ["".join(c["source"]) for c in cells(NOTEBOOKS[0])
            if c["cell_type"] == "markdown" and "| nb | notebook |" in "".join(c["source"])]
    assert len(maps) == 1, "notebook 00 has one course map, a table headed '| nb | notebook |'"
    listed = LINK.findall(maps[0])
    assert listed == [p.name for p in NOTEBOOKS], f"notebook 00's map lists {listed}"


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("Yes", True), ("0", False), ("false", False),
                                          ("no", False), ("", False), (None, False)])
def test_notebook_13_reads_its_short_schedule_switch_as_a_yes_or_no(value, quick, monkeypatch):
    """GPTOSS_EDU_QUICK=0 (or CI=false) once chose the short schedule, silently: any value but "" did."""
    from gptoss_edu.env import env_flag

    source = "".join(cells(REPO / "notebooks" / "13_train_tiny.ipynb")[1]["source"])
    line = next(line for line in source.splitlines() if line.startswith("QUICK ="))
    for name in ("CI", "GPTOSS_EDU_QUICK"):
        monkeypatch.delenv("CI", raising=False)
        monkeypatch.delenv("GPTOSS_EDU_QUICK", raising=False)
        if value is not None:
            monkeypatch.setenv(name, value)
        scope = {"env_flag": env_flag, "os": __import__("os")}
        exec(line, scope)
        assert scope["QUICK"] is quick, (name, value)
