"""codediff: sources of package and notebook-defined code, and the marked diff."""

from __future__ import annotations

import inspect
import linecache
import re
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


# ---- found by mutation testing: the HTML table's marks, colours and escaping -----------------------------

# On the <pre> (JupyterLab paints its own background over a cell's), with dark text for dark themes.
RED, GREEN = "color:#1a1a1a;background:#fdd;", "color:#1a1a1a;background:#dfd;"


def rows(diff: CodeDiff) -> list[tuple[str, str, str, str, str]]:
    """(left style, left text, mark, right style, right text) for each row of the table."""
    return re.findall(r"<tr><td><pre style='([^']*)margin:0'>(.*?)</pre></td>"
                      r"<td style='color:#080'>(.*?)</td>"
                      r"<td><pre style='([^']*)margin:0'>(.*?)</pre></td></tr>", diff._repr_html_())


def test_only_changed_lines_are_marked_and_coloured():
    old = "a = 1\nb = 2\nkeep\nif a < b:\nlast\n"
    new = "a = 1\nb = 3\nkeep\nlast\nx = y < z\n"
    got = rows(CodeDiff(old, new))
    assert got == [
        ("", "a = 1", "", "", "a = 1"),                                  # equal: no mark, no colour
        (RED, "b = 2", "►", GREEN, "b = 3"),                           # replaced
        ("", "keep", "", "", "keep"),
        (RED, "if a &lt; b:", "►", "", ""),                            # deleted: only the left coloured
        ("", "last", "", "", "last"),
        ("", "", "►", GREEN, "x = y &lt; z"),                          # inserted, and escaped
    ]


def test_a_replacement_of_unequal_length_pads_the_shorter_side():
    got = rows(CodeDiff("same\none\n", "same\nfirst\nsecond\n"))
    assert got[1:] == [(RED, "one", "►", GREEN, "first"),
                       ("", "", "►", GREEN, "second")]


def test_titles_are_escaped():
    html = CodeDiff("a\n", "b\n", "<old>", "new & better")._repr_html_()
    assert "<th>&lt;old&gt;</th>" in html and "<th>new &amp; better</th>" in html


def test_the_unified_diff_runs_from_old_to_new():
    text = repr(CodeDiff("a = 1\n", "a = 2\n", "before", "after"))
    assert text.splitlines()[:2] == ["--- before", "+++ after"] and "-a = 1" in text and "+a = 2" in text


@pytest.mark.parametrize("old, new", [
    ("".join(f"line{i}\n" for i in range(12)), "".join(["added0\n", "added1\n", "added2\n"] + [
        "CHANGED\n" if i == 9 else f"line{i}\n" for i in range(12)])),  # context after lines added higher up
    ("", "x = 1\n"), ("x = 1\n", ""), ("a\nb\nc\n", "a\nc\n"), ("a\nb\n", "a\nb\nc\nd\n"),
])
def test_the_unified_diff_of_a_short_source_is_difflibs(old, new):
    """Under 200 lines difflib's junk heuristic does not apply: the same hunks, headers and context lines."""
    import difflib

    want = difflib.unified_diff(old.splitlines(), new.splitlines(), "before", "after", n=2, lineterm="")
    assert repr(CodeDiff(old, new, "before", "after")) == "\n".join(want)


def test_code_without_source_raises():
    with pytest.raises(TypeError):
        source_of(len)  # a builtin has no Python source: say so, do not show an empty diff


REDEFINED = '''class Block:
    def forward(self, x):
        return x

class Block(Block):
    """The improved version, defined in the same cell under the same name."""

    def forward(self, x):
        return 2 * x
'''


def test_a_class_redefined_in_the_same_cell_shows_its_own_source():
    """The class line searched for is the nearest one above the methods, not the first in the cell."""
    name = "<ipython-input-9-redefined>"
    linecache.cache[name] = (len(REDEFINED), None, REDEFINED.splitlines(True), name)
    ns = {"__name__": "__main__"}
    exec(compile(REDEFINED, name, "exec"), ns)
    src = source_of(ns["Block"])
    assert src.startswith("class Block(Block):") and "return 2 * x" in src and "return x\n" not in src


# ---- found by mutation testing: a class on a cell's first line, and Python 3.13's lookups ------------------

def test_a_class_on_the_first_line_of_a_cell_is_found():
    cell = run_as_notebook_cell("class Tiny:\n    def forward(self, x):\n        return x + 1\n",
                                "<ipython-input-8-first>")
    assert source_of(cell.Tiny) == "class Tiny:\n    def forward(self, x):\n        return x + 1\n"


