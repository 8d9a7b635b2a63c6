"""Show a change of code: the old version beside the new, changed lines marked."""

from __future__ import annotations

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
    for member in vars(cls).values():
        code = getattr(getattr(member, "__func__", member), "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        for i in range(min(code.co_firstlineno, len(lines)) - 1, -1, -1):
            if pattern.match(lines[i]):
                return "".join(inspect.getblock(lines[i:]))
    return None


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
        lines = difflib.unified_diff(self.old, self.new, self.old_title, self.new_title, lineterm="", n=2)
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
            style_a = "background:#fdd" if changed and a is not None else ""
            style_b = "background:#dfd" if changed and b is not None else ""
            rows.append(f"<tr><td style='{style_a}'><pre style='margin:0'>{html.escape(a or '')}</pre></td>"
                        f"<td style='color:#080'>{'►' if changed else ''}</td>"
                        f"<td style='{style_b}'><pre style='margin:0'>{html.escape(b or '')}</pre></td></tr>")
        head = f"<tr><th>{html.escape(self.old_title)}</th><th></th><th>{html.escape(self.new_title)}</th></tr>"
        return f"<table style='font-size:12px;text-align:left'>{head}{''.join(rows)}</table>"


def _pair_similar(left: list[str], right: list[str], cutoff: float = 0.6) -> list[tuple[str | None, str | None]]:
    """Rows for a replaced run of lines: the most alike old and new lines side by side, the rest around them.

    Pairing by position puts a new line beside whatever old line happens to share its index: one
    signature split over two lines shifts every line after it. Lines alike by less than ``cutoff``
    (difflib's ratio) are paired by position, as a rewritten run is best read line against line.
    """
    if not left or not right:
        return [(a, None) for a in left] + [(None, b) for b in right]
    best, where = cutoff, None
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            alike = difflib.SequenceMatcher(a=a.strip(), b=b.strip(), autojunk=False)
            if alike.real_quick_ratio() > best and alike.quick_ratio() > best and alike.ratio() > best:
                best, where = alike.ratio(), (i, j)
    if where is None:
        n = min(len(left), len(right))
        return list(zip(left, right)) + [(a, None) for a in left[n:]] + [(None, b) for b in right[n:]]
    i, j = where
    return _pair_similar(left[:i], right[:j]) + [(left[i], right[j])] + _pair_similar(left[i + 1:], right[j + 1:])


def show_diff(old: Callable | type | str, new: Callable | type | str,
              old_title: str = "before", new_title: str = "after") -> CodeDiff:
    """Old code beside new with the changed lines marked (display the returned object)."""
    return CodeDiff(old, new, old_title, new_title)
