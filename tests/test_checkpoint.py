"""Checkpoints in the real layouts: manifest of the full-size models, OpenAI's original layout, errors.

Tolerances: a checkpoint read back, or the same weights read from another layout, gives the same
logits exactly (atol 0); against transformers and OpenAI's gpt_oss, atol 1e-5 (float32 sums in
another order through every layer: measured 1e-6).
"""

from __future__ import annotations

import errno
import gc
import inspect
import json
import math
import os
import re
import stat
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file as load_mapped
from safetensors.torch import save_file

import gptoss_edu as g
import gptoss_edu.files
from random_weights import randomize
from gptoss_edu import checkpoint as ck
from gptoss_edu import env
from gptoss_edu import mxfp4
from gptoss_edu.config import PRESET_DIR
from simulated import OUT_OF_MEMORY, OUT_OF_MEMORY_IDS


def load_file(path) -> dict[str, torch.Tensor]:
    """A file's tensors, copied: the tests write edited tensors back to the file they read, and older
    safetensors (0.4) hand out tensors still mapped onto it (rewriting it then ends in a bus error)."""
    return {name: t.clone() for name, t in load_mapped(path).items()}


# SPEC.md section 3, layer-0 rows of the 20b table.
SPEC_20B_LAYER = {
    "input_layernorm.weight": ("bfloat16", (2880,)),
    "self_attn.q_proj.weight": ("bfloat16", (4096, 2880)), "self_attn.q_proj.bias": ("bfloat16", (4096,)),
    "self_attn.k_proj.weight": ("bfloat16", (512, 2880)), "self_attn.k_proj.bias": ("bfloat16", (512,)),
    "self_attn.v_proj.weight": ("bfloat16", (512, 2880)), "self_attn.v_proj.bias": ("bfloat16", (512,)),
    "self_attn.o_proj.weight": ("bfloat16", (2880, 4096)), "self_attn.o_proj.bias": ("bfloat16", (2880,)),
    "self_attn.sinks": ("bfloat16", (64,)),
    "post_attention_layernorm.weight": ("bfloat16", (2880,)),
    "mlp.router.weight": ("bfloat16", (32, 2880)), "mlp.router.bias": ("bfloat16", (32,)),
    "mlp.experts.gate_up_proj_blocks": ("uint8", (32, 5760, 90, 16)),
    "mlp.experts.gate_up_proj_scales": ("uint8", (32, 5760, 90)),
    "mlp.experts.gate_up_proj_bias": ("bfloat16", (32, 5760)),
    "mlp.experts.down_proj_blocks": ("uint8", (32, 2880, 90, 16)),
    "mlp.experts.down_proj_scales": ("uint8", (32, 2880, 90)),
    "mlp.experts.down_proj_bias": ("bfloat16", (32, 2880)),
}


def test_full_size_20b_manifest_is_the_real_layout():
    entries = ck.manifest(g.preset("gpt-oss-20b"))
    by_name = {n: (d, s) for n, d, s in entries}
    assert len(entries) == len(by_name) == 3 + 24 * len(SPEC_20B_LAYER)
    for rest, want in SPEC_20B_LAYER.items():
        for layer in (0, 23):
            assert by_name[f"model.layers.{layer}.{rest}"] == want, rest
    assert by_name["model.embed_tokens.weight"] == ("bfloat16", (201088, 2880))
    assert by_name["lm_head.weight"] == ("bfloat16", (201088, 2880))
    assert by_name["model.norm.weight"] == ("bfloat16", (2880,))
    assert ck.manifest_bytes(entries) == 13_761_264_768  # SPEC: 12.82 GiB


def test_full_size_120b_manifest_bytes():
    entries = ck.manifest(g.preset("gpt-oss-120b"))
    assert ck.manifest_bytes(entries) == 65_248_815_744
    shapes = {n: s for n, _, s in entries}
    assert shapes["model.layers.35.mlp.experts.gate_up_proj_blocks"] == (128, 5760, 90, 16)


def test_shard_names_follow_the_hub():
    assert ck.shard_names(3) == ["model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors",
                                 "model-00002-of-00002.safetensors"]
    assert ck.shard_names(1) == ["model.safetensors"]


def small_gptoss(seed: int = 0, **changes) -> g.GPT:
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=256, context_length=64, rope_original_context=16,
                                           rope_scaling_factor=4.0, **changes)
    return randomize(g.GPT(cfg), seed=seed)


def test_written_folder_matches_the_real_config_keys(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    real = json.loads((PRESET_DIR / "gpt-oss-20b.config.json").read_text())
    ours = json.loads((path / "config.json").read_text())
    assert set(ours) == set(real)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3 and all(re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", f) for f in files)
    assert files[-1].startswith(f"model-{len(files) - 1:05d}-of-{len(files) - 1:05d}")
    total = sum(t.numel() * t.element_size() for f in files for t in load_file(path / f).values())
    assert index["metadata"]["total_size"] == total
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o777 & ~umask      # not the private 0700 of a temp folder


def test_mxfp4_experts_are_written_as_quantize_makes_them(tmp_path):
    model = small_gptoss(seed=2)
    path = g.write_checkpoint(model, tmp_path / "ck")
    tensors = load_file(path / "model.safetensors")
    blocks, scales = mxfp4.quantize(model.blocks[1].mlp.experts.gate_up_proj.detach())
    assert torch.equal(tensors["model.layers.1.mlp.experts.gate_up_proj_blocks"], blocks)
    assert torch.equal(tensors["model.layers.1.mlp.experts.gate_up_proj_scales"], scales)


@pytest.mark.parametrize("preset,dtype", [("gpt2-tiny", torch.bfloat16), ("gpt2-tiny", torch.float32),
                                          ("gpt-oss-tiny", torch.bfloat16), ("gpt-oss-tiny", torch.float32)])
def test_config_json_names_the_dtype_the_weights_are_stored_in(tmp_path, preset, dtype):
    model = randomize(g.GPT(g.preset(preset).replace(vocab_size=256, context_length=32)), seed=1)
    path = g.write_checkpoint(model, tmp_path / "ck", mxfp4=False, dtype=dtype)
    stored = {t.dtype for t in load_file(path / "model.safetensors").values()}
    assert stored == {dtype}
    assert json.loads((path / "config.json").read_text())["torch_dtype"] == str(dtype).removeprefix("torch.")


def test_original_layout_reads_into_the_same_model(tmp_path):
    model = small_gptoss(seed=3)
    hf = g.load_model(g.write_checkpoint(model, tmp_path / "hf"))
    orig = g.load_model(g.write_checkpoint(model, tmp_path / "original", layout="original"))
    assert orig.load_report.layout == "original"
    ids = torch.randint(0, 256, (1, 30))
    with torch.no_grad():
        torch.testing.assert_close(orig(ids), hf(ids), atol=0, rtol=0)


@pytest.mark.parametrize("seed,window,k", [(0, 4, 2), (1, 16, 1), (2, 7, 4), (3, 0, 2)])
def test_original_layout_matches_openai_reference(tmp_path, seed, window, k):
    """OpenAI's own torch model (gpt-oss 0.0.9) on our original/ folder: the same logits in float32."""
    from gpt_oss.torch.model import Transformer

    # The reference asserts 0 < low < high < head_dim/2 - 1 for YaRN: needs head_dim 32 and context 256.
    # Window 0: no layer slides (the reference reads 0 as no window).
    layer_types = tuple("sliding_attention" if i % 2 == 0 and window else "full_attention" for i in range(4))
    cfg = g.preset("gpt-oss-20b").replace(
        name="ref", vocab_size=300, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=64,
        n_experts=4, experts_per_token=k, sliding_window=window, layer_types=layer_types,
        rope_original_context=256, rope_scaling_factor=4.0, context_length=1024)
    path = g.write_checkpoint(randomize(g.GPT(cfg), seed=seed), tmp_path / "original", layout="original")
    ref = Transformer.from_checkpoint(str(path), device="cpu").float()
    ours = g.load_model(path)
    ids = torch.randint(0, 300, (280,))  # past the original context of 256
    with torch.no_grad():
        want, got = ref(ids), ours(ids[None])[0]
    assert want.abs().max() > 0.5
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)  # float32 sums in another order: measured 1.2e-6


def test_an_original_config_with_rope_scaling_factor_1_is_plain_rope_as_openai_reads_it(tmp_path):
    """OpenAI's reference takes factor 1 for plain RoPE (YaRN only above 1); "must be 1 or more, got 1.0" refused it."""
    from gpt_oss.torch.model import Transformer

    path = g.write_checkpoint(small_gptoss(seed=6), tmp_path / "original", layout="original")
    raw = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(raw | {"rope_scaling_factor": 1.0}))
    ours = g.load_model(path)
    assert (ours.config.positions, ours.config.context_length) == ("rope", raw["initial_context_length"])
    ids = torch.randint(0, 256, (ours.config.context_length,), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want, got = Transformer.from_checkpoint(str(path), device="cpu").float()(ids), ours(ids[None])[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)  # float32 sums in another order, as above


def test_keep_mxfp4_never_dequantizes_while_loading(tmp_path, monkeypatch):
    path = g.write_checkpoint(small_gptoss(seed=4), tmp_path / "ck")

    def forbidden(*args, **kwargs):
        raise AssertionError("dequantize called: a dense copy of the experts was made")

    monkeypatch.setattr(mxfp4, "dequantize", forbidden)
    model = g.load_model(path, keep_mxfp4=True, dtype=torch.bfloat16)
    experts = model.blocks[0].mlp.experts
    assert experts.gate_up_proj_blocks.dtype == torch.uint8 and not hasattr(experts, "gate_up_proj")
    assert "experts kept in MXFP4" in str(model.load_report)


def test_a_model_kept_in_mxfp4_can_be_written_dense(tmp_path):
    """mxfp4=False means dense experts even when the model holds them packed (transformers then loads them all)."""
    from transformers import GptOssForCausalLM

    packed = g.load_model(g.write_checkpoint(small_gptoss(seed=6), tmp_path / "ck"), keep_mxfp4=True)
    path = g.write_checkpoint(packed, tmp_path / "dense", mxfp4=False, dtype=torch.float32)
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    names = set(load_file(path / "model.safetensors"))
    assert "model.layers.0.mlp.experts.gate_up_proj" in names and not any(n.endswith("_blocks") for n in names)
    ref, info = GptOssForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(g.load_model(path)(ids), packed(ids), atol=0, rtol=0)
        torch.testing.assert_close(ref.eval()(ids).logits, packed(ids), atol=1e-5, rtol=0)  # measured 1e-6


def test_dense_checkpoint_round_trips_exactly(tmp_path):
    model = small_gptoss(seed=5)
    path = g.write_checkpoint(model, tmp_path / "dense", mxfp4=False, dtype=torch.float32)
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(g.load_model(path)(ids), model(ids), atol=0, rtol=0)
    with pytest.raises(g.CheckpointError, match="experts are dense.*keep_mxfp4=False"):
        g.load_model(path, keep_mxfp4=True)


def test_load_report_and_progress(tmp_path, capsys):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    g.load_model(path, progress=True, verbose=True)
    out = capsys.readouterr()
    stored = [t for f in path.glob("*.safetensors") for t in load_file(f).values()]
    on_disk = ck.format_bytes(sum(t.numel() * t.element_size() for t in stored))
    assert re.search(rf"read {len(stored)} tensors, {on_disk} on disk \((uint8|bfloat16) .*, (uint8|bfloat16) .*\), "
                     r"from [3-9] file\(s\) \(gpt_oss layout\) in .* s; in memory on cpu: float32, experts dense",
                     out.out)
    assert "loading weights" in out.err  # the progress bar
    g.load_model(path, dtype=torch.bfloat16, keep_mxfp4=True, verbose=True)
    assert "in memory on cpu: bfloat16, experts kept in MXFP4 (uint8)" in capsys.readouterr().out


# ---- bad input -------------------------------------------------------------------------------

@pytest.fixture
def written(tmp_path):
    return g.write_checkpoint(small_gptoss(seed=6), tmp_path / "ck")


def rewrite(path, change):
    tensors = load_file(path / "model.safetensors")
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"))


def test_missing_tensor_is_named(written, tmp_path):
    rewrite(written, lambda t: t.pop("model.layers.2.self_attn.sinks"))
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) model\.layers\.2\.self_attn\.sinks \(for the "
                                                r"model's blocks\.2\.attn\.sinks, shape \(4,\)\)"):
        g.load_model(written)
    rewrite(written, lambda t: t.pop("model.layers.1.mlp.experts.down_proj_scales"))
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) model\.layers\.1\.mlp\.experts\.down_proj_scales, "
                                                r"model\.layers\.2"):
        g.load_model(written)  # dense in the model, made of blocks and scales: the half that did not come
    original = g.write_checkpoint(small_gptoss(), tmp_path / "original", layout="original")
    tensors = load_file(original / "model.safetensors")
    tensors.pop("block.3.mlp.norm.scale")
    save_file(tensors, str(original / "model.safetensors"))
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) block\.3\.mlp\.norm\.scale \(for the model's "
                                                r"blocks\.3\.mlp_norm\.weight"):
        g.load_model(original, keep_mxfp4=True)


