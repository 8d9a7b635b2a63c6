"""ModelConfig: the checks that refuse a broken config, the mapping to and from transformers' config,
and what course_config(n) changes at each notebook (found unpinned by mutation testing)."""
from __future__ import annotations

import json

import pytest
import torch

import gptoss_edu as g


@pytest.mark.parametrize("field", ["vocab_size", "d_model", "n_layers", "n_heads", "head_dim", "d_ff", "context_length"])
def test_a_zero_size_is_refused(field):  # C01: `> 0` -> `>= 0`
    with pytest.raises(ValueError, match=f"{field} must be positive, got 0"):
        g.preset("gpt2-tiny").replace(**{field: 0})


def test_rotary_positions_need_an_even_head_dim():  # C03
    with pytest.raises(ValueError, match="even head_dim, got 15"):
        g.preset("gpt2-tiny").replace(positions="rope", head_dim=15)
    assert g.preset("gpt2-tiny").replace(head_dim=15).head_dim == 15  # learned positions do not rotate


def test_yarn_refuses_a_factor_below_one():  # C04
    with pytest.raises(ValueError, match="rope_scaling_factor >= 1"):
        g.preset("gpt-oss-tiny").replace(rope_scaling_factor=0.5)


def test_dropout_of_one_is_refused():  # C05
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1"):
        g.preset("gpt2-tiny").replace(dropout=1.0)


def test_layer_types_must_match_the_layer_count():  # C07
    with pytest.raises(ValueError, match="layer_types has 4 entries for 2 layers"):
        g.preset("gpt-oss-tiny").replace(n_layers=2)


def test_sliding_layers_need_a_window():  # C08
    with pytest.raises(ValueError, match="sliding_attention layers need sliding_window > 0"):
        g.preset("gpt-oss-tiny").replace(sliding_window=0)


@pytest.mark.parametrize("act", ["gelu_new", "gelu", "gelu_pytorch_tanh"])
def test_gpt2_activation_functions_map_to_the_gelu_transformers_uses(act):  # C14
    from transformers.activations import ACT2FN

    cfg = g.ModelConfig.from_hf_config({**g.preset("gpt2-124m").to_hf_config(), "activation_function": act})
    x = torch.linspace(-6, 6, 301, dtype=torch.float64)
    torch.testing.assert_close(torch.nn.functional.gelu(x, approximate=cfg.gelu_approximate), ACT2FN[act](x),
                               atol=1e-12, rtol=0)


def test_config_diff_leaves_the_name_out():  # C17
    a = g.preset("gpt2-tiny")
    assert g.config_diff(a, a.replace(name="renamed")) == {}
    assert g.config_diff(a, a.replace(name="x", d_ff=128)) == {"d_ff": (256, 128)}


def test_from_json_names_the_config_after_its_folder(tmp_path):  # C18
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(g.preset("gpt-oss-tiny").to_hf_config()))
    assert g.ModelConfig.from_json(folder / "config.json").name == "my-model"


@pytest.mark.parametrize("step", range(0, 14))
def test_course_config_applies_each_notebooks_change_at_its_own_step(step):  # C15
    from gptoss_edu.config import COURSE_STEPS

    cfg = g.course_config(step)
    base = g.preset("gpt2-tiny")
    changed = {f for n, ch in COURSE_STEPS.items() if n <= step for f in ch}
    diff = g.config_diff(base, cfg)
    assert set(diff) == changed
    assert cfg.positions == ("yarn" if step >= 9 else "rope" if step >= 2 else "learned")
    assert cfg.is_moe == (step >= 7) and cfg.sinks == (step >= 6)
