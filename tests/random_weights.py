"""Small random models with unit-scale outputs, shared by the parity and checkpoint tests."""

from __future__ import annotations

import torch

import gptoss_edu as g


@torch.no_grad()
def randomize(model: g.GPT, seed: int = 0, std: float = 0.08) -> g.GPT:
    """Give every weight, bias, sink and norm scale fresh random values (norm scales near 1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if "norm" in name:
            p.copy_(1 + 0.1 * noise)
        elif "sinks" in name:
            p.copy_(noise)  # sinks N(0, 1), as in the spec's cross-check
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        else:
            p.copy_(std * noise * (4 if "embed" in name else 1))
    return model.eval()
