"""Normalisation layers: GPT-2's LayerNorm and gpt-oss's RMSNorm."""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm with a learned scale and shift: centre, divide by the std, scale, shift."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm: divide by the root mean square (no centring, no shift), computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.backend = "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "triton":
            from gptoss_kernels.rmsnorm import rmsnorm

            return rmsnorm(x, self.weight, self.eps)
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight, in float32 (float64 stays float64), cast back to x's dtype."""
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(wide)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.to(wide) * xf).to(x.dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """The norm named by a config: 'layernorm' or 'rmsnorm'."""
    return LayerNorm(dim, eps) if kind == "layernorm" else RMSNorm(dim, eps)
