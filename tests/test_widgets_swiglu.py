"""Notebook 04's explorer: every slider redraws, and the gate curve is the clamped SwiGLU gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptoss_edu.mlp import gptoss_swiglu
from gptoss_edu.widgets.swiglu import SPAN, gate_curve, interleave, swiglu_explorer


def gate_line(explorer):
    left = explorer.figure.axes[0]
    return next(line for line in left.get_lines() if line.get_label().startswith("gate"))


def test_each_control_changes_the_picture():
    ex = swiglu_explorer()
    before = ex.fingerprint()
    ex.set(alpha=1.0)
    after_alpha = ex.fingerprint()
    ex.set(limit=3.0)
    assert len({before, after_alpha, ex.fingerprint()}) == 3
    assert ex.values == {"alpha": 1.0, "limit": 3.0}


@pytest.mark.parametrize("alpha,limit", [(1.702, 7.0), (1.0, 3.0), (2.5, 1.5)])
def test_gate_curve_is_capped_at_the_limit(alpha, limit):
    ex = swiglu_explorer().set(alpha=alpha, limit=limit)
    x, y = (np.asarray(a) for a in gate_line(ex).get_data())
    # Past the limit the gate is flat at limit * sigmoid(alpha * limit): no growth above the clamp.
    cap = limit / (1 + math.exp(-alpha * limit))
    assert y.max() == pytest.approx(cap, rel=1e-5)
    assert np.allclose(y[x >= limit], cap, rtol=1e-5)
    assert y.min() < 0  # no lower clamp: the dip below zero stays


def test_surface_maximum_is_in_the_title():
    ex = swiglu_explorer().set(alpha=1.702, limit=7.0)
    title = ex.figure.axes[1].get_title()
    assert f"max {(7.0 + 1) * 7.0 / (1 + math.exp(-1.702 * 7.0)):.3g}" in title


def test_interleave_puts_gate_at_even_positions():
    gate, up = torch.randn(3, 5), torch.randn(3, 5)
    both = interleave(gate, up)
    assert torch.equal(both[..., 0::2], gate) and torch.equal(both[..., 1::2], up)
    assert torch.allclose(gptoss_swiglu(both, 1.702, 7.0)[..., :], (up.clamp(-7, 7) + 1) * gate_curve(gate, 1.702, 7.0))


def test_unknown_control_is_named():
    with pytest.raises(KeyError, match="no control 'beta'"):
        swiglu_explorer().set(beta=1.0)


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def sig(v):
    return 1 / (1 + math.exp(-v))


def test_gate_has_no_lower_clamp():
    # gpt-oss clamps the gate from above only: far below -limit it keeps g * sigmoid(alpha * g).
    y = gate_curve(torch.tensor([-9.0, -3.0, 9.0], dtype=torch.float64), 1.702, 2.0)
    assert y.tolist() == pytest.approx([-9 * sig(-1.702 * 9), -3 * sig(-1.702 * 3), 2 * sig(1.702 * 2)])


def test_output_map_has_gate_across_and_up_upwards():
    ex = swiglu_explorer().set(alpha=1.0, limit=3.0)
    right = ex.figure.axes[1]
    out = np.asarray(right.images[0].get_array())
    g = np.linspace(-SPAN, SPAN, 201)
    for i, j in ((150, 20), (20, 150), (120, 190)):  # row i: up = g[i]; column j: gate = g[j]
        up, gate = g[i], min(g[j], 3.0)
        want = (min(max(up, -3.0), 3.0) + 1) * gate * sig(1.0 * gate)
        assert out[i, j] == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_limit_lines_and_label():
    ex = swiglu_explorer().set(limit=3.0)
    left, right = ex.figure.axes[:2]
    assert [t.get_text() for t in left.texts] == [" limit 3"]
    red = [l for l in right.get_lines() if l.get_color() == "tab:red"]
    vertical = [list(l.get_xdata()) for l in red if l.get_xdata()[0] == l.get_xdata()[1]]
    horizontal = sorted(l.get_ydata()[0] for l in red if l.get_ydata()[0] == l.get_ydata()[1])
    assert vertical == [[3.0, 3.0]]  # the gate is clamped above only
    assert horizontal == [-3.0, 3.0]  # the up half both ways


@pytest.mark.parametrize("limit, zero_lines", [(3.0, [("gate", 0.0), ("up", -1.0)]), (0.5, [("gate", 0.0)])])
def test_the_output_map_draws_its_zero_set_as_lines_not_as_a_contour(limit, zero_lines):
    """The zero contour along up = -1 followed linspace's bits (-0.99999988 on AVX2, -1 elsewhere), so the
    stored picture changed with the CPU; a limit under 1 keeps up + 1 above 0, with no zero there."""
    right = swiglu_explorer().set(limit=limit).figure.axes[1]
    black = [l for l in right.get_lines() if l.get_color() == "k"]
    drawn = sorted(("gate", l.get_xdata()[0]) if l.get_xdata()[0] == l.get_xdata()[1] else ("up", l.get_ydata()[0])
                   for l in black)
    assert drawn == zero_lines
    (contours,) = [c for c in right.collections if hasattr(c, "levels")]
    assert 0 not in list(contours.levels) and len(contours.levels) >= 3


def test_swiglu_colour_scale_is_symmetric():
    ex = swiglu_explorer().set(alpha=1.0, limit=3.0)
    im = ex.figure.axes[1].images[0]
    assert im.norm.vmin == -im.norm.vmax and im.norm.vmax >= np.abs(im.get_array()).max()