def test_misshaped_tensor_names_both_shapes(written):
    rewrite(written, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(16, 64)}))
    with pytest.raises(g.CheckpointError,
                       match=r"'model.layers.0.self_attn.k_proj.weight' has shape \(16, 64\); .* expects \(32, 64\)"):
        g.load_model(written)


@pytest.mark.parametrize("name", ["model.layers.0.mlp.router.weight", "model.layers.1.self_attn.k_proj.weight"])
def test_a_transposed_tensor_is_refused_though_its_size_is_right(written, name):
    """Same number of values, other shape: read as it is, it would scramble the layer without a word."""
    def transpose(tensors):
        tensors[name] = tensors[name].T.contiguous()

    rewrite(written, transpose)
    stored = tuple(load_file(written / "model.safetensors")[name].shape)
    assert stored[0] != stored[1]
    with pytest.raises(g.CheckpointError, match=re.escape(f"{name!r} has shape {stored}; this config expects "
                                                          f"{stored[::-1]}")):
        g.load_model(written)


def test_dense_experts_kept_packed_say_why_they_cannot_be(tmp_path):
    """Written dense, the experts cannot stay MXFP4; a config.json that claims MXFP4 all the same is named."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "dense", mxfp4=False)
    with pytest.raises(g.CheckpointError, match="experts are dense, so they cannot stay in MXFP4: load with "
                                                "keep_mxfp4=False"):
        g.load_model(path, keep_mxfp4=True)
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4"}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(g.CheckpointError, match="quantization_config says they are MXFP4, which these files are "
                                                "not: remove it from config.json"):
        g.load_model(path, keep_mxfp4=True)
    assert g.load_model(path).config.is_moe  # read dense, it loads


def test_unexpected_tensor_is_named(written):
    rewrite(written, lambda t: t.update({"model.layers.0.mlp.shared_expert.weight": torch.zeros(2)}))
    with pytest.raises(g.CheckpointError, match="shared_expert"):
        g.load_model(written)


def test_truncated_and_foreign_files_are_refused(written):
    data = (written / "model.safetensors").read_bytes()
    (written / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(g.CheckpointError, match="truncated.*Download or copy it again"):
        g.load_model(written)
    (written / "model.safetensors").write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    with pytest.raises(g.CheckpointError, match="not a readable safetensors file"):
        g.load_model(written)


def test_a_checkpoint_from_anywhere_is_held_to_its_folder_and_to_sane_settings(written, tmp_path):
    """A folder downloaded from somewhere: what it names outside itself, a pipe, NaN settings, endless nesting."""
    config = json.loads((written / "config.json").read_text())
    for key, value, message in (("rope_theta", float("nan"), "rope_theta must be a finite number, got nan"),
                                ("swiglu_limit", float("inf"), "swiglu_limit must be a finite number"),
                                ("rope_theta", 1.0, "rope_theta must be more than 1"),
                                ("swiglu_limit", 0.0, "swiglu_limit must be positive")):
        (written / "config.json").write_text(json.dumps({**config, key: value}))  # json writes NaN and Infinity
        with pytest.raises(g.CheckpointError, match=re.escape(message)):
            ck.read_config(written)
    (written / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(g.CheckpointError, match="config.json is not valid JSON"):
        ck.read_config(written)
    (written / "config.json").write_text(json.dumps(config))
    # An index that names a shard outside its folder is refused, before anything there is opened.
    names = list(load_file(written / "model.safetensors"))
    for outside in ("../elsewhere.safetensors", str(tmp_path / "ck" / "model.safetensors")):
        (written / ck.INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(names, outside)}))
        with pytest.raises(g.CheckpointError, match="names shard\\(s\\) outside its folder"):
            g.load_model(written)
    # A name no file can have (an OSError, "File name too long", from the check that the shard exists).
    (written / ck.INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(names, "x" * 300)}))
    with pytest.raises(g.CheckpointError, match="of 300 bytes, longer than a file name can be"):
        g.load_model(written)
    (written / ck.INDEX_FILE).unlink()
    # A pipe named like the weights would block the reader for ever.
    (written / "model.safetensors").rename(written / "weights.bak")
    os.mkfifo(written / "model.safetensors")
    with pytest.raises(g.CheckpointError, match="is not a regular file"):
        g.load_model(written)


def test_one_tensor_stored_twice_under_two_names_is_refused(tmp_path):
    # Which copy is right cannot be known; the last one read used to win, silently.
    gpt2 = g.write_checkpoint(g.GPT(g.preset("gpt2-tiny")), tmp_path / "gpt2")
    tensors = load_file(gpt2 / "model.safetensors")
    prefixed = "transformer.wte.weight" if "wte.weight" in tensors else "wte.weight"
    save_file({**tensors, prefixed: torch.zeros_like(tensors.get("wte.weight", tensors.get("transformer.wte.weight")))},
              str(gpt2 / "model.safetensors"))
    with pytest.raises(g.CheckpointError, match="is a second copy of"):
        g.load_model(gpt2)


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(g.preset("gpt2-tiny").to_hf_config()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(g.CheckpointError, match="pickle files are never loaded"):
        g.load_model(tmp_path)
    (tmp_path / "pytorch_model.bin").rename(tmp_path / "last.ckpt")  # Lightning's name
    with pytest.raises(g.CheckpointError, match=re.escape("(found last.ckpt: pickle files are never loaded")):
        g.load_model(tmp_path)


def test_a_folder_holding_only_original_is_pointed_there(tmp_path):
    g.write_checkpoint(small_gptoss(), tmp_path / "ck" / "original", layout="original")
    with pytest.raises(g.CheckpointError, match=re.escape(f"its original/ folder (OpenAI's layout) does: pass "
                                                          f"{tmp_path / 'ck' / 'original'}")):
        g.load_model(tmp_path / "ck")
    g.load_model(tmp_path / "ck" / "original")


def test_missing_shard_named_in_index(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    victim = sorted(path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(g.CheckpointError, match=f"missing shard\\(s\\) {victim.name}"):
        g.load_model(path)


def test_a_shard_the_index_leaves_out_is_named_as_where_the_missing_tensors_may_be(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    index = json.loads((path / ck.INDEX_FILE).read_text())
    left_out = sorted(path.glob("model-*.safetensors"))[-1].name
    index["weight_map"] = {n: f for n, f in index["weight_map"].items() if f != left_out}
    (path / ck.INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(g.CheckpointError, match=re.escape(f"{left_out} in the folder is not in {ck.INDEX_FILE}, "
                                                          "which lists the files that are read")):
        g.load_model(path)
    (path / left_out).unlink()  # no such file: the usual advice
    with pytest.raises(g.CheckpointError, match="missing tensor.*the download may be incomplete"):
        g.load_model(path)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(quantization_config={"quant_method": "gptq"}), "quantization 'gptq'"),
    (lambda c: c.update(model_type="llama"), "model_type 'llama'"),
    (lambda c: c.pop("num_local_experts"), "missing 'num_local_experts'"),
])
def test_bad_config_is_explained(written, edit, message):
    cfg = json.loads((written / "config.json").read_text())
    edit(cfg)
    (written / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(g.CheckpointError, match=message):
        g.load_model(written)


def test_interrupted_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    model = small_gptoss()
    good = g.write_checkpoint(model, tmp_path / "ck")
    before = sorted(p.name for p in good.iterdir())
    import safetensors.torch

    calls = []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    real_save = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        g.write_checkpoint(model, good, max_shard_bytes=100_000, overwrite=True)
    assert sorted(p.name for p in good.iterdir()) == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary folder left behind
    with pytest.raises(FileExistsError, match="overwrite=True"):
        g.write_checkpoint(model, good)


def _tensor_bytes(folder) -> int:
    return sum(t.numel() * t.element_size() for f in folder.glob("*.safetensors") for t in load_file(f).values())


# ("original", False): the original/ layout packs the experts whatever mxfp4 says, and the size check must count
# them packed too (found by mutation testing: counted from a dense model, the check crashed on its meta tensors).
@pytest.mark.parametrize("layout,mxfp4,dtype", [("hf", True, torch.bfloat16), ("hf", False, torch.float32),
                                                ("original", True, torch.bfloat16), ("original", False, torch.float32)])
def test_a_disk_without_room_is_found_before_anything_is_written(tmp_path, monkeypatch, layout, mxfp4, dtype):
    """The size is known before the write: exactly the tensors' bytes, said in full, with nothing written."""
    model = small_gptoss()
    written = g.write_checkpoint(model, tmp_path / "measured", mxfp4=mxfp4, dtype=dtype, layout=layout)
    need = _tensor_bytes(written)
    monkeypatch.setattr(ck, "disk_free", lambda path: need - 1)
    with pytest.raises(gptoss_edu.files.DiskFull) as raised:
        g.write_checkpoint(model, tmp_path / "ck", mxfp4=mxfp4, dtype=dtype, layout=layout, max_shard_bytes=100_000)
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC and raised.value.needed == need
    assert "not enough room on the disk to write" in message and "nothing was written" in message
    assert f"It needs {g.memory.format_bytes(need)}, and " in message and "more than" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["measured"]  # no folder, no temporary one
    monkeypatch.setattr(ck, "disk_free", lambda path: need)  # just enough: written
    assert _tensor_bytes(g.write_checkpoint(model, tmp_path / "ck", mxfp4=mxfp4, dtype=dtype, layout=layout,
                                            max_shard_bytes=100_000)) == need


