"""Notebook 07's explorer: each control redraws, and the numbers behind the picture behave as routing must."""

from __future__ import annotations

import pytest

from gptoss_edu.widgets.moe import routing_explorer


def test_each_control_redraws():
    ex = routing_explorer(tokens=256)
    seen = {ex.fingerprint()}
    for change in ({"n_experts": 32}, {"top_k": 4}, {"temperature": 0.3}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "n_experts" in repr(ex) and "PNG" not in repr(ex)


def test_load_counts_every_choice_and_weights_sum_to_one():
    ex = routing_explorer(tokens=256)
    ex.set(n_experts=16, top_k=3)
    assert len(ex.stats["counts"]) == 16 and sum(ex.stats["counts"]) == 256 * 3
    assert sum(ex.stats["mean_weights"]) == pytest.approx(1.0, abs=1e-5)
    assert ex.stats["mean_weights"] == sorted(ex.stats["mean_weights"], reverse=True)  # first choice weighs most


def test_temperature_changes_weights_not_choices():
    ex = routing_explorer(tokens=256)
    ex.set(n_experts=8, top_k=2, temperature=1.0)
    counts, first = ex.stats["counts"], ex.stats["mean_weights"][0]
    ex.set(temperature=0.2)  # sharper: the first choice takes more
    assert ex.stats["counts"] == counts and ex.stats["mean_weights"][0] > first
    ex.set(temperature=4.0)  # flatter: towards 1/k each
    assert ex.stats["counts"] == counts and abs(ex.stats["mean_weights"][0] - 0.5) < abs(first - 0.5)


def test_top_k_is_capped_by_the_number_of_experts():
    ex = routing_explorer(tokens=128)
    ex.set(top_k=8, n_experts=4)
    assert ex.stats["top_k"] == 4 and ex.stats["mean_weights"] and sum(ex.stats["counts"]) == 128 * 4