def test_what_python_3_13_may_find_is_corrected(monkeypatch):
    """3.13.0 may start a class's source at the blank line above it, or (for a class from a notebook
    cell) return lines of another file that __main__ came from: neither reaches the diff."""
    cell = run_as_notebook_cell(CELL, "<ipython-input-10-elsewhere>")
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: "\n" + real(obj))
    assert source_of(MoE).startswith("class MoE")
    monkeypatch.setattr(inspect, "getsource", lambda obj: "class Other:\n    pass\n")
    assert source_of(cell.Tiny).startswith("class Tiny(torch.nn.Module):")


GPT2_FORWARD = '''    def forward(self, x):
        x = x + self.drop(self.attn(self.ln_1(x)))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x
'''
GPTOSS_FORWARD = '''    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope, cache))
        return x + self.drop(self.mlp(self.mlp_norm(x)))
'''


def test_side_by_side_rows_pair_the_lines_that_changed_into_each_other():
    # Notebook 01's diff: a signature wrapped over two lines once put the new attention line beside the
    # old MLP line, and the new MLP line beside the old return.
    rows = CodeDiff(GPT2_FORWARD, GPTOSS_FORWARD).rows()
    old, new = GPT2_FORWARD.splitlines(), GPTOSS_FORWARD.splitlines()
    assert rows == [(old[0], new[0]), (None, new[1]), (old[1], new[2]), (old[2], new[3]), (old[3], None)]
    # Notebook 03's: LayerNorm's variance has no counterpart in RMSNorm, and the returns face each other.
    layer_norm = ["def layer_norm(x, weight, bias, eps=1e-5):", "    mean = x.mean(-1, keepdim=True)",
                  "    var = x.var(-1, keepdim=True, unbiased=False)",
                  "    return (x - mean) / torch.sqrt(var + eps) * weight + bias"]
    rms_norm = ["def rms_norm(x, weight, eps=1e-5):", "    mean_square = x.pow(2).mean(-1, keepdim=True)",
                "    return x / torch.sqrt(mean_square + eps) * weight"]
    assert CodeDiff("\n".join(layer_norm), "\n".join(rms_norm)).rows() == [
        (layer_norm[0], rms_norm[0]), (layer_norm[1], rms_norm[1]), (layer_norm[2], None), (layer_norm[3], rms_norm[2])]


def test_side_by_side_rows_of_a_rewrite_and_of_unchanged_lines():
    # Nothing alike: a rewritten run reads line against line, the longer side's rest alone.
    assert CodeDiff("a = 1\nq = f(a)\nz\n", "a = 1\nw = 7\nprint('x')\nk()\n").rows() == [
        ("a = 1", "a = 1"), ("q = f(a)", "w = 7"), ("z", "print('x')"), (None, "k()")]
    html = CodeDiff("keep\nold_line = 1\n", "keep\nnew_line = 1\nadded()\n")._repr_html_()
    assert html.count("►") == 2 and html.count("#fdd") == 1 and html.count("#dfd") == 2
    assert CodeDiff("x\ny\n", "x\ny\n").rows() == [("x", "x"), ("y", "y")]


def test_side_by_side_rows_keep_the_pairs_in_order():
    # Notebook 01's __init__: ln_1 is a little more like mlp_norm (0.764) than attn_norm (0.757); taking the
    # most alike pair first put ln_1 beside mlp_norm and left attn_norm and the new attn alone.
    old = ["        self.ln_1 = LayerNorm(cfg.d_model, cfg.norm_eps)",
           "        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)",
           "        self.ln_2 = LayerNorm(cfg.d_model, cfg.norm_eps)", "        self.mlp = MLP(cfg.d_model, cfg.d_ff)"]
    new = ["        self.attn_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)", "        self.attn = Attention(cfg, layer)",
           "        self.mlp_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)",
           "        self.mlp = MoE(cfg, packed_experts) if cfg.is_moe else make_mlp(cfg)"]
    assert CodeDiff("\n".join(old), "\n".join(new)).rows() == list(zip(old, new))


def test_a_long_rewritten_run_is_paired_quickly_by_position(monkeypatch):
    """Pairing 300 x 300 lines by likeness took 127 s; by position it compares no line with another. Counted,
    not timed: the likeness pairing builds a SequenceMatcher per pair of lines, the positional one none."""
    import difflib

    from gptoss_edu import codediff

    made = []

    class Counting(difflib.SequenceMatcher):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(codediff.difflib, "SequenceMatcher", Counting)
    old = [f"value_{i} = compute(alpha, beta, gamma)  # step {i}" for i in range(300)]
    new = [f"result_{i} = compute(alpha, beta, delta)  # stage {i}" for i in range(300)]
    assert CodeDiff("\n".join(old), "\n".join(new)).rows() == list(zip(old, new))
    assert len(made) <= 2, f"{len(made)} SequenceMatchers: the long run was paired by likeness"