def test_a_disk_that_fills_during_the_write_says_the_whole_size(tmp_path, monkeypatch):
    model = small_gptoss()
    good = g.write_checkpoint(model, tmp_path / "ck")
    before = sorted(p.name for p in good.iterdir())
    need = _tensor_bytes(good)
    import safetensors.torch

    calls = []

    def filling_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # another program filled the disk after the check
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    real_save = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", filling_save)
    with pytest.raises(gptoss_edu.files.DiskFull) as raised:
        g.write_checkpoint(model, good, max_shard_bytes=100_000, overwrite=True)
    message = str(raised.value)
    assert "(the disk is full): nothing there was changed" in message and "more than" not in message
    assert f"It needs {g.memory.format_bytes(need)}, and " in message
    assert sorted(p.name for p in good.iterdir()) == before and [p.name for p in tmp_path.iterdir()] == ["ck"]

    calls.clear()

    def quota_save(*args, **kwargs):  # a shared JupyterHub's quota: said as Errno 122, naming only a shard
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EDQUOT, "Disk quota exceeded (writing shard-1.part)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", quota_save)
    with pytest.raises(gptoss_edu.files.DiskFull, match=re.escape(
            f"could not write {good} (this account's disk quota is used up): nothing there was changed. It needs "
            f"{g.memory.format_bytes(need)}: free some space in your account")):
        g.write_checkpoint(model, good, max_shard_bytes=100_000, overwrite=True)
    assert sorted(p.name for p in good.iterdir()) == before and [p.name for p in tmp_path.iterdir()] == ["ck"]


@pytest.mark.parametrize("name,dtype,keep,message", [
    ("model.layers.0.self_attn.k_proj.weight", torch.uint8, False, "is uint8; a weight must be a floating-point"),
    ("model.layers.1.mlp.experts.down_proj_blocks", torch.int8, True, "is int8; MXFP4 blocks and scales are uint8"),
    ("model.layers.1.mlp.experts.down_proj_scales", torch.bfloat16, False, "is bfloat16; MXFP4 blocks and scales"),
])
def test_wrong_dtype_is_named(written, name, dtype, keep, message):
    rewrite(written, lambda t: t.update({name: t[name].to(dtype)}))
    with pytest.raises(g.CheckpointError, match=f"tensor '{re.escape(name)}' {message}"):
        g.load_model(written, keep_mxfp4=keep)


def test_dense_experts_under_mxfp4_names_say_where_they_come_from(written):
    """transformers' save_pretrained of a model loaded with Mxfp4Config(dequantize=True) writes float experts as
    *_blocks with no scales: "the file is damaged" blamed a file transformers had written as it does."""
    def as_transformers_saves(t):
        for part in ("gate_up_proj", "down_proj"):
            name = f"model.layers.0.mlp.experts.{part}"
            t[name + "_blocks"] = torch.randn(*t[name + "_blocks"].shape[:2], 64)
            del t[name + "_scales"]

    rewrite(written, as_transformers_saves)
    with pytest.raises(g.CheckpointError, match=r"_blocks' is float32; MXFP4 blocks and scales are uint8 bytes: "
                                                r"dense experts under MXFP4's names are what transformers' "
                                                r"save_pretrained writes.*write_checkpoint\(model, path, mxfp4=False\)"):
        g.load_model(written)


def test_tensors_too_misshaped_to_convert_are_named(tmp_path, written):
    # Packed on disk, dense in the model: scales that do not match their blocks.
    name = "model.layers.0.mlp.experts.gate_up_proj_scales"
    rewrite(written, lambda t: t.update({name: t[name][:, :-1].contiguous()}))
    with pytest.raises(g.CheckpointError, match=rf"'{re.escape(name)}' \(\d+, \d+, \d+\): cannot be read into this config"):
        g.load_model(written)
    # OpenAI's fused qkv, a few rows short.
    path = g.write_checkpoint(small_gptoss(), tmp_path / "original", layout="original")
    tensors = load_file(path / "model.safetensors")
    tensors["block.0.attn.qkv.weight"] = tensors["block.0.attn.qkv.weight"][:-16].clone()
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(g.CheckpointError, match=r"tensor 'block.0.attn.qkv.weight' of shape \(\d+, 64\): cannot be read"):
        g.load_model(path)


@pytest.mark.parametrize("file,text,message", [
    ("model.safetensors.index.json", '{"weight_map": {"a": ', "index.json is not valid JSON .*download it again"),
    ("model.safetensors.index.json", b"\xff\xfe\x00 not text", "index.json is not valid JSON .*download it again"),
    ("model.safetensors.index.json", "[1, 2]", "index.json has no 'weight_map' .*download it again"),
    ("model.safetensors.index.json", '{"weight_map": {"a": 5}}', "index.json has no 'weight_map' .*download it again"),
    ("config.json", "[1, 2]", "holds a JSON list, not an object"),
    ("config.json", b"\xff\xfe\x00 not text", "config.json is not valid JSON"),
    ("config.json", None, "'quantization_config' should be an object"),
])
def test_damaged_json_files_are_explained(tmp_path, file, text, message):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    if text is None:
        text = json.dumps(json.loads((path / file).read_text()) | {"quantization_config": "mxfp4"})
    (path / file).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(g.CheckpointError, match=message):
        g.load_model(path)


@pytest.mark.parametrize("changes", [{"attn_bias": False}, {"swiglu_alpha": 1.5}, {"positions": "rope"},
                                     {"tie_embeddings": True},
                                     {"layer_types": ("full_attention", "sliding_attention", "sliding_attention",
                                                      "full_attention")}])
def test_written_settings_read_back_as_the_same_model(tmp_path, changes):
    model = small_gptoss(seed=8, **changes)
    path = g.write_checkpoint(model, tmp_path / "ck", mxfp4=False, dtype=torch.float32)
    assert len(ck.manifest(model.config, mxfp4_experts=False)) == len(load_file(path / "model.safetensors"))
    loaded = g.load_model(path)
    assert {k: getattr(loaded.config, k) for k in changes} == changes
    assert (loaded.lm_head.weight is loaded.embed.weight) == model.config.tie_embeddings
    ids = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), atol=0, rtol=0)


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_a_checkpoint_is_on_the_disk_before_it_is_renamed_into_place(tmp_path, disk_log):
    """A power cut after the rename must not leave a folder whose files never reached the disk."""
    model = small_gptoss()
    for overwrite in (False, True):  # a new folder, then one replacing it
        path = g.write_checkpoint(model, tmp_path / "ck", max_shard_bytes=100_000, overwrite=overwrite)
        assert len(list(path.glob("*.safetensors"))) > 1
        disk_log.assert_synced_before_renamed(path)


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_a_disk_that_cannot_sync_folders_or_fails_to_is_handled(tmp_path, failing_fsync):
    model, other = small_gptoss(0), small_gptoss(1)
    # A FUSE or network mount that cannot sync a folder (EINVAL): the checkpoint is written all the same.
    failing_fsync(errno.EINVAL)
    path = g.write_checkpoint(model, tmp_path / "ck")
    assert torch.equal(g.load_model(path).embed.weight, model.embed.weight.to(torch.bfloat16).float())
    # A disk error before the rename: reported, and the earlier checkpoint stays as it was.
    failing_fsync(errno.EIO)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        g.write_checkpoint(other, path, overwrite=True)
    assert torch.equal(g.load_model(path).embed.weight, model.embed.weight.to(torch.bfloat16).float())
    # A disk error flushing the rename: reported; the new checkpoint is in place and no copy of the old is left.
    failing_fsync(errno.EIO, only=tmp_path)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        g.write_checkpoint(other, path, overwrite=True)
    assert torch.equal(g.load_model(path).embed.weight, other.embed.weight.to(torch.bfloat16).float())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_overwrite_replaces_checkpoints_and_links_never_a_file_and_ignores_leftovers(tmp_path):
    model = small_gptoss()
    (tmp_path / ".ck.old").mkdir()  # left by an interrupted overwrite of an earlier version
    (tmp_path / ".ck.old" / "x").write_text("x")
    ck_path = g.write_checkpoint(model, tmp_path / "ck")
    assert g.write_checkpoint(model, ck_path, overwrite=True) == ck_path
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    g.write_checkpoint(model, tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_dir() and not (tmp_path / "link").is_symlink()
    assert (tmp_path / "link" / "config.json").exists()
    assert (tmp_path / "real").is_dir()  # a link is replaced, not what it pointed to
    # A file is no checkpoint: a slip such as writing to .../model.safetensors must not delete it.
    (tmp_path / "file").write_text("not a checkpoint")
    with pytest.raises(FileExistsError, match="is a file, not a checkpoint folder, which replacing it would delete"):
        g.write_checkpoint(model, tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "not a checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ck.old", "ck", "file", "link", "real"]


def test_a_tensor_in_two_shards_is_refused(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    first, second = sorted(path.glob("model-*.safetensors"))[:2]
    name, tensor = next(iter(load_file(first).items()))
    tensors = load_file(second) | {name: tensor}
    save_file(tensors, str(second))
    with pytest.raises(g.CheckpointError, match=f"'{re.escape(name)}' is in both {first.name} and {second.name}"):
        g.load_model(path)


@pytest.mark.parametrize("changes,setting", [({"swiglu_alpha": 1.5}, "swiglu_alpha=1.5"),
                                             ({"attn_bias": False}, "attn_bias=False"),
                                             ({"rope_truncate": True}, "rope_truncate=True"),
                                             ({"positions": "rope"}, "positions='rope'")])
def test_original_layout_refuses_what_it_cannot_say(tmp_path, changes, setting):
    with pytest.raises(ValueError, match=f"no setting for {setting}.*layout='hf'"):
        g.write_checkpoint(small_gptoss(**changes), tmp_path / "o", layout="original")
    assert not (tmp_path / "o").exists()


def test_original_layout_without_its_blocks_names_them(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "o", layout="original")
    tensors = {k: v for k, v in load_file(path / "model.safetensors").items() if not k.endswith(".blocks")}
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) block\.0\.mlp\.mlp1_weight\.blocks"):
        g.load_model(path)


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=OUT_OF_MEMORY_IDS)
def test_out_of_memory_is_not_called_a_config_mismatch(written, monkeypatch, error):
    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(mxfp4, "dequantize", full)
    with pytest.raises(RuntimeError, match="allocate") as raised:
        g.load_model(written)
    assert raised.value is error


# ---- found by mutation testing: refusals, the temporary folder, shards, counted messages ---------------

def test_an_existing_file_or_dangling_link_is_not_replaced_without_overwrite(tmp_path):
    # Anything at the path counts, not only a folder; a link to nothing is still something there.
    model = small_gptoss()
    (tmp_path / "file").write_text("notes")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError, match="is a file, not a checkpoint folder"):  # overwrite=True would not help
        g.write_checkpoint(model, tmp_path / "file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        g.write_checkpoint(model, tmp_path / "dangling")
    assert (tmp_path / "file").read_text() == "notes" and (tmp_path / "dangling").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "file"]  # no temporary folder either


