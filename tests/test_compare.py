"""compare_layers: per-block differences between two models, and the first layer that parts.

Tolerance: compare_layers' own, 1e-5 of each layer's largest value. Two float32 implementations of
the same GPT-2 part by 1e-7 to 1e-6 of it (3 layers here; 12 at GPT-2 124M's size); a broken layer
differs by far more.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from transformers import GPT2LMHeadModel

import gptoss_edu as g
from random_weights import randomize
from gptoss_edu.compare import compare_layers, find_blocks, layer_outputs



@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = g.preset("gpt2-tiny").replace(vocab_size=300, context_length=32, n_layers=3)
    ours = randomize(g.GPT(cfg), seed=1)
    path = tmp_path_factory.mktemp("ck")
    g.write_checkpoint(ours, path / "gpt2", dtype=torch.float32)
    ref = GPT2LMHeadModel.from_pretrained(path / "gpt2").eval()
    ids = torch.randint(0, 300, (2, 32))
    return ours, ref, ids


def test_the_same_model_agrees_at_every_layer(pair):
    ours, ref, ids = pair
    result = compare_layers(ours, ref, ids, names=("ours", "hf"))
    assert list(result.diffs) == ["embeddings", "block 0", "block 1", "block 2", "logits"]
    assert result.equal and result.first_difference is None
    assert max(result.diffs[k] / result.sizes[k] for k in result.diffs if result.sizes[k]) < 1e-6
    assert "all layers agree within 1e-05 of each layer's largest value" in repr(result)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_broken_layer_is_named_first(pair, layer):
    ours, ref, ids = pair
    broken = copy.deepcopy(ours)
    broken.blocks[layer].attn_norm.eps = 1.0  # a wrong LayerNorm eps in one layer
    result = compare_layers(broken, ref, ids, names=("broken", "hf"))
    assert result.first_difference == f"block {layer}"
    assert all(result.diffs[f"block {i}"] <= result.tolerance(f"block {i}") for i in range(layer))
    assert result.diffs["logits"] > result.tolerance("logits")
    assert f"block {layer}" in repr(result).split("<- first difference")[0].splitlines()[-1]


def test_a_wrong_embedding_shows_before_the_first_block(pair):
    ours, ref, ids = pair
    broken = copy.deepcopy(ours)
    with torch.no_grad():
        broken.pos_embed.weight[3] += 1.0
    assert compare_layers(broken, ref, ids).first_difference == "embeddings"


def test_outputs_and_errors(pair):
    ours, ref, ids = pair
    outs = layer_outputs(ref, ids)
    assert outs["block 2"].shape == (2, 32, 64) and outs["logits"].shape == (2, 32, 300)
    assert len(find_blocks(ref)) == 3 and len(find_blocks(ours)) == 3
    with pytest.raises(ValueError, match="no list of blocks"):
        find_blocks(torch.nn.Linear(2, 2))
    shallow = g.GPT(ours.config.replace(n_layers=2)).eval()
    with pytest.raises(ValueError, match="has 3 blocks and b has 2"):
        compare_layers(ours, shallow, ids)


def test_models_in_training_mode_are_compared_without_dropout(pair):
    ours, ref, ids = pair
    noisy = copy.deepcopy(ours)
    for module in noisy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    noisy.train()
    with torch.no_grad():
        assert not torch.equal(noisy(ids), noisy(ids))  # the dropout is live: this test could fail
    assert compare_layers(noisy, ref, ids).equal  # dropout off while comparing
    assert noisy.training and all(m.training for m in noisy.modules())  # and the mode is given back
    noisy.blocks[0].eval()  # a mix of modes comes back as it was, module by module
    compare_layers(noisy, ref, ids)
    assert noisy.training and not noisy.blocks[0].training and noisy.blocks[1].training


# ---- found by mutation testing: gpt-oss in transformers' layout, NaNs, the tolerance, the report --------

def test_a_transformers_gptoss_is_found_at_model_layers(tmp_path):
    """Notebook 12 compares against GptOssForCausalLM, whose blocks sit at model.layers."""
    from transformers import GptOssForCausalLM

    cfg = g.preset("gpt-oss-20b").replace(
        name="test", vocab_size=384, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=64,
        n_experts=4, experts_per_token=2, sliding_window=4, rope_original_context=16, rope_scaling_factor=4.0,
        context_length=64, layer_types=("sliding_attention", "full_attention"))
    ours = randomize(g.GPT(cfg), seed=3)
    path = g.write_checkpoint(ours, tmp_path / "oss", mxfp4=False, dtype=torch.float32)
    ref = GptOssForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert find_blocks(ref) is ref.model.layers
    ids = torch.randint(0, 384, (1, 20))
    result = compare_layers(ours, ref, ids)
    assert list(result.diffs) == ["embeddings", "block 0", "block 1", "logits"]
    assert result.equal, result
    broken = copy.deepcopy(ours)
    broken.blocks[1].attn_norm.eps = 1.0
    assert compare_layers(broken, ref, ids).first_difference == "block 1"


def test_find_blocks_skips_an_empty_list():
    """An empty ModuleList at an earlier path is no list of blocks: the next path is used."""
    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList()
    model.layers = torch.nn.ModuleList([torch.nn.Identity()])
    assert find_blocks(model) is model.layers



def test_a_gpt2_written_from_scratch_is_found_at_h():
    """Notebook 01's own GPT2 names its parts as OpenAI's GPT-2 did: wte, wpe, h, ln_f."""
    model = torch.nn.Module()
    model.wte, model.ln_f = torch.nn.Embedding(4, 2), torch.nn.LayerNorm(2)
    model.h = torch.nn.ModuleList([torch.nn.Identity()])
    assert find_blocks(model) is model.h


def test_a_nan_is_a_difference(pair):
    """NaN compares false with everything: a NaN layer must not pass as 'within tolerance'."""
    ours, ref, ids = pair
    broken = copy.deepcopy(ours)
    with torch.no_grad():
        broken.blocks[1].attn_norm.weight[0] = float("nan")
    result = compare_layers(broken, ref, ids)
    assert result.first_difference == "block 1" and not result.equal


def test_the_tolerance_is_inclusive_and_used(pair):
    ours, _, ids = pair
    twin = copy.deepcopy(ours)
    assert compare_layers(ours, twin, ids, rtol=0.0).equal  # identical outputs agree at a tolerance of 0
    shifted = copy.deepcopy(ours)
    with torch.no_grad():
        shifted.pos_embed.weight[3] += 1e-3
    size = layer_outputs(ours, ids)["embeddings"].abs().max().item()
    assert compare_layers(shifted, ours, ids, rtol=1.01e-3 / size).equal  # the rtol passed in is the one used
    assert not compare_layers(shifted, ours, ids, rtol=0.99e-3 / size).equal
    assert compare_layers(shifted, ours, ids, rtol=0.0, atol=1.01e-3).equal  # and an atol, added to it
    assert not compare_layers(shifted, ours, ids, rtol=0.0, atol=0.99e-3).equal
    assert "plus 0.00101" in repr(compare_layers(shifted, ours, ids, rtol=0.0, atol=1.01e-3))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_small_bug_in_a_model_with_small_activations_is_named_where_it_is(tmp_path, layer):
    """At the package's own initialization activations are about 0.1: a bug that rounds one block's
    attention to bf16 changes that block by 5e-5, under an absolute 1e-4, while the logits (about 1)
    changed by 3e-4. The tolerance scales with each layer, so the block is named, not the logits."""
    torch.manual_seed(layer)
    cfg = g.preset("gpt2-tiny").replace(vocab_size=300, context_length=32, n_layers=3)
    ours = g.GPT(cfg).eval()  # not randomize(): the initialization a learner's new model has
    ref = GPT2LMHeadModel.from_pretrained(g.write_checkpoint(ours, tmp_path / "gpt2", dtype=torch.float32)).eval()
    ids = torch.randint(0, 300, (2, 32))
    assert compare_layers(ours, ref, ids).equal
    attn = ours.blocks[layer].attn
    forward = attn.forward
    attn.forward = lambda *a, **k: forward(*a, **k).bfloat16().float()  # a 1-ulp-of-bf16 bug in one block
    result = compare_layers(ours, ref, ids)
    assert result.first_difference == f"block {layer}", result
    assert max(result.sizes[f"block {i}"] for i in range(3)) < 0.5  # the activations are small indeed


def test_a_negative_change_counts_by_its_size(pair):
    """The difference is the max of |a - b|: lowering a value shows as much as raising it."""
    ours, _, ids = pair
    lowered = copy.deepcopy(ours)
    with torch.no_grad():
        lowered.pos_embed.weight[3] -= 1.0
    result = compare_layers(lowered, ours, ids)
    assert result.first_difference == "embeddings"
    assert result.diffs["embeddings"] == pytest.approx(1.0, abs=1e-5)
    assert result.sizes["embeddings"] == layer_outputs(ours, ids)["embeddings"].abs().max().item()  # b's, not a's


def test_only_the_first_difference_is_marked(pair):
    ours, ref, ids = pair
    broken = copy.deepcopy(ours)
    broken.blocks[0].attn_norm.eps = 1.0  # every layer from block 0 on differs
    text = repr(compare_layers(broken, ref, ids, names=("broken", "hf")))
    assert text.count("<- first difference") == 1
    assert text.splitlines()[-1] == "broken and hf part at block 0 (tolerance: 1e-05 of each layer's largest value)"


def test_outputs_of_different_shapes_are_refused_by_name(pair):
    ours, _, ids = pair
    wider = g.GPT(ours.config.replace(vocab_size=301)).eval()
    with pytest.raises(ValueError, match=r"logits: a gives shape \(2, 32, 300\), b \(2, 32, 301\)"):
        compare_layers(ours, wider, ids)


def test_no_hooks_are_left_on_the_models(pair):
    """The hooks that record each block are removed: the models run as before afterwards."""
    ours, ref, ids = pair
    compare_layers(ours, ref, ids)
    for model in (ours, ref):
        for m in model.modules():
            assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__


class _TupleBlock(torch.nn.Module):
    """A block like older transformers' ones: called with hidden_states=..., returns (hidden, extra)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden_states * self.scale, torch.zeros(1)


