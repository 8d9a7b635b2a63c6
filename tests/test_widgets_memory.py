"""Notebook 12's memory-plan explorer: every control redraws, and the picture shows memory.plan's verdict."""

from __future__ import annotations

import pytest

import gptoss_edu as g
from gptoss_edu import memory
from gptoss_edu.env import CUDA_CONTEXT_BYTES
from gptoss_edu.widgets.memory import memory_explorer


def test_memory_explorer_each_control_redraws():
    ex = memory_explorer()
    seen = {ex.fingerprint()}
    for change in ({"gpu": "16 GiB"}, {"context": 4096}, {"prompt_tokens": 4096}, {"model": "gpt-oss-120b"}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "PNG" not in repr(ex) and "gpu" in repr(ex)


def test_memory_explorer_shows_memory_plan_and_its_verdict():
    ex = memory_explorer(model="gpt-oss-20b", context=131072, prompt_tokens=1024, gpu="24 GiB")
    want = memory.plan(g.preset("gpt-oss-20b"), 131072, 24 * memory.GiB - CUDA_CONTEXT_BYTES, prompt_tokens=1024)
    assert ex.current["plan"] == want and want.fits
    assert "fits" in ex.figure.axes[0].get_title()
    ex.set(gpu="16 GiB")
    assert not ex.current["plan"].fits and "does not fit" in ex.figure.axes[0].get_title()
    ex.set(context=1024, prompt_tokens=16384)  # a prompt longer than the context is capped at it
    assert ex.current["plan"].prompt_tokens == 1024 and "capped" in ex.figure.axes[1].get_title()
    ex.set(model="gpt-oss-120b", gpu="80 GiB", context=131072, prompt_tokens=1024)
    assert ex.current["plan"].fits and ex.current["plan"].weights == memory.checkpoint_bytes(g.preset("gpt-oss-120b"))


# ---- found by mutation testing: the numbers and labels behind the picture ------------------------------

@pytest.mark.parametrize("gpu", ["24 GiB", "16 GiB"])
def test_stack_verdict_point_and_gpu_line_are_the_plans(gpu):
    ex = memory_explorer(model="gpt-oss-20b", context=131072, prompt_tokens=1024, gpu=gpu)
    gib = int(gpu.split()[0])
    usable = gib * memory.GiB - CUDA_CONTEXT_BYTES
    plan = memory.plan(g.preset("gpt-oss-20b"), 131072, usable, prompt_tokens=1024)
    left, right = ex.figure.axes[:2]
    # The bar stacks weights, KV cache and workspace, each starting where the last ended.
    parts = [plan.weights, plan.kv_cache, plan.workspace]
    bars = left.patches
    assert [b.get_height() * memory.GiB for b in bars] == pytest.approx(parts)
    assert [b.get_y() * memory.GiB for b in bars] == pytest.approx([0, parts[0], parts[0] + parts[1]])
    verdict = (f"fits: {memory.format_bytes(plan.headroom)} to spare" if plan.fits
               else f"does not fit: {memory.format_bytes(-plan.headroom)} missing")
    assert left.get_title() == f"gpt-oss-20b on {gib} GiB ({memory.format_bytes(usable)} usable)\n{verdict}"
    # The marked point is the plan's total; the dashed GPU line is at what the GPU holds, on both sides.
    point = next(l for l in right.get_lines() if l.get_marker() == "o")
    assert point.get_ydata()[0] * memory.GiB == pytest.approx(plan.total)
    for ax in (left, right):
        dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
        assert [list(l.get_ydata()) for l in dashed] == [[usable / memory.GiB] * 2]


@pytest.mark.parametrize("model,context,prompt", [("gpt-oss-120b", 1024, 16384), ("gpt-oss-20b", 2048, 4096)])
def test_the_curve_holds_the_prompt_asked_for_at_every_context(model, context, prompt):
    # The dot's context caps the prompt; the curve's longer contexts must not inherit that cap.
    ex = memory_explorer().set(model=model, context=context, prompt_tokens=prompt)
    line = ex.figure.axes[1].get_lines()[0]
    cfg = g.preset(model)
    for t, total in zip(line.get_xdata(), line.get_ydata()):
        want = memory.plan(cfg, int(t), 0, prompt_tokens=min(prompt, int(t))).total / memory.GiB
        assert total == pytest.approx(want)
    far = memory.plan(cfg, cfg.context_length, 0, prompt_tokens=prompt).total / memory.GiB
    assert line.get_ydata()[-1] == pytest.approx(far)  # the curve's end is what the slider at its end shows


def test_a_plan_that_fills_the_gpu_to_its_size_does_not_fit_beside_the_cuda_context():
    """gpt-oss-20b at its full context with a short prompt is 15.9 GiB: it was told to fit 16 GiB with 80 MiB to
    spare, though the CUDA context takes half a GiB of a real card (what doctor counts)."""
    ex = memory_explorer(model="gpt-oss-20b", context=131072, prompt_tokens=128, gpu="16 GiB")
    plan = ex.current["plan"]
    assert 15.5 * memory.GiB < plan.total < 16 * memory.GiB and not plan.fits
    assert "does not fit" in ex.figure.axes[0].get_title() and "15.50 GiB usable" in ex.figure.axes[0].get_title()


def test_a_context_past_the_chosen_models_own_is_capped_to_it():
    """The context slider runs to the longest model's context; a shorter model is planned at its own."""
    ex = memory_explorer(models=("gpt-oss-tiny", "gpt-oss-20b"), model="gpt-oss-tiny", context=131072,
                         prompt_tokens=1024, gpu="16 GiB")
    tiny = g.preset("gpt-oss-tiny")
    assert tiny.context_length < 131072
    want = memory.plan(tiny, tiny.context_length, 16 * memory.GiB - CUDA_CONTEXT_BYTES, prompt_tokens=1024)
    assert ex.current["plan"] == want and ex.current["plan"].context == tiny.context_length
    ex.set(model="gpt-oss-20b")  # the same slider value is the 20b's whole context
    assert ex.current["plan"].context == 131072
