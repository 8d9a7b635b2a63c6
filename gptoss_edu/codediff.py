"""Show a change of code: the old version beside the new, changed lines marked."""

from __future__ import annotations

import ast
import difflib
import html
import inspect
import linecache
import re
from typing import Callable


def source_of(obj: Callable | type | str) -> str:
    """The source text of a function or class (or the string itself)."""
    if isinstance(obj, str):
        return obj
    try:
        src, error = inspect.getsource(obj), None
    except (OSError, TypeError) as e:
        src, error = None, e
    # A class defined in a notebook cell: inspect finds nothing, or (Python 3.13, which looks the
    # class's line up in its module's file) lines of whatever file __main__ came from.
    if isinstance(obj, type) and not _starts_class(obj, src):
        found = _class_source_from_methods(obj)
        if found is not None:
            return found
    if src is None:
        raise error
    return src.lstrip("\n")  # 3.13.0 may start a class at the blank line above it


def _class_line(cls: type) -> re.Pattern:
    return re.compile(rf"^(\s*)class\s+{re.escape(cls.__name__)}\b")


def _starts_class(cls: type, src: str | None) -> bool:
    """Whether ``src`` begins with the definition of ``cls`` (after blank lines and decorators)."""
    lines = [line for line in (src or "").splitlines() if line.strip()]
    if lines and lines[0].lstrip().startswith("@"):  # decorators, perhaps over several lines, then the class
        lines = [line for line in lines if re.match(r"\s*class\s", line)][:1]
    return bool(lines) and bool(_class_line(cls).match(lines[0]))


def _class_source_from_methods(cls: type) -> str | None:
    """A class defined in a notebook cell: inspect cannot find it (its module has no file), but its
    methods' code objects name the cell, whose lines IPython keeps in linecache."""
    pattern = _class_line(cls)
    for code in _member_codes(cls):
        lines = linecache.getlines(code.co_filename)
        found = _class_in_lines(cls, lines, code.co_firstlineno)
        if found is not None:
            return found
        for i in range(min(code.co_firstlineno, len(lines)) - 1, -1, -1):  # lines ast cannot parse
            if pattern.match(lines[i]):
                return "".join(inspect.getblock(lines[i:]))
    return None


def _member_codes(cls: type) -> list:
    """The code objects of the class's own functions: through decorators that wrap them (torch.no_grad()),
    properties' accessors, class and static methods."""
    codes = []
    for member in vars(cls).values():
        functions = [member.fget, member.fset, member.fdel] if isinstance(member, property) else [member]
        for f in functions:
            f = getattr(f, "__func__", f)
            try:
                f = inspect.unwrap(f) if callable(f) else f
            except ValueError:  # a cycle of __wrapped__
                pass
            code = getattr(f, "__code__", None)
            if code is not None:
                codes.append(code)
    return codes


def _class_in_lines(cls: type, lines: list[str], line: int) -> str | None:
    """The source of class ``cls`` in ``lines`` (a cell), decorators included, the one that holds ``line``."""
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        return None
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == cls.__name__
               and node.lineno <= line <= (node.end_lineno or node.lineno)]
    if not classes:
        return None
    node = max(classes, key=lambda n: n.lineno)  # the innermost, if one class of that name holds another
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return "".join(lines[start - 1:node.end_lineno])


