"""Explorers of notebooks 00 and 01: parameters by part, and causal attention weights."""

from __future__ import annotations

import pytest
import torch
from matplotlib.colors import to_hex
from torch.nn import functional as F

from gptoss_edu import preset
from gptoss_edu.memory import format_count
from gptoss_edu.widgets.gpt2 import PARTS, attention_explorer, attention_weights, parameter_explorer, part_counts


@pytest.mark.parametrize("name", ["gpt2-124m", "gpt-oss-20b", "gpt-oss-120b"])
def test_part_counts_add_up_to_the_config(name):
    counts, pc = part_counts(name), preset(name).param_counts()
    assert sum(t for t, _ in counts.values()) == pc["total"]
    assert sum(a for _, a in counts.values()) == pc["active"]


def test_parameter_explorer_redraws_per_model():
    ex = parameter_explorer()
    first = ex.fingerprint()
    title = ex.figure.axes[0].get_title()
    assert title.startswith("gpt-oss-20b: 20.9 B total, 3.61 B active")
    ex.set(model="gpt-oss-120b")
    assert ex.fingerprint() != first and ex.figure.axes[0].get_title().startswith("gpt-oss-120b")
    before = ex.fingerprint()
    ex.set(scale="log")
    assert ex.fingerprint() != before and ex.figure.axes[0].get_xscale() == "log"
    assert repr(ex) == "Explorer('Where the parameters live'; controls: model, scale)"


def test_attention_weights_are_causal_rows_of_one():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    w = attention_weights(q, k)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5))
    assert (w.triu(1) == 0).all()
    sharp = attention_weights(q, k, sharpness=30.0)
    assert sharp.max(-1).values.mean() > w.max(-1).values.mean()  # sharper: closer to one-hot


def test_attention_explorer_moves_with_its_controls():
    torch.manual_seed(0)
    q, k = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    ex = attention_explorer(q, k, ["a", "b", "c", "d", "e", "f"])
    seen = {ex.fingerprint()}
    for change in ({"head": 2}, {"query": 1}, {"sharpness": 10.0}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 4
    assert ex.figure.axes[1].get_title() == "query 1 (b): weights sum to 1.00"
    assert ex.figure.axes[0].get_title() == "head 2: grey = masked (the future)"
    with pytest.raises(KeyError, match="no control 'layer'"):
        ex.set(layer=1)


def test_token_labels_with_dollar_signs_are_shown_as_text():
    """GPT-2 has the tokens ' $$' and '$$': matplotlib read the label as mathtext and the explorer failed to build."""
    q, k = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    ex = attention_explorer(q, k, ["It", " costs", " $$", "$x^2$"])
    ex.set(query=2)
    assert ex.figure.axes[1].get_title() == "query 2 (\u2423\\$\\$): weights sum to 1.00"
    ex.fingerprint()  # drawn to the end: a mathtext parse error would raise here
    assert [t.get_text() for t in ex.figure.axes[0].get_xticklabels()][2:] == ["\u2423\\$\\$", "\\$x^2\\$"]


def test_attention_explorer_names_bad_shapes():
    with pytest.raises(ValueError, match="q and k must both be"):
        attention_explorer(torch.zeros(2, 3), torch.zeros(2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="2 tokens for 3 positions"):
        attention_explorer(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), ["a", "b"])


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

@pytest.mark.parametrize("model", ["gpt2-124m", "gpt-oss-20b", "gpt-oss-120b"])
def test_bars_and_notes_are_the_part_counts(model):
    # The first five bars are totals, the next five what one token uses; the note beside a total bar is its size.
    ex = parameter_explorer()
    ex.set(model=model)
    ax = ex.figure.axes[0]
    counts = part_counts(model)
    widths = [b.get_width() for b in ax.patches]
    assert widths[:5] == pytest.approx([counts[p][0] / 1e6 for p in PARTS])
    assert widths[5:10] == pytest.approx([counts[p][1] / 1e6 for p in PARTS])
    # Notes sit beside their bars: a total's at y - 0.2, an active one's at y + 0.2 (for a part one token
    # uses at most half of, and for an empty bar).
    notes = {(round(t.get_position()[1], 1)): t.get_text().strip() for t in ax.texts}
    want = {y - 0.2: "0 (tied to the embedding)" if p == "unembedding" and counts[p][0] == 0 else format_count(counts[p][0])
            for y, p in enumerate(PARTS)}
    want.update({y + 0.2: "0 active (a row lookup, no product)" for y, p in enumerate(PARTS)
                 if counts[p][1] == 0 and counts[p][0]})
    want.update({y + 0.2: format_count(counts[p][1]) for y, p in enumerate(PARTS) if 0 < counts[p][1] <= counts[p][0] / 2})
    assert notes == {round(y, 1): text for y, text in want.items()}
    assert (model == "gpt2-124m") != (round(0.2, 1) in notes)  # the untied embedding is looked up, not multiplied
    assert (model == "gpt2-124m") != (round(2.2, 1) in notes)  # gpt-oss's experts: a token uses 4 of them


def test_weights_are_scaled_dot_product_attention():
    # softmax(q k^T / sqrt(d)) under the causal mask: times v it is torch's causal attention.
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 16), torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attention_weights(q, k) @ v, want, atol=1e-5, rtol=1e-5)


def test_query_row_is_marked_and_its_visible_keys_coloured():
    torch.manual_seed(0)
    q, k = torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    ex = attention_explorer(q, k, list("abcdef")).set(query=2)
    left, right = ex.figure.axes[:2]
    marker = left.patches[0]  # an outline around the query's row, across every key
    assert (marker.get_xy(), marker.get_width(), marker.get_height(), marker.get_fill()) == ((-0.5, 1.5), 6, 1, False)
    colours = [to_hex(b.get_facecolor()) for b in right.patches]
    assert colours == ["#1f77b4"] * 3 + ["#dddddd"] * 3  # keys 0..2 (itself included) are visible


@pytest.mark.parametrize("n,text", [(999.4e6, "999 M"), (999.6e6, "1 B"), (1e9, "1 B"), (20.9e9, "20.9 B"),
                                    (124.4e6, "124 M")])
def test_counts_that_round_to_a_thousand_millions_are_billions(n, text):
    # '.3g' writes 999.6 M as '1e+03 M': the unit is chosen after rounding.
    assert format_count(n) == text


def test_the_parameter_axis_reads_as_counts_on_either_scale():
    """On a log axis in millions the ticks read 10^-2 .. 10^5; as counts they read 10K .. 100B."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from gptoss_edu.widgets.gpt2 import draw_parameters

    for scale in ("log", "linear"):
        fig = Figure()
        draw_parameters(fig, "gpt-oss-120b", scale)
        fig.canvas.draw()
        ax = fig.axes[0]
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert ticks and all(t == "0" or t[-1] in "KMB" for t in ticks), ticks
    assert "100B" in ticks or "120B" in ticks  # linear: gpt-oss-120b's experts, 115 B


def test_more_tokens_than_positions_is_named_too():
    """Too many labels, not only too few: the query slider would run past q's last row."""
    with pytest.raises(ValueError, match="4 tokens for 3 positions in q"):
        attention_explorer(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), ["a", "b", "c", "d"])
