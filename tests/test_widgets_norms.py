"""Notebook 03's norm explorer: its controls redraw, and the numbers it shows are the norms' own."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from gptoss_edu.norms import RMSNorm
from gptoss_edu.widgets.norms import both_norms, norm_explorer


def _title(ex):
    return ex.figure.axes[1].get_title()


def test_every_control_redraws():
    ex = norm_explorer()
    seen = {ex.fingerprint()}
    for change in ({"mean": 3.0}, {"eps": 0.1}, {"scale": 10.0}):  # eps first: at scale 10 it barely shows
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 4
    assert repr(ex) == "Explorer('LayerNorm vs RMSNorm'; controls: mean, scale, eps)"


def test_a_mean_offset_squeezes_rmsnorm_only():
    ex = norm_explorer()
    assert _title(ex).endswith("LayerNorm 1.00, RMSNorm 1.00")  # centred input: the two agree
    ex.set(mean=3.0)  # pattern std 1, mean 3: RMSNorm keeps 1 / sqrt(1 + 9) of it
    assert _title(ex).endswith("LayerNorm 1.00, RMSNorm 0.32")
    ex.set(mean=0.0, scale=0.001)  # tiny input: eps 1e-5 dominates the variance 1e-6
    assert _title(ex).endswith("LayerNorm 0.30, RMSNorm 0.30")


def test_both_norms_are_torchs_and_the_packages():
    torch.manual_seed(0)
    x = torch.randn(32) + 2
    ln, rms = both_norms(x, 1e-5)
    assert torch.allclose(ln, F.layer_norm(x, (32,), eps=1e-5), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(rms, RMSNorm(32, eps=1e-5)(x), atol=1e-6)


def test_too_small_a_vector_is_refused():
    with pytest.raises(ValueError, match="fewer than 2 values"):
        norm_explorer(dim=1)


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def test_input_bars_line_and_rms_follow_mean_and_scale():
    # x = scale * pattern + mean with a centred unit-variance pattern: mean `mean`, std `scale`,
    # rms sqrt(scale^2 + mean^2).
    ex = norm_explorer()
    ex.set(mean=3.0, scale=2.0)
    left = ex.figure.axes[0]
    x = np.array([b.get_height() for b in left.patches])
    assert x.mean() == pytest.approx(3.0) and x.std() == pytest.approx(2.0)
    assert list(left.get_lines()[0].get_ydata()) == [3.0, 3.0]
    assert left.get_title() == f"input x = 2 * pattern + 3\nrms {math.sqrt(13):.3g}"
    ex.set(mean=-0.5, scale=1.0)
    assert ex.figure.axes[0].get_title().startswith("input x = 1 * pattern - 0.5\n")


def test_output_bars_are_layernorm_and_rmsnorm_of_the_input():
    ex = norm_explorer(dim=16)
    ex.set(mean=2.0, scale=0.5, eps=0.01)
    left, right = ex.figure.axes[:2]
    x = np.array([b.get_height() for b in left.patches])
    bars = [b.get_height() for b in right.patches]
    ln, rms = bars[:16], bars[16:]
    assert ln == pytest.approx((x - x.mean()) / np.sqrt(x.var() + 0.01), abs=1e-6)
    assert rms == pytest.approx(x / np.sqrt((x ** 2).mean() + 0.01), abs=1e-6)


def test_norm_explorer_ticks_every_other_dimension_on_both_sides():
    ex = norm_explorer(dim=16)
    for ax in ex.figure.axes[:2]:
        assert list(ax.get_xticks()) == list(range(0, 16, 2))
