"""Notebook 02's RoPE explorer: its controls redraw, and what it draws obeys RoPE's relative property."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
import torch

from gptoss_edu.rotary import rope_inv_freq
from gptoss_edu.widgets.rope import rope_explorer, rotate_at, scores_by_offset


def _point_label(ex):
    return ex.figure.axes[1].get_legend().get_texts()[-1].get_text()


def test_every_control_redraws():
    ex = rope_explorer()
    seen = {ex.fingerprint()}
    for change in ({"query": 20}, {"key": 7}, {"shift": 300}, {"pair": 5}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 5
    assert ex.figure.axes[0].get_title().startswith("pair 5: dims (5, 13)")
    assert repr(ex) == "Explorer('RoPE: q and k turn with position'; controls: query, key, shift, pair)"


def test_shifting_both_positions_keeps_the_score():
    ex = rope_explorer()
    ex.set(query=10, key=4, shift=0)
    before = _point_label(ex)
    ex.set(shift=700)
    after = _point_label(ex)
    assert before.startswith("q at 10, k at 4: ") and after.startswith("q at 710, k at 704: ")
    assert before.split(": ")[1] == after.split(": ")[1]


def test_scores_depend_on_the_offset_only():
    torch.manual_seed(0)
    q, k = torch.randn(32), torch.randn(32)
    inv = rope_inv_freq(32, 10000.0)
    offsets = np.arange(-20, 21)
    a = scores_by_offset(q, k, inv, 30, offsets)
    b = scores_by_offset(q, k, inv, 930, offsets)
    assert np.allclose(a, b, atol=1e-9)  # float64 inside the widget
    assert not np.allclose(a, a[::-1])  # and they do depend on the offset (not a constant)


def test_rotation_keeps_length_and_matches_the_angle():
    torch.manual_seed(1)
    x = torch.randn(8)
    inv = rope_inv_freq(8, 10000.0)
    r = rotate_at(x, 3, inv)
    assert torch.allclose(r.norm(), x.double().norm())
    # pair 0 turns by 3 radians (theta_0 = 1)
    z0, z1 = complex(x[0], x[4]), complex(r[0], r[4])
    assert abs(z1 - z0 * complex(np.cos(3), np.sin(3))) < 1e-6


def test_odd_head_dim_is_refused():
    with pytest.raises(ValueError, match="head_dim must be an even whole number"):
        rope_explorer(head_dim=7)


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def _pairs(x, half):
    return [complex(float(x[i]), float(x[i + half])) for i in range(half)]


def _score(q, k, m, n, theta=10000.0):
    # q at m dotted with k at n: pair i of each is a complex number turned by position * theta^(-2i/d).
    half = len(q) // 2
    total = 0.0
    for i, (a, b) in enumerate(zip(_pairs(q, half), _pairs(k, half))):
        w = theta ** (-2 * i / len(q))
        total += (a * cmath.exp(1j * m * w) * (b * cmath.exp(1j * n * w)).conjugate()).real
    return total


def _qk(seed=0, head_dim=16):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(head_dim, generator=gen), torch.randn(head_dim, generator=gen)


def test_score_curve_and_point_are_q_at_m_dot_k_at_n():
    ex = rope_explorer()
    ex.set(query=10, key=4, shift=0)
    q, k = _qk()
    curve = ex.figure.axes[1]
    base, point = curve.get_lines()[0], curve.get_lines()[2]
    xs, ys = base.get_xdata(), base.get_ydata()
    for o in (-20, -3, 0, 6, 40):
        assert ys[list(xs).index(o)] == pytest.approx(_score(q, k, 64, 64 - o), abs=1e-6)
    assert point.get_xdata()[0] == 6  # offset m - n
    assert point.get_ydata()[0] == pytest.approx(_score(q, k, 10, 4), abs=1e-6)
    assert point.get_ydata()[0] == pytest.approx(ys[list(xs).index(6)], abs=1e-9)  # on the curve


def test_the_shifted_point_and_curve_are_computed_at_the_shifted_positions():
    """The labels alone agreed whether or not the widget applied the shift. The score at the shifted positions
    equals the unshifted one (RoPE's relative property), so the vectors it is the dot product of are checked
    to be turned to 710 and 704, and the shifted curve and point against scores computed there."""
    ex = rope_explorer()
    ex.set(query=10, key=4, shift=700, pair=0)
    q, k = _qk()
    arrows = [t for t in ex.figure.axes[0].texts if t.get_text() == ""]
    for arrow, x, pos in ((arrows[1], q, 710), (arrows[3], k, 704)):  # pair 0 turns by the position, in radians
        tip = complex(float(x[0]), float(x[8])) * cmath.exp(1j * pos)
        assert arrow.xy == pytest.approx((tip.real, tip.imag), abs=1e-6)
    moved, point = ex.figure.axes[1].get_lines()[1:3]
    assert point.get_ydata()[0] == pytest.approx(_score(q, k, 710, 704), abs=1e-6)
    xs, ys = moved.get_xdata(), moved.get_ydata()
    for o in (-20, 0, 6, 40):
        assert ys[list(xs).index(o)] == pytest.approx(_score(q, k, 64 + 700, 64 + 700 - o), abs=1e-6)


def test_pair_panel_draws_the_pair_turned_to_its_position():
    ex = rope_explorer()
    ex.set(query=10, key=4, shift=0, pair=5)
    q, k = _qk()
    plane = ex.figure.axes[0]
    w = 10000.0 ** (-2 * 5 / 16)
    assert plane.get_title() == f"pair 5: dims (5, 13)\nturns once every {2 * math.pi / w:,.0f} positions"  # 1,987
    assert (plane.get_xlabel(), plane.get_ylabel()) == ("x[5]", "x[13]")
    arrows = [t for t in plane.texts if t.get_text() == ""]
    q_tip = complex(float(q[5]), float(q[13])) * cmath.exp(1j * 10 * w)
    k_tip = complex(float(k[5]), float(k[13])) * cmath.exp(1j * 4 * w)
    assert arrows[1].xy == pytest.approx((q_tip.real, q_tip.imag), abs=1e-6)
    assert arrows[3].xy == pytest.approx((k_tip.real, k_tip.imag), abs=1e-6)
    assert arrows[0].xy == pytest.approx((float(q[5]), float(q[13])))


def test_no_head_dim_and_a_fractional_max_pos_are_refused_clearly():
    """head_dim=0 passes the evenness test but has no pair to draw; max_pos is a slider's end, so a whole number."""
    for head_dim in (0, -2, 16.0, True):  # 16.0 passed the evenness test and failed inside torch.randn
        with pytest.raises(ValueError, match=rf"head_dim must be an even whole number \(2 or more\); got {head_dim!r}"):
            rope_explorer(head_dim=head_dim)
    for max_pos in (16.0, 0, True):
        with pytest.raises(ValueError, match=f"max_pos is the positions the sliders offer, .*got {max_pos!r}"):
            rope_explorer(max_pos=max_pos)
    assert rope_explorer(head_dim=2, max_pos=1).controls["pair"].max == 0  # the smallest legal explorer
