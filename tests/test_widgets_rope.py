"""Notebook 02's RoPE explorer: its controls redraw, and what it draws obeys RoPE's relative property."""

from __future__ import annotations

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
    with pytest.raises(ValueError, match="head_dim must be even"):
        rope_explorer(head_dim=7)
