"""Notebook 06's explorer: window and sink controls redraw; the weights are the package's attention."""

from __future__ import annotations

import numpy as np
import torch

from gptoss_edu.attention import attend
from gptoss_edu.widgets.attention import attention_probs, example_scores, window_sink_explorer


def test_each_control_changes_the_picture():
    ex = window_sink_explorer()
    seen = {ex.fingerprint()}
    for change in ({"window": 3}, {"sink": 2.5}, {"use_sink": False}, {"window": 0}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 5


def test_sink_share_in_the_title_and_keys_per_query_on_the_mask():
    ex = window_sink_explorer(tokens=16, window=5, sink=1.0)
    _, share = attention_probs(example_scores(16), 5, 1.0)
    mask_ax, share_ax = ex.figure.axes[0], ex.figure.axes[2]  # axes[3] is the colour bar
    assert share_ax.get_title() == f"mean sink share {share.mean():.1%}"
    assert "keys per query: 1..5" in mask_ax.texts[0].get_text()
    ex.set(use_sink=False)
    assert ex.figure.axes[2].get_title() == "mean sink share 0.0%"


def test_mask_picture_has_window_keys_per_row():
    ex = window_sink_explorer(tokens=20, window=7)
    mask = np.asarray(ex.figure.axes[0].images[0].get_array())
    assert mask.sum(axis=1).tolist() == [min(i + 1, 7) for i in range(20)]


def test_weights_times_values_is_the_packages_attention():
    torch.manual_seed(0)
    H, T, D = 3, 11, 8
    q, k, v = torch.randn(1, H, T, D), torch.randn(1, H, T, D), torch.randn(1, H, T, D)
    sinks = torch.randn(H)
    for window in (0, 1, 4):
        for s in (None, sinks):
            probs, share = attention_probs((q @ k.transpose(-1, -2))[0] * D ** -0.5, window, s)
            want = attend(q, k, v, scale=D ** -0.5, window=window, sinks=s)[0]
            torch.testing.assert_close(probs @ v[0], want, atol=1e-6, rtol=0)
            torch.testing.assert_close(probs.sum(-1) + share, torch.ones(H, T), atol=1e-6, rtol=0)


def test_decode_rows_sit_at_the_end():
    scores = example_scores(10)[-3:]  # 3 newest queries over 10 keys
    probs, _ = attention_probs(scores, window=4)
    assert (probs > 0).sum(-1).tolist() == [4, 4, 4]
    assert probs[-1, -1] > 0 and probs[0, -1] == 0  # query 7 cannot see key 9
