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
    title, box, image = ex.children[:3]
    assert list(box.children) == list(ex.controls.values())
    assert image is ex.image and ex.image.value  # the PNG the learner sees
