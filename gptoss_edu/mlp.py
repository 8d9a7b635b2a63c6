"""Feed-forward layers: GPT-2's GELU MLP, SwiGLU, and gpt-oss's clamped SwiGLU."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


class GeluMLP(nn.Module):
    """GPT-2's MLP (its c_fc, c_proj are fc_in, fc_out): widen to d_ff, GELU (tanh by default), narrow back."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc_in = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.fc_out = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)
        self.approximate = cfg.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(nn.functional.gelu(self.fc_in(x), approximate=self.approximate))


class SwiGLU(nn.Module):
    """SwiGLU as in LLaMA: silu(gate) * up, then narrow back."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def gptoss_swiglu(gate_up: torch.Tensor, alpha: float = 1.702, limit: float = 7.0) -> torch.Tensor:
    """gpt-oss's gate: interleaved gate/up, clamped, (up + 1) * gate * sigmoid(alpha * gate)."""
    gate, up = gate_up[..., 0::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)  # no lower clamp: a very negative gate is switched off anyway
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(alpha * gate))


class GptOssSwiGLU(nn.Module):
    """One dense gpt-oss SwiGLU: a single d -> 2*d_ff projection with gate and up interleaved."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)
        self.alpha, self.limit = cfg.swiglu_alpha, cfg.swiglu_limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(gptoss_swiglu(self.gate_up_proj(x), self.alpha, self.limit))


def make_mlp(cfg: ModelConfig) -> nn.Module:
    """The dense feed-forward layer a config names."""
    return {"gelu": GeluMLP, "swiglu": SwiGLU, "gptoss_swiglu": GptOssSwiGLU}[cfg.mlp](cfg)