def test_the_checkpoint_is_written_beside_its_destination(tmp_path, monkeypatch):
    # Renamed into place from the same folder: a rename from another disk (/tmp, say) is a copy, not atomic.
    moves = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: moves.append((os.fspath(src), os.fspath(dst))) or real(src, dst))
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    assert len(moves) == 1 and moves[0][1] == str(path)
    assert os.path.dirname(moves[0][0]) == str(tmp_path) and os.path.basename(moves[0][0]).startswith(".ck.")


def test_a_failed_swap_puts_the_old_checkpoint_back(tmp_path, monkeypatch):
    # The old checkpoint is moved aside first; when the new one cannot take its place, the old one comes back.
    model = small_gptoss()
    good = g.write_checkpoint(model, tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    real = os.replace

    def swap_fails(src, dst):
        src = os.fspath(src)
        if os.fspath(dst) == str(good) and os.path.basename(src).startswith(".ck.") and ".old-" not in src:
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", swap_fails)
    with pytest.raises(OSError, match="rename failed"):
        g.write_checkpoint(model, good, overwrite=True)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no .ck.old-*, no temporary folder


def test_an_interrupt_while_writing_leaves_no_temporary_folder(tmp_path, monkeypatch):
    # Ctrl-C in a notebook is a KeyboardInterrupt, not an Exception: the cleanup must run all the same.
    import safetensors.torch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_folders_are_made(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "runs" / "today" / "ck")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]  # one file: no index


def greedy_shards(sizes: list[tuple[str, int]], limit: int) -> list[list[str]]:
    """Shards cut greedily: a tensor opens a new shard only when it would take the current one past ``limit``."""
    shards, size = [[]], 0
    for name, nbytes in sizes:
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


@pytest.mark.parametrize("limit", ["first 3 tensors", 100_000, 1])
def test_shards_are_filled_up_to_the_limit_in_order(tmp_path, limit):
    # Exactly the limit still fits; a full shard starts the next afresh; a tensor over the limit gets a
    # shard of its own; no shard is empty.
    model = small_gptoss()
    sizes = [(n, t.numel() * t.element_size()) for n, t in ck.hf_state_dict(model)]
    if limit == "first 3 tensors":
        limit = sum(b for _, b in sizes[:3])
    path = g.write_checkpoint(model, tmp_path / "ck", max_shard_bytes=limit)
    want = greedy_shards(sizes, limit)
    assert len(want) > 1
    weight_map = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    names = ck.shard_names(len(want))
    assert weight_map == {n: names[i] for i, shard in enumerate(want) for n in shard}
    assert sorted(p.name for p in path.glob("*.safetensors")) == names


def test_by_default_gpt_oss_20b_is_written_in_three_shards_as_on_the_hub():
    """One file of every tensor once held the whole model's converted tensors in memory (36 GiB of dense experts)."""
    assert inspect.signature(g.write_checkpoint).parameters["max_shard_bytes"].default == ck.SHARD_BYTES
    sizes = [(n, math.prod(shape) * {"bfloat16": 2, "uint8": 1}[dtype])
             for n, dtype, shape in ck.manifest(g.preset("gpt-oss-20b"))]
    assert len(greedy_shards(sizes, ck.SHARD_BYTES)) == 3  # model-00000-of-00002 ... (SPEC.md, section 3)


def test_writing_packed_experts_dense_holds_one_shard_at_a_time(tmp_path, monkeypatch):
    import safetensors.torch

    held = []
    real = safetensors.torch.save_file

    def spy(tensors, filename, metadata=None):
        held.append(sum(t.numel() * t.element_size() for t in tensors.values()))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", spy)
    model = small_gptoss()
    packed = g.load_model(g.write_checkpoint(model, tmp_path / "packed"), keep_mxfp4=True)
    dense = dict(ck.hf_state_dict(packed, mxfp4_experts=False))
    biggest = max(t.numel() * t.element_size() for t in dense.values())
    held.clear()
    g.write_checkpoint(packed, tmp_path / "dense", mxfp4=False, max_shard_bytes=biggest)
    assert len(held) > 2 and max(held) <= biggest  # never more than one shard's worth at once
    assert sum(held) == sum(t.numel() * t.element_size() for t in dense.values())


