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
