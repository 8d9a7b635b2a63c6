"""Notebook 07's explorer: how many experts, how many chosen, how sharp the router: load and weights."""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..moe import load_balancing_loss
from . import Explorer

MAX_EXPERTS = 64
MAX_TOP_K = 8


def token_states(tokens: int = 512, d_model: int = 64, clusters: int = 6, seed: int = 0) -> torch.Tensor:
    """Stand-in hidden states [tokens, d_model]: a few clusters, as tokens of a text have (kinds of words)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d_model, generator=gen)
    which = torch.randint(0, clusters, (tokens,), generator=gen)
    return centres[which] + 0.7 * torch.randn(tokens, d_model, generator=gen)


def route(logits: torch.Tensor, top_k: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss routing on ``logits / temperature``: top k first, then a softmax over those k."""
    top, indices = (logits / temperature).topk(top_k, dim=-1)
    return torch.softmax(top, dim=-1), indices


def routing_explorer(tokens: int = 512, d_model: int = 64, seed: int = 0) -> Explorer:
    """Route stand-in token states through a random router; show tokens per expert and the routing weights."""
    x = token_states(tokens, d_model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    router = torch.randn(MAX_EXPERTS, d_model, generator=gen) / d_model ** 0.5  # logits of about unit scale
    stats: dict[str, object] = {}

    def draw(fig: Figure, n_experts: int, top_k: int, temperature: float) -> None:
        k = min(top_k, n_experts)
        logits = x @ router[:n_experts].T
        weights, indices = route(logits, k, temperature)
        counts = torch.bincount(indices.reshape(-1), minlength=n_experts)
        fair = tokens * k / n_experts
        mean_w = weights.mean(dim=0)
        aux = float(load_balancing_loss(logits / temperature, indices, n_experts))
        stats.update(counts=counts.tolist(), imbalance=float(counts.max() / fair), idle=int((counts == 0).sum()),
                     mean_weights=mean_w.tolist(), aux_loss=aux, top_k=k)

        ax, ax2 = fig.subplots(1, 2, width_ratios=(2.2, 1))
        ax.bar(range(n_experts), counts.numpy(), color="#8aa9c9")
        ax.axhline(fair, color="k", ls="--", lw=1, label=f"balanced: {fair:.0f} each")
        ax.set_xlabel("expert")
        ax.set_ylabel("tokens routed to it")
        # On a line of its own: beside the rest, the title ran off the figure's left edge.
        capped = f"\n(top-k {top_k} capped: only {n_experts} experts)" if top_k > n_experts else ""
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # experts are whole: no tick at 0.25
        ax.set_xlim(-0.6, n_experts - 0.4)  # experts 0..n-1: no tick at n
        ax.set_title(f"{tokens} tokens, top-{k} of {n_experts}: busiest expert {stats['imbalance']:.1f}x its "
                     f"share, {stats['idle']} idle; balance loss {aux:.2f}{capped}", fontsize=9)
        ax.legend(fontsize=8)

        ax2.bar([str(r + 1) for r in range(k)], mean_w.numpy(), color="#ffb347")
        ax2.axhline(1 / k, color="k", ls=":", lw=1)
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("choice (1 = highest logit)")
        ax2.set_ylabel("mean routing weight")
        ax2.set_title(f"weights sum to 1 per token\n(dotted: 1/k = {1 / k:.3g})", fontsize=9)

    controls = {
        "n_experts": widgets.IntSlider(value=8, min=2, max=MAX_EXPERTS, description="experts"),
        "top_k": widgets.IntSlider(value=2, min=1, max=MAX_TOP_K, description="top-k"),
        "temperature": widgets.FloatSlider(value=1.0, min=0.1, max=4.0, step=0.1, description="temperature"),
    }
    explorer = Explorer("Routing: load per expert and the weights of the chosen", draw, controls, figsize=(9.0, 3.6))
    explorer.stats = stats  # the numbers behind the current picture, for tests and curious learners
    return explorer
