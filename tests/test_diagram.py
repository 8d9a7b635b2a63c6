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
