"""compare_layers: per-block differences between two models, and the first layer that parts."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2LMHeadModel

import gptoss_edu as g
from random_weights import randomize
from gptoss_edu.compare import compare_layers, find_blocks, layer_outputs

ATOL = 1e-4  # float32 rounding between two implementations of the same GPT-2


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
    result = compare_layers(ours, ref, ids, atol=ATOL, names=("ours", "hf"))
    assert list(result.diffs) == ["embeddings", "block 0", "block 1", "block 2", "logits"]
    assert result.equal and result.first_difference is None
    assert max(result.diffs.values()) < ATOL
    assert "all layers agree within 0.0001" in repr(result)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_a_broken_layer_is_named_first(pair, layer):
    ours, ref, ids = pair
    broken = copy.deepcopy(ours)
    broken.blocks[layer].attn_norm.eps = 1.0  # a wrong LayerNorm eps in one layer
    result = compare_layers(broken, ref, ids, atol=ATOL, names=("broken", "hf"))
    assert result.first_difference == f"block {layer}"
    assert all(d < ATOL for name, d in result.diffs.items() if name in [f"block {i}" for i in range(layer)])
    assert result.diffs["logits"] > ATOL
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
    assert compare_layers(noisy, ref, ids, atol=ATOL).equal  # dropout off while comparing
    assert noisy.training and all(m.training for m in noisy.modules())  # and the mode is given back
    noisy.blocks[0].eval()  # a mix of modes comes back as it was, module by module
    compare_layers(noisy, ref, ids, atol=ATOL)
    assert noisy.training and not noisy.blocks[0].training and noisy.blocks[1].training
