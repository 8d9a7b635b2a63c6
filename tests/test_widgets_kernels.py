"""Notebook 10's explorer, cost model, roofline and benchmark cases.

benchmark_cases runs the kernels, so without a GPU they run in Triton's interpreter
(tests/conftest.py sets TRITON_INTERPRET=1 before any test module imports Triton).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import gptoss_edu as g
from gptoss_edu.attention import attention_mask
from gptoss_edu.env import triton_gpu
from gptoss_edu.widgets.kernels import (BLOCKS, KernelCost, benchmark_cases, block_explorer, draw_roofline, kernel_costs, launch_stats, ownership)

ON_GPU = triton_gpu()  # a GPU Triton supports; an older one counts as none

# ----------------------------------------------------------------------------- the explorer


def test_each_control_redraws():
    ex = block_explorer()
    seen = {ex.fingerprint()}
    for change in ({"n": 37}, {"block": 8}, {"block": 64}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "block" in repr(ex) and "PNG" not in repr(ex)


def test_stats_follow_the_controls():
    ex = block_explorer()
    ex.set(n=50, block=16)
    assert ex.stats["programs"] == 4 and ex.stats["masked"] == 14  # 4 programs x 16 lanes = 64 for 50 elements
    ex.set(n=64)
    assert ex.stats["programs"] == 4 and ex.stats["masked"] == 0
    ex.set(block=64, n=65)
    assert ex.stats["programs"] == 2 and ex.stats["masked"] == 63


@pytest.mark.parametrize("n, block", [(1, 4), (50, 16), (64, 16), (100, 64), (2880, 1024)])
def test_ownership_covers_each_element_once(n, block):
    own = ownership(n, block)
    assert own.shape == (-(-n // block), block)
    assert sorted(own[own >= 0].tolist()) == list(range(n))
    assert launch_stats(n, block)["masked"] == own.size - n
    assert (own[:-1] >= 0).all()  # only the last program has masked lanes


@pytest.mark.parametrize("n, block", [(0, 16), (10, 12), (10, 0)])
def test_ownership_rejects_bad_launches(n, block):
    with pytest.raises(ValueError):
        ownership(n, block)


# ----------------------------------------------------------------------------- cost model


def costs_by_name(cfg, tokens, context, act=2):
    return {c.name: c for c in kernel_costs(cfg, tokens, context, act)}


def test_decode_intensities_of_gpt_oss_20b():
    cfg = g.preset("gpt-oss-20b")
    c = costs_by_name(cfg, tokens=1, context=8192)
    assert set(c) == {"RMSNorm", "attention, window 128", "attention, full", "experts, MXFP4", "experts, bf16"}
    assert c["RMSNorm"].intensity == pytest.approx(2 / 3, rel=1e-3)  # 4 FLOPs per 6 bytes (x in, y out, w)
    # A long cache: each K/V byte meets the Hq / Hkv query heads that share it, 1 FLOP a byte each.
    assert c["attention, full"].intensity == pytest.approx(cfg.n_heads / cfg.n_kv_heads, rel=0.01)
    # 2 FLOPs a weight over 17/32 bytes a weight (MXFP4), or over 2 bytes (bf16).
    assert c["experts, MXFP4"].intensity == pytest.approx(2 * 32 / 17, rel=0.01)
    assert c["experts, bf16"].intensity == pytest.approx(1.0, rel=0.01)
    assert all(k.intensity < 10 for k in c.values())


def test_prefill_raises_intensity_where_weights_or_keys_are_shared():
    cfg = g.preset("gpt-oss-20b")
    decode, prefill = costs_by_name(cfg, 1, 2048), costs_by_name(cfg, 2048, 2048)
    for name in ("attention, full", "experts, MXFP4", "experts, bf16"):
        assert prefill[name].intensity > 50 * decode[name].intensity
    assert prefill["RMSNorm"].intensity < 1.01  # elementwise: never better than 1 FLOP a byte


def test_attention_flops_count_the_allowed_pairs():
    cfg = g.preset("gpt-oss-tiny")
    for tokens, context in ((5, 20), (20, 20), (1, 3)):
        c = costs_by_name(cfg, tokens, context)
        q_pos, k_pos = torch.arange(context - tokens, context), torch.arange(context)
        for name, window in ((f"attention, window {cfg.sliding_window}", cfg.sliding_window), ("attention, full", 0)):
            pairs = int(attention_mask(q_pos, k_pos, window).sum())
            assert c[name].flops == 4 * cfg.n_heads * cfg.head_dim * pairs


def test_expert_bytes_count_only_the_chosen_experts():
    cfg = g.preset("gpt-oss-20b")
    one, many = costs_by_name(cfg, 1, 8), costs_by_name(cfg, 64, 64)
    per_expert = 3 * cfg.d_ff * cfg.d_model * 17 / 32
    assert one["experts, MXFP4"].bytes == pytest.approx(cfg.experts_per_token * per_expert, rel=0.01)
    assert many["experts, MXFP4"].bytes > cfg.n_experts * per_expert  # 64 tokens x 4 choices: all 32 experts


def test_kernel_costs_rejects_more_tokens_than_context():
    with pytest.raises(ValueError):
        kernel_costs(g.preset("gpt-oss-tiny"), tokens=9, context=8)


# ------------------------------------------------------------------------------- roofline


def test_roofline_places_measured_points_below_and_bounds_on_the_roof():
    fig = Figure()
    ax = fig.add_subplot()
    slow = KernelCost("slow", flops=1e9, bytes=1e9)
    bound = KernelCost("bound", flops=1e12, bytes=1e9)
    draw_roofline(ax, [("slow", slow, 1.0), ("bound", bound, None)], peak_flops=1e14, peak_bw=1e12, title="t")
    points = {line.get_label(): line for line in ax.get_lines() if line.get_label() in ("slow", "bound")}
    assert points["slow"].get_ydata()[0] == pytest.approx(1e9)  # 1e9 FLOPs in 1 s
    assert points["bound"].get_ydata()[0] == pytest.approx(1e14)  # intensity 1000 > ridge 100: compute roof
    assert points["bound"].get_markerfacecolor() == "none"
    assert points["slow"].get_marker() != points["bound"].get_marker()  # told apart without colour too
    assert ax.get_title() == "t"
    memory = next(t for t in ax.texts if t.get_text().startswith("memory"))
    x, y = memory.get_position()
    assert y < 1e12 * x  # the label sits under the memory slope, which would otherwise cross it
    assert ax.get_ylim()[0] < 1e9  # the slow point stays in view


def test_roofline_keeps_a_launch_bound_point_in_view():
    fig = Figure()
    ax = fig.add_subplot()
    tiny = KernelCost("tiny", flops=1e4, bytes=2e4)
    draw_roofline(ax, [("tiny", tiny, 5e-6)], peak_flops=1e15, peak_bw=3e12)  # 2e9 FLOP/s, roof 1.5e12 there
    assert ax.get_ylim()[0] < 2e9 < ax.get_ylim()[1]


# ------------------------------------------------------------------------ benchmark cases


@pytest.mark.needs_triton
def test_benchmark_cases_run_and_agree():
    cfg = g.preset("gpt-oss-tiny")
    device, dtype = ("cuda", torch.bfloat16) if ON_GPU else ("cpu", torch.float32)
    for tokens, context in ((1, 20), (12, 12)):
        cases = benchmark_cases(cfg, tokens, context, device=device, dtype=dtype)
        assert {c.backend for c in cases} == {"triton", "torch"}
        outs: dict[str, list[torch.Tensor]] = {}
        for case in cases:
            out = case.fn()
            assert out.dtype == dtype and not out.isnan().any()
            outs.setdefault("experts" if case.name.startswith("experts") else case.name, []).append(out)
        assert len(outs) == 4 and all(len(v) == 2 for v in outs.values())  # each kernel beside its PyTorch twin
        tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
        for name, (a, b) in outs.items():
            scale = 1 + b.float().abs().max().item()
            np.testing.assert_allclose(a.float().cpu().numpy(), b.float().cpu().numpy(), rtol=tol, atol=tol * scale,
                                       err_msg=name)


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

@pytest.mark.parametrize("tokens, context", [(1, 20), (5, 20), (20, 20), (3, 4)])
def test_attention_bytes_read_each_visible_key_once(tokens, context):
    # Keys (and values) some query may see, counted from the mask itself: an off-by-one in the
    # window's first key changes the bytes, not the FLOPs.
    cfg, act = g.preset("gpt-oss-tiny"), 2
    Hq, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    c = costs_by_name(cfg, tokens, context, act)
    q_pos, k_pos = torch.arange(context - tokens, context), torch.arange(context)
    for name, window in ((f"attention, window {cfg.sliding_window}", cfg.sliding_window), ("attention, full", 0)):
        keys_read = int(attention_mask(q_pos, k_pos, window).any(0).sum())
        assert c[name].bytes == act * (2 * tokens * Hq * D + 2 * keys_read * Hkv * D + Hq)


@pytest.mark.parametrize("act, dtype", [(2, "bf16"), (4, "fp32")])
def test_expert_bytes_in_full(act, dtype):
    # Weights of the chosen experts (17/32 or act bytes a value), their biases, x in and out, and h written and read;
    # past DECODE_MAX_TOKENS, moe_mxfp4_prefill also writes each (token, expert) pair's output in float32 and sums
    # them afterwards into a float32 tensor that a cast reads back (the decode path sums in the kernel).
    from gptoss_kernels.moe import DECODE_MAX_TOKENS

    cfg = g.preset("gpt-oss-20b")
    d, I, E, k = cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.experts_per_token
    for tokens in (1, 3, DECODE_MAX_TOKENS, DECODE_MAX_TOKENS + 1, 64):
        c = costs_by_name(cfg, tokens, 64, act)
        used = min(E, tokens * k)
        rest = act * (used * (2 * I + d) + 2 * tokens * d + 2 * tokens * k * I)
        rest += 2 * tokens * (k + (act != 4)) * d * 4 if tokens > DECODE_MAX_TOKENS else 0  # y, and the sum before the cast
        assert c["experts, MXFP4"].bytes == pytest.approx(used * 3 * I * d * 17 / 32 + rest, rel=1e-12)
        assert c[f"experts, {dtype}"].bytes == pytest.approx(used * 3 * I * d * act + rest, rel=1e-12)
    # Decode in fp32: 2 FLOPs per weight over 4 bytes.
    assert costs_by_name(cfg, 1, 64, 4)["experts, fp32"].intensity == pytest.approx(0.5, rel=0.01)


def test_program_counts_over_the_bars():
    ex = block_explorer()
    ex.set(n=37, block=8)
    labels = [t.get_text() for t in ex.figure.axes[1].texts]
    assert labels == [str(-(-37 // b)) for b in BLOCKS]  # cdiv(n, BLOCK) for each BLOCK, not the chosen one


def test_measured_point_sits_at_flops_per_second_and_the_ridge_is_labelled():
    fig = Figure()
    ax = fig.add_subplot()
    cost = KernelCost("k", flops=4e9, bytes=1e9)  # FLOPs and bytes differ: y must use the FLOPs
    draw_roofline(ax, [("k", cost, 2.0)], peak_flops=1e14, peak_bw=1e12)
    point = next(line for line in ax.get_lines() if line.get_label() == "k")
    assert point.get_ydata()[0] == pytest.approx(2e9)
    assert any(t.get_text() == "ridge\n100 FLOP/B" for t in ax.texts)  # peak FLOP/s over bandwidth
    assert any(t.get_text() == "memory: 1000 GB/s" for t in ax.texts)
    ax = Figure().add_subplot()  # a ridge rounded to 8 once sat left of a point at 7.99 it called "above"
    draw_roofline(ax, [("k", cost, 2.0)], peak_flops=1.74e11, peak_bw=2.3e10)
    assert any(t.get_text() == "ridge\n7.57 FLOP/B" for t in ax.texts)


def test_lane_numbers_stay_readable_at_block_32():
    # Up to BLOCK 16 every lane is numbered; at 32 every 4th lane and the last element, at the same size.
    ex = block_explorer(n=50, block=16)
    assert sorted(int(t.get_text()) for t in ex.figure.axes[0].texts if t.get_text().isdigit()) == list(range(50))
    ex.set(block=32)
    texts = ex.figure.axes[0].texts
    named = sorted(int(t.get_text()) for t in texts if t.get_text().isdigit())
    assert named == sorted(set(range(0, 64, 4)) & set(range(50)) | {49})
    assert {t.get_fontsize() for t in texts} == {7}


def test_the_chosen_block_is_marked_on_its_tick_and_numbers_stay_under_the_title():
    ex = block_explorer(n=1, block=4)  # its bar has no height: 75% to 98% masked for the others
    ax2 = ex.figure.axes[1]
    marked = [t.get_text() for t in ax2.get_xticklabels() if t.get_fontweight() == "bold"]
    assert marked == ["4"]
    assert max(t.get_position()[1] for t in ax2.texts) < ax2.get_ylim()[1] - 5


@pytest.mark.parametrize("n,block,title", [
    (50, 64, "grid of cdiv(n, BLOCK) = 1 program; 14 lanes masked (grey)"),  # too wide for × marks
    (50, 16, "grid of cdiv(n, BLOCK) = 4 programs; 14 lanes masked (×)"),
    (63, 32, "grid of cdiv(n, BLOCK) = 2 programs; 1 lane masked (×)"),
])
def test_the_block_title_counts_in_words_and_names_the_mark_drawn(n, block, title):
    ex = block_explorer(n=n, block=block)
    assert title in ex.figure.axes[0].get_title()
    drawn = {t.get_text() for t in ex.figure.axes[0].texts}
    assert ("×" in drawn) == (block <= 32)


def test_counting_kernel_calls_counts_each_wrapper_and_puts_the_real_ones_back():
    """Notebook 10 counts the kernel calls of a model run; the count must be the calls, and leave nothing patched."""
    import collections
    import importlib

    import pytest

    pytest.importorskip("triton")
    from gptoss_edu.widgets.kernels import counting_kernel_calls

    rms = importlib.import_module("gptoss_kernels.rmsnorm")  # the module: the package's rmsnorm is the function

    real = rms.rmsnorm
    calls: collections.Counter = collections.Counter()
    with pytest.raises(RuntimeError, match="inside"):
        with counting_kernel_calls(calls):
            assert rms.rmsnorm is not real
            for _ in range(3):
                with pytest.raises(Exception):
                    rms.rmsnorm(None, None)  # counted before the real wrapper refuses it
            raise RuntimeError("an error inside")
    assert calls == {"rmsnorm": 3} and rms.rmsnorm is real


def test_block_explorer_no_program_is_drawn_grey_like_the_masked_lanes():
    import numpy as np

    from gptoss_edu.widgets.kernels import block_explorer

    e = block_explorer(n=100, block=4)  # 25 programs: pids 7 and 17 used tab10's grey
    rgb = e.figure.axes[0].images[0].get_array()
    for pid in range(rgb.shape[0]):
        r, g, b = rgb[pid, 0][:3]
        assert max(r, g, b) - min(r, g, b) > 0.05, f"program {pid} is drawn grey, like a masked lane"
    e.close()
