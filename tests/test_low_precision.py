"""The model's float32 islands (RoPE tables, RMSNorm, the router) in a bf16 or fp16 model.

The parity tests run in float32, where "compute this part in float32" is a no-op; on a GPU the
course runs in bf16, where it is not. Each test here compares against an independent reference evaluated in float32 on the same low-precision
inputs, then rounded once to the output dtype.
"""

from __future__ import annotations

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.moe import Router
from gptoss_edu.norms import rms_norm
from gptoss_edu.rotary import Rotary


# ---- RoPE / YaRN tables ----------------------------------------------------------------------

def _reference_tables(cfg: g.ModelConfig, positions: torch.Tensor, dtype: torch.dtype):
    """cos, sin [T, d/2] from transformers' own rope initialisation, computed in float32, rounded once."""
    from transformers import GptOssConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = cfg.to_hf_config()
    hf.pop("quantization_config")
    hf_cfg = GptOssConfig(**hf)
    kind = "yarn" if cfg.positions == "yarn" else "default"
    if kind == "yarn":
        inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](hf_cfg, "cpu")
    else:
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
        factor = 1.0
    angles = positions.double()[:, None] * inv_freq.double()[None, :]
    return (angles.cos() * factor).to(dtype), (angles.sin() * factor).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", [
    g.preset("gpt-oss-tiny"),                                        # YaRN, factor 16
    g.preset("gpt-oss-20b").replace(context_length=8192),            # the real frequencies
    g.preset("gpt-oss-tiny").replace(positions="rope"),              # plain RoPE
], ids=["tiny-yarn", "20b-yarn", "tiny-rope"])
def test_rope_tables_of_a_low_precision_model_are_the_float32_tables_rounded(cfg, dtype):
    """Positions past 256 are not exact in bf16: angles must be made in float32 before the cast."""
    rotary = Rotary(cfg).to(dtype)  # as inside a model cast with .to(dtype)
    for positions in (torch.arange(0, 64), torch.arange(1000, 1040), torch.arange(cfg.context_length - 40, cfg.context_length)):
        cos, sin = rotary(positions, dtype)
        want_cos, want_sin = _reference_tables(cfg, positions, dtype)
        assert cos.dtype == sin.dtype == dtype
        # One rounding of a value of magnitude <= 1.35: at most one bf16 ulp (2**-7), plus float32 noise in the angle.
        tol = 2 ** -6 if dtype == torch.bfloat16 else 2 ** -9
        torch.testing.assert_close(cos.float(), want_cos.float(), atol=tol, rtol=0)
        torch.testing.assert_close(sin.float(), want_sin.float(), atol=tol, rtol=0)


# ---- RMSNorm ---------------------------------------------------------------------------------

def _reference_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """OpenAI's reference RMSNorm (gpt_oss.torch.model.RMSNorm): float32 inside, one cast at the end."""
    from gpt_oss.torch.model import RMSNorm as RefRMSNorm

    ref = RefRMSNorm(x.shape[-1], eps=eps)
    with torch.no_grad():
        ref.scale.copy_(weight.float())
        return ref(x)


@pytest.mark.parametrize("scale", [1e-4, 1e-3, 1e-2, 1.0, 100.0])
@pytest.mark.parametrize("dim", [32, 64, 2880])
def test_rmsnorm_matches_the_reference_at_every_scale(scale, dim):
    """eps belongs inside the square root: at small activations it dominates, and then it shows."""
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(3, 7, dim, generator=gen) * scale
    w = 1 + 0.1 * torch.randn(dim, generator=gen)
    torch.testing.assert_close(rms_norm(x, w, 1e-5), _reference_rmsnorm(x, w, 1e-5), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype,scale", [(torch.bfloat16, 1.0), (torch.bfloat16, 50.0), (torch.float16, 1.0),
                                         (torch.float16, 400.0)])
def test_rmsnorm_of_low_precision_inputs_is_computed_in_float32(dtype, scale):
    """x**2 of an fp16 activation of 400 is 160000, past fp16's 65504: the mean must be taken in float32.
    In bf16 the result must be the float32 result rounded once (what the reference and transformers give)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 9, 256, generator=gen) * scale).to(dtype)
    w = (1 + 0.1 * torch.randn(256, generator=gen)).to(dtype)
    got, want = rms_norm(x, w, 1e-5), _reference_rmsnorm(x, w, 1e-5)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=0, rtol=0)


# ---- the router --------------------------------------------------------------------------------

@pytest.mark.parametrize("n_experts,k,d", [(32, 4, 64), (8, 2, 96), (128, 4, 128)])
def test_router_of_a_bf16_model_routes_in_float32(n_experts, k, d):
    """The router's comment (and SPEC section 6): route in float32, or bf16 rounding flips near-ties."""
    cfg = g.preset("gpt-oss-tiny").replace(d_model=d, n_experts=n_experts, experts_per_token=k)
    router = Router(cfg)
    gen = torch.Generator().manual_seed(n_experts)
    with torch.no_grad():
        router.weight.copy_(torch.randn(n_experts, d, generator=gen) * 0.1)
        router.bias.copy_(torch.randn(n_experts, generator=gen) * 0.1)
    router = router.to(torch.bfloat16)
    x = torch.randn(4096, d, generator=gen).to(torch.bfloat16)
    logits, weights, indices = router(x)
    # From scratch: the same bf16 numbers, multiplied and summed in float64.
    want_logits = x.double() @ router.weight.double().T + router.bias.double()
    want_top, want_idx = want_logits.topk(k, dim=-1)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits.double(), want_logits, atol=1e-5, rtol=0)
    assert torch.equal(indices, want_idx)
    torch.testing.assert_close(weights.double(), torch.softmax(want_top, dim=-1), atol=1e-5, rtol=0)
