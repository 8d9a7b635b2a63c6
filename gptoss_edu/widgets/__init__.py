"""Explorers: a matplotlib figure redrawn by ipywidgets controls, and testable without a browser.

Each notebook's explorers live in a module of this package named after what they show; they
all build on :class:`Explorer`, whose ``set(**values)`` moves the controls as a learner would.
"""

from __future__ import annotations

import hashlib
import html
import io
import numbers
from typing import Any, Callable, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure  # drawn to PNG bytes by itself: no backend is chosen, nor changed
from matplotlib.ticker import LogLocator

Draw = Callable[..., None]


def few_minor_ticks() -> LogLocator:
    """Minor ticks at 2 and 5 of each decade of a log axis, not 2 to 9 (a locator serves one axis)."""
    # Over the YaRN explorer's 7 decades, matplotlib's 64 minor ticks took a third of each redraw.
    return LogLocator(10, subs=(2.0, 5.0), numticks=12)


# JupyterLab's error colour, readable on its light and dark themes; a plain dark red first, for a page
# that drops a declaration holding var() (as exercise verdicts do).
ERROR_STYLE = "color:#b00;color:var(--jp-error-color1, #b00)"


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def check_in_range(name: str, value: Any, control: widgets.ValueWidget) -> None:
    """Refuse a value a bounded control (a slider) would clamp to its nearest end; other controls check their own."""
    if isinstance(control, widgets.FloatLogSlider):  # its min and max are exponents
        low, high = control.base ** control.min, control.base ** control.max
    elif hasattr(control, "min") and hasattr(control, "max") and isinstance(value, numbers.Real):  # np.int64 too
        low, high = control.min, control.max
    else:
        return
    if not low <= value <= high:  # NaN fails too
        raise ValueError(f"{name}={value!r} is outside the explorer's range {low:g}..{high:g}")


def check_choice(name: str, value: Any, options: Sequence[Any], why: str = "") -> None:
    """Refuse a value a selection control does not offer (its own error names neither the argument nor the choices)."""
    offered = [o[1] if isinstance(o, tuple) else o for o in options]  # (label, value) pairs, or plain values
    if value not in offered:
        raise ValueError(f"{name}={value!r} is not one of the explorer's choices: "
                         f"{', '.join(map(repr, offered))}{why}")


def close_with_children(widget: widgets.Widget) -> None:
    """Close ``widget`` and every widget inside it: ipywidgets keeps each one alive, and what it refers to, until then."""
    for child in getattr(widget, "children", ()):
        close_with_children(child)
    widget.close()


class Explorer(widgets.VBox):
    """Controls above a figure; every change calls ``draw(fig, **values)`` on a fresh figure."""

    def __init__(self, title: str, draw: Draw, controls: dict[str, widgets.ValueWidget],
                 figsize: tuple[float, float] = (7.0, 3.6), asked: dict[str, Any] | None = None) -> None:
        # ``asked``: the values the controls were built with, which a slider has already clamped to its range.
        for name, value in (asked or {}).items():
            check_in_range(name, value, controls[name])
        self.title, self.draw_fn, self.controls, self.figsize = title, draw, controls, figsize
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.error = widgets.HTML("")  # what went wrong with the last redraw, shown in the picture's place
        self.last_error: BaseException | None = None
        self.figure: Figure | None = None
        for c in controls.values():
            if "continuous_update" in c.trait_names() and not isinstance(c, (widgets.Text, widgets.Textarea)):
                # A redraw takes up to a second or two on a small CPU; while a slider is dragged the browser
                # sends every value it passes, and the kernel would draw them all in turn, far behind the
                # handle. Drawn when it is let go (or at each arrow key) instead. Text boxes redraw as they
                # are typed in: waiting for Enter, with nothing on screen saying so, looked broken.
                c.continuous_update = False
            c.observe(lambda _change: self._redraw_for_a_control(), names="value")
        box = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([widgets.HTML(f"<b>{title}</b>"), box, self.image, self.error])
        self.redraw()

    @property
    def values(self) -> dict[str, Any]:
        """The controls' current values by name."""
        return {name: c.value for name, c in self.controls.items()}

    def redraw(self) -> None:
        """Draw the figure for the current values and show it."""
        if self.draw_fn is None:
            raise RuntimeError(f"the explorer {self.title!r} was closed, and has let go of its drawing: make a new one")
        fig = Figure(figsize=self.figsize, layout="constrained")
        self.draw_fn(fig, **self.values)
        self.figure = fig
        self.image.value = figure_png(fig)

    def _redraw_for_a_control(self) -> None:
        # A slider's callback raises into the kernel's log, where a learner never looks, and the old
        # picture would stay under the new values: say it where the picture was, and hide the stale one.
        try:
            self.redraw()
        except Exception as e:  # anything a draw raises is a bug to show, not to hide
            self.last_error = e
            self.error.value = (f"<span style='{ERROR_STYLE}'>could not draw {html.escape(repr(self.values), quote=False)}: "
                                f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</span>")
            self.image.layout.display = "none"
        except KeyboardInterrupt as e:  # the kernel's stop button, mid-draw: no Exception, and as unseen in the log
            self.last_error = e  # set() raises it on: a cell that moves a control stops, as Run All must
            self.error.value = (f"<span style='{ERROR_STYLE}'>interrupted before the picture for "
                                f"{html.escape(repr(self.values), quote=False)} was drawn: move a control to draw it</span>")
            self.image.layout.display = "none"
        else:
            self.last_error = None
            self.error.value = ""
            self.image.layout.display = None

    def set(self, **values: Any) -> "Explorer":
        """Move controls as a learner would (each change redraws); for tests and scripted tours."""
        for name, value in values.items():
            if name not in self.controls:
                raise KeyError(f"{self.title!r} has no control {name!r}; it has {', '.join(self.controls)}")
            check_in_range(name, value, self.controls[name])  # a slider would quietly clamp it
            if self.controls[name].value == value and isinstance(self.last_error, KeyboardInterrupt):
                self._redraw_for_a_control()  # the cell run again after a stop: no change of value would draw
            else:
                self.controls[name].value = value
            if self.last_error is not None:  # a script or a test must not miss what the learner would see
                raise self.last_error
        return self

    def close(self) -> None:
        """Close the explorer and its controls, and let go of its figure and of what its drawing refers to."""
        for child in self.children:
            close_with_children(child)
        self.figure, self.draw_fn = None, None
        super().close()

    def fingerprint(self) -> str:
        """A short hash of the current picture: tests compare it before and after a change."""
        return hashlib.sha256(self.image.value).hexdigest()[:16]

    def __repr__(self) -> str:  # nbval compares this text, so it must not carry the PNG
        return f"Explorer({self.title!r}; controls: {', '.join(self.controls)})"
