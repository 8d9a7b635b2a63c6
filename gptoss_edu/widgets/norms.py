"""Notebook 03's explorer: LayerNorm and RMSNorm on the same vector as its mean and scale change."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F

from ..norms import rms_norm
from . import Explorer


def both_norms(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """LayerNorm and RMSNorm of ``x`` [d] with unit scale and no shift."""
    ones = torch.ones(x.shape[-1], dtype=x.dtype)
    return F.layer_norm(x, x.shape[-1:], ones, torch.zeros_like(ones), eps), rms_norm(x, ones, eps)


def norm_explorer(dim: int = 16, seed: int = 0) -> Explorer:
    """Sliders over the input's mean offset, its scale and eps; bars of the input and both outputs."""
    if dim < 2:
        raise ValueError(f"a norm over fewer than 2 values says nothing; got dim={dim}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(dim, generator=gen, dtype=torch.float64)
    z = (z - z.mean()) / z.std(correction=0)  # a centred, unit-variance pattern: what the input "says"

    def draw(fig: Figure, mean: float, scale: float, eps: float) -> None:
        x = scale * z + mean
        ln, rms = both_norms(x, eps)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
        idx = np.arange(dim)
        left.bar(idx, x.numpy(), color="#888")
        left.axhline(mean, color="#d62728", lw=1, ls="--", label=f"mean {mean:+.3g}")
        left.set_title(f"input x = {scale:.3g} * pattern {'-' if mean < 0 else '+'} {abs(mean):.3g}\n"
                       f"rms {x.pow(2).mean().sqrt().item():.3g}", fontsize=9)
        left.set_xlabel("dimension")
        left.set_ylabel("value")
        left.set_xticks(range(0, dim, max(1, dim // 8)))
        left.legend(fontsize=8, loc="best")
        right.bar(idx - 0.2, ln.numpy(), width=0.4, color="#1f77b4", label="LayerNorm")
        right.bar(idx + 0.2, rms.numpy(), width=0.4, color="#ff7f0e", label="RMSNorm")
        right.set_ylim(-3.5, 3.5)
        right.axhline(0, color="#ccc", lw=0.5)
        # Both outputs are (pattern * a + b): how much of the input's pattern is left is the std.
        right.set_title(f"outputs; the pattern left in them (std): LayerNorm {ln.std(correction=0).item():.2f}, "
                        f"RMSNorm {rms.std(correction=0).item():.2f}", fontsize=9)
        right.set_xlabel("dimension")
        right.set_xticks(range(0, dim, max(1, dim // 8)))
        right.set_ylabel("normalised value")
        right.legend(fontsize=8, loc="lower right")

    return Explorer(
        "LayerNorm vs RMSNorm",
        draw,
        {
            "mean": widgets.FloatSlider(value=0.0, min=-10.0, max=10.0, step=0.25, description="mean offset"),
            "scale": widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=2, step=0.1, description="scale"),
            "eps": widgets.FloatLogSlider(value=1e-5, base=10, min=-8, max=0, step=0.5, description="eps"),
        },
        figsize=(9.0, 3.6),
    )
