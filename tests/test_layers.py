"""Norms, rotary, MLPs and the MoE against transformers where it defines them, and the int8 baseline of
notebook 08 (found unpinned by mutation testing).

Tolerances: float32 comparisons use torch.testing.assert_close's float32 defaults (rtol 1.3e-6, atol
1e-5): the same formula in another order of operations rounds that far, a wrong term (an eps, a
mean, a clamp) lands orders of magnitude further. RoPE frequencies: rtol 1e-6, float32 rounding of
the same powers. float64 paths to 1e-13: a float32 step anywhere inside would show as ~1e-7.
(bf16 attention is compared with OpenAI's, bit for bit, in tests/test_low_precision.py.)
"""
from __future__ import annotations

import math

import pytest
import torch

import gptoss_edu as g
from gptoss_edu import mxfp4
from gptoss_edu.norms import make_norm
from gptoss_edu.mlp import GeluMLP, SwiGLU
from gptoss_edu.rotary import Rotary


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_layernorm_uses_its_eps(eps):  # N04
    x = torch.randn(3, 16) * 0.3
    norm = make_norm("layernorm", 16, eps)
    ref = torch.nn.LayerNorm(16, eps=eps)
    torch.testing.assert_close(norm(x), ref(x))


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_rmsnorm_uses_the_configs_eps_like_transformers(eps):  # N06
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm

    x = torch.randn(3, 16) * 0.3
    torch.testing.assert_close(make_norm("rmsnorm", 16, eps)(x), GptOssRMSNorm(16, eps=eps)(x))


@pytest.mark.parametrize("truncate", [False, True])
def test_a_zero_width_yarn_ramp_matches_transformers(truncate):  # Y02: the low == high guard
    from transformers import GptOssConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    beta = 4096 / (2 * math.pi)  # one rotation over the original context: low == high == 0
    cfg = g.preset("gpt-oss-20b").replace(rope_beta_fast=beta, rope_beta_slow=beta, rope_truncate=truncate)
    hf = {k: v for k, v in cfg.to_hf_config().items() if k != "quantization_config"}
    want, want_factor = ROPE_INIT_FUNCTIONS["yarn"](GptOssConfig(**hf), "cpu")
    rotary = Rotary(cfg)
    assert torch.isfinite(rotary.inv_freq).all()
    torch.testing.assert_close(rotary.inv_freq, want.float(), atol=0, rtol=1e-6)
    assert math.isclose(rotary.attention_factor, want_factor)


def test_int8_baseline_rounds_to_the_nearest_step():  # X10
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    err = mxfp4.quantization_error(w)
    step = w.abs().amax(dim=-1, keepdim=True) / 127
    rms = w.pow(2).mean().sqrt()
    # Round-to-nearest errors spread over +-step/2: RMS step/sqrt(12) (~0.29 step); flooring gives ~0.58 step.
    assert err["int8"] * rms < 0.4 * step.pow(2).mean().sqrt()
    assert err["int8"] < err["mxfp4"] and err["bf16"] < err["int8"]
    # 127 levels each side of a row's absmax, as notebook 08 says (a step of absmax / 128 clips each row's largest).
    amax = w.abs().amax(dim=-1, keepdim=True)
    q = torch.round(w * 127 / amax) * amax / 127
    assert math.isclose(err["int8"], float((q - w).pow(2).mean().sqrt() / rms), rel_tol=1e-4)


def test_moe_in_bf16_returns_bf16():  # E05 (moe.py)
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)
    torch.manual_seed(0)
    moe = g.GPT(cfg).blocks[0].mlp
    for p in moe.parameters():
        p.data.normal_(0, 0.5)
    x = torch.randn(2, 5, cfg.d_model)
    with torch.no_grad():
        got = moe.to(torch.bfloat16)(x.bfloat16())
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()

@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_gelu_mlp_uses_the_configs_gelu(act):  # P04
    from transformers.activations import ACT2FN

    cfg = g.ModelConfig.from_hf_config({**g.preset("gpt2-tiny").to_hf_config(), "activation_function": act})
    mlp = GeluMLP(cfg)
    x = torch.randn(4, cfg.d_model) * 40  # wide pre-activations: exact and tanh GELU differ
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), mlp.fc_out(ACT2FN[act](mlp.fc_in(x))))


def test_swiglu_matches_llamas_mlp():  # P05
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    cfg = g.preset("gpt2-tiny").replace(mlp="swiglu", mlp_bias=False)
    ours = SwiGLU(cfg)
    ref = LlamaMLP(LlamaConfig(hidden_size=cfg.d_model, intermediate_size=cfg.d_ff, mlp_bias=False, hidden_act="silu"))
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, cfg.d_model)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("mlp", ["gelu", "swiglu", "gptoss_swiglu"])
def test_mlp_bias_false_drops_every_mlp_bias(mlp):  # P07, P09
    cfg = g.preset("gpt2-tiny").replace(vocab_size=100, mlp=mlp, mlp_bias=False)
    model = g.GPT(cfg)
    assert model.num_parameters() == cfg.param_counts()["total"]
    assert not [n for n, _ in model.named_parameters() if ".mlp." in n and n.endswith("bias")]


