"""Every notebook's exercise check, given what a learner's first tries often are: a function that
raises, one that returns None, or the function's result instead of the function. Each gets a
"not yet" that says which, and no check raises (a traceback would hide the message)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch

# One exercise module a notebook: the course's fourteen, and any notebook a teacher adds.
NOTEBOOKS = [f"nb{p.name[:2]}" for p in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
MODULES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "gptoss_edu" / "exercises").glob("nb[0-9][0-9].py"))
CHECKS = [(nb, name, fn) for nb in MODULES
          for name, fn in inspect.getmembers(importlib.import_module(f"gptoss_edu.exercises.{nb}"), inspect.isfunction)
          if name.startswith("check_") and fn.__module__ == f"gptoss_edu.exercises.{nb}"]


def test_every_notebook_has_its_check():
    assert len(NOTEBOOKS) >= 14
    assert sorted({nb for nb, _, _ in CHECKS}) == NOTEBOOKS, (
        "each notebook NN has a check_ function in gptoss_edu/exercises/nbNN.py (DEVELOPERS.md, 'Adding an exercise')")


def raises(*args, **kwargs):
    raise ZeroDivisionError("a slip in the learner's code")


def returns_none(*args, **kwargs):
    return None


@pytest.mark.parametrize("nb, name, check", CHECKS, ids=[f"{nb}-{name}" for nb, name, _ in CHECKS])
def test_a_first_try_gets_a_not_yet_that_names_the_slip(nb, name, check):
    if nb == "nb10":  # takes a @triton.jit kernel, and says so for anything else
        from gptoss_kernels import triton_available

        if not triton_available():
            pytest.skip("Triton has no build for this platform (it needs Linux): notebook 10's check needs it")
        for wrong in (raises, torch.ones(3)):
            result = check(wrong)
            assert not result.passed and "@triton.jit" in result.message
        return
    result = check(raises)
    assert not result.passed and "ZeroDivisionError: a slip in the learner's code" in result.message
    result = check(returns_none)
    assert not result.passed and "None" in result.message and "return" in result.message
    result = check(torch.ones(3))  # check_x(my_fn(x)) instead of check_x(my_fn)
    assert not result.passed and "pass your function itself" in result.message and "Tensor" in result.message


@pytest.mark.parametrize("nb, name, check", CHECKS, ids=[f"{nb}-{name}" for nb, name, _ in CHECKS])
def test_every_check_is_a_notebook_exercise_and_has_its_tests(nb, name, check):
    # A check no notebook calls is no exercise; one its test file never names is untested against the
    # mistakes it is meant to name (this file only tries the three first tries above).
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    notebook, = root.glob(f"notebooks/{nb[2:]}_*.ipynb")
    calls = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"
             and "solution" not in c.get("metadata", {}).get("tags", [])
             and re.search(rf"^{name}\(", "".join(c["source"]), re.M)]
    assert calls, f"{notebook.name} has no exercise cell calling {name}(...) at the start of a line"
    tests = root / "tests" / f"test_exercises_{nb}.py"
    assert tests.exists(), f"{tests.name} is missing: {name} has no tests"
    # Calls, not the import line: a check imported and never called would count as tested.
    called = re.findall(rf"\b{name}\(", tests.read_text())
    assert len(called) >= 2, f"{tests.name} calls {name}(...) {len(called)} time(s): test a right answer and mistakes"


# Verdicts show as markdown in JupyterLab, nbconvert and nbviewer: a hint such as in*out + 2*d must not
# turn italic and lose its stars. Some stars, underscores, tags, dollars and pipes, and the hints that hold them.
TRICKY = ["Count each nn.Linear as in*out + out, each LayerNorm as 2*d.", "a*cos - b*sin, then b*cos + a*sin",
          "x_1 and y_2, __init__, [link](x) | a | b", "got <torch.Tensor of 3> & 2 &amp; 3", "costs $2 or $3",
          "# not a heading ~~not struck~~ \\*kept\\* !", "did you forget to `return` the result? 2*x then `a*b`",
          "first line\n- not a list", "a `` b *em* c `d`` e", "one ` backtick *alone*", "raised `line one\nline two`"]


def _hints() -> list[str]:
    hints = []
    for nb in MODULES:
        module = importlib.import_module(f"gptoss_edu.exercises.{nb}")
        hints += [why for _, why in getattr(module, "MISTAKES", ())]
    assert len(hints) >= 5  # notebooks 01 and 02 name their learners' usual slips
    return hints


@pytest.mark.parametrize("renderer", ["mistune", "markdown_it"])
def test_a_verdict_renders_as_its_own_text(renderer):
    import html
    import re

    from gptoss_edu.exercises import CheckResult

    if renderer == "mistune":  # nbconvert's, so nbviewer's
        import mistune

        render = mistune.html
    else:  # CommonMark, as JupyterLab's marked reads it
        from markdown_it import MarkdownIt

        render = MarkdownIt().render
    for passed in (True, False):
        for message in TRICKY + _hints():
            result = CheckResult(passed, message)
            shown = render(result._repr_markdown_())
            assert "mathjax_ignore" in shown  # MathJax reads the page after markdown: no $ opens a formula
            assert "<em>" not in shown and "<strong>" not in shown and "<h1>" not in shown and "<li>" not in shown
            text = html.unescape(re.sub(r"<[^>]+>", "", shown.replace("<br>", "\n").replace("<br />", "\n")))
            spans = re.findall(r"`([^`]+)`", message)
            assert text.strip() == re.sub(r"`([^`]+)`", r"\1", repr(result)), (renderer, message, shown)
            assert [html.unescape(c.replace("<br>", "\n")) for c in re.findall(r"<code>(.*?)</code>", shown, re.S)] \
                == spans
