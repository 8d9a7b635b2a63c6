"""The block diagram every notebook opens with: its title's parameter count."""

from __future__ import annotations

from gptoss_edu import preset
from gptoss_edu.diagram import draw_block


def test_block_diagram_writes_billions_as_b():
    assert draw_block(preset("gpt-oss-20b")).axes[0].get_title() == "gpt-oss-20b: 20.9 B parameters"
    assert draw_block(preset("gpt2-124m")).axes[0].get_title() == "gpt2-124m: 124.4 M parameters"
