"""Explorer base (gptoss_edu/widgets/__init__.py): what a learner sees holds every control and the picture."""

from __future__ import annotations

import os
import re

import pytest

from gptoss_edu.widgets.attention import window_sink_explorer
from gptoss_edu.widgets.gpt2 import parameter_explorer
from gptoss_edu.widgets.kernels import block_explorer
from gptoss_edu.widgets.kvcache import kv_cache_explorer
from gptoss_edu.widgets.norms import norm_explorer
from gptoss_edu.widgets.rope import rope_explorer
from gptoss_edu.widgets.swiglu import swiglu_explorer


@pytest.mark.parametrize("make", [norm_explorer, swiglu_explorer, rope_explorer, parameter_explorer,
                                  kv_cache_explorer])
def test_every_control_and_the_picture_are_displayed(make):
    # Tests drive controls through ex.set, which works even if a control never reaches the screen;
    # a control missing from the displayed box (or a missing image) would be invisible to them.
    ex = make()
    title, box, image, error = ex.children  # tests/browser/lab_page.py finds an Explorer by this order
    assert list(box.children) == list(ex.controls.values())
    assert error is ex.error and error.value == ""  # no message while every picture draws
    assert image is ex.image and ex.image.value  # the PNG the learner sees


def test_a_draw_that_fails_says_so_where_the_picture_was():
    import ipywidgets as widgets

    from gptoss_edu.widgets import Explorer

    def draw(fig, x):
        if x == 3:
            raise ValueError("three is <not> drawable")
        fig.subplots().plot([0, x])

    ex = Explorer("t", draw, {"x": widgets.IntSlider(value=1, min=0, max=5)})
    ex.controls["x"].value = 3  # a learner's slider: the callback must not raise into the kernel's log
    assert "could not draw {'x': 3}: ValueError: three is &lt;not&gt; drawable" in ex.error.value
    assert ex.image.layout.display == "none"  # the old picture does not stand for the new value
    with pytest.raises(ValueError, match="drawable"):
        ex.set(x=3)  # a script or test hears of it
    ex.set(x=4)
    assert ex.error.value == "" and ex.image.layout.display is None and ex.last_error is None


def test_a_draw_interrupted_or_failing_on_a_typed_value_says_so_as_text():
    """The kernel's stop button mid-draw raised KeyboardInterrupt past the widget (it is no Exception): the old
    picture stayed under the new value, unexplained. And a text box's value went into the message as markup."""
    import ipywidgets as widgets

    from gptoss_edu.widgets import Explorer

    stop = [True]  # the stop button, pressed once

    def draw(fig, x, text):
        if x == 2 and stop:
            stop.pop()
            raise KeyboardInterrupt
        if x == 3:
            raise ValueError("no")
        fig.subplots().plot([0, x])

    ex = Explorer("t", draw, {"x": widgets.IntSlider(value=1, min=0, max=5), "text": widgets.Text(value="<b>hi</b>")})
    ex.controls["x"].value = 2
    assert "interrupted before the picture for {'x': 2, 'text': '&lt;b&gt;hi&lt;/b&gt;'} was drawn" in ex.error.value
    assert ex.image.layout.display == "none"
    ex.controls["x"].value = 1
    stop.append(True)
    with pytest.raises(KeyboardInterrupt):  # from a cell's set(), the stop button stops the cell (and Run All)
        ex.set(x=2)
    ex.set(x=2)  # the cell run again: the control holds 2 already, and the picture is drawn, not the stop raised
    assert ex.error.value == "" and ex.image.layout.display is None and ex.last_error is None
    ex.controls["x"].value = 3
    assert "could not draw {'x': 3, 'text': '&lt;b&gt;hi&lt;/b&gt;'}: ValueError: no" in ex.error.value
    ex.controls["x"].value = 4
    assert ex.error.value == "" and ex.image.layout.display is None


def _counting_explorer():
    import ipywidgets as widgets

    from gptoss_edu.widgets import Explorer

    drawn = []
    controls = {"x": widgets.IntSlider(value=1, min=0, max=5), "f": widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=1),
                "kind": widgets.Dropdown(options=["a", "b"], value="a")}
    return Explorer("t", lambda fig, **v: drawn.append(v), controls), drawn


@pytest.mark.parametrize("name,value", [("x", 6), ("x", -1), ("f", 11.0), ("f", 1e-4), ("f", float("nan"))])
def test_set_refuses_a_value_the_slider_would_clamp(name, value):
    """A slider clamps what it is given: ex.set(x=6) must not draw x=5 and carry on."""
    ex, drawn = _counting_explorer()
    before = (ex.values, len(drawn))
    with pytest.raises(ValueError, match=rf"{name}={value!r} is outside the explorer's range"):
        ex.set(**{name: value})
    assert (ex.values, len(drawn)) == before  # nothing moved, nothing redrawn


def test_numpy_numbers_are_range_checked_too():
    """np.int64(6) skipped the check (it is no int), and the slider clamped it to 5 without a word."""
    import numpy as np

    ex, drawn = _counting_explorer()
    with pytest.raises(ValueError, match="x=np.int64\\(6\\) is outside the explorer's range 0..5"):
        ex.set(x=np.int64(6))
    with pytest.raises(ValueError, match="is outside the explorer's range"):
        ex.set(f=np.float32(11.0))
    assert ex.set(x=np.int64(4)).values["x"] == 4


