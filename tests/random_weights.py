"""Shared by the parity and checkpoint tests: small random models with unit-scale outputs, and
transformers' reading of a gpt-oss checkpoint to compare them with."""

from __future__ import annotations

import torch

import gptoss_edu as g


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.08) -> torch.nn.Module:
    """Give every weight, bias, sink and norm scale fresh random values (norm scales near 1).

    Ours or transformers' GPT-2 (ln_1, ln_f; wte, wpe): its own initialisation (std 0.02) leaves
    activations so small that GELU's two forms, say, give the same logits to 1e-4.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        leaf = name.rsplit(".", 2)[-2] if "." in name else name
        if "norm" in name or leaf.startswith("ln_"):
            p.copy_(1 + 0.1 * noise)
        elif "sinks" in name:
            p.copy_(noise)  # sinks N(0, 1), as in the spec's cross-check
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        else:
            p.copy_(std * noise * (4 if "embed" in name or leaf in ("wte", "wpe") else 1))
    return model.eval()


def transformers_gptoss(path) -> torch.nn.Module:
    """transformers' GptOssForCausalLM of an MXFP4 checkpoint folder, experts dequantized, all float32."""
    from transformers import GptOssForCausalLM, Mxfp4Config

    model = GptOssForCausalLM.from_pretrained(path, quantization_config=Mxfp4Config(dequantize=True),
                                              dtype=torch.float32)
    # .float(): transformers 5.17 dequantizes the experts to bf16 whatever dtype asks for (5.23: float32).
    return model.float().eval()
