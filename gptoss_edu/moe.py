"""Mixture of experts, gpt-oss style: a router picks top-k experts, softmax over the chosen."""

from __future__ import annotations

import torch
from torch import nn

from . import mxfp4
from .config import ModelConfig
from .mlp import gptoss_swiglu


class Router(nn.Module):
    """Linear scores over the experts; keep the top k, then softmax over those k only."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.top_k = cfg.experts_per_token
        self.weight = nn.Parameter(torch.zeros(cfg.n_experts, cfg.d_model))
        self.bias = nn.Parameter(torch.zeros(cfg.n_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [N, E], weights [N, k], indices [N, k]) for tokens x [N, d]."""
        # Route in float32 (or float64 in a float64 model): bf16 ties would flip which experts are chosen.
        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
        return self.route(x, self.weight.to(wide), self.bias.to(wide))

    def route(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward's arithmetic with the weight and bias given already widened (static_decode widens them once)."""
        logits = nn.functional.linear(x.to(weight.dtype), weight, bias)
        top, indices = logits.topk(self.top_k, dim=-1)
        return logits, torch.softmax(top, dim=-1), indices


class Experts(nn.Module):
    """All experts' weights stacked [E, out, in]: dense, or packed in MXFP4 exactly as on disk."""

    def __init__(self, cfg: ModelConfig, packed: bool = False) -> None:
        super().__init__()
        E, d, ff = cfg.n_experts, cfg.d_model, cfg.d_ff
        self.n_experts, self.packed = E, packed
        self.alpha, self.limit = cfg.swiglu_alpha, cfg.swiglu_limit
        if packed:
            for name, rows, cols in (("gate_up_proj", 2 * ff, d), ("down_proj", d, ff)):
                if cols % mxfp4.BLOCK_SIZE:
                    raise ValueError(f"MXFP4 experts need {name}'s input size ({cols}) to be a multiple of 32")
                g = cols // mxfp4.BLOCK_SIZE
                self.register_buffer(f"{name}_blocks", torch.zeros(E, rows, g, 16, dtype=torch.uint8))
                self.register_buffer(f"{name}_scales", torch.zeros(E, rows, g, dtype=torch.uint8))
        else:
            self.gate_up_proj = nn.Parameter(torch.zeros(E, 2 * ff, d))  # rows: gate, up, gate, up, ...
            self.down_proj = nn.Parameter(torch.zeros(E, d, ff))
        self.gate_up_proj_bias = nn.Parameter(torch.zeros(E, 2 * ff))
        self.down_proj_bias = nn.Parameter(torch.zeros(E, d))
        self.backend = "torch"

    def weight(self, name: str, expert: int | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Expert ``expert``'s ``name`` weight [out, in] (for a tensor of ids, [..., out, in]), dequantized when packed."""
        if self.packed:
            return mxfp4.dequantize(getattr(self, f"{name}_blocks")[expert], getattr(self, f"{name}_scales")[expert], dtype)
        return getattr(self, name)[expert].to(dtype)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Sum over each token's chosen experts of weight * expert(x), for x [N, d]."""
        if self.backend == "triton":
            return self._forward_triton(x, indices, weights)
        # Each token's k weighted outputs are summed in float32 (float64 in a float64 model), slot by slot,
        # and rounded once, as OpenAI's reference and the Triton kernels do: in bf16 every addition rounds.
        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
        weighted = x.new_zeros(*indices.shape, x.shape[-1], dtype=wide)  # [N, k, d]
        for e in indices.unique().tolist():
            token, slot = torch.where(indices == e)
            h = gptoss_swiglu(x[token] @ self.weight("gate_up_proj", e, x.dtype).T + self.gate_up_proj_bias[e].to(x.dtype),
                              self.alpha, self.limit)
            y = h @ self.weight("down_proj", e, x.dtype).T + self.down_proj_bias[e].to(x.dtype)
            weighted[token, slot] = y.to(wide) * weights[token, slot, None].to(wide)
        return weighted.sum(dim=1).to(x.dtype)

    def _forward_triton(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            raise RuntimeError("the Triton MoE kernel reads packed MXFP4 experts: load with keep_mxfp4=True "
                               "(or call model.set_backend('torch') for dense experts)")
        from gptoss_kernels.moe import moe_mxfp4

        return moe_mxfp4(x, indices, weights, self.gate_up_proj_blocks, self.gate_up_proj_scales, self.gate_up_proj_bias,
                         self.down_proj_blocks, self.down_proj_scales, self.down_proj_bias,
                         alpha=self.alpha, limit=self.limit,
                         # Checking the indices on a GPU would wait for it in every layer of every decode step;
                         # the router's top-k never gives one out of range.
                         check_indices=not x.is_cuda)


class MoE(nn.Module):
    """Router plus experts; keeps the last routing so notebooks and training can look at it."""

    def __init__(self, cfg: ModelConfig, packed: bool = False) -> None:
        super().__init__()
        self.router = Router(cfg)
        self.experts = Experts(cfg, packed)
        self.last_logits: torch.Tensor | None = None
        self.last_indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Route each token of x [..., d] to its experts and sum their weighted outputs; keeps the routing."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits, weights, indices = self.router(flat)
        self.last_logits, self.last_indices = logits, indices
        return self.experts(flat, indices, weights).reshape(shape)


def load_balancing_loss(logits: torch.Tensor, indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch-style auxiliary loss: E * sum_e (share of the N*k routing choices sent to e) * (mean router prob of e)."""
    # [B, T, E] logits would average over the wrong axis and give a wrong number, not an error.
    if logits.dim() != 2 or logits.shape[-1] != n_experts or indices.dim() != 2 or indices.shape[0] != logits.shape[0]:
        raise ValueError(f"logits must be [N, E={n_experts}] and indices [N, k], got {tuple(logits.shape)} and "
                         f"{tuple(indices.shape)} (flatten the tokens first: logits.reshape(-1, {n_experts}))")
    probs = torch.softmax(logits.float(), dim=-1)
    # Experts out of range, told from bincount itself (no extra read of the indices back from a GPU at
    # every MoE layer of every step): a negative one it refuses, a large one makes its result longer.
    try:
        counts = torch.bincount(indices.reshape(-1), minlength=n_experts)
    except RuntimeError:
        counts = None
    if counts is None or counts.numel() != n_experts:
        raise ValueError(f"indices must be experts 0..{n_experts - 1}; some are outside that range")
    share = counts / indices.numel()
    return n_experts * (share * probs.mean(dim=0)).sum()
