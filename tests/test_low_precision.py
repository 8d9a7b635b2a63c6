"""A bf16 or fp16 model, where the parity tests' float32 hides what is rounded where.

The parity tests run in float32, where "compute this part in float32" is a no-op; on a GPU the
course runs in bf16, where it is not. Each test compares with a reference on the same low-precision
inputs: transformers' RoPE tables and OpenAI's RMSNorm and attention, bit for bit; the experts' sum
against float64, rounded once. The router is the one deliberate difference: OpenAI's reference and
transformers route in bf16, and the course in float32 (SPEC section 6: bf16 ties flip the choice).
"""

from __future__ import annotations

import math

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.attention import attend
from gptoss_edu.moe import Experts, Router
from gptoss_edu.norms import rms_norm
from gptoss_edu.rotary import Rotary


# ---- RoPE / YaRN tables ----------------------------------------------------------------------

def _reference_tables(cfg: g.ModelConfig, positions: torch.Tensor, dtype: torch.dtype):
    """cos, sin [T, d/2] from transformers' GptOssRotaryEmbedding: float32 angles, scaled, rounded once to dtype."""
    from transformers import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    hf = cfg.to_hf_config()
    hf.pop("quantization_config")
    cos, sin = GptOssRotaryEmbedding(GptOssConfig(**hf))(torch.zeros(1, dtype=dtype), positions[None])
    return cos[0], sin[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", [
    g.preset("gpt-oss-tiny"),                                        # YaRN, factor 16
    g.preset("gpt-oss-20b").replace(context_length=8192),            # the real frequencies
    g.preset("gpt-oss-tiny").replace(positions="rope"),              # plain RoPE
], ids=["tiny-yarn", "20b-yarn", "tiny-rope"])
def test_rope_tables_of_a_low_precision_model_are_transformers_bit_for_bit(cfg, dtype):
    """Positions past 256 are not exact in bf16: angles are made in float32, scaled there, and rounded once."""
    rotary = Rotary(cfg).to(dtype)  # as inside a model cast with .to(dtype)
    for positions in (torch.arange(0, 64), torch.arange(1000, 1040), torch.arange(cfg.context_length - 40, cfg.context_length)):
        cos, sin = rotary(positions, dtype)
        want_cos, want_sin = _reference_tables(cfg, positions, dtype)
        assert cos.dtype == sin.dtype == dtype
        torch.testing.assert_close(cos, want_cos, atol=0, rtol=0)
        torch.testing.assert_close(sin, want_sin, atol=0, rtol=0)


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
    """Route in float32 (SPEC section 6; OpenAI's reference and transformers route in bf16): bf16 flips near-ties."""
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
    # The same experts with the same weights; two logits equal in float32 may come out in either order.
    order, want_order = indices.argsort(dim=-1), want_idx.argsort(dim=-1)
    assert torch.equal(indices.gather(-1, order), want_idx.gather(-1, want_order))
    torch.testing.assert_close(weights.gather(-1, order).double(),
                               torch.softmax(want_top, dim=-1).gather(-1, want_order), atol=1e-5, rtol=0)


# ---- attention and the experts' sum ------------------------------------------------------------

@pytest.mark.parametrize("head_dim, T, window", [(64, 40, 0), (64, 300, 16), (32, 100, 8), (12, 70, 0)])
def test_attention_of_a_bf16_model_is_openais_bit_for_bit(head_dim, T, window):
    """Scores scaled in bf16 and a softmax over the bf16 row with its sink, as gpt_oss.torch.model.sdpa does."""
    from gpt_oss.torch.model import sdpa

    Hq, Hkv = 8, 2
    gen = torch.Generator().manual_seed(head_dim * T + window)
    q, k, v = (torch.randn(1, h, T, head_dim, generator=gen).mul(2).bfloat16() for h in (Hq, Hkv, Hkv))
    sinks = torch.randn(Hq, generator=gen).bfloat16()
    scale = 1 / head_dim ** 0.5  # OpenAI's sm_scale; not a power of two at 32 or 12
    ours = attend(q, k, v, scale=scale, window=window, sinks=sinks)  # [1, Hq, T, D]
    theirs = sdpa(q[0].transpose(0, 1).reshape(T, Hkv, Hq // Hkv, head_dim), k[0].transpose(0, 1),
                  v[0].transpose(0, 1), sinks, scale, window)  # [T, Hq * D]
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours[0].transpose(0, 1).reshape(T, -1), theirs, atol=0, rtol=0)


