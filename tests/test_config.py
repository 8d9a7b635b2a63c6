"""ModelConfig: the checks that refuse a broken config, the mapping to and from transformers' config,
and what course_config(n) changes at each notebook (found unpinned by mutation testing)."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.config import LAST_STEP


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


@pytest.mark.parametrize("step", range(0, LAST_STEP + 1))
def test_course_config_applies_each_notebooks_change_at_its_own_step(step):  # C15
    from gptoss_edu.config import COURSE_STEPS

    cfg = g.course_config(step)
    base = g.preset("gpt2-tiny")
    changed = {f for n, ch in COURSE_STEPS.items() if n <= step for f in ch}
    diff = g.config_diff(base, cfg)
    assert set(diff) == changed
    assert cfg.positions == ("yarn" if step >= 9 else "rope" if step >= 2 else "learned")
    assert cfg.is_moe == (step >= 7) and cfg.sinks == (step >= 6)


# ---- rope settings in config.json: a typo must not silently turn YaRN off ------------------------------

def _oss_json(**rope_changes):
    raw = json.loads((g.config.PRESET_DIR / "gpt-oss-20b.config.json").read_text())
    rope = {k: v for k, v in raw["rope_scaling"].items() if rope_changes.get(k, 0) is not None}
    rope.update({k: v for k, v in rope_changes.items() if v is not None})
    return raw | {"rope_scaling": rope}


@pytest.mark.parametrize("changes, error, message", [
    ({"rope_type": "yarnn"}, ValueError, "rope_type 'yarnn' (did you mean 'yarn'?)"),
    ({"rope_type": "linear"}, ValueError, "the course runs 'yarn' (gpt-oss's) and 'default'"),
    ({"factor": None, "facter": 32.0}, ValueError, "unknown key 'facter' (did you mean 'factor'?)"),
    ({"beta_fsat": 16.0}, ValueError, "unknown key 'beta_fsat' (did you mean 'beta_fast'?)"),
    ({"factor": None}, KeyError, "missing 'factor'"),
    ({"original_max_position_embeddings": None}, KeyError, "missing 'original_max_position_embeddings'"),
    ({"factor": "32"}, ValueError, "'factor' must be a number >= 1, got '32'"),
    ({"factor": 0.5}, ValueError, "'factor' must be a number >= 1, got 0.5"),
    ({"factor": True}, ValueError, "'factor' must be a number >= 1, got True"),  # float(True) is 1.0: plain RoPE
    ({"factor": float("nan")}, ValueError, "'factor' must be a number >= 1, got nan"),  # json reads NaN
    ({"attention_factor": 1.2}, ValueError, "sets 'attention_factor', which gpt-oss's YaRN does not have"),
    ({"mscale": 1.0}, ValueError, "sets 'mscale'"),
])
def test_a_mistyped_rope_setting_is_refused_and_named(changes, error, message):
    with pytest.raises(error) as caught:
        g.ModelConfig.from_hf_config(_oss_json(**changes))
    assert message in str(caught.value)


def test_rope_settings_of_the_wrong_kind_are_named():
    with pytest.raises(ValueError, match="'rope_scaling' must be an object"):
        g.ModelConfig.from_hf_config(_oss_json() | {"rope_scaling": "yarn"})


def test_the_rope_settings_transformers_5_saves_read_as_the_hubs():
    """transformers 5 writes rope_parameters (rope_theta inside, the type perhaps as 'type'); the same model."""
    from transformers import GptOssConfig

    saved = GptOssConfig.from_json_file(g.config.PRESET_DIR / "gpt-oss-20b.config.json").to_dict()
    assert "rope_parameters" in saved and "rope_scaling" not in saved and "rope_theta" not in saved
    hub = g.preset("gpt-oss-20b")
    assert g.ModelConfig.from_hf_config(saved, name=hub.name) == hub
    legacy = _oss_json(rope_type=None, type="yarn")
    assert g.ModelConfig.from_hf_config(legacy, name=hub.name) == hub


def test_rope_type_default_is_plain_rope():
    raw = _oss_json() | {"rope_scaling": {"rope_type": "default"}}
    cfg = g.ModelConfig.from_hf_config(raw)
    assert cfg.positions == "rope" and cfg.rope_theta == raw["rope_theta"]


@pytest.mark.parametrize("drop, set_to", [
    (("rope_scaling",), {}), ((), {"rope_scaling": None}), ((), {"rope_scaling": {}}),
    (("sliding_window", "layer_types"), {}), (("layer_types",), {}), (("tie_word_embeddings",), {}),
    ((), {"rope_scaling": _oss_json(beta_fast=None, beta_slow=None, truncate=None)["rope_scaling"]}),
    # Set twice, differently: the rope settings' own rope_theta, and the newer key beside the original's
    ((), {"rope_scaling": _oss_json(rope_theta=10000.0)["rope_scaling"]}),
    ((), {"rope_parameters": _oss_json(rope_theta=10000.0)["rope_scaling"], "rope_scaling": None}),
    ((), {"experts_per_token": 2}),
])
def test_settings_left_out_are_read_as_transformers_reads_them(drop, set_to):
    """No rope settings once read as plain RoPE, where transformers reads gpt-oss's YaRN (logits 1.4 apart);
    no sliding_window as no window, where transformers takes 128 on every other layer; a rope_theta inside the
    rope settings lost to the one at the top, where transformers takes the inner one."""
    from transformers import GptOssConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from gptoss_edu.rotary import Rotary

    raw = {k: v for k, v in _oss_json().items() if k not in drop} | set_to
    ours, theirs = g.ModelConfig.from_hf_config(raw), GptOssConfig.from_dict(raw)
    rope = theirs.rope_parameters
    assert ours.positions == ("yarn" if rope["rope_type"] == "yarn" and rope["factor"] > 1 else "rope")
    assert (ours.rope_scaling_factor, ours.rope_original_context, ours.rope_theta) == (
        rope["factor"], rope["original_max_position_embeddings"], rope["rope_theta"])
    # beta_fast, beta_slow and truncate left out are defaults inside transformers' YaRN: compare what it makes
    want_freq, want_factor = ROPE_INIT_FUNCTIONS[rope["rope_type"]](theirs, "cpu")
    rotary = Rotary(ours)
    torch.testing.assert_close(rotary.inv_freq, want_freq.float(), atol=0, rtol=1e-6)
    assert math.isclose(rotary.attention_factor, want_factor, rel_tol=1e-12)
    assert [ours.window(i) for i in range(ours.n_layers)] == [
        theirs.sliding_window if t == "sliding_attention" else 0 for t in theirs.layer_types]
    assert (ours.tie_embeddings, ours.experts_per_token) == (theirs.tie_word_embeddings, theirs.num_experts_per_tok)


def test_whole_numbers_written_as_floats_are_read_as_transformers_reads_them():
    """Some tools write 4096 as 4096.0; transformers reads it, and so does the course (2.5 is refused)."""
    raw = _oss_json(original_max_position_embeddings=4096.0) | {"initial_context_length": 4096.0, "hidden_size": 2880.0}
    assert g.ModelConfig.from_hf_config(raw) == g.ModelConfig.from_hf_config(_oss_json())
    with pytest.raises(ValueError, match="config.json's 'hidden_size' must be a whole number, got 2880.5"):
        g.ModelConfig.from_hf_config(raw | {"hidden_size": 2880.5})


def test_numpy_numbers_are_numbers():
    """A sweep over np.arange once read "n_layers must be a whole number, got np.int64(2)"."""
    import numpy as np

    cfg = g.preset("gpt2-tiny").replace(n_layers=np.int64(2), d_ff=np.int32(96), dropout=np.float32(0.25))
    assert (cfg.n_layers, cfg.d_ff, cfg.dropout) == (2, 96, 0.25)
    assert type(cfg.n_layers) is int and type(cfg.d_ff) is int and type(cfg.dropout) is float
    assert json.loads(json.dumps(cfg.to_hf_config()))["n_layer"] == 2  # JSON takes it as it is
    for bad in (np.bool_(True), np.float64(2.0), 2.0):  # a flag or a float is still not a layer count
        with pytest.raises(ValueError, match="n_layers must be a whole number"):
            g.preset("gpt2-tiny").replace(n_layers=bad)


def test_experts_without_biases_are_refused():
    """gpt-oss's experts always have biases: mlp_bias=False with experts once built them anyway, and the
    parameter counts and byte figures then disagreed with the model."""
    with pytest.raises(ValueError, match="gpt-oss experts always have biases.*keep mlp_bias=True with n_experts > 0"):
        g.course_config(LAST_STEP).replace(mlp_bias=False)
    assert not g.course_config(LAST_STEP).replace(n_experts=0, experts_per_token=0, mlp_bias=False).mlp_bias


def test_a_gpt2_width_its_heads_do_not_divide_is_refused():
    """n_embd 100 with 3 heads once built heads 33 wide (99 of 100 channels); transformers refuses it."""
    raw = {"model_type": "gpt2", "vocab_size": 50, "n_embd": 100, "n_layer": 1, "n_head": 3}
    with pytest.raises(ValueError, match=r"n_embd 100, which its n_head \(3\) does not divide"):
        g.ModelConfig.from_hf_config(raw)
    assert g.ModelConfig.from_hf_config(raw | {"n_head": 4}).head_dim == 25


def test_plain_rope_as_transformers_5_saves_it_is_read():
    """transformers 5 writes a plain-RoPE model's rope_theta inside rope_parameters, beside rope_type 'default'."""
    from transformers import GptOssConfig

    raw = {k: v for k, v in _oss_json().items() if k not in ("rope_scaling", "rope_theta")}
    saved = GptOssConfig.from_dict(raw | {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}).to_dict()
    assert saved["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0} and "rope_theta" not in saved
    cfg = g.ModelConfig.from_hf_config(saved)
    assert cfg.positions == "rope" and cfg.rope_theta == 10000.0


def test_unknown_layer_types_of_mixed_kinds_are_named():
    """A number among the strings once made the message itself fail (sorting str with int: TypeError)."""
    with pytest.raises(ValueError, match=re.escape("unknown layer types 'sliding', 3: use")):
        g.preset("gpt-oss-tiny").replace(layer_types=("full_attention", "sliding", 3, "full_attention"))
    with pytest.raises(ValueError, match=re.escape("unknown layer types ['full_attention']: use")):
        g.preset("gpt-oss-tiny").replace(layer_types=("full_attention", ["full_attention"]) * 2)  # unhashable


def test_a_billion_layers_is_refused_before_anything_is_built_per_layer(tmp_path):
    """A damaged config.json with 10^9 layers took 90 s and 8.5 GB to build its layer types, then was refused."""
    from gptoss_edu import checkpoint as ck
    from gptoss_edu.config import MAX_LAYERS

    real = json.loads((g.config.PRESET_DIR / "gpt-oss-20b.config.json").read_text())
    for changes, key in (({"num_hidden_layers": 10**9, "layer_types": None}, "num_hidden_layers"),
                         ({"num_hidden_layers": 10**9, "num_experts": 32, "experts_per_token": 4}, None)):
        raw = {k: v for k, v in (real | changes).items() if v is not None}
        if key is None:  # OpenAI's original/config.json layout
            raw = {k: raw[k] for k in ck.ORIGINAL_KEYS if k in raw} | {
                "num_experts": 32, "experts_per_token": 4, "initial_context_length": 4096, "rope_scaling_factor": 32.0,
                "rope_ntk_alpha": 1.0, "rope_ntk_beta": 32.0}
        (tmp_path / "config.json").write_text(json.dumps(raw))
        with pytest.raises(ck.CheckpointError, match=f"n_layers is 1,000,000,000: the course reads models of up to "
                                                      f"{MAX_LAYERS:,} layers"):
            ck.read_config(tmp_path)  # before: 90 s and 8.5 GB, then accepted
    with pytest.raises(ValueError, match="ModelConfig 'x': n_layers is 20,000"):
        g.preset("gpt2-tiny").replace(name="x", n_layers=20_000)
    assert g.preset("gpt2-tiny").replace(n_layers=MAX_LAYERS).n_layers == MAX_LAYERS


@pytest.mark.parametrize("name", ["gpt-oss-20b", "gpt-oss-120b"])
def test_the_presets_write_the_hubs_config_json_key_for_key(name):
    """The config.json the course writes for a preset is the Hub's own, harmony's eos and pad ids included."""
    real = json.loads((g.config.PRESET_DIR / f"{name}.config.json").read_text())
    assert g.preset(name).to_hf_config() == real
    small = g.preset(name).replace(vocab_size=1000).to_hf_config()  # no room for the harmony ids
    assert small["eos_token_id"] is None and small["pad_token_id"] is None


@pytest.mark.parametrize("step", [3.0, 2.5, "3", True, -1, LAST_STEP + 1])
def test_course_config_names_a_step_that_is_no_notebook(step):
    """3.0 failed formatting the name ("Unknown format code 'd'"), '3' at a comparison; True passed as step 1."""
    with pytest.raises(ValueError, match=f"step is a notebook's number, a whole number 0..{LAST_STEP}, got {step!r}"):
        g.course_config(step)
    with pytest.raises(TypeError, match=r"base must be a ModelConfig \(e.g. preset\('gpt2-tiny'\)\), got str"):
        g.course_config(3, base="gpt2-tiny")


@pytest.mark.parametrize("changes, message", [
    ({"gelu_approximate": "exact"}, "gelu_approximate must be none|tanh"),  # used to fail at the first forward
    ({"n_experts": -1}, "n_experts must be 0 or more"),  # used to be told as experts_per_token's problem
    ({"experts_per_token": -2}, "experts_per_token must be 0 or more"),
    ({"sliding_window": -4}, "sliding_window must be 0 or more"),
])
def test_settings_out_of_range_are_named_by_the_setting(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        g.preset("gpt2-tiny").replace(**changes)


def test_the_window_of_a_layer_the_model_does_not_have_is_named():
    cfg = g.preset("gpt-oss-20b")
    assert [cfg.window(0), cfg.window(1), cfg.window(23)] == [128, 0, 0]
    import numpy as np

    assert cfg.window(np.int64(2)) == cfg.window(torch.tensor(2)) == 128  # np.arange's layers, say
    for layer in (24, -1, 1.0, True):  # -1 gave the last layer's, 24 "tuple index out of range"
        with pytest.raises(ValueError, match=f"layer must be one of the model's layers, 0..23, got {layer!r}"):
            cfg.window(layer)


def test_a_number_with_more_digits_than_str_prints_is_still_named():
    """str() refuses ints past 4,300 digits (Python 3.11): the message itself raised a ValueError about that."""
    for read in (g.config.read_number, g.config.read_whole):
        with pytest.raises(ValueError, match=r"'k' is too large a number \(thousands of digits\)"):
            read({"k": 10 ** 5000}, "k", None)


def test_a_whole_number_is_too_large_from_2_to_the_63():
    """torch's sizes are 64-bit: 2**63 (as an int or as 2.0**63) passes no tensor size, 2**63 - 1 is read."""
    assert g.config.read_whole({"k": 2**63 - 1}, "k") == 2**63 - 1
    for big in (2**63, 2.0**63, -(2**63)):
        with pytest.raises(ValueError, match=r"'k' is too large a number \(19 digits\)"):
            g.config.read_whole({"k": big}, "k")


def test_grouped_query_attention_of_a_one_head_model_keeps_its_head():
    """Notebook 05 halves the key/value heads: a one-head base keeps one (half of it, 0, was refused)."""
    base = g.preset("gpt2-tiny").replace(n_heads=1, n_kv_heads=1, head_dim=g.preset("gpt2-tiny").d_model)
    assert (g.course_config(5, base).n_heads, g.course_config(5, base).n_kv_heads) == (1, 1)
    assert g.course_config(5, base.replace(n_heads=4, n_kv_heads=4, head_dim=base.d_model // 4)).n_kv_heads == 2
