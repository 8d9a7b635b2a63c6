"""gpt-oss's clamped SwiGLU where the clamps actually engage.

The parity tests' random weights give expert pre-activations of std ~0.6, which never reach the
limit of 7, so the clamps (gate: above only; up: both sides) need inputs of their own. Here they
span +-20, against OpenAI's reference ``swiglu`` and, through a whole model whose experts are
scaled up, against transformers.

Tolerances: the function against OpenAI's is the same float32 formula in another order (atol 1e-7,
rtol 1e-6; 1e-9 for float64); a whole model against transformers sums float32 in another order
through every layer (logits atol 2e-5 as in test_parity.py; the difference measured here was 0),
one MoE layer 1e-5.
"""

from __future__ import annotations

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.mlp import gptoss_swiglu
from random_weights import randomize


@pytest.mark.parametrize("alpha,limit", [(1.702, 7.0), (1.0, 3.0), (2.0, 0.5)])
@pytest.mark.parametrize("shape", [(5, 64), (2, 3, 10), (1, 5760)])
def test_swiglu_matches_openai_reference_beyond_the_limits(shape, alpha, limit):
    from gpt_oss.torch.model import swiglu as reference

    gen = torch.Generator().manual_seed(shape[-1])
    x = torch.randn(*shape, generator=gen) * 3 * limit  # well past +-limit on both sides
    gate, up = x[..., 0::2], x[..., 1::2]
    assert (gate < -limit).any() and (gate > limit).any() and (up < -limit).any() and (up > limit).any()
    torch.testing.assert_close(gptoss_swiglu(x, alpha, limit), reference(x, alpha, limit), atol=1e-7, rtol=1e-6)


def test_swiglu_lower_gate_is_not_clamped_and_up_is():
    """Point values: a gate of -10 is not lifted to -7; an up of -10 is clamped to -7."""
    x = torch.tensor([[-10.0, 0.0, 1.0, -10.0, 9.0, 0.0]])  # (gate, up) pairs
    out = gptoss_swiglu(x, 1.702, 7.0)
    want = torch.tensor([[-10.0 * torch.sigmoid(torch.tensor(-17.02)).item() * 1.0,
                          1.0 * torch.sigmoid(torch.tensor(1.702)).item() * (1 - 7.0),
                          7.0 * torch.sigmoid(torch.tensor(11.914)).item() * 1.0]])
    torch.testing.assert_close(out, want, atol=1e-9, rtol=1e-6)


@pytest.mark.parametrize("boost,limit", [(15.0, 7.0), (40.0, 7.0), (15.0, 3.0)])
def test_model_with_saturating_experts_matches_transformers(boost, limit, tmp_path):
    """A whole model whose expert pre-activations reach well past the limit, against transformers (float32,
    dense), as built and as read back from the checkpoint (so config.json's swiglu_limit is read too)."""
    from transformers import GptOssForCausalLM

    layer_types = ("sliding_attention", "full_attention")
    cfg = g.preset("gpt-oss-20b").replace(
        name="clamp", vocab_size=200, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=64,
        n_experts=4, experts_per_token=2, sliding_window=4, layer_types=layer_types, rope_original_context=16,
        rope_scaling_factor=4.0, context_length=64, swiglu_limit=limit)
    ours = randomize(g.GPT(cfg), seed=int(boost))
    with torch.no_grad():
        for block in ours.blocks:
            block.mlp.experts.gate_up_proj.mul_(boost)
            block.mlp.experts.down_proj.div_(boost)  # keep the residual stream of unit scale
    ids = torch.randint(0, cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    # The clamps really engage on this input: record the first expert layer's pre-activations.
    seen = []
    experts = ours.blocks[0].mlp.experts
    hook = experts.register_forward_pre_hook(lambda m, args: seen.append(args[0] @ m.gate_up_proj[0].T))
    with torch.no_grad():
        got = ours(ids)
    hook.remove()
    pre = seen[0]
    gate, up = pre[..., 0::2], pre[..., 1::2]
    assert (gate > limit).float().mean() > 0.05  # clamped: the gate's only clamp, from above
    assert (up < -limit).float().mean() > 0.05 and (up > limit).float().mean() > 0.05  # up's, on both sides
    assert (gate < -limit).float().mean() > 0.05  # and the side of the gate that is left alone
    path = g.write_checkpoint(ours, tmp_path / "ck", mxfp4=False, dtype=torch.float32)
    ref = GptOssForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    loaded = g.load_model(path)
    assert loaded.config.swiglu_limit == limit
    with torch.no_grad():
        want, read_back = ref(ids).logits, loaded(ids)
    assert 0.5 < want.abs().max() < 100
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    torch.testing.assert_close(read_back, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize("alpha,limit,d,ff", [(1.702, 7.0, 32, 48), (1.0, 3.0, 64, 64), (2.5, 1.5, 16, 80)])
def test_dense_gptoss_swiglu_layer_matches_the_reference(alpha, limit, d, ff):
    """The dense gpt-oss SwiGLU of course steps 4-6 (no experts): down(swiglu(gate_up(x))) with the config's
    alpha and limit, against OpenAI's reference swiglu."""
    from gpt_oss.torch.model import swiglu as reference

    from gptoss_edu.mlp import GptOssSwiGLU, make_mlp

    cfg = g.course_config(4).replace(d_model=d, d_ff=ff, swiglu_alpha=alpha, swiglu_limit=limit)
    layer = make_mlp(cfg)
    assert isinstance(layer, GptOssSwiGLU)
    gen = torch.Generator().manual_seed(ff)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.3))
    x = torch.randn(3, 5, d, generator=gen) * 0.5
    with torch.no_grad():
        pre = layer.gate_up_proj(x)
        assert (pre.abs() > limit).any()
        want = layer.down_proj(reference(pre, alpha, limit))
        torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
