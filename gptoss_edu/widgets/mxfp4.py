"""Notebook 08's explorer: one block of 32 weights, its shared scale, and where each value lands."""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from .. import mxfp4
from . import Explorer

SHIFTS = range(-3, 4)


def sample_weight(rows: int = 8, cols: int = 256, std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """A weight-like matrix: heavy-tailed (Student-t, 5 degrees of freedom) around zero, std about ``std``."""
    gen = torch.Generator().manual_seed(seed)
    # Student-t as normal / sqrt(chi2 / df), drawn from one generator so the result is reproducible.
    df = 5
    z = torch.randn(rows, cols, generator=gen)
    chi2 = torch.randn(rows, cols, df, generator=gen).pow(2).sum(-1)
    t = z / (chi2 / df).sqrt()
    return t * std / (df / (df - 2)) ** 0.5


def quantize_with_scale(x: torch.Tensor, scale_code: int) -> torch.Tensor:
    """Each value of ``x`` moved to the nearest point of the grid FP4_VALUES * 2**(scale_code - 127)."""
    step = 2.0 ** (scale_code - mxfp4.SCALE_BIAS)
    # The package's rounding (ties to an even code, as the checkpoint's bytes were made), saturating at 6.
    codes = mxfp4.round_to_e2m1((x.double() / step).clamp(-mxfp4.FP4_MAX, mxfp4.FP4_MAX))
    return (mxfp4.fp4_lut(torch.float64)[codes.long()] * step).to(x.dtype)


def block_error(x: torch.Tensor, scale_code: int) -> float:
    """Relative RMS error of the values ``x`` stored with scale code ``scale_code`` (the explorer's bars)."""
    size = float(x.pow(2).mean().sqrt())
    error = float((quantize_with_scale(x, scale_code) - x).pow(2).mean().sqrt())
    return error / size if size else 0.0  # an all-zero block is stored exactly


def block_explorer(weight: torch.Tensor | None = None) -> Explorer:
    """Pick a block of ``weight`` (default: :func:`sample_weight`), move its scale, inflate its largest value."""
    w = sample_weight() if weight is None else weight.detach().float()
    if w.dim() == 0 or w.shape[-1] % mxfp4.BLOCK_SIZE:
        raise ValueError(f"the weight's last dimension must be a multiple of {mxfp4.BLOCK_SIZE} (MXFP4's blocks run "
                         f"along it), got shape {tuple(w.shape)}")
    blocks = w.reshape(-1, mxfp4.BLOCK_SIZE)
    stats: dict[str, float] = {}

    def draw(fig: Figure, block: int, scale_shift: int, outlier: float) -> None:
        x = blocks[block].clone()
        big = int(x.abs().argmax())
        x[big] *= outlier
        _, scales = mxfp4.quantize(x[None])
        best = int(scales[0, 0])
        code = min(max(best + scale_shift, 0), 254)
        q = quantize_with_scale(x, code)
        step = 2.0 ** (code - mxfp4.SCALE_BIAS)
        stats.update(scale_code=code, chosen_code=best, rms_error=block_error(x, code),
                     saturated=int((x.abs() > mxfp4.FP4_MAX * step).sum()), zeros=int((q == 0).sum()))

        ax, ax2 = fig.subplots(1, 2, width_ratios=(2.2, 1))
        for v in sorted(set(mxfp4.FP4_VALUES)):
            ax.axhline(v * step, color="#bbb", lw=0.7, zorder=0)
        ax.plot(x.numpy(), "o", ms=4, label="weight")
        ax.plot(q.numpy(), "x", ms=6, color="#d62728", label="MXFP4 value")
        ax.vlines(range(32), x.numpy(), q.numpy(), color="#d62728", lw=0.8)
        ax.set_xlabel("position in the block (0..31)")
        ax.set_ylabel("value")
        ax.set_title(f"block {block}: scale code {code} = 2^{code - mxfp4.SCALE_BIAS}; grey lines: the grid (16 codes, 15 values: +0 = -0)",
                     fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)  # below: never on a value

        errs = [block_error(x, min(max(best + s, 0), 254)) for s in SHIFTS]
        colours = ["#ffb347" if s == scale_shift else "#8aa9c9" for s in SHIFTS]
        ax2.bar([str(s) for s in SHIFTS], errs, color=colours)
        ax2.set_xlabel("scale shift from the chosen one")
        ax2.set_ylabel("relative RMS error of the block")
        ax2.set_title("smaller scale: saturates\nlarger: coarser steps", fontsize=9)

    controls = {
        "block": widgets.IntSlider(value=0, min=0, max=blocks.shape[0] - 1, description="block"),
        "scale_shift": widgets.IntSlider(value=0, min=SHIFTS[0], max=SHIFTS[-1], description="scale shift"),
        "outlier": widgets.FloatSlider(value=1.0, min=1.0, max=16.0, step=0.5, description="outlier x"),
    }
    explorer = Explorer("MXFP4: one block of 32 values and its shared scale", draw, controls, figsize=(9.0, 3.8))
    explorer.stats = stats  # the numbers behind the current picture, for tests and curious learners
    return explorer
