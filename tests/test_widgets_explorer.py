"""Explorer base (gptoss_edu/widgets/__init__.py): what a learner sees holds every control and the picture."""

from __future__ import annotations

import pytest

from gptoss_edu.widgets.gpt2 import parameter_explorer
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
