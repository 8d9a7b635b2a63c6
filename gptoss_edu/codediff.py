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

    def _repr_html_(self) -> str:
        rows = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=self.old, b=self.new).get_opcodes():
            left, right = self.old[i1:i2], self.new[j1:j2]
            for k in range(max(len(left), len(right))):
                a = left[k] if k < len(left) else ""
                b = right[k] if k < len(right) else ""
                style_a = "background:#fdd" if tag != "equal" and a else ""
                style_b = "background:#dfd" if tag != "equal" and b else ""
                mark = "" if tag == "equal" else "►"
                rows.append(f"<tr><td style='{style_a}'><pre style='margin:0'>{html.escape(a)}</pre></td>"
                            f"<td style='color:#080'>{mark}</td>"
                            f"<td style='{style_b}'><pre style='margin:0'>{html.escape(b)}</pre></td></tr>")
        head = f"<tr><th>{html.escape(self.old_title)}</th><th></th><th>{html.escape(self.new_title)}</th></tr>"
        return f"<table style='font-size:12px;text-align:left'>{head}{''.join(rows)}</table>"


def show_diff(old: Callable | type | str, new: Callable | type | str,
              old_title: str = "before", new_title: str = "after") -> CodeDiff:
    """Old code beside new with the changed lines marked (display the returned object)."""
    return CodeDiff(old, new, old_title, new_title)
