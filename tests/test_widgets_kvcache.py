"""Notebook 05's KV cache calculator: every control redraws, and the marked point is cfg.kv_cache_bytes."""

from __future__ import annotations

import math

import pytest

from gptoss_edu import preset
from gptoss_edu.memory import short_bytes
from gptoss_edu.widgets.kvcache import cache_bytes, kv_cache_explorer


def marked_point(explorer):
    left = explorer.figure.axes[0]
    point = next(line for line in left.get_lines() if line.get_marker() == "o")
    return point.get_xdata()[0], point.get_ydata()[0] * 2 ** 30


def test_each_control_changes_the_picture():
    ex = kv_cache_explorer()
    seen = {ex.fingerprint()}
    for change in ({"context": 8192}, {"layers": 12}, {"kv_heads": 1}, {"dtype": "float32"}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 5


def test_marked_point_is_the_configs_cache_size():
    cfg = preset("gpt-oss-20b")
    ex = kv_cache_explorer(cfg)
    x, y = marked_point(ex)
    assert x == cfg.context_length
    assert y == pytest.approx(cfg.kv_cache_bytes(cfg.context_length), rel=1e-9)
    ex.set(context=4096, layers=10, kv_heads=4, dtype="float32")
    x, y = marked_point(ex)
    want = cfg.replace(n_layers=10, n_kv_heads=4, layer_types=()).kv_cache_bytes(4096, dtype_bytes=4)
    assert (x, y) == (4096, pytest.approx(want, rel=1e-9))
    assert short_bytes(want) in ex.figure.axes[0].texts[0].get_text()


def test_three_curves_mha_gqa_mqa():
    ex = kv_cache_explorer(preset("gpt-oss-120b"))
    labels = [line.get_label() for line in ex.figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["MHA (64 KV heads)", "GQA (8 KV heads)", "MQA (1 KV head)"]


def test_cache_bytes():
    cfg = preset("gpt-oss-20b")
    assert cache_bytes(cfg, 1, cfg.n_layers, cfg.n_kv_heads, 2) == 2 * 24 * 8 * 64 * 2


def test_kv_heads_offered_are_divisors():
    ex = kv_cache_explorer(preset("gpt-oss-20b"))
    assert list(ex.controls["kv_heads"].options) == [1, 2, 4, 8, 16, 32, 64]
    with pytest.raises(ValueError, match="context must be one of"):
        kv_cache_explorer(context=1000)


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

GIB = 2 ** 30


def full_cache(cfg, context, layers, kv_heads, nbytes):
    # Independent of the widget: K and V, every layer keeping every position.
    return 2 * context * layers * kv_heads * cfg.head_dim * nbytes


def test_every_number_follows_the_controls():
    cfg = preset("gpt-oss-20b")
    ex = kv_cache_explorer(cfg)
    ex.set(context=4096, layers=10, kv_heads=4, dtype="float32")
    left, right = ex.figure.axes[:2]
    # The annotation: the cache and the cache per token at the chosen dtype.
    text = left.texts[0].get_text()
    assert text == f"{short_bytes(full_cache(cfg, 4096, 10, 4, 4))}\n({short_bytes(full_cache(cfg, 1, 10, 4, 4))}/token)"
    assert left.get_title().startswith(f"{cfg.name}: 10 layers, head_dim {cfg.head_dim}, float32")
    # Every point of the three curves is the cache at its context, with the chosen layers and dtype.
    for line, h in zip([l for l in left.get_lines() if not l.get_label().startswith("_")], (cfg.n_heads, 4, 1)):
        for x, y in zip(line.get_xdata(), line.get_ydata()):
            assert y * GIB == pytest.approx(full_cache(cfg, int(x), 10, h, 4), rel=1e-9)
    # The bars are the three kinds at the chosen context, each labelled with its size.
    assert right.get_title() == "at 4,096 tokens"
    want = [full_cache(cfg, 4096, 10, h, 4) for h in (cfg.n_heads, 4, 1)]
    assert [b.get_height() * GIB for b in right.patches] == pytest.approx(want, rel=1e-9)
    assert [t.get_text() for t in right.texts] == [short_bytes(w) for w in want]
    assert cache_bytes(cfg, 4096, 10, 4, 4) == want[1]


def test_the_three_cache_curves_differ_in_style_too():
    ex = kv_cache_explorer(preset("gpt-oss-120b"))
    lines = [line for line in ex.figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len({line.get_linestyle() for line in lines}) == 3


@pytest.mark.parametrize("context,kv_heads", [(131072, 64), (256, 8), (256, 1), (8192, 8)])
def test_the_chosen_points_label_stays_inside_the_axes(context, kv_heads):
    # At either end of the context slider, and at the top of the curves (MHA, the longest context).
    ex = kv_cache_explorer(preset("gpt-oss-120b")).set(context=context, kv_heads=kv_heads)
    fig = ex.figure
    fig.canvas.draw()
    ax = fig.axes[0]
    box, inside = ax.texts[0].get_window_extent(), ax.get_window_extent()
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


def test_one_layer_and_one_kv_head_are_singular():
    ex = kv_cache_explorer(preset("gpt-oss-120b")).set(layers=1, kv_heads=1)
    assert ": 1 layer, " in ex.figure.axes[0].get_title()
    assert "GQA (1 KV head)" in [line.get_label() for line in ex.figure.axes[0].get_lines()]


def test_a_small_models_context_still_gets_curves():
    """The course's own models hold 256 tokens: the curves must span a range, not one invisible point."""
    from gptoss_edu import course_config

    ex = kv_cache_explorer(course_config(5))
    assert len(ex.controls["context"].options) >= 5
    lines = [line for line in ex.figure.axes[0].get_lines() if line.get_label().startswith(("MHA", "GQA", "MQA"))]
    assert len(lines) == 3 and all(len(line.get_xdata()) >= 5 for line in lines)
    assert min(lines[0].get_xdata()) == 16 and max(lines[0].get_xdata()) == 256


def test_log_axes_draw_two_minor_ticks_a_decade_at_most():
    """The log-log curves drew 80 minor ticks, with a grid line each: a third of every redraw."""
    left = kv_cache_explorer(preset("gpt-oss-20b")).figure.axes[0]
    for axis, (low, high) in ((left.xaxis, left.get_xlim()), (left.yaxis, left.get_ylim())):
        decades = math.log10(high / low)
        assert decades > 2 and len(axis.get_minorticklocs()) <= 2 * (decades + 2)


def test_a_context_shorter_than_sixteen_or_not_a_power_of_two_still_draws():
    """The curves start at context // 16 (at least 1, never 0 on a log axis); a context length that is not a
    power of two is offered as the slider's last stop."""
    tiny = preset("gpt-oss-tiny").replace(context_length=8)
    ex = kv_cache_explorer(tiny)
    assert list(ex.controls["context"].options) == [("1", 1), ("2", 2), ("4", 4), ("8", 8)]
    assert marked_point(ex)[0] == 8 and min(ex.figure.axes[0].get_lines()[0].get_xdata()) == 1
    odd = preset("gpt-oss-tiny").replace(context_length=1000)
    ex = kv_cache_explorer(odd, context=1000)
    assert [v for _, v in ex.controls["context"].options][-2:] == [512, 1000]
    x, y = marked_point(ex)
    assert x == 1000 and y == pytest.approx(full_cache(odd, 1000, odd.n_layers, odd.n_kv_heads, 2), rel=1e-9)
