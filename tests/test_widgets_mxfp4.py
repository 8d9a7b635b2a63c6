"""Notebook 08's explorer: moving each control redraws, and the numbers behind the picture are right."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu import mxfp4
from gptoss_edu.widgets.mxfp4 import block_error, block_explorer, quantize_with_scale, sample_weight


def test_each_control_redraws():
    ex = block_explorer()
    seen = {ex.fingerprint()}
    for change in ({"block": 5}, {"scale_shift": -2}, {"outlier": 8.0}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "block" in repr(ex) and "PNG" not in repr(ex)


def test_chosen_scale_agrees_with_the_package_and_shifts_behave():
    ex = block_explorer()
    ex.set(block=3, scale_shift=0, outlier=1.0)
    chosen, err0 = ex.stats["scale_code"], ex.stats["rms_error"]
    assert ex.stats["saturated"] == 0
    _, scales = mxfp4.quantize(sample_weight().reshape(-1, 32)[3][None])
    assert chosen == int(scales[0, 0])
    ex.set(scale_shift=-2)  # a quarter of the scale: the largest values no longer fit
    assert ex.stats["scale_code"] == chosen - 2 and ex.stats["saturated"] > 0 and ex.stats["rms_error"] > err0
    ex.set(scale_shift=3)  # eight times the scale: steps so coarse most values round to zero
    assert ex.stats["zeros"] > 16 and ex.stats["rms_error"] > err0


def test_an_outlier_flushes_its_neighbours():
    ex = block_explorer()
    ex.set(block=0, outlier=1.0)
    zeros, code = ex.stats["zeros"], ex.stats["chosen_code"]
    ex.set(outlier=16.0)  # 16 = 2**4 times the largest value: the scale grows by about 4 codes
    assert ex.stats["zeros"] > zeros and ex.stats["chosen_code"] >= code + 3


def test_quantize_with_scale_matches_the_package_at_the_chosen_scale():
    # bf16-rounded weights put many values exactly between two grid points: ties must go as the package's.
    for w in (sample_weight(4, 64, seed=3), sample_weight(16, 256, seed=4).bfloat16().float()):
        blocks, scales = mxfp4.quantize(w)
        want = mxfp4.dequantize(blocks, scales, torch.float32).reshape(-1, 32)
        for i, x in enumerate(w.reshape(-1, 32)):
            assert torch.equal(quantize_with_scale(x, int(scales.reshape(-1)[i])), want[i])
    ties = torch.tensor([0.75, 1.75, 3.5, -0.25, 5.0, 7.0, -9.0])  # at scale code 127: the grid itself
    assert quantize_with_scale(ties, 127).tolist() == [1.0, 2.0, 4.0, 0.0, 4.0, 6.0, -6.0]


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def rel_rms(q, x):
    return float((q - x).pow(2).mean().sqrt() / x.pow(2).mean().sqrt())


def test_rms_error_is_relative_to_the_block():
    # At the chosen scale the widget's value is the package's dequantized block.
    ex = block_explorer()
    ex.set(block=7, scale_shift=0)
    x = sample_weight().reshape(-1, 32)[7]
    blocks, scales = mxfp4.quantize(x[None])
    q = mxfp4.dequantize(blocks, scales, torch.float32).reshape(32)
    assert ex.stats["rms_error"] == pytest.approx(rel_rms(q, x), rel=1e-5)


def test_block_error_at_any_scale_and_for_an_all_zero_block():
    # Notebook 08 counts with it how often a clipping scale beats the chosen one.
    x = sample_weight(seed=5).reshape(-1, 32)[4]
    for code in (100, 118, 122, 130):
        assert block_error(x, code) == pytest.approx(rel_rms(quantize_with_scale(x, code), x), rel=1e-6)
    assert block_error(torch.zeros(32), 120) == 0.0  # stored exactly, not 0/0


def test_shift_bars_are_measured_from_the_chosen_scale_whatever_the_shift():
    ex = block_explorer()
    ex.set(block=2, scale_shift=0)
    at_zero = [b.get_height() for b in ex.figure.axes[1].patches]
    assert at_zero[3] == pytest.approx(ex.stats["rms_error"])  # shift 0 is the middle bar
    ex.set(scale_shift=2)
    assert [b.get_height() for b in ex.figure.axes[1].patches] == pytest.approx(at_zero)
    assert at_zero[5] == pytest.approx(ex.stats["rms_error"])


def test_title_scale_is_the_shifted_code():
    ex = block_explorer()
    ex.set(block=1, scale_shift=-2)
    code = ex.stats["scale_code"]
    assert code == ex.stats["chosen_code"] - 2
    assert ex.figure.axes[0].get_title().startswith(f"block 1: scale code {code} = 2^{code - 127};")


def test_last_block_on_the_slider_draws():
    ex = block_explorer()
    slider = ex.controls["block"]
    assert slider.max == sample_weight().numel() // 32 - 1
    ex.set(block=slider.max)  # the slider's end is a real block
    assert ex.figure.axes[0].get_title().startswith(f"block {slider.max}:")


def test_the_legend_sits_below_the_block_never_on_a_value():
    ex = block_explorer().set(block=35, outlier=16.0)
    fig = ex.figure
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0


def test_the_title_counts_the_grid_lines_drawn():
    """16 codes, but +0 and -0 are one value: 15 grey lines, and the title must not promise 16."""
    ex = block_explorer()
    grid = [line for line in ex.figure.axes[0].get_lines() if line.get_color() == "#bbb"]
    assert len(grid) == len(set(mxfp4.FP4_VALUES)) == 15
    assert "16 codes, 15 values" in ex.figure.axes[0].get_title()


def test_a_value_exactly_at_six_steps_is_on_the_grid_not_saturated():
    """6 x step is E2M1's largest value: stored exactly, so not counted among the saturated."""
    x = torch.full((1, 32), 0.25)
    x[0, 0], x[0, 1] = 6.0, 3.0
    ex = block_explorer(x)
    assert ex.stats["chosen_code"] == 127 and ex.stats["saturated"] == 0
    ex.set(scale_shift=-1)  # step 0.5: 6.0 is past 6 x 0.5, and 3.0 sits exactly on it
    assert ex.stats["scale_code"] == 126 and ex.stats["saturated"] == 1


def test_the_outlier_inflates_the_largest_magnitude_even_when_it_is_negative():
    """The block's largest value is -0.5 (above 0.3 as a magnitude): the outlier multiplies it, not the 0.3."""
    x = torch.zeros(1, 32)
    x[0, 3], x[0, 10] = -0.5, 0.3
    ex = block_explorer(x).set(outlier=4.0)
    inflated = x[0].clone()
    inflated[3] = -2.0
    _, scales = mxfp4.quantize(inflated[None])
    assert ex.stats["chosen_code"] == int(scales[0, 0]) == 126
    weights = ex.figure.axes[0].get_lines()[15].get_ydata()  # after the 15 grey grid lines
    assert list(weights[[3, 10]]) == pytest.approx([-2.0, 0.3])
