"""Notebook 09's explorer: each control redraws, and the numbers behind the picture follow YaRN."""

from __future__ import annotations

import math

import pytest

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


def test_yarn_config_keeps_the_original_context():
    cfg = yarn_config(8.0)
    assert cfg.rope_original_context == 4096 and cfg.context_length == 4096 * 8 and cfg.positions == "yarn"
