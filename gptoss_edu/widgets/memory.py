"""The memory plan explored (notebook 12): weights, KV cache and workspace of a model against a GPU.

:func:`memory_explorer` draws :func:`gptoss_edu.memory.plan` for a model, context, prompt length and
GPU size picked with its controls. A GPU of a size holds the plan in that size less the CUDA context
torch makes on it (``env.CUDA_CONTEXT_BYTES``, as ``doctor`` counts it).
"""

from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from .. import memory
from ..config import ModelConfig, preset
from ..env import CUDA_CONTEXT_BYTES
from . import Explorer, check_choice

GPU_SIZES = {"16 GiB": 16, "24 GiB": 24, "48 GiB": 48, "80 GiB": 80}
PROMPTS = (128, 1024, 4096, 16384)
PARTS = (("weights", "#8aa9c9"), ("kv_cache", "#ffb347"), ("workspace", "#c5b0d5"))


def usable_bytes(gpu_gib: int) -> int:
    """What a GPU of ``gpu_gib`` GiB holds for the model: its size less the CUDA context torch makes on it."""
    return gpu_gib * memory.GiB - CUDA_CONTEXT_BYTES


def draw_plan(fig: Figure, cfg: ModelConfig, context: int, prompt_tokens: int, gpu_gib: int) -> memory.MemoryPlan:
    """Draw the plan's parts stacked against the GPU (left) and the total over every context (right); return the plan."""
    prompt = min(prompt_tokens, context)
    usable = usable_bytes(gpu_gib)
    plan = memory.plan(cfg, context, usable, prompt_tokens=prompt)
    line = usable / memory.GiB
    left, right = fig.subplots(1, 2, width_ratios=(1, 2.2))
    bottom = 0.0
    for key, colour in PARTS:
        size = getattr(plan, key) / memory.GiB
        left.bar([0], [size], bottom=bottom, color=colour, label=f"{key.replace('_', ' ')} "
                 f"{memory.format_bytes(getattr(plan, key))}")
        bottom += size
    left.axhline(line, color="k", ls="--", lw=1)
    verdict = (f"fits: {memory.format_bytes(plan.headroom)} to spare" if plan.fits
               else f"does not fit: {memory.format_bytes(-plan.headroom)} missing")
    left.set(xticks=[], ylabel="GiB", xlim=(-0.8, 0.8), ylim=(0, max(bottom, gpu_gib) * 1.25))
    left.set_title(f"{cfg.name} on {gpu_gib} GiB ({memory.format_bytes(usable)} usable)\n{verdict}",
                   fontsize=9, color="#080" if plan.fits else "#b00")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0))  # below the bar, never over it

    contexts = np.unique(np.geomspace(1024, cfg.context_length, 30).astype(int))
    # Each context caps the prompt the user asked for, not the one this context capped.
    totals = [memory.plan(cfg, int(t), 0, prompt_tokens=min(prompt_tokens, int(t))).total / memory.GiB
              for t in contexts]
    right.plot(contexts, totals, color="#345", label="total")
    right.plot([context], [plan.total / memory.GiB], "o", color="k")
    right.axhline(line, color="k", ls="--", lw=1,
                  label=f"{gpu_gib} GiB GPU less {memory.format_bytes(CUDA_CONTEXT_BYTES)} of CUDA context")
    right.set(xscale="log", xlabel="context (positions in the KV cache)", ylabel="GiB",
              ylim=(0, max(max(totals), gpu_gib) * 1.15))
    asked = f"prompt {prompt_tokens:,}" + (f" (capped at the context, {prompt:,})" if prompt < prompt_tokens else "")
    right.set_title(f"total memory over the context; {asked}", fontsize=9)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7, loc="upper left")
    return plan


def memory_explorer(models: Sequence[str] = ("gpt-oss-20b", "gpt-oss-120b"), model: str = "gpt-oss-20b",
                    context: int = 131072, prompt_tokens: int = 1024, gpu: str = "24 GiB") -> Explorer:
    """Pick a model, context, prompt length and GPU; see memory.plan's weights, KV cache and workspace."""
    configs = {name: preset(name) for name in models}
    longest = max(c.context_length for c in configs.values())
    contexts = [2 ** p for p in range(10, 40) if 2 ** p <= longest]
    style = {"description_width": "initial"}
    for name, value, options in (("model", model, list(configs)), ("context", context, contexts),
                                 ("prompt_tokens", prompt_tokens, PROMPTS), ("gpu", gpu, list(GPU_SIZES))):
        check_choice(name, value, options)
    controls = {
        "model": widgets.Dropdown(options=list(configs), value=model, description="model", style=style),
        "context": widgets.SelectionSlider(options=[(f"{t:,}", t) for t in contexts], value=context,
                                           description="context", style=style),
        "prompt_tokens": widgets.SelectionSlider(options=[(f"{t:,}", t) for t in PROMPTS], value=prompt_tokens,
                                                 description="prompt", style=style),
        "gpu": widgets.Dropdown(options=list(GPU_SIZES), value=gpu, description="GPU", style=style),
    }
    current: dict[str, memory.MemoryPlan] = {}

    def draw(fig: Figure, model: str, context: int, prompt_tokens: int, gpu: str) -> None:
        cfg = configs[model]
        current["plan"] = draw_plan(fig, cfg, min(context, cfg.context_length), prompt_tokens, GPU_SIZES[gpu])

    explorer = Explorer("Memory plan: weights + KV cache + workspace against a GPU", draw, controls,
                        figsize=(9.0, 3.6))
    explorer.current = current  # the plan behind the current picture, for tests and curious learners
    return explorer
