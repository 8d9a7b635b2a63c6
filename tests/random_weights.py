"""Shared by the parity and checkpoint tests: small random models with unit-scale outputs, and
transformers' reading of a gpt-oss checkpoint to compare them with."""

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


def transformers_gptoss(path) -> torch.nn.Module:
    """transformers' GptOssForCausalLM of an MXFP4 checkpoint folder, experts dequantized, all float32."""
    from transformers import GptOssForCausalLM, Mxfp4Config

    model = GptOssForCausalLM.from_pretrained(path, quantization_config=Mxfp4Config(dequantize=True),
                                              dtype=torch.float32)
    # .float(): transformers 5.17 dequantizes the experts to bf16 whatever dtype asks for (5.23: float32).
    return model.float().eval()