class _TupleModel(torch.nn.Module):
    def __init__(self, scales: list[float]) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        torch.nn.init.constant_(self.embed.weight, 1.0)
        self.layers = torch.nn.ModuleList(_TupleBlock(s) for s in scales)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(hidden_states=x)[0]
        return x


def test_blocks_that_take_keywords_and_return_tuples():
    """Hidden states come first in a block's tuple, and may be passed as hidden_states=...."""
    ids = torch.tensor([[1, 2, 3]])
    result = compare_layers(_TupleModel([1.0, 2.0]), _TupleModel([1.0, 3.0]), ids)
    assert result.diffs["embeddings"] == 0.0 and result.diffs["block 0"] == 0.0
    assert result.diffs["block 1"] == pytest.approx(1.0) and result.first_difference == "block 1"


class _InPlaceBlock(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2.0)  # updates the residual stream in place, as some hand-written blocks do


def test_recorded_outputs_are_copies_not_views_of_a_stream_changed_in_place():
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([_InPlaceBlock(), _InPlaceBlock()])

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = ids.float().unsqueeze(-1).clone()
            for layer in self.layers:
                x = layer(x)
            return x

    outs = layer_outputs(Model(), torch.ones(1, 3, dtype=torch.long))
    assert [outs[k].flatten()[0].item() for k in ("embeddings", "block 0", "block 1", "logits")] == [1.0, 2.0, 4.0, 4.0]


