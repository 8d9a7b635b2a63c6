"""The course model against transformers' GPT-2 and gpt-oss on the same random weights.

Tolerance: float32 rounding. The random weights give logits up to about 20 in size, where float32
numbers lie 2e-6 apart, and the two implementations order some sums differently: the differences
measured were at most 7.6e-6 (GPT-2) and 1.7e-6 (gpt-oss). We allow 2e-5 absolute, which GELU in
its exact form instead of GPT-2's tanh form (1.5e-3 off) exceeds 75-fold.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

import gptoss_edu as g
from random_weights import randomize, transformers_gptoss

ATOL = 2e-5

GPT2_SHAPES = [
    dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=2, n_head=4),
    dict(vocab_size=257, n_positions=40, n_embd=64, n_layer=3, n_head=8),
    dict(vocab_size=500, n_positions=128, n_embd=96, n_layer=1, n_head=2, n_inner=200),
]


@pytest.mark.parametrize("shape", GPT2_SHAPES, ids=lambda s: f"d{s['n_embd']}-L{s['n_layer']}-h{s['n_head']}")
def test_gpt2_matches_transformers(shape, tmp_path):
    torch.manual_seed(shape["n_embd"])
    # bos and eos unset: GPT-2's 50256 lies outside these small vocabularies (transformers logs it).
    ref = randomize(GPT2LMHeadModel(GPT2Config(**shape, bos_token_id=None, eos_token_id=None)), seed=shape["n_embd"])
    ref.save_pretrained(tmp_path)  # transformers' own GPT-2 layout on disk
    ours = g.load_model(tmp_path)
    ids = torch.randint(0, shape["vocab_size"], (2, shape["n_positions"]))
    with torch.no_grad():
        want, got = ref(ids).logits, ours(ids)
    assert want.abs().max() > 0.1  # a live model, not an all-zero comparison
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_written_by_us_loads_in_transformers(tmp_path, tied):
    """Tied or not (an untied GPT-2 loaded, but writing it back was refused as "a course step")."""
    cfg = g.preset("gpt2-tiny").replace(vocab_size=320, context_length=48, tie_embeddings=tied)
    ours = randomize(g.GPT(cfg), seed=3)
    g.write_checkpoint(ours, tmp_path / "ck", dtype=torch.float32)
    ref = GPT2LMHeadModel.from_pretrained(tmp_path / "ck").eval()
    assert (ref.lm_head.weight.data_ptr() == ref.transformer.wte.weight.data_ptr()) == tied
    ids = torch.randint(0, 320, (3, 48))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids).logits, atol=ATOL, rtol=0)
        again = g.load_model(tmp_path / "ck")
        assert again.config.tie_embeddings == tied
        torch.testing.assert_close(again(ids), ours(ids), atol=0, rtol=0)


# Each shape exercises: sequences longer than the window, positions past YaRN's original
# context, several experts (top-k > 1, top-1 in the third), GQA, and a sharded MXFP4 checkpoint.
GPTOSS_SHAPES = [
    dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=64, n_experts=4, experts_per_token=2,
         sliding_window=4, rope_original_context=16, rope_scaling_factor=4.0, T=40),
    dict(d_model=96, n_layers=4, n_heads=8, n_kv_heads=2, head_dim=12, d_ff=32, n_experts=8, experts_per_token=4,
         sliding_window=7, rope_original_context=8, rope_scaling_factor=8.0, T=33),
    dict(d_model=32, n_layers=3, n_heads=2, n_kv_heads=1, head_dim=32, d_ff=96, n_experts=3, experts_per_token=1,
         sliding_window=16, rope_original_context=32, rope_scaling_factor=2.0, T=50),
    # gpt-oss-120b's depth and experts (36 layers, 128 experts, 4 a token), shrunk in width.
    dict(d_model=32, n_layers=36, n_heads=4, n_kv_heads=1, head_dim=8, d_ff=32, n_experts=128, experts_per_token=4,
         sliding_window=8, rope_original_context=16, rope_scaling_factor=4.0, T=40),
]


def gptoss_config(shape: dict) -> g.ModelConfig:
    s = dict(shape)
    s.pop("T")
    layer_types = tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(s["n_layers"]))
    return g.preset("gpt-oss-20b").replace(
        name="test", vocab_size=384, layer_types=layer_types,
        context_length=s["rope_original_context"] * int(s["rope_scaling_factor"]), **s)


@pytest.mark.parametrize("shape", GPTOSS_SHAPES, ids=lambda s: f"d{s['d_model']}-E{s['n_experts']}k{s['experts_per_token']}-w{s['sliding_window']}")
def test_gptoss_matches_transformers(shape, tmp_path):
    cfg = gptoss_config(shape)
    ours = randomize(g.GPT(cfg), seed=shape["d_model"])
    path = g.write_checkpoint(ours, tmp_path / "ck", max_shard_bytes=60_000)  # real layout: bf16 + MXFP4, sharded
    assert (path / "model.safetensors.index.json").exists()
    ref = transformers_gptoss(path)
    loaded = g.load_model(path)
    packed = g.load_model(path, keep_mxfp4=True)
    ids = torch.randint(0, cfg.vocab_size, (2, shape["T"]))
    with torch.no_grad():
        want = ref(ids).logits
        got, got_packed = loaded(ids), packed(ids)
    assert shape["T"] > cfg.sliding_window and shape["T"] > cfg.rope_original_context
    assert 0.5 < want.abs().max() < 50
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(got_packed, want, atol=ATOL, rtol=0)


def test_gptoss_router_picks_the_same_experts_as_transformers(tmp_path):
    cfg = gptoss_config(GPTOSS_SHAPES[1])
    ours = g.write_checkpoint(randomize(g.GPT(cfg), seed=7), tmp_path / "ck")
    ref = transformers_gptoss(ours)
    model = g.load_model(ours)
    x = torch.randn(20, cfg.d_model)
    _, w_ours, i_ours = model.blocks[1].mlp.router(x)
    _, w_ref, i_ref = ref.model.layers[1].mlp.router(x)
    assert torch.equal(i_ours, i_ref)
    torch.testing.assert_close(w_ours, w_ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("changes", [{}, {"attn_bias": False}, {"positions": "rope"}, {"swiglu_alpha": 1.0},
                                     {"tie_embeddings": True, "attn_bias": False},
                                     {"layer_types": ("full_attention", "sliding_attention")}],
                         ids=["as-released", "no-attention-bias", "plain-rope", "alpha-1", "tied-no-bias",
                              "full-then-sliding"])
def test_gptoss_saved_by_transformers_loads_and_matches(changes, tmp_path):
    """A folder transformers itself saved (5.x: rope_theta inside rope_parameters) loads, with the same logits."""
    from transformers import GptOssConfig, GptOssForCausalLM

    if "swiglu_alpha" in changes and "swiglu_alpha" not in GptOssConfig().to_dict():
        pytest.skip(f"transformers {transformers.__version__} has no swiglu_alpha setting (1.702 is built in)")
    cfg = gptoss_config(GPTOSS_SHAPES[0]).replace(**changes)
    ours = randomize(g.GPT(cfg), seed=11)
    path = g.write_checkpoint(ours, tmp_path / "ours", mxfp4=False, dtype=torch.float32)
    ref = GptOssForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ref.save_pretrained(tmp_path / "theirs")
    loaded = g.load_model(tmp_path / "theirs")
    assert {k: getattr(loaded.config, k) for k in changes} == changes
    assert (loaded.lm_head.weight is loaded.embed.weight) == cfg.tie_embeddings
    ids = torch.randint(0, cfg.vocab_size, (2, GPTOSS_SHAPES[0]["T"]))
    with torch.no_grad():
        want = ref(ids).logits
        got, written = loaded(ids), ours(ids)
    assert 0.5 < want.abs().max() < 50
    torch.testing.assert_close(written, want, atol=ATOL, rtol=0)  # what we wrote is what transformers reads
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)  # and what it saves is what we read


def test_gptoss_with_the_real_rope_settings_matches_transformers_past_4096_positions(tmp_path):
    """gpt-oss-20b's own RoPE (theta 150,000, head_dim 64, YaRN 32x over 4,096): where YaRN matters, past 4,096.

    The shapes above scale small contexts; this is the released setting, full forward and cached decode steps.
    """
    T = 4160
    cfg = g.preset("gpt-oss-20b").replace(name="test", vocab_size=300, d_model=64, n_layers=2, n_heads=2,
                                          n_kv_heads=1, d_ff=64, n_experts=4, experts_per_token=2,
                                          layer_types=("sliding_attention", "full_attention"))
    assert (cfg.head_dim, cfg.rope_theta, cfg.rope_original_context, cfg.rope_scaling_factor) == (64, 150000, 4096, 32)
    ours = randomize(g.GPT(cfg), seed=5)
    path = g.write_checkpoint(ours, tmp_path / "ck")
    ref, loaded = transformers_gptoss(path), g.load_model(path)
    ids = torch.randint(0, cfg.vocab_size, (1, T), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = ref(ids).logits[0]
        cache = loaded.new_cache(1, T)
        prefill = loaded(ids[:, :T - 3], cache)[0]
        steps = [loaded(ids[:, t:t + 1], cache)[0, -1] for t in range(T - 3, T)]
    assert 0.5 < want.abs().max() < 50
    torch.testing.assert_close(torch.cat([prefill, torch.stack(steps)]), want, atol=ATOL, rtol=0)
    # The same weights with plain RoPE (no YaRN) give other logits at these positions: the comparison can tell.
    plain = g.GPT(cfg.replace(rope_scaling_factor=1.0))
    plain.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        assert (plain(ids)[0, -3:] - want[-3:]).abs().max() > 100 * ATOL


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("shape", GPTOSS_SHAPES[:2], ids=lambda s: f"d{s['d_model']}-E{s['n_experts']}k{s['experts_per_token']}-w{s['sliding_window']}")
def test_gptoss_gradients_match_transformers(shape, tied, tmp_path):
    """Training's backward pass: the loss and every parameter's gradient, sinks, router and clamped experts too.

    Tolerance: each gradient within 3e-5 of its tensor's largest entry (float32; measured at most 4.6e-6).
    """
    from transformers import GptOssForCausalLM

    from gptoss_edu.checkpoint import _gptoss_rule
    from gptoss_edu.train import lm_loss

    cfg = gptoss_config(shape).replace(tie_embeddings=tied)
    ours = randomize(g.GPT(cfg), seed=shape["d_model"] + tied)
    with torch.no_grad():  # larger expert weights, so that the SwiGLU clamps at +-7 take part
        for block in ours.blocks:
            block.mlp.experts.gate_up_proj.mul_(12)
    path = g.write_checkpoint(ours, tmp_path / "ck", mxfp4=False, dtype=torch.float32)
    ref = GptOssForCausalLM.from_pretrained(path, dtype=torch.float32, experts_implementation="eager").train()
    ours.train()
    rows = torch.randint(0, cfg.vocab_size, (2, shape["T"] + 1), generator=torch.Generator().manual_seed(1))
    loss = lm_loss(ours, rows[:, :-1], rows[:, 1:], None)
    loss.backward()
    unclamped = g.GPT(cfg.replace(swiglu_limit=1e9)).train()
    unclamped.load_state_dict(ours.state_dict())
    with torch.no_grad():  # the clamps change the loss: their gradient is part of what is compared
        assert abs(lm_loss(unclamped, rows[:, :-1], rows[:, 1:], None) - loss) > 1e-3
    want = ref(input_ids=rows, labels=rows).loss  # transformers shifts the labels itself
    want.backward()
    torch.testing.assert_close(loss, want, atol=2e-5, rtol=0)
    theirs = {}
    for name, p in ref.named_parameters():
        _, convert = _gptoss_rule(name, cfg)
        theirs.update(convert(p.grad))
    grads = dict(ours.named_parameters())
    assert grads.keys() == theirs.keys()  # a tied head is one tensor on both sides
    for name, p in grads.items():
        scale = theirs[name].abs().max().item()
        assert scale > 0, name  # every parameter takes part
        torch.testing.assert_close(p.grad, theirs[name], atol=3e-5 * scale, rtol=0, msg=lambda m: f"{name}: {m}")
