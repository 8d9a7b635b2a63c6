"""Show a change of code: the old version beside the new, changed lines marked."""

from __future__ import annotations

import difflib
import html
import inspect
from typing import Callable


def source_of(obj: Callable | type | str) -> str:
    """The source text of a function or class (or the string itself)."""
    return obj if isinstance(obj, str) else inspect.getsource(obj)


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
