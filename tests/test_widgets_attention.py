"""Notebook 06's explorer: window and sink controls redraw; the weights are the package's attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptoss_edu.attention import attend, attention_mask
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


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def test_sink_column_sits_under_its_tick_after_a_gap():
    # The weights picture has T key columns, an empty gap, then the sink's share under the "sink" tick.
    T = 12
    ex = window_sink_explorer(tokens=T, window=4, sink=1.0)
    probs, share = attention_probs(example_scores(T), 4, 1.0)
    ax = ex.figure.axes[1]
    picture = np.ma.filled(np.ma.asarray(ax.images[0].get_array(), dtype=float), np.nan)
    assert list(ax.get_xticks()) == [0, T // 2, T + 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", str(T // 2), "sink"]
    assert np.isnan(picture[:, T]).all()
    np.testing.assert_allclose(picture[:, T + 1], share.numpy(), rtol=1e-6)
    mask = attention_mask(torch.arange(T), torch.arange(T), 4).numpy()
    np.testing.assert_allclose(picture[:, :T][mask], probs.numpy()[mask], rtol=1e-6)
    assert np.isnan(picture[:, :T][~mask]).all()  # a masked key is left blank, unlike an allowed one near 0


def test_share_bars_stack_keys_after_the_sink():
    # Each query's bar: its sink share from 0, then the keys' share from there to 1.
    T = 10
    ex = window_sink_explorer(tokens=T, window=3, sink=2.0)
    probs, share = attention_probs(example_scores(T), 3, 2.0)
    bars = ex.figure.axes[2].patches
    sink_bars, key_bars = bars[:T], bars[T:]
    assert [b.get_width() for b in sink_bars] == pytest.approx(share.tolist(), abs=1e-6)
    assert [b.get_x() for b in key_bars] == pytest.approx(share.tolist(), abs=1e-6)
    assert [b.get_x() + b.get_width() for b in key_bars] == pytest.approx([1.0] * T, abs=1e-6)


def test_mask_title_names_the_window():
    ex = window_sink_explorer(tokens=16, window=5)
    assert ex.figure.axes[0].get_title() == "mask: window 5"
    ex.set(window=0)
    assert ex.figure.axes[0].get_title() == "mask: full causal"


def test_the_sink_slider_is_inert_and_shown_so_without_a_sink():
    ex = window_sink_explorer()
    assert not ex.controls["sink"].disabled
    ex.set(use_sink=False)
    assert ex.controls["sink"].disabled
    ex.set(use_sink=True)
    assert not ex.controls["sink"].disabled


def test_no_tokens_or_a_negative_window_is_named():
    # tokens=0 was told "pick a window up to 0", and window=0 then failed inside torch's min().
    for tokens in (0, -3, 2.5):
        with pytest.raises(ValueError, match=f"tokens is how many queries .* got {tokens!r}"):
            window_sink_explorer(tokens=tokens, window=0)
    with pytest.raises(ValueError, match="window must be a whole number >= 0 .*got -1"):
        window_sink_explorer(window=-1)
    with pytest.raises(ValueError, match="window must be >= 0"):  # the probabilities were all NaN
        attention_probs(torch.randn(4, 4), window=-1)


def test_a_window_as_wide_as_the_tokens_drawn_is_allowed():
    """The slider's own maximum (window == tokens) is a legal value: only a wider window is refused."""
    ex = window_sink_explorer(tokens=8, window=8)
    assert ex.controls["window"].max == 8 and ex.values["window"] == 8
    assert ex.figure.axes[0].get_title() == "mask: window 8"
    with pytest.raises(ValueError, match="window=9 is wider than the 8 tokens drawn"):
        window_sink_explorer(tokens=8, window=9)
