"""Notebook 09's explorer: YaRN's frequencies and wavelengths per dim pair as the scaling factor moves."""

from __future__ import annotations

import math

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..config import ModelConfig, preset, yarn_correction_range
from ..rotary import rope_inv_freq, yarn_inv_freq
from . import Explorer, few_minor_ticks


def yarn_config(factor: float, truncate: bool = False, beta_fast: float = 32.0,
                base: ModelConfig | None = None) -> ModelConfig:
    """gpt-oss-20b's RoPE (or ``base``'s) with YaRN at ``factor`` over the same original context."""
    cfg = base or preset("gpt-oss-20b")
    return cfg.replace(positions="yarn", rope_scaling_factor=float(factor), rope_truncate=truncate,
                       rope_beta_fast=float(beta_fast),
                       context_length=int(cfg.rope_original_context * factor))


def yarn_explorer(base: ModelConfig | None = None) -> Explorer:
    """Plain RoPE vs YaRN frequencies (left) and wavelengths against the context (right)."""
    stats: dict[str, float] = {}

    def draw(fig: Figure, factor: float, beta_fast: float, truncate: bool) -> None:
        cfg = yarn_config(factor, truncate, beta_fast, base)
        plain = rope_inv_freq(cfg.head_dim, cfg.rope_theta)
        yarn, attention_factor = yarn_inv_freq(cfg)
        low, high = yarn_correction_range(cfg)
        pairs = torch.arange(cfg.head_dim // 2)
        L = cfg.rope_original_context
        stats.update(low=low, high=high, attention_factor=attention_factor,
                     # isclose: the ramp's blend of two equal frequencies may round off by a bit.
                     kept=int(torch.isclose(yarn, plain).sum()),
                     # At factor 1 nothing is divided: every pair is kept, none interpolated.
                     interpolated=int(torch.isclose(yarn, plain / factor).sum()) if factor > 1 else 0,
                     longest_wavelength=float(2 * math.pi / yarn.min()))

        ax, ax2 = fig.subplots(1, 2)
        for a in (ax, ax2):
            if factor > 1:  # at factor 1 both ends of the ramp are the same frequency: there is no ramp
                a.axvspan(low, high, color="#ffb347", alpha=0.3, lw=0, label="ramp (NTK-by-parts)")
            a.set_yscale("log")
            a.yaxis.set_minor_locator(few_minor_ticks())
            a.set_xlabel("dim pair i")
        ax.plot(pairs, plain.numpy(), "o-", ms=3, label="plain RoPE")
        ax.plot(pairs, yarn.numpy(), "s-", ms=3, label=f"YaRN x{factor:g}")
        ax.set_ylabel("angular frequency (radians per position)")
        ax.set_title(f"correction range {low:.2f} .. {high:.2f}; cos, sin x {attention_factor:.3f}" if factor > 1
                     else f"factor 1: no ramp; cos, sin x {attention_factor:.3f}", fontsize=9)
        ax.legend(fontsize=7)

        ax2.plot(pairs, (2 * math.pi / plain).numpy(), "o-", ms=3, label="plain RoPE")
        ax2.plot(pairs, (2 * math.pi / yarn).numpy(), "s-", ms=3, label=f"YaRN x{factor:g}")
        ax2.axhline(L, color="k", ls="--", lw=1, label=f"original context {L:,}")
        ax2.axhline(L * factor, color="#c44e52", ls=":", lw=1, label=f"extended context {int(L * factor):,}")
        ax2.set_ylabel("wavelength (positions per turn)")
        ax2.set_title(f"{stats['kept']} pairs kept, {stats['interpolated']} divided by {factor:g}" if factor > 1
                      else f"factor 1: all {stats['kept']} pairs kept, YaRN is plain RoPE", fontsize=9)
        ax2.legend(fontsize=7)

    controls = {
        "factor": widgets.FloatLogSlider(value=32.0, base=2, min=0, max=7, step=0.5, description="factor"),
        "beta_fast": widgets.FloatSlider(value=32.0, min=4.0, max=64.0, step=4.0, description="beta_fast"),
        "truncate": widgets.Checkbox(value=False, description="truncate"),
    }
    explorer = Explorer("YaRN: which dims are stretched, and by how much", draw, controls, figsize=(9.5, 3.8))
    explorer.stats = stats  # the numbers behind the current picture, for tests and curious learners
    return explorer
