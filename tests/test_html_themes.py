"""HTML the course emits stays readable in JupyterLab's dark theme: a pale background brings its own dark text."""

from __future__ import annotations

import re

from gptoss_edu.codediff import CodeDiff
from gptoss_edu.env import FAIL, OK, WARN, Check, EnvironmentReport
from gptoss_edu.widgets.harmony import tokens_html


def styles_with_a_background(html: str) -> list[str]:
    return [s for s in re.findall(r"style='([^']*)'", html) if "background:" in s]


def test_every_pale_background_sets_a_dark_text_colour():
    """In a dark theme the text is white: white on #d4f4d4 or #fdd is about 1.2:1, unreadable (it was)."""
    report = EnvironmentReport([Check("a", "1", "1", OK, ""), Check("b", "2", "1", WARN, "")], [Check("c", "3", "-", FAIL, "")])
    outputs = {"environment table": report._repr_html_(),
               "harmony chips": tokens_html([200006, 1428, 200008, 13225, 200007]),
               "code diff": CodeDiff("a = 1\nb = 2\n", "a = 1\nb = 3\nc = 4\n")._repr_html_()}
    for name, html in outputs.items():
        styles = styles_with_a_background(html)
        assert len(styles) >= 3, name  # the outputs do colour their backgrounds
        for style in styles:
            assert re.search(r"(^|;)color:#1a1a1a", style), f"{name}: {style!r} has no dark text of its own"


def test_theme_colours_come_after_a_plain_one():
    """A page that drops a declaration holding var() (GitHub's, an untrusted notebook's) keeps the plain colour."""
    from gptoss_edu.exercises import CheckResult
    from gptoss_edu.widgets import ERROR_STYLE

    styles = {"widget error": ERROR_STYLE,
              **{f"verdict {ok}": re.search(r"style='([^']*)'", CheckResult(ok, "x")._repr_markdown_())[1]
                 for ok in (True, False)}}
    for name, style in styles.items():
        declarations = [d for d in style.split(";") if d]
        assert "var(" in style, name  # the theme's colour is still offered
        plain = [d for d in declarations if d.startswith("color:") and "var(" not in d]
        assert plain and declarations.index(plain[0]) < min(i for i, d in enumerate(declarations) if "var(" in d), \
            f"{name}: {style!r} has no plain colour before its var()"
