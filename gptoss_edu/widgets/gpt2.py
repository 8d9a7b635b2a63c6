"""Explorers for notebooks 00 and 01: where a model's parameters live, and causal attention weights."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from ..config import preset
from ..memory import format_count
from . import Explorer

MODELS = ("gpt2-124m", "gpt-oss-20b", "gpt-oss-120b")
PARTS = ("embedding", "attention", "mlp", "norms", "unembedding")


def part_counts(name: str) -> dict[str, tuple[int, int]]:
    """(total, active) parameters of each part of preset ``name``; the actives add up to the model's."""
    cfg = preset(name)
    pc = cfg.param_counts()
    counts = {part: (pc[part], pc[part]) for part in PARTS}
    counts["mlp"] = (pc["mlp"], pc["mlp_active"])
    # Looking a row up is not a multiplication: the input table counts as active only when it is
    # tied to the unembedding, and a learned position table never does.
    tied_table = cfg.vocab_size * cfg.d_model if pc["unembedding"] == 0 else 0
    counts["embedding"] = (pc["embedding"], tied_table)
    return counts


def _count_tick(millions: float, _position: object = None) -> str:
    """A tick of an axis in millions as a count: 0.01 -> '10K', 200 -> '200M', 1000 -> '1B'."""
    n = millions * 1e6
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


def draw_parameters(fig: Figure, model: str, scale: str) -> None:
    """Bars of each part's total and active parameters of one preset (in millions)."""
    counts = part_counts(model)
    ax = fig.add_subplot()
    ys = range(len(PARTS))
    total = [counts[p][0] / 1e6 for p in PARTS]
    active = [counts[p][1] / 1e6 for p in PARTS]
    ax.barh([y - 0.2 for y in ys], total, height=0.4, color="#9bbbd9", label="total")
    ax.barh([y + 0.2 for y in ys], active, height=0.4, color="#ff9f40", label="active (one token)")
    ax.set_yticks(list(ys), PARTS)
    ax.invert_yaxis()
    ax.set_xscale(scale)
    ax.xaxis.set_major_formatter(FuncFormatter(_count_tick))  # a log axis in millions read "10^-2": say 10K
    ax.set_xlabel("parameters" + (" (log scale)" if scale == "log" else ""))
    pc = preset(model).param_counts()
    ax.set_title(f"{model}: {format_count(pc['total'])} total, {format_count(pc['active'])} active")
    for y, part in zip(ys, PARTS):
        t = counts[part][0]
        note = "0 (tied to the embedding)" if part == "unembedding" and t == 0 else format_count(t)
        ax.text(max(t / 1e6, 1e-2 if scale == "log" else 0), y - 0.2, f" {note}", va="center", fontsize=8)
        if 0 < counts[part][1] <= t / 2:  # what one token uses, where that is a small part of it (the experts)
            ax.text(counts[part][1] / 1e6, y + 0.2, f" {format_count(counts[part][1])}", va="center", fontsize=8,
                    color="#a35200")
        if counts[part][1] == 0 and t:  # an empty bar needs saying why
            ax.text(1e-2 if scale == "log" else 0, y + 0.2, " 0 active (a row lookup, no product)", va="center",
                    fontsize=8, color="#a35200")
    ax.legend(loc="lower right", fontsize=8)
    if scale == "linear":
        ax.set_xlim(0, max(total) * 1.25)
    else:
        ax.set_xlim(1e-2, max(total) * 8)


def parameter_explorer() -> Explorer:
    """Choose a model and see where its parameters are: totals against what one token uses."""
    return Explorer(
        "Where the parameters live",
        draw_parameters,
        {
            "model": widgets.Dropdown(options=MODELS, value="gpt-oss-20b", description="model"),
            "scale": widgets.ToggleButtons(options=("linear", "log"), value="linear", description="axis"),
        },
        figsize=(7.5, 3.4),
    )


def attention_weights(q: torch.Tensor, k: torch.Tensor, sharpness: float = 1.0) -> torch.Tensor:
    """Causal softmax(q k^T * sharpness / sqrt(d)) for q, k [heads, T, d]: [heads, T, T]."""
    T, d = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-1, -2)) * sharpness / d**0.5
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def attention_explorer(q: torch.Tensor, k: torch.Tensor, tokens: list[str]) -> Explorer:
    """The attention weights of each head over ``tokens``; pick a head, a query and a sharpness."""
    if q.dim() != 3 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [heads, T, head_dim]; got {tuple(q.shape)} and {tuple(k.shape)}")
    if len(tokens) != q.shape[1]:
        raise ValueError(f"{len(tokens)} tokens for {q.shape[1]} positions in q")
    q, k = q.detach().float(), k.detach().float()
    # Leading spaces shown as a visible mark; "$" escaped, or matplotlib reads "$$" (a GPT-2 token) as mathtext.
    labels = [repr(t)[1:-1].replace(" ", "\u2423").replace("$", r"\$") for t in tokens]

    def draw(fig: Figure, head: int, query: int, sharpness: float) -> None:
        w = attention_weights(q[head], k[head], sharpness).numpy()
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#c8c8c8")  # grey: the masked future
        left.imshow(np.ma.masked_array(w, mask=np.triu(np.ones_like(w, dtype=bool), k=1)), cmap=cmap, vmin=0, vmax=1)
        # An outline, not a line through it: the chosen query's row stays readable.
        left.add_patch(Rectangle((-0.5, query - 0.5), len(labels), 1, fill=False, ec="#ff7f0e", lw=2))
        left.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        left.set_yticks(range(len(labels)), labels, fontsize=7)
        left.set_xlabel("key (looked at)")
        left.set_ylabel("query (looking)")
        left.set_title(f"head {head}: grey = masked (the future)", fontsize=9)
        row = w[query]
        right.bar(range(len(labels)), row, color=["#1f77b4" if j <= query else "#ddd" for j in range(len(labels))])
        right.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        right.set_ylim(0, 1)
        right.set_ylabel("attention weight")
        right.set_title(f"query {query} ({labels[query]}): weights sum to {row.sum():.2f}", fontsize=9)

    return Explorer(
        "Causal attention, one head at a time",
        draw,
        {
            "head": widgets.IntSlider(value=0, min=0, max=q.shape[0] - 1, description="head"),
            "query": widgets.IntSlider(value=len(tokens) - 1, min=0, max=len(tokens) - 1, description="query"),
            "sharpness": widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1.5, step=0.05,
                                                description="sharpness"),
        },
        figsize=(8.5, 3.8),
    )
