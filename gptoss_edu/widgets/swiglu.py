"""Notebook 04's explorer: gpt-oss's clamped SwiGLU as alpha and the limit move."""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator
from matplotlib.figure import Figure

from ..mlp import gptoss_swiglu
from . import Explorer

# The range both panels show: wide enough that the default limit (7) clamps visibly.
SPAN = 10.0


def interleave(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """One gate_up tensor from its two halves, gpt-oss style: gate at even, up at odd positions."""
    return torch.stack((gate, up), dim=-1).flatten(-2)


def gate_curve(x: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """The gate half of gpt-oss's SwiGLU on its own: g * sigmoid(alpha * g) with g = min(x, limit)."""
    g = x.clamp(max=limit)
    return g * torch.sigmoid(alpha * g)


def draw_swiglu(fig: Figure, alpha: float, limit: float) -> None:
    """Left: the gate's curve beside GELU and SiLU; right: the output over (gate, up)."""
    left, right = fig.subplots(1, 2)
    x = torch.linspace(-SPAN, SPAN, 401)
    curves = {"GELU": torch.nn.functional.gelu(x), "SiLU": torch.nn.functional.silu(x),
              "gate": gate_curve(x, alpha, limit)}
    x, curves = x.numpy(), {k: v.numpy() for k, v in curves.items()}
    left.plot(x, curves["GELU"], ":", color="grey", label="GELU")
    left.plot(x, curves["SiLU"], "--", color="tab:green", label="SiLU (alpha 1)")
    left.plot(x, curves["gate"], color="tab:orange", lw=2, label=f"gate, alpha {alpha:g}")
    left.axvline(limit, color="tab:red", lw=0.8, ls="--")
    left.text(limit, left.get_ylim()[0], f" limit {limit:g}", color="tab:red", fontsize=8, va="bottom")
    left.set(title="the gate: g' * sigmoid(alpha * g'), g' = min(g, limit)", xlabel="gate pre-activation g",
             ylabel="value")
    left.title.set_fontsize(9)
    left.legend(fontsize=7, loc="upper left")

    # Not linspace: its bits depend on the CPU's kernels (-0.99999988 or -1), and so did the zero line drawn here.
    g = torch.arange(-100, 101) * SPAN / 100
    gate, up = torch.meshgrid(g, g, indexing="xy")  # x axis: gate, y axis: up
    out = gptoss_swiglu(interleave(gate, up), alpha, limit).numpy()
    gate, up = gate.numpy(), up.numpy()
    lo, hi = float(out.min()), float(out.max())
    # One scale both ways: a colour as deep as +5 means -5, so the smaller negative lobe looks smaller.
    reach = max(-lo, hi, 1e-3)
    norm = Normalize(vmin=-reach, vmax=reach)
    im = right.imshow(out, origin="lower", extent=(-SPAN, SPAN, -SPAN, SPAN), cmap="RdBu_r", norm=norm,
                      aspect="auto")
    # The output is 0 exactly where the gate is 0 and where up = -1 (at limit 1, wherever up <= -1): drawn as
    # lines, not contoured out of rounding noise.
    levels = [v for v in MaxNLocator(8).tick_values(lo, hi) if lo < v < hi and v != 0]
    if levels:
        right.contour(gate, up, out, levels=levels, colors="k", linewidths=0.4)
    if limit >= 1:  # a lower limit clamps up = -1 to -limit, and (up + 1) is never 0
        right.axhline(-1.0, color="k", lw=0.4)
    right.axvline(0.0, color="k", lw=0.4)
    for v in (limit, -limit):
        right.axhline(v, color="tab:red", lw=0.8, ls="--")
    right.axvline(limit, color="tab:red", lw=0.8, ls="--")
    right.set(title=f"output (up + 1) * gate, max {hi:.3g}", xlabel="gate pre-activation",
              ylabel="up pre-activation")
    right.title.set_fontsize(9)
    fig.colorbar(im, ax=right, shrink=0.85, label="output")


def swiglu_explorer(alpha: float = 1.702, limit: float = 7.0) -> Explorer:
    """Sliders over alpha and the clamp limit, redrawing the gate's curve and the output map."""
    style = {"description_width": "initial"}
    controls = {
        "alpha": widgets.FloatSlider(value=alpha, min=0.25, max=4.0, step=0.001, description="alpha",
                                     readout_format=".3f", style=style),
        "limit": widgets.FloatSlider(value=limit, min=0.5, max=SPAN, step=0.5, description="limit",
                                     style=style),
    }
    return Explorer("gpt-oss SwiGLU: alpha and limit", draw_swiglu, controls, figsize=(9.0, 3.8),
                    asked={"alpha": alpha, "limit": limit})
