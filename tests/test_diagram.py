"""The block diagram every notebook opens with: its title's parameter count."""

from __future__ import annotations

from gptoss_edu import preset
from gptoss_edu.diagram import draw_block


def test_block_diagram_writes_billions_as_b():
    assert draw_block(preset("gpt-oss-20b")).axes[0].get_title() == "gpt-oss-20b: 20.9 B parameters"
    assert draw_block(preset("gpt2-124m")).axes[0].get_title() == "gpt2-124m: 124.4 M parameters"


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
    odd = preset("gpt-oss-20b").replace(n_layers=12, layer_types=("sliding_attention",) * 5 + ("full_attention",) * 7)
    assert "window 128 on 5 of 12 layers" in label(odd)