def bf16_experts(cfg: g.ModelConfig, gen: torch.Generator) -> Experts:
    """cfg's experts with random weights of size 0.3 drawn from ``gen``, in bfloat16."""
    experts = Experts(cfg)
    with torch.no_grad():
        for p in experts.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return experts.to(torch.bfloat16)


@pytest.mark.parametrize("n_experts, k", [(8, 2), (32, 4)])
def test_the_experts_outputs_of_a_bf16_model_are_summed_then_rounded_once(n_experts, k):
    """Each token's k weighted expert outputs, summed in float32 and rounded once: not k roundings in bf16."""
    cfg = g.preset("gpt-oss-tiny").replace(d_model=64, d_ff=64, n_experts=n_experts, experts_per_token=k)
    gen = torch.Generator().manual_seed(n_experts)
    experts = bf16_experts(cfg, gen)
    x = torch.randn(512, 64, generator=gen).bfloat16()
    indices = torch.rand(512, n_experts, generator=gen).topk(k, dim=-1).indices
    weights = torch.softmax(torch.randn(512, k, generator=gen), dim=-1)  # float32, as the router gives them
    got = experts(x, indices, weights)
    # From the same bf16 expert outputs: the weighted sum in float64, then one rounding.
    each = torch.stack([experts(x, indices[:, j:j + 1], torch.ones(512, 1)) for j in range(k)], dim=1)  # [N, k, d]
    exact = (each.double() * weights.double()[..., None]).sum(dim=1)
    ulp = torch.finfo(torch.bfloat16).eps * exact.abs().clamp(min=2.0 ** -126).log2().floor().exp2()
    assert got.dtype == torch.bfloat16
    # Plus float32's own roundings of the k products and their sum (each at most 2^-24 of the terms' size):
    # where the terms nearly cancel, those exceed half a bf16 step of the small result.
    float32_error = 2 * k * 2.0 ** -24 * (each.double() * weights.double()[..., None]).abs().sum(dim=1)
    assert ((got.double() - exact).abs() <= ulp / 2 * (1 + 2.0 ** -10) + float32_error).all()  # rounded once


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_bf16_expert_is_openai_s_reference_bit_for_bit(seed):
    """Inside an expert everything is bfloat16, as in OpenAI's reference MLPBlock: matmuls, biases and the
    clamped SwiGLU (gpt_oss.torch.model.swiglu); a SwiGLU computed in float32 and rounded back changed 78% of
    the outputs, and the test of the summed outputs above, made from the module's own, could not see it."""
    from gpt_oss.torch.model import swiglu

    cfg = g.preset("gpt-oss-tiny").replace(d_model=64, d_ff=96, n_experts=4, experts_per_token=1)
    gen = torch.Generator().manual_seed(seed)
    experts = bf16_experts(cfg, gen)
    x = torch.randn(64, 64, generator=gen).bfloat16() * 3  # past the clamp (7) in places
    chosen = torch.randint(0, 4, (64, 1), generator=gen)
    with torch.no_grad():
        ours = experts(x, chosen, torch.ones(64, 1))  # one expert a token, weight 1: no sum, no rounding of it
        e = chosen[:, 0]
        h = torch.einsum("bck,bk->bc", experts.gate_up_proj[e], x) + experts.gate_up_proj_bias[e]
        h = swiglu(h, alpha=cfg.swiglu_alpha, limit=cfg.swiglu_limit)
        reference = torch.einsum("bck,bk->bc", experts.down_proj[e], h) + experts.down_proj_bias[e]
    assert reference.dtype == torch.bfloat16 and (h.float().abs() > 1).any()
    assert torch.equal(ours, reference)


def test_a_float64_model_computes_its_rope_angles_in_float64():
    """Its inverse frequencies went back to float32 at .double(), and positions were cast to float32: at
    position 131,000 a float64 model's cos was 1.3e-3 off, no reference at long context."""
    cfg = g.course_config(2).replace(head_dim=64)  # plain RoPE: its frequencies written out in Python below
    rotary = g.GPT(cfg).double().rotary
    pos = 131_000
    cos, _ = rotary(torch.tensor([pos]), torch.float64)
    exact = torch.tensor([math.cos(pos * cfg.rope_theta ** (-2 * i / 64)) for i in range(32)], dtype=torch.float64)
    assert (cos[0] - exact).abs().max() < 1e-9  # float64 angles: about 1e-11 off
    cos32, _ = g.GPT(cfg).rotary(torch.tensor([pos]), torch.float32)
    assert (cos32[0].double() - exact).abs().max() > 1e-5  # float32's, as transformers computes them
    assert g.GPT(cfg).double().float().rotary.inv_freq.equal(g.GPT(cfg).rotary.inv_freq)  # back to the same bits