def test_an_overflow_in_one_model_is_named_where_it_happens(pair):
    """b's inf makes its layer's size inf, and an inf tolerance would let the inf difference pass."""
    ours, _, ids = pair
    overflowed = copy.deepcopy(ours)
    with torch.no_grad():
        overflowed.blocks[0].mlp.fc_out.bias[0] = float("inf")
    for a, b in ((ours, overflowed), (overflowed, ours)):
        result = compare_layers(a, b, ids)
        assert result.first_difference == "block 0", result
        # overflowed lists the layers where either model holds inf or NaN, not only where both do.
        assert result.overflowed[:1] == ("block 0",) and "embeddings" not in result.overflowed, result.overflowed


class Looped(torch.nn.Module):
    """The course's GPT with a forward whose loop over the blocks runs them in ``order``: a learner's loop bug."""

    def __init__(self, gpt: g.GPT, order: list[int]) -> None:
        super().__init__()
        self.gpt, self.blocks, self.order = gpt, gpt.blocks, order

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.gpt.embed(ids) + self.gpt.pos_embed(torch.arange(ids.shape[1]))
        for i in self.order:
            x = self.blocks[i](x)
        return self.gpt.logits(x)


@pytest.mark.parametrize("order, says", [
    ([2, 1, 0], "looped ran its blocks in the order 2, 1, 0: a model runs each of its 3 blocks once, in order"),
    ([0, 1], "looped never ran block 2: a model runs each of its 3 blocks once"),
    ([0, 0, 0], "looped ran block 0 3 times and never ran blocks 1, 2: a model"),
    ([0, 1, 1, 2], "looped ran block 1 twice: a model"),
])
def test_a_loop_over_the_blocks_that_skips_repeats_or_reverses_is_named(pair, order, says):
    """Such loops were told to "compare models of the same depth" ("looped has 1 blocks and hf has 3"), though both
    had 3: what was recorded was taken for the depth."""
    ours, ref, ids = pair
    assert compare_layers(Looped(ours, [0, 1, 2]), ref, ids).equal  # the right loop agrees: the wrapper is sound
    with pytest.raises(ValueError, match=re.escape(says) + ".*its loop over the blocks .* is where to look"):
        compare_layers(Looped(ours, order), ref, ids, names=("looped", "hf"))
    assert not ours.blocks[0]._forward_hooks and not ours.blocks[0]._forward_pre_hooks  # no hook left behind


