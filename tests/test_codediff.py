"""codediff: sources of package and notebook-defined code, and the marked diff."""

from __future__ import annotations

import inspect
import linecache
import sys
import types

import pytest

from gptoss_edu.codediff import CodeDiff, show_diff, source_of
from gptoss_edu.mlp import GptOssSwiGLU
from gptoss_edu.moe import MoE

CELL = '''import torch

class Tiny(torch.nn.Module):
    """A module written in a notebook cell."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.w(x).relu()

def after():
    pass
'''


def run_as_notebook_cell(source: str, filename: str = "<ipython-input-7-abc>") -> types.SimpleNamespace:
    """Define code the way IPython does: compiled under a cell name kept in linecache, in a module without a file."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def test_source_of_a_class_defined_in_a_notebook_cell():
    cell = run_as_notebook_cell(CELL)
    if sys.version_info < (3, 13):  # 3.13 records where a class starts (__firstlineno__) and finds it
        with pytest.raises((OSError, TypeError)):
            inspect.getsource(cell.Tiny)          # what inspect alone does for such a class
    src = source_of(cell.Tiny)
    assert src.startswith("class Tiny(torch.nn.Module):")
    assert "return self.w(x).relu()" in src and "def after" not in src


def test_source_of_package_code_and_strings():
    assert source_of(MoE).startswith("class MoE")
    assert source_of("a = 1\n") == "a = 1\n"


def test_diff_counts_changed_lines():
    d = CodeDiff("a = 1\nb = 2\n", "a = 1\nb = 3\nc = 4\n")
    assert d.changed == 3
    assert "+b = 3" in repr(d) and "-b = 2" in repr(d)
    assert repr(CodeDiff("x\n", "x\n")) == "(no change)"
    assert "<table" in show_diff(GptOssSwiGLU, MoE)._repr_html_()


DECORATED = """import dataclasses


@dataclasses.dataclass(
    frozen=True,
)
class Point:
    x: int = 0

    def norm(self):
        return abs(self.x)
"""


def test_a_decorated_class_keeps_its_decorator(tmp_path, monkeypatch):
    (tmp_path / "decorated_mod.py").write_text(DECORATED)
    monkeypatch.syspath_prepend(str(tmp_path))
    import decorated_mod

    assert source_of(decorated_mod.Point).startswith("@dataclasses.dataclass(\n    frozen=True,\n)\nclass Point:")
