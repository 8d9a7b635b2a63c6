"""Exercise checks: each notebook's exercises have a module here (nb00, nb01, ... nb13).

A check takes the learner's answer, tries it on fresh inputs against the package's own
version, and returns a :class:`CheckResult` that says what is right or what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch


@dataclass
class CheckResult:
    """The verdict of an exercise check; shows as one line in a notebook."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("✅ " if self.passed else "❌ ") + self.message

    def _repr_markdown_(self) -> str:
        # The plain colour first: an untrusted notebook (one opened without running it) may drop a declaration
        # holding var(); a trusted one takes JupyterLab's theme colour, readable on light and dark backgrounds.
        colour = "green;color:var(--jp-success-color0, green)" if self.passed else \
            "#b00;color:var(--jp-error-color1, #b00)"
        # MathJax reads the page after markdown has: the class keeps a $ in a verdict from opening a formula.
        return f"<span class='tex2jax_ignore mathjax_ignore' style='color:{colour}'>{as_markdown_text(repr(self))}</span>"


# The characters markdown, HTML or MathJax would read as syntax: in*out + 2*d would turn italic and lose
# its stars, <tensor> would vanish as a tag, $2 would open a formula, a stray ` would open code.
_MARKUP = re.compile(r"[\\*_\[\]<>|#~$&!`]")


def _entities(text: str) -> str:
    return _MARKUP.sub(lambda m: f"&#{ord(m.group())};", text).replace("\n", "<br>")


def as_markdown_text(text: str) -> str:
    """``text`` that renders as itself in markdown: its `backtick` spans as code, nothing as syntax."""
    # The code spans are written as HTML, so that markdown's own rules (runs of backticks, a span that
    # holds a line end) have nothing left to read: a check's message is one line of text with some code.
    pieces = re.split(r"`([^`]+)`", text)  # odd pieces are what single backticks enclose
    return "".join(f"<code>{_entities(piece)}</code>" if i % 2 else _entities(piece) for i, piece in enumerate(pieces))


def passed(message: str = "Correct.") -> CheckResult:
    """A passing verdict."""
    return CheckResult(True, message)


def failed(message: str) -> CheckResult:
    """A failing verdict that explains what is wrong."""
    return CheckResult(False, message)


def not_a_function(fn: object) -> CheckResult | None:
    """None if ``fn`` can be called; else a failing verdict (the usual slip: passing what the function returned)."""
    if callable(fn):
        return None
    return failed(f"not yet: pass your function itself, by its name and without calling it, not what it "
                  f"returns (the check got {type(fn).__name__} {fn!r:.40})")


def compare(got: object, want: torch.Tensor, what: str, atol: float = 1e-5) -> CheckResult | None:
    """None if ``got`` equals ``want`` (shape, then values); else a failing verdict naming ``what``."""
    if got is None:
        return failed(f"{what} returned None: did you forget to `return` the result?")
    if not isinstance(got, torch.Tensor):
        return failed(f"{what} should return a torch.Tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        return failed(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    broken = ~torch.isfinite(got.float()) & torch.isfinite(want.float())
    if broken.any():
        return failed(f"{what} has {int(broken.sum())} NaN or infinite value(s) where the expected result is finite")
    err = (got.float() - want.float()).abs().max().item()
    if not err <= atol:
        return failed(f"{what} has the right shape but differs by up to {err:.3g} (tolerance {atol:g})")
    return None


def as_number(value: object, what: str) -> tuple[int | float | None, str | None]:
    """``value`` as one finite Python number (from an int, float, 0-d tensor or numpy number), or why it is not one."""
    if value is None:
        return None, f"{what} is None: did you forget to `return` it?"
    if not isinstance(value, (int, float)) and hasattr(value, "item"):
        try:
            value = value.item()
        except (RuntimeError, ValueError):  # a tensor or array of several numbers
            return None, f"{what} should be one number, got {type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{what} should be one number, got {type(value).__name__}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int past any float (str() would refuse it too, past 4,300 digits)
        return None, f"{what} has over 300 digits: far too large for an answer here"
    if not finite:
        return None, f"{what} is {value}"
    return value, None