def test_a_write_killed_mid_way_is_reported_by_the_next(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    (tmp_path / ".ck.tmp-a1b2c3d4").mkdir()  # what a write killed mid-way leaves (tempfile's name)
    (tmp_path / ".ck.tmp-a1b2c3d4" / "shard-0.part").write_bytes(b"x" * 10)
    said = r"killed mid-way left \(\.ck\.tmp-a1b2c3d4\).* remove it with gptoss_edu\.files\.remove_leftovers\("
    with pytest.warns(UserWarning, match=said):
        g.write_checkpoint(small_gptoss(), path, overwrite=True)
    assert (tmp_path / ".ck.tmp-a1b2c3d4").is_dir()  # reported, not removed: another process may be writing it
    gptoss_edu.files.remove_leftovers(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g.write_checkpoint(small_gptoss(), path, overwrite=True)


def test_a_checkpoint_in_the_hugging_face_cache_is_named_after_its_repository(tmp_path):
    """hub.download returns .../models--openai--gpt-oss-120b/snapshots/<commit>: the model was named by the hash."""
    snapshot = tmp_path / "hub" / "models--openai--gpt-oss-120b" / "snapshots" / "b5c939de8f754692c1647ca79fbf85e8"
    g.write_checkpoint(small_gptoss(), snapshot)
    g.write_checkpoint(small_gptoss(), snapshot / "original", layout="original")
    for folder in (snapshot, snapshot / "original"):
        assert ck.read_config(folder)[0].name == "gpt-oss-120b"
        assert g.load_model(folder).config.name == "gpt-oss-120b"
    assert g.ModelConfig.from_json(snapshot / "config.json").name == "gpt-oss-120b"
    assert ck.checkpoint_name(tmp_path / "runs" / "my-model") == "my-model"
    assert ck.checkpoint_name(tmp_path / "my-model" / "original") == "my-model"
    assert ck.checkpoint_name(tmp_path / "snapshots" / "abc") == "abc"  # not the cache's layout: its own name


def test_a_write_killed_between_its_two_renames_is_named_by_the_loader_and_undone_by_the_next_write(tmp_path):
    """Killed there, a checkpoint was only beside its path (set aside), and the loader said "not a folder"."""
    first = small_gptoss()
    path = g.write_checkpoint(first, tmp_path / "ck")
    aside = tmp_path / ".ck.old-0123abcd"
    path.rename(aside)  # what replace_folder's first rename leaves when the process dies before its second
    with pytest.raises(g.CheckpointError, match=re.escape(
            f"{path} is missing, but .ck.old-0123abcd beside it is the copy a cut-short write set aside: "
            f"gptoss_edu.files.restore_folder('{path}') puts it back")):
        g.load_model(path)
    with pytest.warns(UserWarning, match="the copy a cut-short write had set aside is back in its place"):
        with pytest.raises(FileExistsError, match="pass overwrite=True"):  # it is back, so not overwritten unasked
            g.write_checkpoint(small_gptoss(seed=1), path)
    assert not aside.exists()
    assert torch.equal(g.load_model(path).embed.weight, first.embed.weight.to(torch.bfloat16).float())


def test_a_model_too_big_for_the_device_as_asked_is_refused_before_reading_with_what_fits(tmp_path, monkeypatch):
    """load_model's defaults (float32, experts dense) make gpt-oss-20b 78 GiB: say so, not fail part-way."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")  # MXFP4 experts on disk
    sizes = {}
    for keep, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        model = g.load_model(path, dtype=dtype, keep_mxfp4=keep)
        sizes[keep] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert sizes[True] * 3 < sizes[False]
    read = []
    monkeypatch.setattr(ck, "iter_tensors", lambda files: read.append(files) or iter(()))
    monkeypatch.setattr(ck, "device_room", lambda device: (sizes[False] - 1, "this machine has too little RAM"))
    with pytest.raises(g.CheckpointError, match=re.escape(
            f"loaded as float32, experts dense takes {ck.format_bytes(sizes[False])}, and this machine has too "
            f"little RAM: load it with keep_mxfp4=True, dtype=torch.bfloat16 (experts packed): "
            f"{ck.format_bytes(sizes[True])}")):
        g.load_model(path)
    assert read == []  # refused before a byte was read
    monkeypatch.setattr(ck, "device_room", lambda device: (sizes[True] - 1, "this machine has too little RAM"))
    with pytest.raises(g.CheckpointError, match="does not fit this device in any form the course loads"):
        g.load_model(path, dtype=torch.bfloat16, keep_mxfp4=True)
    monkeypatch.undo()
    monkeypatch.setattr(ck, "device_room", lambda device: (sizes[True], "exactly enough"))
    g.load_model(path, dtype=torch.bfloat16, keep_mxfp4=True)  # what fits exactly is loaded


def test_the_size_check_counts_gpt_oss_20b_as_spec_does():
    cfg = g.preset("gpt-oss-20b")
    with torch.device("meta"):
        packed, dense = g.GPT(cfg, packed_experts=True), g.GPT(cfg)
    tensors = [dict(m.named_parameters(remove_duplicate=False)) | dict(m.named_buffers()) for m in (packed, dense)]
    assert ck._model_bytes(tensors[0], torch.bfloat16) == 13_761_264_768  # the checkpoint's bytes (SPEC.md)
    assert ck.format_bytes(ck._model_bytes(tensors[1], torch.float32)) == "77.91 GiB"


def test_every_missing_shard_is_named(tmp_path):
    # Learning the list one error at a time would be a slow way to finish a download.
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=100_000)
    gone = sorted(path.glob("model-*.safetensors"))[1:3]
    for f in gone:
        f.unlink()
    with pytest.raises(g.CheckpointError, match=f"missing shard\\(s\\) {gone[0].name}, {gone[1].name} named in"):
        g.load_model(path)


def test_many_missing_tensors_are_counted(written):
    # Five are named, and "and N more" counts the rest.
    gone = [f"model.layers.{i}.{part}" for i in range(3) for part in ("self_attn.sinks", "input_layernorm.weight")]
    gone.append("model.norm.weight")
    rewrite(written, lambda t: [t.pop(n) for n in gone])
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) ([\w.]+, ){4}[\w.]+ and 2 more \(for"):
        g.load_model(written)


def test_many_unexpected_tensors_are_counted(written):
    extra = {f"model.layers.0.mlp.shared_expert.w{i}": torch.zeros(2) for i in range(7)}
    rewrite(written, lambda t: t.update(extra))
    with pytest.raises(g.CheckpointError, match=r"does not have: .*w4 and 2 more$"):
        g.load_model(written)


def test_a_folder_without_config_json_is_explained(tmp_path):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    (path / "config.json").unlink()
    with pytest.raises(g.CheckpointError, match="has no config.json: is it a checkpoint folder"):
        g.load_model(path)


def test_a_path_from_the_home_folder_is_read_and_written(tmp_path, monkeypatch):
    """"~/..." works in load_model and write_checkpoint as it does in download."""
    monkeypatch.setenv("HOME", str(tmp_path))
    model = small_gptoss(seed=7)
    written = g.write_checkpoint(model, "~/ck")
    assert written == tmp_path / "ck" and (tmp_path / "ck" / "config.json").is_file()
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(g.load_model("~/ck")(ids), g.load_model(tmp_path / "ck")(ids), atol=0, rtol=0)


def test_a_mistyped_rope_type_is_refused_by_name_not_run_as_plain_rope(tmp_path):
    """A typo in rope_scaling once loaded as plain RoPE, a different model, without a word."""
    model = small_gptoss()
    assert model.config.positions == "yarn"
    path = g.write_checkpoint(model, tmp_path / "ck")
    raw = json.loads((path / "config.json").read_text())
    raw["rope_scaling"]["rope_type"] = "yarnn"
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.CheckpointError, match=re.escape("rope_type 'yarnn' (did you mean 'yarn'?)")):
        g.load_model(path)

@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
@pytest.mark.parametrize("layout", ["hf", "original"])
def test_a_checkpoint_is_readable_by_others_as_the_umask_allows(tmp_path, layout, umask, file_mode, folder_mode):
    """safetensors writes its files private (0600): students sharing a teacher's checkpoint could not read it.
    A umask that keeps others out (027) is honoured too: the checkpoint is not made readable to everyone."""
    old = os.umask(umask)
    try:
        path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", layout=layout, max_shard_bytes=20_000)
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()}
    assert len(modes) > 2 and set(modes.values()) == {file_mode}, modes
    assert stat.S_IMODE(path.stat().st_mode) == folder_mode

def test_the_largest_finite_scale_is_252():
    codes = torch.arange(16, dtype=torch.uint8)
    blocks = (codes | codes << 4).repeat(2)[:16].reshape(1, 16)  # every code of E2M1, twice
    for dtype in (torch.float32, torch.bfloat16):
        assert mxfp4.dequantize(blocks, torch.tensor([mxfp4.MAX_FINITE_SCALE], dtype=torch.uint8), dtype).isfinite().all()
        assert not mxfp4.dequantize(blocks, torch.tensor([mxfp4.MAX_FINITE_SCALE + 1], dtype=torch.uint8),
                                    dtype).isfinite().all()


def test_a_float64_model_has_float64_angles_however_it_is_made(tmp_path):
    """load_model(dtype=torch.float64), or GPT built under a float64 default, kept float32 frequencies: angles 3e-3
    off at 131k positions, in a model meant as a reference."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    want = g.load_model(path).double().rotary.inv_freq
    assert want.dtype == torch.float64
    got = g.load_model(path, dtype=torch.float64).rotary.inv_freq
    assert got.dtype == torch.float64 and torch.equal(got, want)
    assert g.load_model(path, dtype=torch.bfloat16).rotary.inv_freq.dtype == torch.float32  # never rounded to 8 bits
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        built = g.GPT(small_gptoss().config)
    finally:
        torch.set_default_dtype(old)
    assert torch.equal(built.rotary.inv_freq, want)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own, at compile
def test_a_compiled_model_is_written_as_the_model_it_compiles(tmp_path):
    """write_checkpoint(torch.compile(model)) stopped on a bare KeyError: 'embed.weight' (its names carry _orig_mod.)."""
    model = small_gptoss()
    path = g.write_checkpoint(torch.compile(model), tmp_path / "compiled")
    plain = g.write_checkpoint(model, tmp_path / "plain")
    a, b = load_file(path / "model.safetensors"), load_file(plain / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_writing_float16_refuses_a_weight_past_its_range_and_leaves_nothing(tmp_path):
    """write_checkpoint(dtype=torch.float16) wrote infinity for a weight past 65504, which the loader then refused."""
    model = small_gptoss()
    with torch.no_grad():
        model.blocks[1].attn.o_proj.bias[3] = 70000.0
    with pytest.raises(ValueError, match=r"model.layers.1.self_attn.o_proj.bias has values beyond float16's range "
                                         r"\(\+-65504\).*torch.bfloat16 \(the default\)"):
        g.write_checkpoint(model, tmp_path / "ck", dtype=torch.float16)
    assert list(tmp_path.iterdir()) == []  # no folder, half-written or otherwise
    g.write_checkpoint(model, tmp_path / "ck")  # bfloat16 holds it


@pytest.mark.parametrize("where, value, layout, mxfp4", [
    ("attn", math.nan, "hf", True), ("attn", math.inf, "original", True), ("experts", math.nan, "hf", True),
    ("experts", -math.inf, "hf", False)])
def test_a_diverged_model_is_refused_before_it_replaces_a_checkpoint(tmp_path, where, value, layout, mxfp4):
    """A NaN weight was written (the loader then refused the folder, and overwrite=True had replaced the last good
    one); in an expert it failed without naming the tensor; in float16, an inf was blamed on float16's range."""
    model = small_gptoss()
    good = g.write_checkpoint(model, tmp_path / "ck", layout=layout, mxfp4=mxfp4)
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    name = "blocks.1.attn.q_proj.weight" if where == "attn" else "blocks.1.mlp.experts.down_proj"
    with torch.no_grad():
        model.get_parameter(name)[0, 0] = value
    for dtype in (torch.bfloat16, torch.float16):  # in float16 too: divergence, not a value past its range
        with pytest.raises(ValueError, match=f"the model's {re.escape(name)} holds NaN or infinite values.*diverged"):
            g.write_checkpoint(model, good, layout=layout, mxfp4=mxfp4, overwrite=True, dtype=dtype)
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before and os.listdir(tmp_path) == ["ck"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_float64_weight_past_the_written_dtypes_range_is_refused_before_it_replaces_a_checkpoint(tmp_path, dtype):
    """A finite float64 weight of 1e39 became infinite as written: the checkpoint replaced the good one, and would not
    load."""
    model = small_gptoss().double()
    good = g.write_checkpoint(model, tmp_path / "ck", dtype=dtype)
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    with torch.no_grad():
        model.blocks[1].attn.q_proj.weight[0, 0] = 1e39
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=f"model.layers.1.self_attn.q_proj.weight has values beyond {name}'s range"):
        g.write_checkpoint(model, good, dtype=dtype, overwrite=True)
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before
    assert (g.write_checkpoint(model, tmp_path / "f64", dtype=torch.float64, mxfp4=False) / "config.json").exists()


def test_packed_scales_past_252_are_refused_before_they_replace_a_checkpoint(tmp_path):
    """Packed experts holding a scale byte of 255 (MXFP4's NaN) were written as they were, over a good checkpoint,
    and the loader refused the result."""
    good = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    model = g.load_model(good, dtype=torch.bfloat16, keep_mxfp4=True)
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    scales = next(b for n, b in model.named_buffers() if n.endswith("gate_up_proj_scales"))
    scales.view(-1)[0] = 255
    with pytest.raises(ValueError, match="gate_up_proj_scales holds scale bytes up to 255, past 252"):
        g.write_checkpoint(model, good, overwrite=True)
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before
    scales.view(-1)[0] = 252  # the largest the loader takes
    g.load_model(g.write_checkpoint(model, good, overwrite=True), dtype=torch.bfloat16, keep_mxfp4=True)


def test_an_expert_past_float32s_range_is_named():
    """A float64 model's expert past float32's range (and MXFP4's largest scale) failed without naming the tensor."""
    model = small_gptoss().double()
    with torch.no_grad():
        model.blocks[1].mlp.experts.down_proj[0, 0, 0] = 1e39
    with pytest.raises(ValueError, match=r"blocks.1.mlp.experts.down_proj: the weight has values up to 1e\+39"):
        dict(ck.hf_state_dict(model, True, torch.bfloat16))


def test_the_current_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    """write_checkpoint(model, ".", overwrite=True) converted every tensor, then failed: "PosixPath('.') has an empty
    name"; and "out/.." would have been taken for a folder named ".."."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for path in (".", "", tmp_path, "sub/.."):
        with pytest.raises(ValueError, match="is the folder you are in \\(or holds it\\).*'my-checkpoint'"):
            g.write_checkpoint(small_gptoss(), path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["here"] and os.listdir(tmp_path / "here") == []
    path = g.write_checkpoint(small_gptoss(), "sub/../ck")  # relative paths with .. still name their folder
    assert path == tmp_path / "here" / "ck" and (path / "config.json").exists()
    (tmp_path / "elsewhere" / "dir").mkdir(parents=True)
    (tmp_path / "here" / "link").symlink_to(tmp_path / "elsewhere" / "dir")
    path = g.write_checkpoint(small_gptoss(), "link/../ck2")  # ".." as the file system takes it: beside the target
    assert path == tmp_path / "elsewhere" / "ck2" and (path / "config.json").exists()
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()  # a deleted working folder: an absolute path is still written
    assert (g.write_checkpoint(small_gptoss(), tmp_path / "abs") / "config.json").exists()


def test_macos_metadata_files_beside_the_weights_are_not_read(tmp_path):
    """A folder a Mac copied to a USB stick holds ._model.safetensors (AppleDouble metadata): the course read it as
    weights and refused the checkpoint, telling the learner to copy it again (which writes it again)."""
    model = small_gptoss()
    path = g.write_checkpoint(model, tmp_path / "ck")
    for name in ("._model.safetensors", "._config.json"):
        (path / name).write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    loaded = g.load_model(path, dtype=torch.float32)
    assert [f.name for f in ck.weight_files(path)] == ["model.safetensors"]
    tokens = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded(tokens), g.load_model(g.write_checkpoint(model, tmp_path / "clean"), dtype=torch.float32)(tokens))


def test_float16_holds_scales_up_to_140():
    codes = torch.arange(16, dtype=torch.uint8)
    blocks = (codes | codes << 4).repeat(2)[:16].reshape(1, 16)
    assert mxfp4.max_finite_scale(torch.float16) == 140 and mxfp4.max_finite_scale(torch.bfloat16) == 252
    assert mxfp4.dequantize(blocks, torch.tensor([140], dtype=torch.uint8), torch.float16).isfinite().all()
    assert not mxfp4.dequantize(blocks, torch.tensor([141], dtype=torch.uint8), torch.float16).isfinite().all()


@pytest.mark.parametrize("keep_mxfp4", [False, True])
def test_a_sound_checkpoint_past_float16s_range_says_float16_not_damaged(tmp_path, keep_mxfp4):
    """A T4 learner's load_model(dtype=torch.float16): a bfloat16 value past 65504 became infinite, and the file
    was called damaged; packed experts kept in MXFP4 with scales past 140 loaded, and every forward gave NaN."""
    model = small_gptoss()
    path = g.write_checkpoint(model, tmp_path / "ck", mxfp4=True)
    tensors = load_file(path / "model.safetensors")
    if keep_mxfp4:
        name = "model.layers.0.mlp.experts.down_proj_scales"
        tensors[name][0, 0, 0] = 141
    else:
        name = "model.layers.1.self_attn.o_proj.bias"
        tensors[name][3] = 70000.0
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=re.escape(f"{name!r} hold values float16 cannot: beyond its range "
                                                          "of +-65504") + ".*load with dtype=torch.bfloat16"):
        g.load_model(path, dtype=torch.float16, keep_mxfp4=keep_mxfp4)
    loaded = g.load_model(path, dtype=torch.bfloat16, keep_mxfp4=keep_mxfp4)  # the file is sound
    with torch.no_grad():
        assert loaded(torch.randint(0, 256, (1, 8))).isfinite().all()


def test_packed_experts_of_the_wrong_shape_are_refused_before_they_are_unpacked(tmp_path, monkeypatch):
    """A file with more experts than config.json says was unpacked in full (16 x its bytes), then refused."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", mxfp4=True)
    tensors = load_file(path / "model.safetensors")
    name = "model.layers.0.mlp.experts.down_proj"
    for half in ("_blocks", "_scales"):  # twice the experts, and nothing else changed
        tensors[name + half] = torch.cat([tensors[name + half]] * 2)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    E, d_model, d_ff = 8, 64, 64
    assert tensors[name + "_blocks"].shape == (2 * E, d_model, d_ff // 32, 16)
    unpacked = []
    monkeypatch.setattr(mxfp4, "dequantize", lambda *a, **k: unpacked.append(a) or pytest.fail("unpacked"))
    with pytest.raises(g.CheckpointError, match=re.escape(
            f"tensor '{name}_blocks' has shape {(2 * E, d_model, d_ff // 32, 16)}, which unpacks to "
            f"{(2 * E, d_model, d_ff)}; this config expects {(E, d_model, d_ff)} for ")):
        g.load_model(path)
    assert unpacked == []


@pytest.mark.parametrize("keep_mxfp4", [True, False])
def test_nan_or_infinite_weights_and_the_nan_scale_are_refused_by_name(tmp_path, keep_mxfp4):
    """Once loaded, a NaN weight crashed the chat in sampling ('probability tensor contains nan')."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", mxfp4=True)
    g.load_model(path, keep_mxfp4=keep_mxfp4)  # sound as written
    tensors = load_file(path / "model.safetensors")
    scales = next(n for n in sorted(tensors) if n.endswith("down_proj_scales"))
    for name, damage in (("model.norm.weight", float("nan")), ("model.layers.0.self_attn.q_proj.bias", float("-inf")),
                         (scales, 255)):
        bad = dict(tensors)
        bad[name] = tensors[name].clone()
        bad[name].view(-1)[1] = damage
        save_file(bad, str(path / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(g.CheckpointError) as e:
            g.load_model(path, keep_mxfp4=keep_mxfp4)
        assert f"tensor(s) {name!r} hold NaN or infinite values" in str(e.value)
    if not keep_mxfp4:  # unpacked, the scale bytes are checked too, not only the values they give
        blocks = scales.replace("_scales", "_blocks")
        for scale, dtype, zero_codes in ((255, torch.float32, True), (255, torch.float64, False),
                                         (253, torch.float64, False)):
            bad = dict(tensors)
            bad[scales] = tensors[scales].clone()
            bad[scales].view(-1)[1] = scale
            if zero_codes:  # NaN's scale over codes of 0 unpacks to zeros: finite in any dtype
                bad[blocks] = tensors[blocks].clone()
                bad[blocks].view(-1, 16)[1] = 0
            save_file(bad, str(path / "model.safetensors"), metadata={"format": "pt"})
            with pytest.raises(g.CheckpointError) as e:
                g.load_model(path, dtype=dtype)
            assert f"tensor(s) {scales!r} hold NaN or infinite values (or MXFP4 scale bytes above 252" in str(e.value)
    if keep_mxfp4:  # packed, a scale of 253 or 254 is found as it is placed; dense, as the values it gives
        for scale in (253, 254):
            bad = dict(tensors)
            bad[scales] = tensors[scales].clone()
            bad[scales].view(-1)[1] = scale
            save_file(bad, str(path / "model.safetensors"), metadata={"format": "pt"})
            with pytest.raises(g.CheckpointError, match=r"hold NaN or infinite values \(or MXFP4 scale bytes above 252"):
                g.load_model(path, keep_mxfp4=True)
    bad = dict(tensors)
    bad["model.embed_tokens.weight"] = torch.full_like(tensors["model.embed_tokens.weight"], 3e38)  # big, finite
    save_file(bad, str(path / "model.safetensors"), metadata={"format": "pt"})
    g.load_model(path, keep_mxfp4=keep_mxfp4)  # a float32 sum would overflow; the check must not say NaN

WRONG_TYPES = [  # named as config.json names them
    ("hidden_size", "32", "config.json's 'hidden_size' must be a whole number, got '32'"),
    ("num_hidden_layers", 2.5, "config.json's 'num_hidden_layers' must be a whole number, got 2.5"),
    ("rope_theta", "fast", "config.json's 'rope_theta' must be a number, got 'fast'"),
    ("swiglu_limit", None, "config.json's 'swiglu_limit' must be a number, got None"),
]


@pytest.mark.parametrize("layout, key, value, message", [("hf", *case) for case in WRONG_TYPES] + [
    ("original", *case) for case in WRONG_TYPES] + [
    ("hf", "layer_types", 42, "config.json's 'layer_types' must be a list"),  # keys the original layout does not have
    ("hf", "layer_types", "sliding_attention", "'layer_types' must be a list with one \"sliding_attention\""),
    ("hf", "rope_scaling", "yarn", "'rope_scaling' must be an object like {\"rope_type\": \"yarn\""),
    # The string "false" once counted as true: lm_head.weight was skipped for the embedding, silently.
    ("hf", "tie_word_embeddings", "false", "config.json's 'tie_word_embeddings' must be true or false, got 'false'"),
    ("hf", "attention_bias", 1, "config.json's 'attention_bias' must be true or false, got 1"),
    ("hf", "rms_norm_eps", -1.0, "norm_eps must be positive"),  # every output was NaN
    # OpenAI's own keys, named as its file names them (not as the Hugging Face keys they become)
    ("original", "num_experts", 8.5, "original/config.json's 'num_experts' must be a whole number, got 8.5"),
    ("original", "rope_ntk_alpha", "1", "original/config.json's 'rope_ntk_alpha' must be a number, got '1'"),
])
def test_a_config_value_of_the_wrong_type_is_named(tmp_path, layout, key, value, message):
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", layout=layout)
    raw = json.loads((path / "config.json").read_text())
    assert key in raw
    raw[key] = value
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.CheckpointError, match="|".join(map(re.escape, message.split("|")))):
        g.load_model(path)


@pytest.mark.parametrize("layout, changes, message", [
    ("original", {"num_attention_heads": 61}, "n_heads (61) must be a multiple of n_kv_heads (2) (in this file, "
                                              "n_heads is 'num_attention_heads', n_kv_heads is 'num_key_value_heads')"),
    ("original", {"experts_per_token": 9}, "(in this file, n_experts is 'num_experts')"),
    ("original", {"rope_scaling_factor": 0.5}, "original/config.json's 'rope_scaling_factor' must be 1 or more"),
    ("original", {"rope_scaling_factor": float("nan")}, "'rope_scaling_factor' must be"),  # NaN < 1 is False
    ("hf", {"rms_norm_eps": -1.0}, "norm_eps must be positive (it keeps the norm from dividing by zero), got -1.0 "
                                   "(in this file, norm_eps is 'rms_norm_eps')"),
    # Hugging Face's file has experts_per_token and num_experts_per_tok; the second is the one read.
    ("hf", {"num_local_experts": 1}, "experts_per_token must be in 1..n_experts (1), got 2 (in this file, "
                                     "experts_per_token is 'num_experts_per_tok', n_experts is 'num_local_experts')"),
    # A file that spells the field as ModelConfig does (transformers reads experts_per_token too) is not told otherwise.
    ("hf", {"num_experts_per_tok": None, "experts_per_token": 0}, "experts_per_token must be in 1..n_experts (8), "
                                                                  "got 0 (in this file, n_experts is 'num_local_experts')"),
    ("gpt2", {"n_embd": 0}, "d_model must be positive, got 0 (in this file, d_model is 'n_embd')"),
    # Found by a review of hostile files: a ZeroDivisionError, a math domain error, or no key named.
    ("original", {"rope_ntk_alpha": 0.0}, "rope_beta_slow must be positive, got 0.0 (in this file, rope_beta_slow "
                                          "is 'rope_ntk_alpha')"),
    ("original", {"rope_ntk_beta": -1.0}, "rope_beta_fast must be positive, got -1.0 (in this file, rope_beta_fast "
                                          "is 'rope_ntk_beta')"),
    ("original", {"rope_ntk_beta": float("nan")}, "rope_beta_fast must be a finite number, got nan (in this file, "
                                                  "rope_beta_fast is 'rope_ntk_beta')"),
    ("original", {"rope_scaling_factor": float("inf")}, "original/config.json's 'initial_context_length' x "
                                                        "'rope_scaling_factor' (16 x inf) is too large a context"),
    ("original", {"initial_context_length": 10**300}, "original/config.json's 'initial_context_length' is too large "
                                                      "a number (301 digits)"),
    ("hf", {"max_position_embeddings": 10**400}, "config.json's 'max_position_embeddings' is too large a number "
                                                 "(401 digits)"),
    ("hf", {"rope_theta": 10**400}, "config.json's 'rope_theta' is too large a number (401 digits)"),
])
def test_a_bad_setting_is_named_as_its_file_names_it(tmp_path, layout, changes, message):
    """ModelConfig's checks name its own fields (n_heads, norm_eps); the reader has the file's keys in front of them."""
    model = g.GPT(g.preset("gpt2-tiny")) if layout == "gpt2" else small_gptoss()
    path = g.write_checkpoint(model, tmp_path / "ck", **({} if layout == "gpt2" else {"layout": layout}))
    raw = json.loads((path / "config.json").read_text())
    assert all(key in raw for key, value in changes.items() if value is not None)
    raw = {k: v for k, v in (raw | changes).items() if v is not None}
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.CheckpointError) as err:
        ck.read_config(path)
    assert message in str(err.value)


def test_a_bad_rope_setting_is_named_where_the_file_keeps_it(tmp_path):
    """transformers 5 saves YaRN's settings as rope_parameters, not rope_scaling: the message names the one there."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    raw = json.loads((path / "config.json").read_text())
    for key, possessive in (("rope_scaling", "rope_scaling's"), ("rope_parameters", "rope_parameters'")):
        rope = {k: v for k, v in raw.items() if k not in ("rope_scaling", "rope_parameters")}
        rope[key] = raw["rope_scaling"] | {"original_max_position_embeddings": 0}
        (path / "config.json").write_text(json.dumps(rope))
        with pytest.raises(g.CheckpointError) as err:
            ck.read_config(path)
        assert f"(in this file, rope_original_context is \"{possessive} original_max_position_embeddings\")" in str(
            err.value)


@pytest.mark.parametrize("changes, message", [
    ({"beta_fast": 0.0}, "rope_beta_fast must be positive, got 0.0 (in this file, rope_beta_fast is \"rope_scaling's "
                         "beta_fast\")"),
    ({"beta_slow": float("nan")}, "rope_beta_slow must be a finite number, got nan (in this file, rope_beta_slow is "
                                  "\"rope_scaling's beta_slow\")"),
    ({"rope_type": ["yarn"]}, "config.json's rope_scaling has rope_type ['yarn']: it must be a string, 'yarn'"),
])
def test_a_bad_yarn_setting_is_named_as_its_file_names_it(tmp_path, changes, message):
    """A beta of 0 stopped the model's construction with a ZeroDivisionError; a list as rope_type, 'unhashable'."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    raw = json.loads((path / "config.json").read_text())
    raw["rope_scaling"] |= changes
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(g.CheckpointError) as err:
        g.load_model(path)
    assert message in str(err.value)


def test_a_device_torch_cannot_use_is_refused_before_reading_with_what_runs_instead(written, monkeypatch):
    """load_model(device="cuda") without a GPU failed inside torch ("Torch not compiled with CUDA enabled")."""
    read = []
    monkeypatch.setattr(ck, "iter_tensors", lambda files: read.append(files) or iter(()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(env, "unused_nvidia_gpu", lambda: None)
    with pytest.raises(g.CheckpointError, match=re.escape(
            "device='cuda': no CUDA GPU is available here; device='cpu' loads it on the CPU")):
        g.load_model(written, device="cuda")
    monkeypatch.setattr(env, "unused_nvidia_gpu", lambda: ("NVIDIA L4", "this torch (2.13.0+cpu) is a CPU build"))
    with pytest.raises(g.CheckpointError, match=re.escape(
            "no CUDA GPU is available here (nvidia-smi sees NVIDIA L4, but this torch (2.13.0+cpu) is a CPU build)")):
        g.load_model(written, device="cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(g.CheckpointError, match=re.escape("device='cuda:2': this machine has 2 CUDA GPUs, cuda:0 to "
                                                          "cuda:1")):
        g.load_model(written, device="cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(g.CheckpointError, match=re.escape("device='mps': no Apple GPU (MPS) is available")):
        g.load_model(written, device="mps")
    assert read == []


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int64, torch.bool, "bfloat16", torch.float8_e4m3fn])
def test_a_dtype_that_is_not_floating_point_is_refused(written, dtype):
    """int8 once loaded every weight as 0 (the report looked normal) and failed at the first forward; float8
    failed inside the NaN check."""
    with pytest.raises(g.CheckpointError, match="weights load as a floating-point torch dtype"):
        g.load_model(written, dtype=dtype)


def test_a_device_string_a_dtype_string_and_a_repository_id_get_their_fix(written, tmp_path, monkeypatch):
    """torch's own "Expected one of cpu, cuda, ipu, xpu, ..." for 'gpu'; "dtype=bfloat16: ..." read as accepted;
    and a Hub id was only "not a folder"."""
    with pytest.raises(g.CheckpointError, match=re.escape("device='gpu' is not a device: use 'cpu', 'cuda'")):
        g.load_model(written, device="gpu")
    with pytest.raises(g.CheckpointError, match=re.escape("dtype='bfloat16' is a string: pass torch.bfloat16;")):
        g.load_model(written, dtype="bfloat16")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(g.CheckpointError, match=re.escape(
            "openai/gpt-oss-120b is not a folder: pass a checkpoint folder holding config.json and safetensors; for "
            "the Hub's 'openai/gpt-oss-120b', gptoss_edu.hub.download('openai/gpt-oss-120b') fetches it")):
        g.load_model("openai/gpt-oss-120b")
    with pytest.raises(g.CheckpointError, match=r"no-such-folder is not a folder: .* safetensors$"):
        g.load_model(tmp_path / "no-such-folder")
    (tmp_path / "data").mkdir()
    with pytest.raises(g.CheckpointError, match=r"data/tiny-gptoss is not a folder: .* safetensors$"):
        g.load_model("data/tiny-gptoss")  # a mistyped folder, not a repository id
    # Windows spells Path("openai/gpt-oss-120b") with a backslash: the hint must still come
    from pathlib import PureWindowsPath
    from gptoss_edu.checkpoint import _looks_like_hub_id
    assert _looks_like_hub_id(PureWindowsPath("openai/gpt-oss-120b"))
    assert not _looks_like_hub_id(PureWindowsPath("data/tiny-gptoss")) and not _looks_like_hub_id(PureWindowsPath("x"))


def test_overwrite_never_deletes_a_folder_that_holds_more_than_a_checkpoint(tmp_path):
    """overwrite=True once replaced a folder whole: a notes file beside the weights (or a home folder) was lost."""
    model = small_gptoss()
    path = g.write_checkpoint(model, tmp_path / "ck")
    (path / "my_notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape("holds more than a checkpoint (my_notes.txt), which "
                                                        "replacing it would delete")):
        g.write_checkpoint(model, path, overwrite=True)
    assert (path / "my_notes.txt").read_text() == "mine" and (path / "model.safetensors").is_file()
    (path / "my_notes.txt").unlink()
    (path / ".ipynb_checkpoints").mkdir()  # what JupyterLab leaves in a folder it browsed
    g.write_checkpoint(model, path, overwrite=True, max_shard_bytes=20_000)  # shards and an index replace one file
    assert len(list(path.glob("model-*-of-*.safetensors"))) > 1
    g.write_checkpoint(model, path, overwrite=True)  # and the other way round
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_a_file_that_cannot_be_opened_is_not_called_missing_or_damaged(tmp_path, monkeypatch):
    """An unreadable shard was reported as 'not a readable safetensors file ... No such file or directory'."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", max_shard_bytes=20_000)
    shard = sorted(path.glob("model-*-of-*.safetensors"))[1]
    real_open = open

    def refuse(file, *args, **kwargs):
        if str(file) == str(shard):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)  # as root (CI), chmod cannot take read permission away
    with pytest.raises(g.CheckpointError, match=re.escape(f"{shard.name} cannot be read: this user may not read it "
                                                          "(see ls -l)")):
        g.load_model(path)
    monkeypatch.undo()
    for name in ("config.json", "model.safetensors.index.json"):
        (path / name).rename(tmp_path / name)
        (path / name).mkdir()
        with pytest.raises(g.CheckpointError, match=re.escape(f"{path / name} is a folder, where the checkpoint has "
                                                              "a file")):
            g.load_model(path)
        (path / name).rmdir()
        (tmp_path / name).rename(path / name)
    g.load_model(path)  # put back: it loads


def test_an_output_layer_stored_beside_the_embedding_it_is_tied_to_must_equal_it(tmp_path):
    """tie_word_embeddings true over an untied model's weights once dropped its lm_head.weight without a word."""
    path = g.write_checkpoint(small_gptoss(seed=3), tmp_path / "ck")  # untied, as gpt-oss is
    raw = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(raw | {"tie_word_embeddings": True}))
    with pytest.raises(g.CheckpointError, match=re.escape("but the file's 'lm_head.weight' differs from the "
                                                          "embedding: the model was trained untied")):
        g.load_model(path)
    tensors = load_file(path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()  # a tied model saved with both copies
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    model = g.load_model(path)
    assert model.lm_head.weight is model.embed.weight


@pytest.mark.parametrize("layout, fused, width", [("gpt2", "transformer.h.0.attn.c_attn.weight", 0),
                                                  ("original", "block.0.attn.qkv.weight", 1)])
def test_a_fused_tensor_is_named_as_the_file_names_it(tmp_path, layout, fused, width):
    """A missing GPT-2 c_attn (or original qkv) was reported as three q/k/v names the file does not have, and a
    mis-shaped one by the shape of its q part."""
    if layout == "gpt2":
        model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=300, context_length=32, dropout=0.0)), seed=1)
        path = g.write_checkpoint(model, tmp_path / "ck")
    else:
        path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", layout="original")
    file = next(path.glob("*.safetensors"))
    tensors = load_file(file)
    shape = tuple(tensors[fused].shape)
    save_file({n: t for n, t in tensors.items() if n != fused}, str(file), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=rf"is missing tensor\(s\) {re.escape(fused)} \(for the model's "
                                                r"blocks\.0\.attn\.q_proj\.weight"):
        g.load_model(path)
    wrong = list(shape)
    wrong[width] += 3  # each of q, k and v 3 too wide: the file's shape, and the part that does not fit
    save_file(tensors | {fused: torch.zeros(wrong)}, str(file), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=re.escape(f"tensor {fused!r} has shape {tuple(wrong)}, which gives "
                                                          "blocks.0.attn.q_proj.weight")):
        g.load_model(path)
    wrong = list(shape)
    wrong[1 - width] += 3  # 3 more than q, k and v take: GPT-2's split once dropped them without a word
    save_file(tensors | {fused: torch.zeros(wrong)}, str(file), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=re.escape(f"tensor {fused!r} of shape {tuple(wrong)}: cannot be read "
                                                          "into this config")):
        g.load_model(path)


