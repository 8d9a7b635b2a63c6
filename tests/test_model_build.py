"""Building a GPT: initial weights as transformers' GPT-2 draws them, sinks at zero, parameter counts
of a packed model, int32 ids, and the packed experts' size check (found unpinned by mutation testing)."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import gptoss_edu as g


def _std(t: torch.Tensor) -> float:
    return float(t.detach().float().std())


def test_gpt2_init_matches_transformers_gpt2():  # M03: out_std = std / sqrt(2 * n_layers)
    cfg = g.preset("gpt2-tiny").replace(n_layers=8, vocab_size=1000, context_length=64)
    torch.manual_seed(0)
    ours = g.GPT(cfg)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=8, n_embd=64, n_head=4, n_positions=64, vocab_size=1000))
    for layer in range(8):
        for mine, theirs in ((ours.blocks[layer].attn.o_proj.weight, hf.transformer.h[layer].attn.c_proj.weight),
                             (ours.blocks[layer].mlp.fc_out.weight, hf.transformer.h[layer].mlp.c_proj.weight),
                             (ours.blocks[layer].attn.q_proj.weight, hf.transformer.h[layer].attn.c_attn.weight)):
            assert math.isclose(_std(mine), _std(theirs), rel_tol=0.1)


def test_gptoss_init_scales_expert_outputs_and_zeroes_sinks():  # M04, M05
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=1000, context_length=64)
    torch.manual_seed(0)
    model = g.GPT(cfg)
    out_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    for block in model.blocks:
        assert torch.count_nonzero(block.attn.sinks) == 0
        assert math.isclose(_std(block.mlp.experts.down_proj), out_std, rel_tol=0.05)
        assert math.isclose(_std(block.mlp.experts.gate_up_proj), 0.02, rel_tol=0.05)
        assert math.isclose(_std(block.attn.o_proj.weight), out_std, rel_tol=0.1)


def test_packed_experts_start_as_quantized_dense_ones_would():
    # Random packed experts are quantized random dense ones, so down_proj gets the same smaller std.
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=1000, context_length=64)
    torch.manual_seed(0)
    model = g.GPT(cfg, packed_experts=True)
    out_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    for block in model.blocks:
        experts = block.mlp.experts
        for name, want in (("gate_up_proj", 0.02), ("down_proj", out_std)):
            dense = g.mxfp4.dequantize(getattr(experts, f"{name}_blocks"), getattr(experts, f"{name}_scales"))
            assert math.isclose(_std(dense), want, rel_tol=0.1), (name, _std(dense), want)


def test_norm_scales_start_at_one():  # M11
    model = g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=1000, context_length=64))
    norms = [p for n, p in model.named_parameters() if "norm" in n]
    assert len(norms) == 2 * 4 + 1 and all(torch.equal(p, torch.ones_like(p)) for p in norms)


def test_packed_model_counts_the_parameters_its_experts_stand_for():  # M08
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=1000, context_length=64)
    assert g.GPT(cfg, packed_experts=True).num_parameters() == cfg.param_counts()["total"]


def test_int32_ids_are_read_like_int64_ids():  # M09
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=100, context_length=32)).eval()
    ids = torch.randint(0, 100, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids.to(torch.int32)), model(ids), atol=0, rtol=0)


def test_packed_experts_refuse_an_input_size_not_a_multiple_of_32():  # E03 (moe.py)
    cfg = g.preset("gpt-oss-tiny").replace(d_model=48, vocab_size=100, context_length=64)
    with pytest.raises(ValueError, match=r"gate_up_proj's input size \(48\) to be a multiple of 32"):
        g.GPT(cfg, packed_experts=True)
