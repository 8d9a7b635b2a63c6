"""Notebook 07's explorer: each control redraws, and the numbers behind the picture behave as routing must."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

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
    title = ex.figure.axes[0].get_title()
    assert "top-4 of 4: " in title and "\n(top-k 8 capped: only 4 experts)" in title  # the 8 is not silently ignored
    ticks = [t for t in ex.figure.axes[0].get_xticks() if -0.6 <= t <= 3.6]  # those shown
    assert all(float(t).is_integer() for t in ticks) and max(ticks) <= 3  # whole experts only, none past the last
    # The whole title is inside the figure (on one line it began off the left edge, "12 tokens" for 512).
    for n in range(2, 8):
        ex.set(n_experts=n, top_k=8)
        fig = ex.figure
        FigureCanvasAgg(fig)  # a canvas that renders, to measure the drawn title
        fig.canvas.draw()
        box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer())
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (n, box)
    ex.set(top_k=2)
    assert "capped" not in ex.figure.axes[0].get_title()


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

def test_balanced_line_and_imbalance_count_k_choices_per_token():
    ex = routing_explorer(tokens=256)
    ex.set(n_experts=16, top_k=4)
    fair = 256 * 4 / 16  # every token makes k choices
    line = ex.figure.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [fair, fair] and line.get_label() == "balanced: 64 each"
    assert ex.stats["imbalance"] == pytest.approx(max(ex.stats["counts"]) / fair)


def test_idle_counts_experts_with_no_token():
    ex = routing_explorer(tokens=64)
    ex.set(n_experts=64, top_k=1)
    counts = ex.stats["counts"]
    assert 1 in counts  # an expert with a single token is busy, not idle
    assert ex.stats["idle"] == counts.count(0)
    assert f"{counts.count(0)} idle" in ex.figure.axes[0].get_title()


def test_balance_loss_sees_the_temperature():
    # The router's probabilities are softmax(logits / T): the loss must follow T even where the choices do not.
    ex = routing_explorer(tokens=256)
    ex.set(n_experts=8, top_k=2, temperature=1.0)
    counts, aux1 = ex.stats["counts"], ex.stats["aux_loss"]
    ex.set(temperature=4.0)  # flatter probabilities: E * sum(share * 1/E) -> 1
    assert ex.stats["counts"] == counts and abs(ex.stats["aux_loss"] - 1) < abs(aux1 - 1)


def test_one_over_k_line_uses_the_capped_k():
    ex = routing_explorer(tokens=128)
    ex.set(top_k=8, n_experts=4)
    ax2 = ex.figure.axes[1]
    assert list(ax2.get_lines()[0].get_ydata()) == [0.25, 0.25]
    assert ax2.get_title().endswith("(dotted: 1/k = 0.25)")
    ex.set(top_k=8, n_experts=8)  # 1/8 in full, not rounded to 0.12
    assert ex.figure.axes[1].get_title().endswith("(dotted: 1/k = 0.125)")