def test_the_size_suggested_for_a_tied_model_counts_its_embedding_once(monkeypatch):
    """The shipped tiny model ties its output layer to its embedding: the advice once counted it twice."""
    from gptoss_edu.tokenizer import data_dir

    path = data_dir() / "tiny-gpt-oss"
    small = g.load_model(path, dtype=torch.bfloat16, keep_mxfp4=True)
    assert small.config.tie_embeddings
    size = sum(t.numel() * t.element_size() for n, t in [*small.named_parameters(), *small.named_buffers()]
               if not n.endswith("inv_freq"))  # named_parameters lists a tied weight once
    monkeypatch.setattr(ck, "device_room", lambda device: (size, "just enough for it packed"))
    with pytest.raises(g.CheckpointError, match=re.escape(f"load it with keep_mxfp4=True, dtype=torch.bfloat16 "
                                                          f"(experts packed): {ck.format_bytes(size)}")):
        g.load_model(path)


@pytest.mark.parametrize("dtype", [torch.int8, "bfloat16", torch.uint8])
def test_a_dtype_that_is_no_float_is_refused_before_anything_is_written(tmp_path, dtype):
    """int8 wrote all-zero weights that load_model then refused; the string "bfloat16" failed as a device name."""
    with pytest.raises(ValueError, match=r"dtype=.*floating-point torch dtype \(torch.bfloat16"):
        g.write_checkpoint(small_gptoss(), tmp_path / "ck", dtype=dtype)
    assert list(tmp_path.iterdir()) == []


