"""Rotary position embeddings (RoPE) and YaRN's NTK-by-parts scaling."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig, yarn_correction_range


def rope_inv_freq(head_dim: int, base: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plain RoPE's angular frequencies theta_i = base^(-2i/head_dim) (transformers' inv_freq), one per pair of dims."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=dtype) / head_dim))


def yarn_inv_freq(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, float]:
    """YaRN frequencies and attention factor: interpolate slow dims by the factor, keep fast ones."""
    factor = cfg.rope_scaling_factor
    # 1 / theta_i, positions per radian (the wavelength over 2 pi), as transformers computes it
    per_radian = cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=dtype) / cfg.head_dim)
    low, high = yarn_correction_range(cfg)
    if low == high:  # avoid a zero-width ramp
        high += 1e-3
    dims = torch.arange(cfg.head_dim // 2, dtype=dtype)
    ramp = ((dims - low) / (high - low)).clamp(0, 1)  # 0 below low (fast dims), 1 above high
    keep = 1 - ramp  # share of the original (extrapolated) frequency
    # transformers' order of operations, kept as it is: (1 - keep) is not always ramp to the last bit,
    # and notebook 09 checks these frequencies against transformers' bit for bit.
    inv_freq = 1.0 / (factor * per_radian) * (1 - keep) + 1.0 / per_radian * keep
    attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, attention_factor


class Rotary(nn.Module):
    """Makes the cos and sin tables for positions; plain RoPE or YaRN, by the config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        wide = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # as in _apply
        inv_freq, self.attention_factor = self.frequencies(wide)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def frequencies(self, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
        """The config's inverse frequencies computed in ``dtype``, and YaRN's attention factor (1 for RoPE)."""
        if self.config.positions == "yarn":
            return yarn_inv_freq(self.config, dtype)
        return rope_inv_freq(self.config.head_dim, self.config.rope_theta, dtype), 1.0

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        # model.to(torch.bfloat16) would round the frequencies to 8 bits, and far positions' angles
        # with them; like transformers, keep them float32 and let only the device follow. A float64
        # model (a reference) gets them, and its angles, in float64: float32 angles are 1e-3 off at 131k.
        super()._apply(fn, recurse)
        wide = torch.float64 if self.inv_freq.dtype == torch.float64 else torch.float32
        if not self.inv_freq.is_meta:  # computed again, not cast: float64 -> float32 would round them otherwise
            self.inv_freq = self.frequencies(wide)[0].to(self.inv_freq.device)
        return self

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [T, D/2] (D: head_dim) for integer ``positions`` [T] (YaRN's attention factor folded in)."""
        inv_freq = self.inv_freq.to(positions.device)
        angles = positions.to(inv_freq.dtype)[:, None] * inv_freq[None, :]
        return (angles.cos() * self.attention_factor).to(dtype), (angles.sin() * self.attention_factor).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[i], x[i + D/2]) of ``x`` [..., T, D] (D: head_dim) by the angles behind cos/sin [T, D/2]."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
