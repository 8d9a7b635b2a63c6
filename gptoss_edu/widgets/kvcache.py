"""Notebook 05's explorer: how big the KV cache gets, by context, layers, KV heads and dtype."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from ..config import ModelConfig, preset
from ..memory import short_bytes
from . import Explorer, few_minor_ticks

# Its name here until 2026-12-06: a learner's older notebooks 05 and 06 import it so.
format_bytes = short_bytes

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float8": 1}


def cache_bytes(cfg: ModelConfig, context: int, layers: int, kv_heads: int, dtype_bytes: int) -> int:
    """KV cache bytes of ``cfg`` with its layers, KV heads and dtype changed (from cfg.kv_cache_bytes)."""
    # Every layer keeping every position, as in this notebook (05): the sliding-window layers of
    # notebook 06 keep only their window. Dropping the pattern also makes any layer count valid.
    return cfg.replace(n_layers=layers, n_kv_heads=kv_heads, layer_types=()).kv_cache_bytes(
        context, dtype_bytes=dtype_bytes)


def attention_kinds(cfg: ModelConfig, kv_heads: int) -> dict[str, int]:
    """The three ways to share keys and values: MHA, the chosen GQA, MQA, by their KV head counts."""
    return {f"MHA ({cfg.n_heads} KV heads)": cfg.n_heads,
            f"GQA ({kv_heads} KV head{'' if kv_heads == 1 else 's'})": kv_heads, "MQA (1 KV head)": 1}


def shortest_context(cfg: ModelConfig) -> int:
    """Where the curves start: 256 tokens, or less for a small model, so that they span 16x at least."""
    return min(256, max(1, cfg.context_length // 16))


def draw_kv_cache(fig: Figure, cfg: ModelConfig, context: int, layers: int, kv_heads: int, dtype: str) -> None:
    """Left: cache bytes vs context for MHA, GQA and MQA, the chosen point marked; right: bars there."""
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    nbytes = DTYPE_BYTES[dtype]
    contexts = np.unique(np.geomspace(shortest_context(cfg), cfg.context_length, 40).astype(int))
    kinds = attention_kinds(cfg, kv_heads)
    colours = ("tab:purple", "tab:orange", "tab:blue")  # no red beside the orange: some readers cannot tell them apart
    styles = ("--", "-", ":")  # and the lines differ too
    gib = 2 ** 30
    drawn = []
    for (label, h), colour, style in zip(kinds.items(), colours, styles):
        ys = [cache_bytes(cfg, int(t), layers, h, nbytes) / gib for t in contexts]
        left.plot(contexts, ys, color=colour, ls=style, label=label, lw=2.5 if h == kv_heads else 1.2)
        drawn += ys
    chosen = cache_bytes(cfg, context, layers, kv_heads, nbytes)
    per_token = cache_bytes(cfg, 1, layers, kv_heads, nbytes)
    left.plot([context], [chosen / gib], "o", color="black", ms=7, zorder=5)
    # The label goes towards the middle of the axes, so that it never runs into the title or the ticks.
    at_left = np.log(context / contexts[0]) < 0.5 * np.log(contexts[-1] / contexts[0])
    at_top = np.log(chosen / gib / min(drawn)) > 0.75 * np.log(max(drawn) / min(drawn))
    left.annotate(f"{short_bytes(chosen)}\n({short_bytes(per_token)}/token)", (context, chosen / gib),
                  textcoords="offset points", xytext=(10 if at_left else -10, -12 if at_top else 12),
                  ha="left" if at_left else "right", va="top" if at_top else "bottom", fontsize=8)
    left.set(xscale="log", yscale="log", xlabel="context (tokens)", ylabel="KV cache (GiB, batch 1)",
             title=f"{cfg.name}: {layers} layer{'' if layers == 1 else 's'}, head_dim {cfg.head_dim}, {dtype} "
                   "(every layer full)")
    left.title.set_fontsize(9)
    left.xaxis.set_minor_locator(few_minor_ticks())
    left.yaxis.set_minor_locator(few_minor_ticks())
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8, loc="upper left")

    sizes = [cache_bytes(cfg, context, layers, h, nbytes) / gib for h in kinds.values()]
    bars = right.bar(["MHA", "GQA", "MQA"], sizes, color=colours)
    for bar, size in zip(bars, sizes):
        right.text(bar.get_x() + bar.get_width() / 2, size, short_bytes(size * gib), ha="center",
                   va="bottom", fontsize=8)
    right.set(ylabel="GiB", title=f"at {context:,} tokens")
    right.title.set_fontsize(9)
    right.set_ylim(0, max(sizes) * 1.15)


def kv_cache_explorer(cfg: ModelConfig | None = None, context: int | None = None) -> Explorer:
    """Controls for context, layers, KV heads and dtype over ``cfg`` (default gpt-oss-20b)."""
    cfg = cfg or preset("gpt-oss-20b")
    style = {"description_width": "initial"}
    contexts = [2 ** p for p in range(64) if shortest_context(cfg) <= 2 ** p <= cfg.context_length]
    if cfg.context_length not in contexts:
        contexts.append(cfg.context_length)
    context = context or cfg.context_length
    if context not in contexts:
        raise ValueError(f"context must be one of {contexts}, got {context}")
    divisors = [h for h in range(1, cfg.n_heads + 1) if cfg.n_heads % h == 0]
    controls = {
        "context": widgets.SelectionSlider(options=[(f"{t:,}", t) for t in contexts], value=context,
                                           description="context", style=style),
        "layers": widgets.IntSlider(value=cfg.n_layers, min=1, max=max(2 * cfg.n_layers, 8), description="layers",
                                    style=style),
        "kv_heads": widgets.SelectionSlider(options=divisors, value=cfg.n_kv_heads, description="KV heads",
                                            style=style),
        "dtype": widgets.Dropdown(options=list(DTYPE_BYTES), value="bfloat16", description="dtype", style=style),
    }

    def draw(fig: Figure, **values) -> None:
        draw_kv_cache(fig, cfg, **values)

    return Explorer(f"KV cache calculator ({cfg.name})", draw, controls, figsize=(9.0, 3.8))