def test_the_room_on_a_cpu_is_the_containers_when_it_limits_the_memory(monkeypatch):
    monkeypatch.setattr(ck, "total_ram", lambda: 2 * 2**30)
    monkeypatch.setattr(env, "physical_ram", lambda: 64 * 2**30)
    assert ck.device_room(torch.device("cpu")) == (2 * 2**30, "this container may use 2.00 GiB of RAM")
    monkeypatch.setattr(env, "physical_ram", lambda: 2 * 2**30)
    assert ck.device_room(torch.device("cpu")) == (2 * 2**30, "this machine has 2.00 GiB of RAM")


def test_packed_blocks_that_are_not_16_bytes_wide_are_named_as_such(tmp_path):
    """Blocks reshaped to 8 bytes were reported as 'unpacks to' a shape they never unpack to."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", mxfp4=True)
    tensors = load_file(path / "model.safetensors")
    name = "model.layers.0.mlp.experts.down_proj_blocks"
    blocks = tensors[name]
    tensors[name] = blocks.reshape(*blocks.shape[:-2], blocks.shape[-2] * 2, 8).contiguous()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=re.escape(f"tensor '{name}' has shape (8, 64, 4, 8); MXFP4 blocks are "
                                                          "[..., G, 16] (16 bytes for 32 values), here (8, 64, 2, 16)")):
        g.load_model(path)


# A folder named under another encoding (b"caf\xe9" from a Latin-1 machine or an old zip), or any accent
# under a locale that is not UTF-8: safetensors writes there but never opens the file again.
NOT_UTF8 = os.fsdecode(b"caf\xe9")


def test_a_folder_whose_name_is_not_utf8_is_refused_before_writing_and_named_when_loading(tmp_path):
    model = small_gptoss(seed=8)
    with pytest.raises(ValueError, match=r"write_checkpoint: .*caf\\xe9/ck: safetensors can only open paths that are "
                                         r"UTF-8 text.*Rename the folder"):
        g.write_checkpoint(model, tmp_path / NOT_UTF8 / "ck")
    assert os.listdir(tmp_path) == []  # refused before anything was made
    good = g.write_checkpoint(model, tmp_path / "ck")
    os.rename(tmp_path / "ck", tmp_path / NOT_UTF8)  # a checkpoint moved into such a folder, as a download would be
    with pytest.raises(ck.CheckpointError, match=r"caf\\xe9/model.safetensors: safetensors can only open") as e:
        g.load_model(tmp_path / NOT_UTF8)
    assert "Download" not in str(e.value)  # the file is fine: downloading it again would not help
    os.rename(tmp_path / NOT_UTF8, good)
    assert g.load_model(good) is not None


def test_gpt2_files_that_store_the_causal_mask_load_as_those_without_it(tmp_path):
    """Older GPT-2 files on the Hub hold h.N.attn.bias (the causal mask, [1, 1, T, T]) and h.N.attn.masked_bias:
    no weights, skipped whatever their dtype."""
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(dropout=0.0)), seed=3).eval()
    path = g.write_checkpoint(model, tmp_path / "gpt2", mxfp4=False, dtype=torch.float32)
    tensors = load_file(path / "model.safetensors")
    prefix = next(n for n in tensors if n.endswith("h.0.ln_1.weight")).removesuffix("h.0.ln_1.weight")
    T = model.config.context_length
    for i in range(model.config.n_layers):
        tensors[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(T, T, dtype=torch.uint8)).view(1, 1, T, T)
        tensors[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(g.load_model(path, dtype=torch.float32)(ids), model(ids))


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process's mappings from Linux's /proc/self/maps")
@pytest.mark.parametrize("kwargs", [dict(keep_mxfp4=True), dict(dtype=torch.bfloat16)])
def test_where_copy_from_files_is_set_a_loaded_model_keeps_no_file_mapped(written, monkeypatch, kwargs):
    """Windows cannot delete a mapped file: tensors kept as the file holds them (MXFP4 blocks, the file's dtype)
    mapped it, so notebook 01's temporary folder could not be removed there."""
    def mapped() -> bool:
        return any(str(written) in line for line in open("/proc/self/maps"))

    for copy in (False, True):  # the mapping is there without the copy, so the check can see it
        monkeypatch.setattr(ck, "COPY_FROM_FILES", copy)
        model = g.load_model(written, **kwargs)
        assert mapped() != copy
        del model
        gc.collect()


# ---- found by mutation testing: layout detection, a shard name's length limit -------------------------------

def test_a_hugging_face_config_that_also_says_num_experts_is_read_as_hugging_faces(written):
    """The Hub's gpt-oss config.json carries OpenAI's 'experts_per_token' beside 'num_experts_per_tok', and
    transformers takes 'num_experts' for 'num_local_experts': with both, only 'model_type' tells the layouts apart
    (read as original/, it was refused as missing OpenAI's keys)."""
    config = json.loads((written / "config.json").read_text())
    assert config["model_type"] == "gpt_oss" and "experts_per_token" in config
    (written / "config.json").write_text(json.dumps({**config, "num_experts": config["num_local_experts"]}))
    cfg, layout, _ = ck.read_config(written)
    assert layout == "gpt_oss" and cfg.n_experts == config["num_local_experts"]
    g.load_model(written)


def test_a_shard_name_of_256_bytes_is_refused_and_one_of_255_is_looked_for(written):
    """255 bytes is the longest file name: one byte more gave an OSError ("File name too long") from the check
    that the shard exists, not the CheckpointError that says the index is damaged."""
    names = list(load_file(written / "model.safetensors"))
    (written / ck.INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(names, "x" * 256)}))
    with pytest.raises(g.CheckpointError, match="of 256 bytes, longer than a file name can be"):
        g.load_model(written)
    (written / ck.INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(names, "x" * 255)}))
    with pytest.raises(g.CheckpointError, match="missing shard\\(s\\) x{255} named in"):
        g.load_model(written)


