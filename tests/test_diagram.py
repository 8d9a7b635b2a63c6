"""The block diagram every notebook opens with: its title's parameter count and what its boxes say."""

from __future__ import annotations

from gptoss_edu import preset
from gptoss_edu.diagram import draw_block


def test_block_diagram_writes_billions_as_b():
    assert draw_block(preset("gpt-oss-20b")).axes[0].get_title() == "gpt-oss-20b: 20.9 B parameters"
    assert draw_block(preset("gpt2-124m")).axes[0].get_title() == "gpt2-124m: 124.4 M parameters"
    wide = preset("gpt2-124m").replace(name="wide", n_layers=24, d_model=2048, n_heads=16, n_kv_heads=16,
                                       head_dim=128, d_ff=8192)  # between 1 and 10 B: in B too
    assert 1e9 <= wide.param_counts()["total"] < 1e10
    assert draw_block(wide).axes[0].get_title() == f"wide: {wide.param_counts()['total'] / 1e9:.1f} B parameters"


def test_the_labels_say_grouped_query_attention_and_tied_embeddings():
    from gptoss_edu.diagram import _labels

    oss, gpt2 = _labels(preset("gpt-oss-20b")), _labels(preset("gpt2-124m"))
    assert oss["attention"].startswith("causal attention, 64 q heads / 8 kv heads\n")
    assert gpt2["attention"] == "causal attention, 12 heads"
    assert oss["unembedding"] == "unembedding (its own weights)"
    assert gpt2["unembedding"] == "unembedding (tied to the embedding)"


def test_a_note_says_what_of_a_marked_part_changes():
    import pytest

    fig = draw_block(preset("gpt-oss-20b"), highlight="mlp", notes={"mlp": "experts in MXFP4; the router stays bf16"})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "router: top-4 of 32 experts (clamped SwiGLU)\nexperts in MXFP4; the router stays bf16" in texts
    with pytest.raises(ValueError, match="unknown part"):
        draw_block(preset("gpt-oss-20b"), notes={"experts": "x"})


def test_parts_worked_on_but_unchanged_have_their_own_colour_and_a_key():
    """Orange means changed by the step; a notebook that only runs or reads a part marks it otherwise."""
    import pytest
    from matplotlib.colors import to_hex

    from gptoss_edu.diagram import FOCUS, HIGHLIGHT, PLAIN

    def colours(fig):
        ax = fig.axes[0]
        boxes = [p for p in ax.patches if p.get_linestyle() == "solid"]  # the parts, not the dashed block around them
        texts = {round(t.get_position()[1], 2): t.get_text() for t in ax.texts if t.get_position()[0] == 5.0}
        return {texts[round(b.get_y() + b.get_height() / 2, 2)].split(" ")[0]: to_hex(b.get_facecolor()) for b in boxes}

    fig = draw_block(preset("gpt-oss-20b"), highlight="mlp", focus=("attention", "unembedding"))
    seen = colours(fig)
    assert seen["router:"] == HIGHLIGHT and seen["causal"] == FOCUS and seen["unembedding"] == FOCUS
    assert seen["token"] == PLAIN
    key = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert key == ["changed here", "worked on here, computing the same"]
    assert draw_block(preset("gpt-oss-20b"), highlight="mlp").axes[0].get_legend() is None  # no key without focus
    with pytest.raises(ValueError, match="both changed"):
        draw_block(preset("gpt-oss-20b"), highlight="mlp", focus="mlp")
    with pytest.raises(ValueError, match="unknown part"):
        draw_block(preset("gpt-oss-20b"), focus="experts")


def test_the_window_label_follows_the_layers_windows():
    """It said "window W on alternate layers" whenever sliding_window was set, whatever layer_types said."""
    from gptoss_edu import course_config
    from gptoss_edu.diagram import _labels

    def label(cfg):
        return _labels(cfg)["attention"]

    assert "window 128 on alternate layers" in label(preset("gpt-oss-20b"))  # even layers of 24
    step6 = course_config(6)
    assert [step6.window(i) for i in range(step6.n_layers)] == [8, 0]
    assert "window 8 on alternate layers" in label(step6)  # layer 0 of 2
    assert "window" not in label(course_config(5).replace(sliding_window=8))  # no layer slides
    both = step6.replace(layer_types=("sliding_attention", "sliding_attention"))
    assert "window 8 on every layer" in label(both)
    six = preset("gpt-oss-20b").replace(n_layers=6, layer_types=("sliding_attention",) * 2 + ("full_attention",) * 4)
    assert "window 128 on layers 0, 1" in label(six)
    four = preset("gpt-oss-20b").replace(layer_types=tuple(
        "sliding_attention" if i in (0, 2, 5, 7) else "full_attention" for i in range(24)))
    assert "window 128 on layers 0, 2, 5, 7" in label(four)  # four listed, as many as fit
    odd = preset("gpt-oss-20b").replace(n_layers=12, layer_types=("sliding_attention",) * 5 + ("full_attention",) * 7)
    assert "window 128 on 5 of 12 layers" in label(odd)
