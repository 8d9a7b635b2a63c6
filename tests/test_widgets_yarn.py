"""Notebook 09's explorer: each control redraws, and the numbers behind the picture follow YaRN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gptoss_edu import preset
from gptoss_edu.rotary import rope_inv_freq
from gptoss_edu.widgets.yarn import yarn_config, yarn_explorer


def test_each_control_redraws():
    ex = yarn_explorer()
    seen = {ex.fingerprint()}
    for change in ({"factor": 8.0}, {"beta_fast": 16.0}, {"truncate": True}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "factor" in repr(ex) and "PNG" not in repr(ex)


def test_default_is_gpt_oss():
    ex = yarn_explorer()
    assert ex.stats["low"] == pytest.approx(8.0928, abs=1e-4) and ex.stats["high"] == pytest.approx(17.3980, abs=1e-4)
    assert ex.stats["attention_factor"] == pytest.approx(0.1 * math.log(32) + 1)
    # Pairs below the ramp keep their frequency, pairs above it are divided by 32: 32 pairs in all.
    assert ex.stats["kept"] == 9 and ex.stats["interpolated"] == 14


def test_truncation_widens_the_ramp_and_factor_one_is_plain_rope():
    ex = yarn_explorer()
    ex.set(truncate=True)
    assert (ex.stats["low"], ex.stats["high"]) == (8, 18)
    ex.set(truncate=False, factor=1.0)
    assert ex.stats["attention_factor"] == 1.0 and ex.stats["kept"] == 32 and ex.stats["interpolated"] == 0
    assert "YaRN is plain RoPE" in ex.figure.axes[1].get_title()
    # No ramp is drawn at factor 1 (a band and a "correction range" contradicted the right panel's title).
    assert "no ramp" in ex.figure.axes[0].get_title() and "correction range" not in ex.figure.axes[0].get_title()
    assert all("ramp" not in t.get_text() for a in ex.figure.axes if a.get_legend() for t in a.get_legend().get_texts())
    ex.set(factor=2.0)
    assert any("ramp" in t.get_text() for t in ex.figure.axes[0].get_legend().get_texts())


def test_yarn_config_keeps_the_original_context():
    cfg = yarn_config(8.0)
    assert cfg.rope_original_context == 4096 and cfg.context_length == 4096 * 8 and cfg.positions == "yarn"


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

@pytest.mark.parametrize("factor", [8.0, 32.0])
def test_context_lines_and_longest_wavelength(factor):
    cfg = preset("gpt-oss-20b")
    ex = yarn_explorer()
    ex.set(factor=factor)
    labels = [l.get_label() for l in ex.figure.axes[1].get_lines()]
    assert "original context 4,096" in labels and f"extended context {int(4096 * factor):,}" in labels
    # The slowest pair sits above the ramp: its plain frequency divided by the factor.
    slowest = float(rope_inv_freq(cfg.head_dim, cfg.rope_theta).min()) / factor
    assert ex.stats["longest_wavelength"] == pytest.approx(2 * math.pi / slowest, rel=1e-5)


def test_plotted_yarn_frequencies_are_divided_not_scaled_by_the_attention_factor():
    cfg = preset("gpt-oss-20b")
    ex = yarn_explorer()  # factor 32
    plain_line, yarn_line = ex.figure.axes[0].get_lines()[:2]
    plain = rope_inv_freq(cfg.head_dim, cfg.rope_theta).numpy()
    y = np.asarray(yarn_line.get_ydata())
    kept, divided = ex.stats["kept"], ex.stats["interpolated"]
    assert y[:kept] == pytest.approx(plain[:kept], rel=1e-6)  # below the ramp: unchanged
    assert y[-divided:] == pytest.approx(plain[-divided:] / 32, rel=1e-6)  # above it: divided by 32


@pytest.mark.parametrize("beta_fast", [24.0, 28.0, 32.0])
def test_factor_one_keeps_every_pair_even_truncated(beta_fast):
    # Truncated, the ramp's blend of two equal frequencies can round one pair off by a bit: still kept.
    ex = yarn_explorer().set(factor=1.0, truncate=True, beta_fast=beta_fast)
    pairs = preset("gpt-oss-20b").head_dim // 2
    assert ex.figure.axes[1].get_title() == f"factor 1: all {pairs} pairs kept, YaRN is plain RoPE"


def test_log_axes_draw_two_minor_ticks_a_decade_at_most():
    """Eight minor ticks a decade over 7 decades took a third of every redraw (1.25 s, now 0.83 s on a 2-core CPU)."""
    explorer = yarn_explorer()
    for ax in explorer.figure.axes:
        low, high = ax.get_ylim()
        decades = math.log10(high / low)
        assert decades > 5 and len(ax.yaxis.get_minorticklocs()) <= 2 * (decades + 2)