def test_a_decorated_class_in_a_cell_keeps_its_decorator():
    """In a cell (not a module file) the class was cut at its class line: @dataclass was lost, and a change to the
    decorator alone read "(no change)"."""
    plain = run_as_notebook_cell("import dataclasses\n\n@dataclasses.dataclass\nclass Cfg:\n    d: int = 64\n\n"
                                 "    def half(self):\n        return self.d // 2\n", "<ipython-input-11-dc>")
    frozen = run_as_notebook_cell("import dataclasses\n\n@dataclasses.dataclass(\n    frozen=True,\n)\nclass Cfg:\n"
                                  "    d: int = 64\n\n    def half(self):\n        return self.d // 2\n",
                                  "<ipython-input-12-dc>")
    assert source_of(plain.Cfg).startswith("@dataclasses.dataclass\nclass Cfg:\n")
    assert source_of(frozen.Cfg).startswith("@dataclasses.dataclass(\n    frozen=True,\n)\nclass Cfg:\n")
    diff = CodeDiff(plain.Cfg, frozen.Cfg)
    assert diff.changed == 4 and "+    frozen=True," in repr(diff)


def test_a_cell_class_whose_methods_are_wrapped_or_properties_is_found():
    """A class whose every method is wrapped (@torch.no_grad(): its code is torch's) or a property raised OSError."""
    cell = run_as_notebook_cell("import torch\n\nclass Sampler(torch.nn.Module):\n    @torch.no_grad()\n"
                                "    def forward(self, x):\n        return x.argmax(-1)\n\n\nclass Plain:\n    x = 1\n\n"
                                "    @property\n    def double(self):\n        return 2 * self.x\n\n"
                                "    @staticmethod\n    def one():\n        return 1\n", "<ipython-input-13-wrap>")
    assert source_of(cell.Sampler) == ("class Sampler(torch.nn.Module):\n    @torch.no_grad()\n    def forward(self, x):"
                                       "\n        return x.argmax(-1)\n")
    assert source_of(cell.Plain).startswith("class Plain:\n    x = 1\n") and "return 1" in source_of(cell.Plain)


def test_a_cell_class_with_only_a_property_a_magic_line_or_a_namesake_inside_is_found():
    """Three ways the cell lookup had no test: a property's accessor is the only code, IPython's %magic
    keeps ast from parsing the cell (the class line is searched for instead), and a class holding one of
    its own name (the innermost holding the method is the one asked for)."""
    only = run_as_notebook_cell("class Only:\n    @property\n    def two(self):\n        return 2\n",
                                "<ipython-input-14-prop>")
    assert source_of(only.Only) == "class Only:\n    @property\n    def two(self):\n        return 2\n"
    cell = "class Timed:\n    def f(self):\n        return 3\n"
    timed = run_as_notebook_cell(cell, "<ipython-input-15-magic>")
    linecache.cache["<ipython-input-15-magic>"] = (0, None, ["%time 1 + 1\n", *cell.splitlines(True)],
                                                   "<ipython-input-15-magic>")  # as IPython keeps it: not Python
    assert source_of(timed.Timed) == cell
    nested = run_as_notebook_cell("class Box:\n    class Box:\n        def f(self):\n            return 1\n",
                                  "<ipython-input-16-nested>")
    assert source_of(nested.Box.Box) == "    class Box:\n        def f(self):\n            return 1\n"


def test_a_long_source_shows_only_its_changed_lines():
    """From 200 lines on, difflib.unified_diff's matcher took common lines (blank ones, "return y") for junk and
    showed unchanged functions removed and added again; rows() and changed never did."""
    old = "".join(f"def f{i}(x):\n    y = x * {i}\n    return y\n\n" for i in range(60)).splitlines()
    new = list(old)
    new[4:6] = new[8:10] = ["def g(x):", "    y = x * 1.5"]  # two neighbours rewritten: "return y" and "" between
    new[120] = "def g30(x):"
    diff = CodeDiff("\n".join(old), "\n".join(new))
    shown = [line for line in repr(diff).splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert shown == ["-def f1(x):", "-    y = x * 1", "+def g(x):", "+    y = x * 1.5", "-def f2(x):",
                     "-    y = x * 2", "+def g(x):", "+    y = x * 1.5", "-def f30(x):", "+def g30(x):"], shown
    assert diff.changed == len(shown) and sum(a != b for a, b in diff.rows()) == 5
    assert repr(diff).count("@@ -") == 2 and "@@ -3,10 +3,10 @@" in repr(diff)