def test_six_missing_tensors_are_five_named_and_one_more(written):
    # The boundary of the "and N more" count: with six missing, the sixth must still be counted, not dropped.
    gone = [f"model.layers.{i}.{part}" for i in range(3) for part in ("self_attn.sinks", "input_layernorm.weight")]
    rewrite(written, lambda t: [t.pop(n) for n in gone])
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) ([\w.]+, ){4}[\w.]+ and 1 more \(for"):
        g.load_model(written)


def test_a_float64_checkpoint_loads_in_the_dtype_asked_for(tmp_path):
    """Every weight is cast to load_model's dtype whatever the file holds; only MXFP4's bytes stay uint8
    (a float64 file's weights kept float64 would make a float32 model compute in mixed precision)."""
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck", dtype=torch.float64)
    for keep_mxfp4 in (False, True):
        model = g.load_model(path, dtype=torch.float32, keep_mxfp4=keep_mxfp4)
        dtypes = {t.dtype for t in model.state_dict().values()}
        assert dtypes == ({torch.float32, torch.uint8} if keep_mxfp4 else {torch.float32}), dtypes


def test_a_missing_tensor_of_a_gpt2_file_without_the_transformer_prefix_is_named_as_the_file_names_it(tmp_path):
    # The Hub's GPT-2 files name their tensors h.0.ln_1.weight, not transformer.h.0.ln_1.weight: the message must
    # say the name the learner can find in that file.
    model = randomize(g.GPT(g.preset("gpt2-tiny")), seed=3)
    path = g.write_checkpoint(model, tmp_path / "gpt2", dtype=torch.float32)
    tensors = {n.removeprefix("transformer."): t for n, t in load_file(path / "model.safetensors").items()}
    tensors.pop("h.1.ln_2.weight")
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(g.CheckpointError, match=r"missing tensor\(s\) h\.1\.ln_2\.weight \(for the model's "
                                                r"blocks\.1\.mlp_norm\.weight"):
        g.load_model(path)


def test_the_shape_said_for_missing_tensors_is_the_first_ones(written):
    # "(for the model's X, shape S)": S is X's shape, here an expert's (8, 64, 64), not the last missing one's.
    rewrite(written, lambda t: [t.pop(n) for n in ("model.layers.0.mlp.experts.down_proj_scales",
                                                   "model.layers.2.self_attn.sinks")])
    with pytest.raises(g.CheckpointError, match=re.escape("(for the model's blocks.0.mlp.experts.down_proj, "
                                                          "shape (8, 64, 64))")):
        g.load_model(written)


def test_packed_experts_missing_both_halves_are_named_by_both(written):
    # Loaded dense, an expert is made of two tensors of the file: when neither came, both are named.
    half = "model.layers.1.mlp.experts.gate_up_proj"
    rewrite(written, lambda t: [t.pop(half + "_blocks"), t.pop(half + "_scales")])
    with pytest.raises(g.CheckpointError, match=re.escape(f"missing tensor(s) {half}_blocks and {half}_scales (for")):
        g.load_model(written)


def test_packed_scales_past_252_are_refused_in_the_original_layout_too(tmp_path):
    # OpenAI's layout names them block.N.mlp.mlp1_weight.scales (a dot, not _scales): refused before writing too.
    model = g.load_model(g.write_checkpoint(small_gptoss(), tmp_path / "ck"), dtype=torch.bfloat16, keep_mxfp4=True)
    next(b for n, b in model.named_buffers() if n.endswith("gate_up_proj_scales")).view(-1)[0] = 255
    with pytest.raises(ValueError, match=r"block\.0\.mlp\.mlp1_weight\.scales holds scale bytes up to 255, past 252"):
        g.write_checkpoint(model, tmp_path / "original", layout="original")
    assert not (tmp_path / "original").exists()


def test_a_gpt2_loaded_with_keep_mxfp4_reports_no_mxfp4_experts(tmp_path):
    # keep_mxfp4 applies to gpt-oss's experts: GPT-2 has none, and its report must not say they stay packed.
    path = g.write_checkpoint(randomize(g.GPT(g.preset("gpt2-tiny")), seed=3), tmp_path / "gpt2")
    report = g.load_model(path, keep_mxfp4=True).load_report
    assert not report.packed_experts and "MXFP4" not in str(report)


def test_a_tensor_whose_bytes_torch_cannot_take_is_named(written):
    # safetensors opens a file holding an F6_E3M2 tensor (a dtype torch has no type for), and fails only in
    # get_tensor: that failure must be a CheckpointError naming the file and the tensor, not safetensors' own error.
    import struct

    rewrite(written, lambda t: t.pop("model.norm.weight"))
    header = json.dumps({"model.norm.weight": {"dtype": "F6_E3M2", "shape": [64], "data_offsets": [0, 48]}}).encode()
    header += b" " * (-len(header) % 8)
    (written / "extra.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(48))
    with pytest.raises(g.CheckpointError, match=r"extra\.safetensors: tensor 'model\.norm\.weight' cannot be read"):
        g.load_model(written)


def test_a_loaded_models_weights_require_grad_and_its_packed_bytes_do_not(tmp_path):
    # Fine-tuning starts from a loaded checkpoint: weights loaded as frozen tensors would never train (their .grad
    # stays None), while uint8 bytes cannot require a gradient at all.
    path = g.write_checkpoint(small_gptoss(), tmp_path / "ck")
    for keep_mxfp4 in (False, True):
        model = g.load_model(path, keep_mxfp4=keep_mxfp4)
        params = dict(model.named_parameters())
        assert params and all(p.requires_grad for p in params.values() if p.is_floating_point())
        assert not any(t.requires_grad for t in model.state_dict(keep_vars=True).values() if t.dtype == torch.uint8)


def test_packed_halves_are_let_go_once_unpacked(written, monkeypatch):
    """Loading dense, each expert's blocks and scales are dropped as soon as they are unpacked: kept to the end of the
    load, they would hold the whole packed model (12 GiB of gpt-oss-20b, on the GPU) beside the dense one."""
    import weakref

    monkeypatch.setattr(ck, "COPY_FROM_FILES", True)  # each tensor its own memory, as on Windows (or on a GPU)
    real, refs, alive = ck.iter_tensors, [], []

    def watched(files):
        for name, tensor in real(files):
            # The loader still holds the tensor it was given last (its loop variable), and nothing older.
            alive.extend(n for n, ref in refs[:-1] if ref() is not None)
            if name.endswith(("_blocks", "_scales")):
                refs.append((name, weakref.ref(tensor)))
            yield name, tensor

    monkeypatch.setattr(ck, "iter_tensors", watched)
    g.load_model(written)
    assert len(refs) == 4 * ck.read_config(written)[0].n_layers and alive == [], alive  # two packed projections a layer