def test_two_models_that_overflow_alike_agree_there(pair):
    """inf - inf is NaN: two models with the same infinite output were told they parted at that block (and, with
    LayerNorm's NaN after it, one block later); an inf in b must not make a layer's tolerance infinite either."""
    ours, _, ids = pair
    overflowing = copy.deepcopy(ours)
    with torch.no_grad():
        overflowing.blocks[0].mlp.fc_out.bias[0] = float("inf")
    result = compare_layers(overflowing, copy.deepcopy(overflowing), ids)
    assert result.equal and result.diffs["block 0"] == 0.0, result
    n = len(result.overflowed) - 1
    assert repr(result).endswith("all layers agree within 1e-05 of each layer's largest value; both hold inf or NaN, "
                                 f"in the same places, at block 0 and {n} more layers"), repr(result)
    assert compare_layers(overflowing, ours, ids).first_difference == "block 0"  # against a finite model, it parts
    buggy = copy.deepcopy(overflowing)  # the same overflow, and a real bug beside it in the same block
    with torch.no_grad():
        buggy.blocks[0].mlp.fc_out.bias[1] += 100.0
    result = compare_layers(buggy, overflowing, ids)
    assert result.first_difference == "block 0" and math.isfinite(result.tolerance("block 0")), result


def test_the_verdict_names_only_the_non_finite_layers_before_the_parting(pair):
    """It said "from block 0 on both hold inf or NaN" of models that parted later because one alone held a NaN."""
    from gptoss_edu.compare import LayerComparison

    diffs = {"embeddings": 0.0, "block 0": 0.0, "block 1": float("nan"), "logits": float("nan")}
    sizes = {"embeddings": 1.0, "block 0": 3.0, "block 1": 5.0, "logits": 5.0}
    result = LayerComparison(("a", "b"), diffs, sizes, 1e-5, overflowed=("block 0", "block 1", "logits"))
    assert result.first_difference == "block 1"
    assert repr(result).endswith("a and b part at block 1 (tolerance: 1e-05 of each layer's largest value); both hold "
                                 "inf or NaN, in the same places, at block 0")


# ---- found by mutation testing: atol and rtol together, bf16 logits --------------

def test_atol_and_rtol_add_up_as_documented():
    """The tolerance is atol + rtol * max |b| (LayerComparison's docstring): the tests gave one of them at a time,
    so the larger of the two would have passed as well."""
    from gptoss_edu.compare import LayerComparison

    result = LayerComparison(("a", "b"), {"block 0": 0.9}, {"block 0": 10.0}, rtol=0.05, atol=0.5)
    assert result.tolerance("block 0") == 1.0  # 0.5 + 0.05 x 10, not max(0.5, 0.5)
    assert result.equal and result.first_difference is None


def test_a_bfloat16_models_logits_are_recorded_in_float32_as_its_blocks_are(pair):
    """Every recorded layer is float32, so that the differences and sizes of a bfloat16 model are taken in float32
    (the logits were left in the model's dtype)."""
    ours, _, ids = pair
    outs = layer_outputs(copy.deepcopy(ours).to(torch.bfloat16), ids)
    assert {name: t.dtype for name, t in outs.items()} == dict.fromkeys(outs, torch.float32)