def test_set_takes_the_ends_of_the_range():
    ex, drawn = _counting_explorer()
    ex.set(x=5, f=10.0).set(x=0, f=1e-3)
    assert ex.values == {"x": 0, "f": 1e-3, "kind": "a"}


def test_sliders_redraw_when_let_go_not_at_every_value_dragged_through():
    """A drag would queue one redraw (up to a second or two on a small CPU) for every value it passes."""
    ex, _ = _counting_explorer()
    assert ex.controls["x"].continuous_update is False and ex.controls["f"].continuous_update is False


def test_text_boxes_redraw_as_they_are_typed_in():
    """Only on Enter or leaving the box, with nothing on screen saying so, looked broken (notebook 11)."""
    from gptoss_edu.widgets.harmony import harmony_explorer

    ex = harmony_explorer()
    assert ex.controls["message"].continuous_update and ex.controls["instructions"].continuous_update


@pytest.mark.parametrize("make,message", [
    (lambda: window_sink_explorer(window=128),
     "window=128 is wider than the 24 tokens drawn"),
    (lambda: window_sink_explorer(sink=9.0),
     "sink=9.0 is outside"),
    (lambda: swiglu_explorer(limit=20), "limit=20 is outside the explorer's range 0.5..10"),
    (lambda: swiglu_explorer(alpha=0.1), "alpha=0.1 is outside"),
    (lambda: block_explorer(n=500), "n=500 is outside"),
])
def test_an_explorer_is_not_built_around_a_value_its_slider_would_clamp(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, given, says", [
    ("kernels.block_explorer", dict(block=12), "block=12 is not one of the explorer's choices: 4, 8, 16, 32, 64 (a BLOCK "
                                                "is a power of two"),
    ("harmony.harmony_explorer", dict(effort="High"), "effort='High' is not one of the explorer's choices: 'low', "),
    ("memory.memory_explorer", dict(model="gpt-oss-7b"), "model='gpt-oss-7b' is not one of the explorer's choices"),
    ("memory.memory_explorer", dict(gpu="16GB"), "gpu='16GB' is not one of the explorer's choices: '16 GiB'"),
    ("memory.memory_explorer", dict(context=5000), "context=5000 is not one of the explorer's choices: 1024, "),
    ("memory.memory_explorer", dict(prompt_tokens=3), "prompt_tokens=3 is not one of the explorer's choices"),
])
def test_a_choice_the_explorer_does_not_offer_is_named_with_the_choices(make, given, says):
    """traitlets said only "Invalid selection: value not found", naming neither the argument nor the choices."""
    import importlib

    module, name = make.split(".")
    explorer = getattr(importlib.import_module(f"gptoss_edu.widgets.{module}"), name)
    with pytest.raises(ValueError, match=re.escape(says)):
        explorer(**given)


def test_a_weight_or_a_range_the_explorer_cannot_show_is_named():
    import torch

    from gptoss_edu.widgets.mxfp4 import block_explorer as mxfp4_blocks

    with pytest.raises(ValueError, match=re.escape("last dimension must be a multiple of 32 (MXFP4's blocks run along "
                                                   "it), got shape (4, 33)")):
        mxfp4_blocks(torch.randn(4, 33))  # was "shape '[-1, 32]' is invalid for input of size 132"
    with pytest.raises(ValueError, match="max_pos is the positions the sliders offer, a whole number >= 1, got 0"):
        rope_explorer(max_pos=0)  # was traitlets' "setting min > max"
    with pytest.raises(ValueError, match=r"head_dim must be an even whole number \(2 or more\); got 0"):
        rope_explorer(head_dim=0)


@pytest.mark.parametrize("make", [norm_explorer, kv_cache_explorer])
def test_closing_an_explorer_lets_it_and_its_figure_go(make):
    """ipywidgets keeps every widget until it is closed, and a control's observer keeps the explorer: re-running
    an explorer's cell once kept each old one, with its figure (a few MB), for the life of the kernel."""
    import gc
    import weakref

    ex = make()
    gone, figure = weakref.ref(ex), weakref.ref(ex.figure)
    del ex
    gc.collect()
    assert gone() is not None  # not closed: still held by ipywidgets, whatever the notebook does
    gone().close()
    gc.collect()
    assert gone() is None and figure() is None

    kept = make()  # a notebook's variable still names it: closing lets go of the figure all the same
    figure = weakref.ref(kept.figure)
    kept.close()
    gc.collect()
    assert figure() is None
    with pytest.raises(RuntimeError, match="was closed.*make a new one"):
        kept.redraw()


def test_importing_the_widgets_leaves_matplotlibs_settings_alone():
    """matplotlib.use(get_backend()) at import chose the backend early and turned off its fallback for the learner."""
    import subprocess
    import sys

    code = ("import matplotlib; before = dict(matplotlib.rcParams)\n"
            "import gptoss_edu.widgets\n"
            "print(sorted(k for k, v in matplotlib.rcParams.items() if before[k] != v))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "agg"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