class CodeDiff:
    """Old and new code side by side (HTML), and a unified diff as plain text for nbval and GitHub."""

    def __init__(self, old: Callable | type | str, new: Callable | type | str,
                 old_title: str = "before", new_title: str = "after") -> None:
        self.old, self.new = source_of(old).splitlines(), source_of(new).splitlines()
        self.old_title, self.new_title = old_title, new_title

    @property
    def changed(self) -> int:
        """Number of lines added or removed."""
        return sum(1 for line in difflib.ndiff(self.old, self.new) if line[:1] in "+-")

    def __repr__(self) -> str:
        # A unified diff, from the matcher rows() uses: difflib.unified_diff's treats lines common in a source of
        # 200 or more (blank ones, "return y") as junk, and would show them removed and added again.
        matcher = difflib.SequenceMatcher(a=self.old, b=self.new, autojunk=False)
        lines = []
        for group in matcher.get_grouped_opcodes(2):
            if not lines:
                lines += [f"--- {self.old_title}", f"+++ {self.new_title}"]
            (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
            lines.append(f"@@ -{_span(i1, i2)} +{_span(j1, j2)} @@")
            for tag, a1, a2, b1, b2 in group:
                if tag == "equal":
                    lines += [" " + line for line in self.old[a1:a2]]
                    continue
                lines += ["-" + line for line in self.old[a1:a2]] + ["+" + line for line in self.new[b1:b2]]
        return "\n".join(lines) or "(no change)"

    def rows(self) -> list[tuple[str | None, str | None]]:
        """The side-by-side rows: (old line, new line), None where a side has no line opposite."""
        rows: list[tuple[str | None, str | None]] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=self.old, b=self.new, autojunk=False).get_opcodes():
            left, right = self.old[i1:i2], self.new[j1:j2]
            rows += list(zip(left, right)) if tag == "equal" else _pair_similar(left, right)
        return rows

    def _repr_html_(self) -> str:
        rows = []
        for a, b in self.rows():
            changed = a != b
            # On the <pre> itself, whose background JupyterLab's style sets (over the cell's), and with dark
            # text, which a dark theme would otherwise make white on pale red and green.
            style_a = "color:#1a1a1a;background:#fdd;" if changed and a is not None else ""
            style_b = "color:#1a1a1a;background:#dfd;" if changed and b is not None else ""
            rows.append(f"<tr><td><pre style='{style_a}margin:0'>{html.escape(a or '')}</pre></td>"
                        f"<td style='color:#080'>{'►' if changed else ''}</td>"
                        f"<td><pre style='{style_b}margin:0'>{html.escape(b or '')}</pre></td></tr>")
        head = f"<tr><th>{html.escape(self.old_title)}</th><th></th><th>{html.escape(self.new_title)}</th></tr>"
        return f"<table style='font-size:12px;text-align:left'>{head}{''.join(rows)}</table>"


def _span(start: int, stop: int) -> str:
    """Lines start..stop-1 as a unified diff's hunk header writes them: first line (1-based) and count."""
    count = stop - start
    return f"{start + 1}" if count == 1 else f"{start if count == 0 else start + 1},{count}"


def _pair_similar(left: list[str], right: list[str], cutoff: float = 0.6,
                  most: int = 2500) -> list[tuple[str | None, str | None]]:
    """Rows for a replaced run of lines: alike old and new lines side by side, in order, the rest between them.

    Pairing by position puts a new line beside whatever old line happens to share its index: one
    signature split over two lines shifts every line after it. Here the pairs (lines alike by more
    than ``cutoff``, difflib's ratio) are the in-order set with the largest summed likeness, found
    by dynamic programming; the lines between two pairs read line against line. Past ``most``
    comparisons (a long rewritten run) the lines are paired by position.
    """
    if not left or not right or len(left) * len(right) > most:
        return _by_position(left, right)

    def alike(a: str, b: str) -> float:
        m = difflib.SequenceMatcher(a=a.strip(), b=b.strip(), autojunk=False)
        ok = a.strip() and b.strip() and m.real_quick_ratio() > cutoff and m.quick_ratio() > cutoff
        return m.ratio() if ok and m.ratio() > cutoff else 0.0
    n, m = len(left), len(right)
    score = [[alike(a, b) for b in right] for a in left]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: the most likeness left[i:] and right[j:] can pair
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            paired = score[i][j] + best[i + 1][j + 1] if score[i][j] else 0.0
            best[i][j] = max(best[i + 1][j], best[i][j + 1], paired)
    rows: list[tuple[str | None, str | None]] = []
    i = j = i0 = j0 = 0  # left[i0:i] and right[j0:j]: lines between pairs
    while i < n and j < m:
        if score[i][j] and best[i][j] == score[i][j] + best[i + 1][j + 1]:
            rows += _by_position(left[i0:i], right[j0:j]) + [(left[i], right[j])]
            i, j = i + 1, j + 1
            i0, j0 = i, j
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return rows + _by_position(left[i0:], right[j0:])


def _by_position(left: list[str], right: list[str]) -> list[tuple[str | None, str | None]]:
    """Rows line against line, the longer side's rest alone."""
    n = min(len(left), len(right))
    return list(zip(left, right)) + [(a, None) for a in left[n:]] + [(None, b) for b in right[n:]]


def show_diff(old: Callable | type | str, new: Callable | type | str,
              old_title: str = "before", new_title: str = "after") -> CodeDiff:
    """Old code beside new with the changed lines marked (display the returned object)."""
    return CodeDiff(old, new, old_title, new_title)