def test_a_float64_model_computes_in_float64():
    """Attention's softmax, the router and RMSNorm upcast bf16 to float32 but never cut float64 down to it."""
    from gptoss_edu.attention import attend
    from gptoss_edu.moe import Router
    from gptoss_edu.norms import rms_norm

    gen = torch.Generator().manual_seed(11)
    q = torch.randn(2, 4, 7, 8, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(2, 2, 7, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    sinks = torch.randn(4, generator=gen, dtype=torch.float64)
    i, j = torch.arange(7)[:, None], torch.arange(7)[None, :]
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) * 8 ** -0.5
    scores = scores.masked_fill((j > i) | (i - j >= 3), -torch.inf)  # causal, window 3
    logits = torch.cat((scores, sinks.view(1, 4, 1, 1).expand(2, 4, 7, 1)), dim=-1)
    exact = torch.softmax(logits, dim=-1)[..., :-1] @ v.repeat_interleave(2, dim=1)
    got = attend(q, k, v, scale=8 ** -0.5, window=3, sinks=sinks)
    assert got.dtype == torch.float64 and (got - exact).abs().max() < 1e-13  # float32 inside: ~1e-7

    router = Router(g.preset("gpt-oss-tiny")).double()
    torch.nn.init.normal_(router.weight, generator=gen)
    x = torch.randn(5, router.weight.shape[1], generator=gen, dtype=torch.float64)
    want = torch.nn.functional.linear(x, router.weight, router.bias)
    got_logits, weights, _ = router(x)
    assert weights.dtype == torch.float64 and (got_logits - want).abs().max() < 1e-13
    # The routing weights' softmax too: one taken in float32 and cast back is about 1e-8 off.
    want_weights = torch.softmax(want.topk(router.top_k, dim=-1).values, dim=-1)
    assert (weights - want_weights).abs().max() < 1e-13

    w = torch.randn(8, generator=gen, dtype=torch.float64)
    exact = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    assert (rms_norm(q, w, 1e-5) - exact).abs().max() < 1e-14


# ---- dropout: GPT-2 has it in four places, and nothing else would notice it missing -------------

def test_dropout_acts_on_the_embeddings_and_both_residual_branches_of_every_block():
    cfg = g.preset("gpt2-tiny").replace(vocab_size=300, context_length=32, dropout=0.5)
    model = g.GPT(cfg).train()
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    ids = torch.randint(0, cfg.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    first = model(ids)
    assert len(seen) == 1 + 2 * cfg.n_layers  # the embeddings, then attention's and the MLP's output in each block
    for x, y in seen:
        kept = y != 0
        assert 0.45 < kept.float().mean() < 0.55  # about half of 2 x 32 x d_model values zeroed
        torch.testing.assert_close(y[kept], 2 * x[kept])  # the rest scaled by 1 / (1 - p)
    torch.manual_seed(1)
    assert not torch.equal(model(ids), first)  # other masks, other logits
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids), model(ids))


def test_attention_dropout_zeroes_probabilities_and_rescales_the_rest():
    # With v the identity, attention's output is its probability matrix itself.
    T, p = 48, 0.25
    gen = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 2, T, T, generator=gen), torch.randn(1, 2, T, T, generator=gen)
    v = torch.eye(T).expand(1, 2, T, T)
    probs = g.attention.attend(q, k, v, scale=T ** -0.5)
    torch.manual_seed(0)
    dropped = g.attention.attend(q, k, v, scale=T ** -0.5, dropout=p)
    live = probs > 0  # the causal half
    kept = dropped[live] != 0
    assert abs(kept.float().mean() - (1 - p)) < 0.03  # of 2 x 1176 probabilities
    torch.testing.assert_close(dropped[live][kept], probs[live][kept] / (1 - p))
    assert torch.equal(dropped[~live], probs[~live])  # the masked ones stay 0
    cfg = g.preset("gpt2-tiny").replace(vocab_size=300, context_length=32, dropout=p)
    layer = g.GPT(cfg).blocks[0].attn
    x = torch.randn(1, 32, cfg.d_model)
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # the layer passes its dropout on in training
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_attention_inputs_that_do_not_fit_are_named():
    """The Triton kernel named these; the PyTorch path returned NaN (a negative window or q_start) or
    failed deep in a reshape."""
    from gptoss_edu.attention import attend, attention_mask

    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)
    bad = [
        (dict(q=q[0]), r"q must be \[B, Hq, Tq, D\], and k and v both \[B, Hkv, Tk, D\]; got q \(4, 5, 8\)"),
        (dict(k=torch.randn(1, 3, 5, 8), v=torch.randn(1, 3, 5, 8)), r"query heads \(4\) must be a multiple of the KV heads \(3\)"),
        (dict(k=torch.randn(1, 2, 5, 6), v=torch.randn(1, 2, 5, 6)), "must agree in batch B and head size D"),
        (dict(sinks=torch.zeros(2)), r"one logit per query head, \[4\], got \(2,\)"),
        (dict(window=-1), r"window must be >= 0 .*got -1"),
        (dict(q_start=-10), r"q_start is the position of the first query, >= 0, got -10"),
    ]
    for change, message in bad:
        args = dict(q=q, k=k, v=k, scale=0.35) | change
        with pytest.raises(ValueError, match=message):
            attend(**args)
    with pytest.raises(ValueError, match="window must be >= 0"):
        attention_mask(torch.arange(3), torch.arange(3), -2)
    assert attend(q, k, k, scale=0.35, window=2, sinks=torch.zeros(4)).isfinite().all()
