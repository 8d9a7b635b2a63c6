"""Checkpoints in the real layouts: read and write GPT-2 and gpt-oss safetensors, shard by shard.

Three layouts are read into the one course model:
- Hugging Face GPT-2 (``transformer.h.N.attn.c_attn`` ..., Conv1D weights stored [in, out]);
- Hugging Face gpt-oss (``model.layers.N.self_attn.q_proj`` ..., experts as MXFP4 ``_blocks``/``_scales``
  or dense [E, in, out]);
- OpenAI's own ``original/`` gpt-oss layout (``block.N.attn.qkv`` ..., fused q, k, v).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterator

import torch
from torch import nn

from . import mxfp4
from .config import (ModelConfig, alternating_layer_types, check_layer_count, checkpoint_name, read_number,
                     read_whole)
from .env import device_problem, is_container_limit, total_ram
from .files import (DiskFull, away_from_here, is_no_room, leftovers, replace_folder, restore_folder, safetensors_path,
                    save_tensors, set_aside, share, temporary_folder)
from .hub import pickle_weights
from .memory import disk_free, format_bytes, is_out_of_memory
from .model import GPT
from .rotary import Rotary

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# The writer's shard size: gpt-oss-20b's 12.8 GiB become three shards, as on the Hub, and the writer
# holds at most one shard of converted tensors in memory.
SHARD_BYTES = 5_000_000_000

# A convert function takes a checkpoint tensor and gives (course name, tensor) pairs.
Convert = Callable[[torch.Tensor], list[tuple[str, torch.Tensor]]]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read into the course model; the message says why and what to do."""


# ---- name maps -----------------------------------------------------------------------------

def _thirds(t: torch.Tensor, d: int) -> tuple[torch.Tensor, ...]:
    """GPT-2's fused q, k, v rows, each d of them; anything but 3 x d rows is refused, not cut short."""
    if t.shape[0] != 3 * d:
        raise ValueError(f"q, k and v take 3 x d_model = {3 * d} rows or columns, it has {t.shape[0]}")
    return t.split(d, dim=0)


def _gpt2_rule(name: str, cfg: ModelConfig) -> tuple[str, Convert] | None:
    n = name.removeprefix("transformer.")
    d = cfg.d_model
    simple = {"wte.weight": "embed.weight", "wpe.weight": "pos_embed.weight", "ln_f.weight": "norm.weight",
              "ln_f.bias": "norm.bias", "lm_head.weight": "lm_head.weight"}
    if n in simple:
        return simple[n], lambda t, s=simple[n]: [(s, t)]
    m = re.fullmatch(r"h\.(\d+)\.(.+)", n)
    if not m:
        return None
    i, rest = int(m.group(1)), m.group(2)
    p = f"blocks.{i}."
    if rest in ("attn.bias", "attn.masked_bias"):  # old GPT-2 files store the causal mask: not a weight
        return "", lambda t: []
    norms = {"ln_1": "attn_norm", "ln_2": "mlp_norm"}
    if rest.split(".")[0] in norms:
        target = p + norms[rest.split(".")[0]] + "." + rest.split(".")[1]
        return target, lambda t: [(target, t)]
    if rest == "attn.c_attn.weight":  # Conv1D [d, 3d]: transpose to [3d, d], then q, k, v rows
        return p + "attn.qkv", lambda t: list(zip((p + "attn.q_proj.weight", p + "attn.k_proj.weight",
                                                    p + "attn.v_proj.weight"), _thirds(t.t(), d)))
    if rest == "attn.c_attn.bias":
        return p + "attn.qkv", lambda t: list(zip((p + "attn.q_proj.bias", p + "attn.k_proj.bias",
                                                    p + "attn.v_proj.bias"), _thirds(t, d)))
    linear = {"attn.c_proj": "attn.o_proj", "mlp.c_fc": "mlp.fc_in", "mlp.c_proj": "mlp.fc_out"}
    mod, _, kind = rest.rpartition(".")
    if mod in linear:
        target = f"{p}{linear[mod]}.{kind}"
        return target, lambda t: [(target, t.t() if kind == "weight" else t)]
    return None


def _gptoss_rule(name: str, cfg: ModelConfig) -> tuple[str, Convert] | None:
    simple = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
              "lm_head.weight": "lm_head.weight"}
    if name in simple:
        return simple[name], lambda t, s=simple[name]: [(s, t)]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
    if not m:
        return None
    p, rest = f"blocks.{m.group(1)}.", m.group(2)
    renames = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "mlp_norm.weight"}
    if rest in renames:
        target = p + renames[rest]
    elif rest.startswith("self_attn."):
        target = p + "attn." + rest.removeprefix("self_attn.")
    elif rest.startswith("mlp.router.") or re.fullmatch(r"mlp\.experts\.\w+_(blocks|scales|bias)", rest):
        target = p + rest
    elif rest in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):  # dense HF experts are [E, in, out]
        target = p + rest
        return target, lambda t: [(target, t.transpose(1, 2))]
    else:
        return None
    return target, lambda t: [(target, t)]


def _original_rule(name: str, cfg: ModelConfig) -> tuple[str, Convert] | None:
    simple = {"embedding.weight": "embed.weight", "norm.scale": "norm.weight", "unembedding.weight": "lm_head.weight"}
    if name in simple:
        return simple[name], lambda t, s=simple[name]: [(s, t)]
    m = re.fullmatch(r"block\.(\d+)\.(.+)", name)
    if not m:
        return None
    p, rest = f"blocks.{m.group(1)}.", m.group(2)
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    if rest in ("attn.qkv.weight", "attn.qkv.bias"):
        kind = rest.rsplit(".", 1)[1]
        return p + "attn.qkv", lambda t: list(zip((f"{p}attn.q_proj.{kind}", f"{p}attn.k_proj.{kind}",
                                                    f"{p}attn.v_proj.{kind}"), t.split([q, kv, kv], dim=0)))
    renames = {
        "attn.norm.scale": "attn_norm.weight", "attn.sinks": "attn.sinks", "attn.out.weight": "attn.o_proj.weight",
        "attn.out.bias": "attn.o_proj.bias", "mlp.norm.scale": "mlp_norm.weight", "mlp.gate.weight": "mlp.router.weight",
        "mlp.gate.bias": "mlp.router.bias", "mlp.mlp1_weight.blocks": "mlp.experts.gate_up_proj_blocks",
        "mlp.mlp1_weight.scales": "mlp.experts.gate_up_proj_scales", "mlp.mlp1_bias": "mlp.experts.gate_up_proj_bias",
        "mlp.mlp2_weight.blocks": "mlp.experts.down_proj_blocks", "mlp.mlp2_weight.scales": "mlp.experts.down_proj_scales",
        "mlp.mlp2_bias": "mlp.experts.down_proj_bias",
    }
    if rest not in renames:
        return None
    target = p + renames[rest]
    return target, lambda t: [(target, t)]


RULES = {"gpt2": _gpt2_rule, "gpt_oss": _gptoss_rule, "original": _original_rule}


# ---- reading -------------------------------------------------------------------------------

ORIGINAL_KEYS = ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                 "intermediate_size", "swiglu_limit", "head_dim", "num_attention_heads", "num_key_value_heads",
                 "sliding_window", "initial_context_length", "rope_theta", "rope_scaling_factor",
                 "rope_ntk_alpha", "rope_ntk_beta")


# ModelConfig's checks name its own fields; each layout's config.json spells them otherwise.
FILE_KEYS = {
    "gpt2": {"d_model": "n_embd", "n_layers": "n_layer", "n_heads": "n_head", "n_kv_heads": "n_head",
             "head_dim": "n_embd / n_head", "d_ff": "n_inner", "context_length": "n_positions",
             "norm_eps": "layer_norm_epsilon", "dropout": "resid_pdrop"},
    "gpt_oss": {"d_model": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                "n_kv_heads": "num_key_value_heads", "d_ff": "intermediate_size",
                "context_length": "max_position_embeddings", "norm_eps": "rms_norm_eps",
                "n_experts": "num_local_experts", "experts_per_token": "num_experts_per_tok",
                "rope_scaling_factor": "rope_scaling's factor",
                "rope_original_context": "rope_scaling's original_max_position_embeddings",
                "rope_beta_fast": "rope_scaling's beta_fast", "rope_beta_slow": "rope_scaling's beta_slow"},
    "original": {"d_model": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                 "n_kv_heads": "num_key_value_heads", "d_ff": "intermediate_size", "n_experts": "num_experts",
                 "context_length": "initial_context_length x rope_scaling_factor",
                 "rope_original_context": "initial_context_length", "rope_beta_fast": "rope_ntk_beta",
                 "rope_beta_slow": "rope_ntk_alpha"},
}


def in_file_terms(message: str, layout: str, raw: dict[str, Any]) -> str:
    """``message`` with the config.json keys of the ModelConfig fields it names added, for ``layout``."""
    # Unless the file holds the field under its own name alone (gpt-oss's reader takes experts_per_token then).
    keys = {f: key for f, key in FILE_KEYS.get(layout, {}).items() if f not in raw or key in raw}
    if raw.get("rope_scaling") is None and isinstance(raw.get("rope_parameters"), dict):  # transformers 5 saves these
        keys = {f: key.replace("rope_scaling's", "rope_parameters'") for f, key in keys.items()}
    named = [f"{f} is {keys[f]!r}" for f in dict.fromkeys(re.findall(r"\b[a-z_]+\b", message)) if f in keys]
    return f"{message} (in this file, {', '.join(named)})" if named else message


def config_from_original(cfg: dict[str, Any], name: str = "gpt-oss") -> ModelConfig:
    """A ModelConfig from OpenAI's ``original/config.json`` (the reference ModelConfig's fields)."""
    missing = [k for k in ORIGINAL_KEYS if k not in cfg]
    if missing:
        raise CheckpointError(f"original/config.json is missing {', '.join(repr(k) for k in missing)}")
    # Checked under this file's own names, before they become Hugging Face's.
    for key in ORIGINAL_KEYS:
        check = read_number if key in ("swiglu_limit", "rope_theta", "rope_scaling_factor", "rope_ntk_alpha",
                                       "rope_ntk_beta") else read_whole
        cfg = cfg | {key: check(cfg, key, None, "original/config.json")}
    if not cfg["rope_scaling_factor"] >= 1:  # NaN too; else refused as the Hugging Face key it becomes
        raise CheckpointError(f"original/config.json's 'rope_scaling_factor' must be 1 or more (YaRN stretches the "
                              f"context, never shrinks it), got {cfg['rope_scaling_factor']}")
    context = cfg["initial_context_length"] * cfg["rope_scaling_factor"]
    if not math.isfinite(context) or context >= 2**63:
        raise CheckpointError(f"original/config.json's 'initial_context_length' x 'rope_scaling_factor' "
                              f"({cfg['initial_context_length']} x {cfg['rope_scaling_factor']}) is too large a context")
    n = cfg["num_hidden_layers"]
    check_layer_count(n)
    hf = {
        "model_type": "gpt_oss", "vocab_size": cfg["vocab_size"], "hidden_size": cfg["hidden_size"],
        "num_hidden_layers": n, "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"], "head_dim": cfg["head_dim"],
        "intermediate_size": cfg["intermediate_size"], "num_local_experts": cfg["num_experts"],
        "num_experts_per_tok": cfg["experts_per_token"], "rope_theta": cfg["rope_theta"],
        "swiglu_limit": cfg["swiglu_limit"], "sliding_window": cfg["sliding_window"],
        # The reference gives even layers the window; a window of 0 means none, so every layer is full.
        "layer_types": list(alternating_layer_types(n)) if cfg["sliding_window"] else ["full_attention"] * n,
        "max_position_embeddings": int(context),
        "initial_context_length": cfg["initial_context_length"],
        "rope_scaling": {"rope_type": "yarn", "factor": cfg["rope_scaling_factor"],
                         "beta_fast": cfg["rope_ntk_beta"], "beta_slow": cfg["rope_ntk_alpha"],
                         "original_max_position_embeddings": cfg["initial_context_length"], "truncate": False},
        "tie_word_embeddings": False,
    }
    return ModelConfig.from_hf_config(hf, name=name)


def _readable(file: Path) -> None:
    """CheckpointError saying why ``file`` cannot be opened, before a library's message guesses at it."""
    try:
        # A pipe or a device named like a shard would hang the reader or stream forever (links are followed:
        # the Hugging Face cache links every file to its blob store).
        if file.exists() and not file.is_dir() and not stat.S_ISREG(file.stat().st_mode):
            raise CheckpointError(f"{file} is not a regular file (a pipe, a device or a socket): a checkpoint's "
                                  "files are plain files")
        with open(file, "rb"):
            pass
    except PermissionError:
        raise CheckpointError(f"{file} cannot be read: this user may not read it (see ls -l); fix its permissions "
                              "or copy the checkpoint somewhere readable") from None
    except IsADirectoryError:
        raise CheckpointError(f"{file} is a folder, where the checkpoint has a file") from None
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read: {e.strerror or e}") from None


def _looks_like_hub_id(path: PurePath) -> bool:
    """Whether a missing ``path`` reads as a Hub id (owner/name) rather than a mistyped folder (data/tiny-gptoss)."""
    # as_posix: Windows spells Path("openai/gpt-oss-20b") with a backslash
    return (re.fullmatch(r"[\w.-]+/[\w.-]+", path.as_posix()) is not None and not Path(path.parts[0]).is_dir()
            and not Path(path).exists())


def read_config(path: str | Path) -> tuple[ModelConfig, str, dict[str, Any]]:
    """(config, layout, raw config.json) of a checkpoint folder; layout is gpt2, gpt_oss or original."""
    path = Path(path).expanduser()
    cfg_file = path / "config.json"
    if not path.is_dir():
        aside = set_aside(path) if not path.exists() else []
        if aside:  # a write_checkpoint killed between its two renames
            raise CheckpointError(f"{path} is missing, but {aside[-1].name} beside it is the copy a cut-short write "
                                  f"set aside: gptoss_edu.files.restore_folder({str(path)!r}) puts it back (as "
                                  "the next write_checkpoint there does)")
        repo = (f"; for the Hub's {path.as_posix()!r}, gptoss_edu.hub.download({path.as_posix()!r}) fetches it and "
                "returns its folder" if _looks_like_hub_id(path) else "")
        raise CheckpointError(f"{path} is not a folder: pass a checkpoint folder holding config.json and "
                              f"safetensors{repo}")
    if not cfg_file.exists():
        if (path / "original" / "config.json").is_file():  # a download of only the Hub's original/ folder
            raise CheckpointError(f"{path} has no config.json, but its original/ folder (OpenAI's layout) does: "
                                  f"pass {path / 'original'}")
        raise CheckpointError(f"{path} has no config.json: is it a checkpoint folder?")
    _readable(cfg_file)
    try:
        raw = json.loads(cfg_file.read_bytes())
    except (ValueError, RecursionError) as e:  # invalid JSON, bytes that are not text, or nesting without end
        raise CheckpointError(f"{cfg_file} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{cfg_file} holds a JSON {type(raw).__name__}, not an object of settings: "
                              "restore the checkpoint's config.json")
    qc = raw.get("quantization_config")
    if qc is not None and not isinstance(qc, dict):
        raise CheckpointError(f"{cfg_file}: 'quantization_config' should be an object like "
                              "{\"quant_method\": \"mxfp4\"}, not " + repr(qc))
    if qc is not None and qc.get("quant_method") != "mxfp4":
        raise CheckpointError(f"{cfg_file} asks for quantization {qc.get('quant_method')!r}: the course reads "
                              "MXFP4 ('mxfp4') checkpoints or unquantized ones")
    name = checkpoint_name(path)
    original = "model_type" not in raw and "num_experts" in raw and "experts_per_token" in raw
    layout = "original" if original else str(raw.get("model_type"))
    try:
        if original:
            return config_from_original(raw, name), "original", raw
        cfg = ModelConfig.from_hf_config(raw, name=name)
    except CheckpointError:
        raise
    except (KeyError, ValueError, OverflowError) as e:  # OverflowError: an Infinity where a whole number goes
        raise CheckpointError(f"{cfg_file}: {in_file_terms(str(e.args[0]), layout, raw)}") from None
    except (TypeError, AttributeError) as e:  # e.g. "rope_scaling": "yarn" where an object belongs
        raise CheckpointError(f"{cfg_file}: a setting has the wrong kind of value ({e}); restore the checkpoint's "
                              "config.json") from None
    return cfg, raw["model_type"], raw


def read_index(path: str | Path) -> dict[str, str]:
    """The weight map (tensor name -> shard file) of a checkpoint folder's index, checked."""
    index = Path(path).expanduser() / INDEX_FILE
    _readable(index)
    try:
        raw = json.loads(index.read_bytes())
    except (ValueError, RecursionError) as e:  # invalid JSON, bytes that are not text, or nesting without end
        raise CheckpointError(f"{index} is not valid JSON ({e}): the index is damaged; download it again") from None
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise CheckpointError(f"{index} has no 'weight_map' of tensor names to file names: the index is damaged; "
                              "download it again")
    # Shards sit beside the index: a name with a folder in it ("../x", "/etc/...") would be read elsewhere.
    outside = sorted({f for f in weight_map.values() if Path(f).name != f or "\\" in f or f in ("", ".", "..")})
    if outside:
        raise CheckpointError(f"{index} names shard(s) outside its folder ({', '.join(map(repr, outside))}): an "
                              "index names files beside it; this one is damaged or was not made for this folder")
    too_long = sorted({f for f in weight_map.values() if len(os.fsencode(f)) > 255})  # a file name's limit
    if too_long:
        raise CheckpointError(f"{index} names a shard {too_long[0][:40]!r}... of {len(os.fsencode(too_long[0]))} "
                              "bytes, longer than a file name can be (255): the index is damaged; download it again")
    return weight_map


def safetensors_files(path: Path) -> list[Path]:
    """The folder's *.safetensors files, sorted, but hidden ones: macOS writes ._model.safetensors (its
    AppleDouble metadata, not weights) beside each file it copies to a USB stick or a network drive."""
    return sorted(f for f in path.glob("*.safetensors") if not f.name.startswith("."))


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, through its index when there is one."""
    path = Path(path).expanduser()
    if (path / INDEX_FILE).exists():
        files = [path / f for f in sorted(set(read_index(path).values()))]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"{path} is missing shard(s) {', '.join(missing)} named in {INDEX_FILE}: "
                                  "run the download again (it keeps the finished shards) or copy them in")
        return files
    files = safetensors_files(path)
    if not files:
        pickles = pickle_weights(path)
        hint = (f" (found {', '.join(pickles)}: pickle files are never loaded; convert them to safetensors)"
                if pickles else "")
        raise CheckpointError(f"{path} holds no .safetensors weights{hint}")
    return files


def _open(file: Path):
    from safetensors import safe_open

    _readable(file)
    try:
        name = safetensors_path(file)
    except ValueError as e:  # not a damaged file: downloading it again into the same folder would not help
        raise CheckpointError(str(e)) from None
    try:
        return safe_open(name, framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{file} is not a readable safetensors file (truncated or another format?): {e}. "
                              "Download or copy it again") from None


# A tensor kept as the file holds it (MXFP4 blocks; the file's own dtype) maps the file. Windows then cannot
# delete or replace it (a temporary folder, a checkpoint written again), so there each tensor is copied. Linux
# and macOS keep the mapping: its pages stay the page cache's, which the system can drop, where a copy's cannot.
COPY_FROM_FILES = os.name == "nt"


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor in ``files``, one at a time so memory stays near one tensor."""
    where: dict[str, str] = {}
    for file in files:
        with _open(file) as f:
            for name in f.keys():
                if name in where:  # which copy is the right one cannot be known: refuse both
                    raise CheckpointError(f"tensor {name!r} is in both {where[name]} and {file.name}: the folder "
                                          "mixes files of two checkpoints; download it again into an empty folder")
                where[name] = file.name
                try:
                    t = f.get_tensor(name)
                except Exception as e:
                    raise CheckpointError(f"{file}: tensor {name!r} cannot be read (truncated file?): {e}") from None
                yield name, t.clone() if COPY_FROM_FILES else t


@dataclass
class LoadReport:
    """What load_model read: tensors, bytes by dtype, time, and where it went."""

    path: str
    layout: str
    device: str
    tensors: int = 0
    files: int = 0
    bytes_by_dtype: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    packed_experts: bool = False
    dtype: str = "float32"  # of the weights once loaded, whatever the file's

    def __str__(self) -> str:
        # Two sizes that differ: what the files hold (bf16 and uint8) and what it became in memory.
        total = sum(self.bytes_by_dtype.values())
        by = ", ".join(f"{str(k).removeprefix('torch.')} {format_bytes(v)}"
                       for k, v in self.bytes_by_dtype.most_common())
        experts = "experts kept in MXFP4 (uint8)" if self.packed_experts else "experts dense"
        return (f"read {self.tensors} tensors, {format_bytes(total)} on disk ({by}), from {self.files} file(s) "
                f"({self.layout} layout) in {self.seconds:.1f} s; in memory on {self.device}: {self.dtype}, {experts}")


def _set(model: nn.Module, name: str, value: torch.Tensor) -> None:
    mod_name, _, attr = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    if attr in mod._parameters:
        mod._parameters[attr] = nn.Parameter(value, requires_grad=value.is_floating_point())
    else:
        mod._buffers[attr] = value


def _model_bytes(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> int:
    """Bytes of a model's loaded tensors: packed bytes stay uint8, every weight becomes ``dtype``."""
    return sum(t.numel() * (1 if t.dtype == torch.uint8 else dtype.itemsize) for n, t in tensors.items()
               if not n.endswith("inv_freq"))  # computed on loading, in float32: a few bytes


def device_room(device: torch.device) -> tuple[int, str] | None:
    """(bytes a model may take on ``device``, what they are), or None where that cannot be known."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"{device} has {format_bytes(free)} free"
    if device.type == "cpu":
        ram = total_ram()
        if not ram:
            return None
        return ram, f"this {'container may use' if is_container_limit(ram) else 'machine has'} {format_bytes(ram)} of RAM"
    return None


def _check_fits(path: Path, cfg: ModelConfig, expected: dict[str, torch.Tensor], device: torch.device,
                dtype: torch.dtype, keep_mxfp4: bool, packed_on_disk: bool) -> None:
    """CheckpointError, before anything is read, for a model that cannot fit on ``device`` as asked."""
    room = device_room(device)
    need = _model_bytes(expected, dtype)
    if room is None or need <= room[0]:
        return
    name = str(dtype).removeprefix("torch.")
    asked = f"{name}{', experts dense' if packed_on_disk and not keep_mxfp4 else ''}"
    if packed_on_disk and not (keep_mxfp4 and dtype == torch.bfloat16):
        with torch.device("meta"):
            small = GPT(cfg, packed_experts=True)
        tensors = dict(small.named_parameters()) | dict(small.named_buffers())  # a tied embedding counted once
        other, how = _model_bytes(tensors, torch.bfloat16), "keep_mxfp4=True, dtype=torch.bfloat16 (experts packed)"
    elif dtype.itemsize > 2:
        other, how = _model_bytes(expected, torch.bfloat16), "dtype=torch.bfloat16"
    else:
        other, how = need, ""
    advice = (f"load it with {how}: {format_bytes(other)}" if how and other <= room[0]
              else "it does not fit this device in any form the course loads: choose a larger one")
    raise CheckpointError(f"{path} loaded as {asked} takes {format_bytes(need)}, and {room[1]}: {advice}")


def _convert(what: str, how: Callable[[], Any]) -> Any:
    """``how()``, with a tensor too mis-shaped to split or unpack named as ``what`` in a CheckpointError."""
    try:
        return how()
    except (RuntimeError, ValueError, IndexError) as e:
        if is_out_of_memory(e):
            raise  # not a shape problem: memory.plan says what fits
        raise CheckpointError(f"{what}: cannot be read into this config ({e}); is config.json from the "
                              "same model?") from None


def _unpack_pair(base: str, parts: dict[str, tuple[str, torch.Tensor]], want: tuple[int, ...],
                 dtype: torch.dtype) -> torch.Tensor:
    """The dense ``base`` from its packed halves on disk, each shape checked before anything is allocated."""
    (blocks_name, blocks), (scales_name, scales) = parts["blocks"], parts["scales"]
    if blocks.dim() < 2 or blocks.shape[-1] != 16:  # 16 bytes a block of 32 values
        raise CheckpointError(
            f"tensor {blocks_name!r} has shape {tuple(blocks.shape)}; MXFP4 blocks are [..., G, 16] "
            f"(16 bytes for 32 values), here {(*want[:-1], want[-1] // 32, 16)} for {base}")
    unpacked = (*blocks.shape[:-2], blocks.shape[-2] * 32)
    if unpacked != want:  # before dequantize allocates what the file claims
        raise CheckpointError(
            f"tensor {blocks_name!r} has shape {tuple(blocks.shape)}, which unpacks to {unpacked}; "
            f"this config expects {want} for {base} (is config.json from the same model?)")
    return _convert(f"tensors {blocks_name!r} {tuple(blocks.shape)} and {scales_name!r} {tuple(scales.shape)}",
                    lambda: mxfp4.dequantize(blocks, scales, dtype))


def _missing_error(path: Path, cfg: ModelConfig, layout: str, files: list[Path], read: list[str],
                   pending: dict[str, dict[str, Any]], missing: list[str], first_shape: tuple[int, ...]
                   ) -> CheckpointError:
    """What says which of the model's tensors the files did not give, named as the files name them."""
    packed = layout == "original" or any(n.endswith(("_blocks", ".blocks")) for n in read)
    theirs = _layout_names(cfg, layout, packed, prefixed=any(n.startswith("transformer.") for n in read))
    # Of a packed pair, name the half that did not come.
    named = list(dict.fromkeys(  # a fused tensor (GPT-2's c_attn, original's qkv) is named once, not thrice
        theirs.get(f"{n}_{'scales' if 'blocks' in pending[n] else 'blocks'}", n) if n in pending
        else theirs.get(n, n) for n in missing))
    # Only the files the index lists are read: one it leaves out may hold what is missing.
    listed = {f.name for f in files}
    unlisted = sorted(f.name for f in safetensors_files(path) if f.name not in listed)
    why = (f"{', '.join(unlisted)} in the folder is not in {INDEX_FILE}, which lists the files that are read: "
           "download the index again, or remove the file that does not belong" if unlisted and
           (path / INDEX_FILE).exists() else "the download may be incomplete, or config.json from another model")
    return CheckpointError(f"{path} is missing tensor(s) {', '.join(named[:5])}"
                           + (f" and {len(named) - 5} more" if len(named) > 5 else "")
                           + f" (for the model's {missing[0]}, shape {first_shape}): {why}")


def _check_finite(path: Path, sound: list[tuple[str, torch.Tensor | None]], dtype: torch.dtype) -> None:
    """Refuse the checkpoint if a placed tensor held NaN or infinity (one read of all the on-device checks)."""
    checked = [(name, ok) for name, ok in sound if ok is not None]
    if not checked:
        return
    damaged = [name for (name, _), ok in zip(checked, torch.stack([ok for _, ok in checked]).tolist()) if not ok]
    damaged = list(dict.fromkeys(damaged))  # a scales tensor is checked as bytes and as the values it unpacks to
    if not damaged:
        return
    named = f"{path}: tensor(s) {', '.join(map(repr, damaged[:5]))}" + (
        f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
    if dtype == torch.float16:  # a sound bfloat16 file overflows float16 (a T4 learner's first guess of dtype)
        raise CheckpointError(f"{named} hold values float16 cannot: beyond its range of +-65504 (or MXFP4 scale "
                              f"bytes above {mxfp4.MAX_FINITE_SCALE_FP16}, which unpack past it), or NaN: load with "
                              "dtype=torch.bfloat16 (gpt-oss's own) or torch.float32; if that fails too, the file "
                              "is damaged")
    raise CheckpointError(f"{named} hold NaN or infinite values (or MXFP4 scale bytes above "
                          f"{mxfp4.MAX_FINITE_SCALE}: 255 is MXFP4's NaN, and 253 or 254 unpack past "
                          "float32's range): the file is damaged, or was saved from a model whose weights had diverged")


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               keep_mxfp4: bool = False, progress: bool = False, verbose: bool = False) -> GPT:
    """Build the course model from a checkpoint folder (HF GPT-2, HF gpt-oss, or gpt-oss ``original/``).

    Tensors stream shard by shard straight to ``device``; with ``keep_mxfp4`` the experts stay
    packed (uint8) and each chosen expert is dequantized when used, so they are never dense all at once.
    """
    t0 = time.perf_counter()
    device = _check_load_args(device, dtype)
    path = Path(path).expanduser()
    cfg, layout, raw = read_config(path)
    files = weight_files(path)
    with torch.device("meta"):
        model = GPT(cfg, packed_experts=keep_mxfp4 and cfg.is_moe)
    expected = {n: t for n, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers())}
    if cfg.tie_embeddings:
        expected.pop("lm_head.weight", None)
    packed_on_disk = cfg.is_moe and (layout == "original" or (raw.get("quantization_config") or {}).get(
        "quant_method") == "mxfp4")
    _check_fits(path, cfg, expected, device, dtype, keep_mxfp4, packed_on_disk)
    rule = RULES[layout]
    report = LoadReport(str(path), layout, str(device), files=len(files), packed_experts=keep_mxfp4 and cfg.is_moe,
                        dtype=str(dtype).removeprefix("torch."))
    seen: set[str] = set()
    unexpected: list[str] = []
    pending: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}  # packed experts waiting for their other half
    sound: list[tuple[str, torch.Tensor | None]] = []  # (file tensor, whether its values are numbers) as placed
    tied_copy: tuple[str, torch.Tensor] | None = None  # an output layer stored beside an embedding it is tied to

    def place(target: str, value: torch.Tensor, source: str, stored: tuple[int, ...]) -> None:
        if target in seen:  # two names in the files for one tensor: which copy is right cannot be known
            raise CheckpointError(f"tensor {source!r} is a second copy of {target}, which another tensor of the "
                                  "checkpoint already gave: the files hold it twice under two names")
        want = expected[target]
        if tuple(value.shape) != tuple(want.shape):
            # A fused or transposed tensor is named with its shape in the file, and the part that does not fit.
            part = "" if tuple(value.shape) == stored else f", which gives {target} {tuple(value.shape)}"
            raise CheckpointError(f"tensor {source!r} has shape {stored}{part}; this config expects "
                                  f"{tuple(want.shape)} for {target} (is config.json from the same model?)")
        out_dtype = value.dtype if value.dtype == torch.uint8 else dtype
        placed = value.to(device=device, dtype=out_dtype).contiguous()
        _set(model, target, placed)
        seen.add(target)
        # A damaged value is found here, not as a crash in sampling. The checks stay on the device and
        # are read once at the end; the smallest and largest values (NaN wins both) need no copy the
        # size of the tensor. Scale byte 255 is MXFP4's NaN; a packed block with scale 253 or 254
        # unpacks to values past float32's and bfloat16's range (4 x 2^126 = 2^128), which no model holds;
        # float16's range ends far sooner (scale 141), where a model loaded in it would compute infinities.
        sound.append((source, placed.max() <= mxfp4.max_finite_scale(dtype) if target.endswith("_scales")
                      else None if placed.dtype == torch.uint8 or not placed.numel()
                      else torch.stack(torch.aminmax(placed)).isfinite().all()))

    def check_dtype(name: str, tensor: torch.Tensor, packed: bool) -> None:
        # MXFP4 halves are raw bytes; everything else is a number that is cast to ``dtype``.
        if packed and tensor.dtype != torch.uint8:
            dense = tensor.is_floating_point() and name.endswith("_blocks")
            raise CheckpointError(f"tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}; MXFP4 blocks "
                                  "and scales are uint8 bytes: " + (
                                      "dense experts under MXFP4's names are what transformers' save_pretrained "
                                      "writes for a model loaded with Mxfp4Config(dequantize=True), and neither "
                                      "transformers nor the course reads them back; write the course's model with "
                                      "write_checkpoint(model, path, mxfp4=False) instead" if dense else
                                      "the file is damaged or not a gpt-oss checkpoint"))
        if not packed and not tensor.is_floating_point():
            raise CheckpointError(f"tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}; a weight must be "
                                  "a floating-point tensor: the file is damaged or from another model")

    bar = _progress(files, progress)
    read: list[str] = []
    for name, tensor in iter_tensors(files):
        read.append(name)
        found = rule(name, cfg)
        if found is None:
            unexpected.append(name)
            continue
        report.tensors += 1
        report.bytes_by_dtype[tensor.dtype] += tensor.numel() * tensor.element_size()
        if found[0]:  # not a tensor that is skipped (GPT-2's stored causal mask)
            check_dtype(name, tensor, found[0].endswith(("_blocks", "_scales")))
        for target, value in _convert(f"tensor {name!r} of shape {tuple(tensor.shape)}", lambda: found[1](tensor)):
            if target == "lm_head.weight" and cfg.tie_embeddings:
                tied_copy = (name, value)  # tied to the embedding: nothing to load, but it must be the same
                continue
            if target in expected:
                place(target, value, name, tuple(tensor.shape))
            elif target.endswith(("_blocks", "_scales")) and target.rsplit("_", 1)[0] in expected:
                # Packed on disk, dense in the model: dequantize once both halves have arrived.
                base, kind = target.rsplit("_", 1)
                pending.setdefault(base, {})[kind] = (name, value.to(device))
                if kind == "scales" and value.numel():
                    # The bytes too, not only what they unpack to: scale 255 (MXFP4's NaN) over codes of 0 unpacks
                    # to finite zeros, and scales 253 to 255 to finite values in float64.
                    sound.append((name, pending[base][kind][1].max() <= mxfp4.MAX_FINITE_SCALE))
                if len(pending[base]) == 2:
                    dense = _unpack_pair(base, pending.pop(base), tuple(expected[base].shape), dtype)
                    place(base, dense, name, tuple(dense.shape))
            else:
                raise _misfit_error(name, target, keep_mxfp4, packed_on_disk and layout == "gpt_oss")
        if bar is not None:
            bar.update(tensor.numel() * tensor.element_size())
    if bar is not None:
        bar.close()
    if unexpected:
        raise CheckpointError(f"{path} holds tensors the {layout} layout does not have: {', '.join(unexpected[:5])}"
                              + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    missing = [n for n in expected if n not in seen and not n.endswith("inv_freq")]
    if missing:
        raise _missing_error(path, cfg, layout, files, read, pending, missing, tuple(expected[missing[0]].shape))
    _check_finite(path, sound, dtype)
    if cfg.tie_embeddings:
        if tied_copy is not None and not torch.equal(tied_copy[1].to(device=device, dtype=dtype), model.embed.weight):
            raise CheckpointError(f"{path}: config.json ties the output layer to the embedding (tie_word_embeddings "
                                  f"true), but the file's {tied_copy[0]!r} differs from the embedding: the model was "
                                  "trained untied, so set tie_word_embeddings to false in config.json")
        model.lm_head.weight = model.embed.weight
    if model.rotary is not None:  # computed, not stored: build it for real now
        model.rotary = Rotary(cfg).to(device=device, dtype=dtype)  # float64 angles for a float64 model
    model.eval()
    report.seconds = time.perf_counter() - t0
    model.load_report = report
    if verbose:
        print(report)
    return model


def _check_load_args(device: str | torch.device, dtype: torch.dtype) -> torch.device:
    """load_model's device, checked to exist here, and its dtype, checked to be one that weights load as."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise CheckpointError(f"device={device!r} is not a device: use 'cpu', 'cuda' (or 'cuda:N') or 'mps'") from None
    problem = device_problem(device)
    if problem:
        raise CheckpointError(f"device={str(device)!r}: {problem}" + (
            "; device='cpu' loads it on the CPU (every notebook runs there)" if problem.startswith("no ") else ""))
    if dtype not in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        named = f" is a string: pass torch.{dtype}" if isinstance(dtype, str) and hasattr(torch, dtype) else ""
        raise CheckpointError(f"dtype={dtype!r}{named}; weights load as a floating-point torch dtype (torch.bfloat16, "
                              "float16, float32 or float64); MXFP4 experts stay packed with keep_mxfp4=True")
    return device


def _misfit_error(name: str, target: str, keep_mxfp4: bool, config_says_mxfp4: bool) -> CheckpointError:
    """The error for file tensor ``name`` that maps to ``target``, which the model being built does not have."""
    if keep_mxfp4 and target.rsplit(".", 1)[-1] in ("gate_up_proj", "down_proj"):
        fix = ("config.json's quantization_config says they are MXFP4, which these files are not: remove it from "
               "config.json (so that every loader, the chat included, reads them dense), or load with "
               "keep_mxfp4=False" if config_says_mxfp4 else "load with keep_mxfp4=False")
        why = f"the checkpoint's experts are dense, so they cannot stay in MXFP4: {fix}"
    else:
        why = "is config.json from the same model?"
    return CheckpointError(f"tensor {name!r} does not fit this model (it would go to {target}): {why}")


def _layout_names(cfg: ModelConfig, layout: str, packed: bool, prefixed: bool = True) -> dict[str, str]:
    """{model tensor: the checkpoint's name for the tensor it comes from} in ``layout``."""
    with torch.device("meta"):
        model = GPT(cfg, packed_experts=packed and cfg.is_moe)
        if layout == "gpt2":  # the Hub's GPT-2 files name their tensors without "transformer."
            stored = [(n if prefixed else n.removeprefix("transformer."), t)
                      for n, t in _gpt2_tensors(model.state_dict(), cfg, torch.float32)]
        elif layout == "original":
            stored = list(original_tensors(model))
        else:
            stored = list(_gptoss_tensors(model.state_dict(), cfg, packed, torch.float32))
        out = {}
        for name, tensor in stored:  # the rule's own split tells which model tensors a fused one makes
            found = RULES[layout](name, cfg)
            out[found[0]] = name
            out.update((target, name) for target, _ in found[1](tensor))
    for target in [t for t in out if t.endswith("_blocks")]:  # packed on disk, dense in the model: both halves
        base = target.removesuffix("_blocks")
        out[base] = f"{out[target]} and {out.get(base + '_scales', 'its scales')}"
    return out


def _progress(files: list[Path], enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    total = sum(f.stat().st_size for f in files)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="loading weights")


# ---- writing -------------------------------------------------------------------------------

def hf_state_dict(model: GPT, mxfp4_experts: bool = True,
                  dtype: torch.dtype = torch.bfloat16) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's tensors under Hugging Face names, in the real layout (one tensor at a time)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper prefixes every name with _orig_mod.
    cfg = model.config
    sd = model.state_dict()
    if cfg.is_gpt2_shaped():
        yield from _gpt2_tensors(sd, cfg, dtype)
    elif cfg.is_gptoss_shaped():
        yield from _gptoss_tensors(sd, cfg, mxfp4_experts, dtype)
    else:
        cfg.to_hf_config()  # raises the explanation


def _gpt2_tensors(sd: dict[str, torch.Tensor], cfg: ModelConfig, dtype: torch.dtype):
    yield "transformer.wte.weight", sd["embed.weight"].to(dtype)
    yield "transformer.wpe.weight", sd["pos_embed.weight"].to(dtype)
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            yield h + theirs + ".weight", sd[p + ours + ".weight"].to(dtype)
            yield h + theirs + ".bias", sd[p + ours + ".bias"].to(dtype)
        yield h + "attn.c_attn.weight", torch.cat([sd[f"{p}attn.{x}_proj.weight"] for x in "qkv"]).t().contiguous().to(dtype)
        yield h + "attn.c_attn.bias", torch.cat([sd[f"{p}attn.{x}_proj.bias"] for x in "qkv"]).to(dtype)
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.fc_in", "mlp.c_fc"), ("mlp.fc_out", "mlp.c_proj")):
            yield h + theirs + ".weight", sd[p + ours + ".weight"].t().contiguous().to(dtype)
            yield h + theirs + ".bias", sd[p + ours + ".bias"].to(dtype)
    yield "transformer.ln_f.weight", sd["norm.weight"].to(dtype)
    yield "transformer.ln_f.bias", sd["norm.bias"].to(dtype)
    if not cfg.tie_embeddings:  # GPT2LMHeadModel with tie_word_embeddings false keeps its own output layer
        yield "lm_head.weight", sd["lm_head.weight"].to(dtype)


def _gptoss_tensors(sd: dict[str, torch.Tensor], cfg: ModelConfig, mxfp4_experts: bool, dtype: torch.dtype):
    yield "model.embed_tokens.weight", sd["embed.weight"].to(dtype)
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        yield h + "input_layernorm.weight", sd[p + "attn_norm.weight"].to(dtype)
        for x in ("q", "k", "v", "o"):
            yield f"{h}self_attn.{x}_proj.weight", sd[f"{p}attn.{x}_proj.weight"].to(dtype)
            if cfg.attn_bias:
                yield f"{h}self_attn.{x}_proj.bias", sd[f"{p}attn.{x}_proj.bias"].to(dtype)
        yield h + "self_attn.sinks", sd[p + "attn.sinks"].to(dtype)
        yield h + "post_attention_layernorm.weight", sd[p + "mlp_norm.weight"].to(dtype)
        yield h + "mlp.router.weight", sd[p + "mlp.router.weight"].to(dtype)
        yield h + "mlp.router.bias", sd[p + "mlp.router.bias"].to(dtype)
        for w in ("gate_up_proj", "down_proj"):
            e = f"{p}mlp.experts.{w}"
            if e + "_blocks" in sd and mxfp4_experts:  # already packed: the bytes go through untouched
                yield f"{h}mlp.experts.{w}_blocks", sd[e + "_blocks"]
                yield f"{h}mlp.experts.{w}_scales", sd[e + "_scales"]
            elif e + "_blocks" in sd:  # packed, asked for dense: one tensor at a time, so memory stays bounded
                dense = mxfp4.dequantize(sd[e + "_blocks"], sd[e + "_scales"], dtype)
                yield f"{h}mlp.experts.{w}", dense.transpose(1, 2).contiguous()
            elif mxfp4_experts:
                try:
                    blocks, scales = mxfp4.quantize(sd[e])
                except ValueError as err:  # NaN or a value past float32's range: say which tensor
                    raise ValueError(f"{e}: {err}") from None
                yield f"{h}mlp.experts.{w}_blocks", blocks
                yield f"{h}mlp.experts.{w}_scales", scales
            else:
                yield f"{h}mlp.experts.{w}", sd[e].transpose(1, 2).contiguous().to(dtype)
            yield f"{h}mlp.experts.{w}_bias", sd[e + "_bias"].to(dtype)
    yield "model.norm.weight", sd["norm.weight"].to(dtype)
    if not cfg.tie_embeddings:
        yield "lm_head.weight", sd["lm_head.weight"].to(dtype)


ORIGINAL_NAMES = {  # HF name (after model.layers.N.) -> OpenAI original name (after block.N.)
    "input_layernorm.weight": "attn.norm.scale", "self_attn.sinks": "attn.sinks",
    "self_attn.o_proj.weight": "attn.out.weight", "self_attn.o_proj.bias": "attn.out.bias",
    "post_attention_layernorm.weight": "mlp.norm.scale", "mlp.router.weight": "mlp.gate.weight",
    "mlp.router.bias": "mlp.gate.bias", "mlp.experts.gate_up_proj_blocks": "mlp.mlp1_weight.blocks",
    "mlp.experts.gate_up_proj_scales": "mlp.mlp1_weight.scales", "mlp.experts.gate_up_proj_bias": "mlp.mlp1_bias",
    "mlp.experts.down_proj_blocks": "mlp.mlp2_weight.blocks", "mlp.experts.down_proj_scales": "mlp.mlp2_weight.scales",
    "mlp.experts.down_proj_bias": "mlp.mlp2_bias",
}


def original_tensors(model: GPT, dtype: torch.dtype = torch.bfloat16) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's tensors under OpenAI's ``original/`` names: q, k, v fused into one qkv."""
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in _gptoss_tensors(model.state_dict(), model.config, True, dtype):
        top = {"model.embed_tokens.weight": "embedding.weight", "model.norm.weight": "norm.scale",
               "lm_head.weight": "unembedding.weight"}
        if name in top:
            yield top[name], t
            continue
        layer, rest = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name).groups()
        m = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
        if m:  # gather q, k and v, then emit them as one fused tensor
            parts = qkv.setdefault(f"{layer}.{m.group(2)}", {})
            parts[m.group(1)] = t
            if len(parts) == 3:
                yield f"block.{layer}.attn.qkv.{m.group(2)}", torch.cat([parts["q"], parts["k"], parts["v"]])
            continue
        yield f"block.{layer}.{ORIGINAL_NAMES[rest]}", t


def original_config(cfg: ModelConfig) -> dict[str, Any]:
    """OpenAI's ``original/config.json`` for a gpt-oss-shaped config (the reference ModelConfig's fields)."""
    if not cfg.is_gptoss_shaped() or cfg.tie_embeddings:
        raise ValueError("the original/ layout holds untied gpt-oss models only")
    # Its config.json has no field for these: the reader assumes gpt-oss's own values.
    alternating = alternating_layer_types(cfg.n_layers)
    fixed = {"positions": (cfg.positions, "yarn"), "swiglu_alpha": (cfg.swiglu_alpha, 1.702),
             "attn_bias": (cfg.attn_bias, True), "norm_eps": (cfg.norm_eps, 1e-5),
             "rope_truncate": (cfg.rope_truncate, False),
             "layer_types": (cfg.layer_types if cfg.sliding_window else alternating, alternating)}
    other = [f"{k}={have!r}" for k, (have, want) in fixed.items() if have != want]
    if other:
        raise ValueError(f"the original/ layout has no setting for {', '.join(other)} (it assumes gpt-oss's): "
                         "write this model with layout='hf'")
    return {
        "num_hidden_layers": cfg.n_layers, "num_experts": cfg.n_experts, "experts_per_token": cfg.experts_per_token,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
        "swiglu_limit": cfg.swiglu_limit, "head_dim": cfg.head_dim, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "sliding_window": cfg.sliding_window,
        "initial_context_length": cfg.rope_original_context, "rope_theta": cfg.rope_theta,
        "rope_scaling_factor": cfg.rope_scaling_factor, "rope_ntk_alpha": cfg.rope_beta_slow,
        "rope_ntk_beta": cfg.rope_beta_fast,
    }


def shard_names(n_shards: int) -> list[str]:
    """gpt-oss's shard names: zero-based, and 'of' names the last index (model-00000-of-00002 ...)."""
    if n_shards == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{n_shards - 1:05d}.safetensors" for i in range(n_shards)]


# What the course's writers put in a checkpoint folder (and what editors leave there): a folder
# holding anything else is not replaced, since replacing it would delete that too.
CHECKPOINT_FILES = ("config.json", "generation_config.json", "training.json", "TRAINING.md", "model.safetensors",
                    INDEX_FILE, "model-*-of-*.safetensors", ".DS_Store", ".ipynb_checkpoints")


def check_replaceable(path: Path, advice: str, files: tuple[str, ...] = CHECKPOINT_FILES) -> None:
    """FileExistsError when ``path`` is a file, or a folder (not a link) that holds more than a checkpoint
    (more than ``files``, names or patterns, and what Jupyter and macOS leave)."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a checkpoint folder, which replacing it would delete: {advice}")
    if path.is_symlink() or not path.is_dir():
        return
    allowed = (*files, ".DS_Store", ".ipynb_checkpoints")
    others = sorted(p.name for p in path.iterdir() if not any(p.match(pattern) for pattern in allowed))
    if others:
        what = "a checkpoint" if files == CHECKPOINT_FILES else "what a run writes there"
        raise FileExistsError(f"{path} holds more than {what} ({', '.join(others[:5])}"
                              f"{' ...' if len(others) > 5 else ''}), which replacing it would delete: {advice}")


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value of ``tensor`` is finite: its smallest and largest (NaN wins both), no copy of its size."""
    return bool(torch.stack(torch.aminmax(tensor)).isfinite().all())


def _diverged(model: nn.Module) -> None:
    """Refuse a model whose weights hold NaN or infinity (diverged): the loader would refuse its checkpoint."""
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.numel() and not _finite(p.detach()):
            raise ValueError(f"the model's {name} holds NaN or infinite values, so its checkpoint would not load: its "
                             "weights have diverged (a learning rate too high, say); write one saved before that")


def _within_range(tensors: Iterator[tuple[str, torch.Tensor]], dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a finite model, each refused if it overflowed as written (float16 past 65504, a float64 weight
    past float32's 3.4e38, a packed scale past 252): the loader would refuse the checkpoint."""
    for name, tensor in tensors:
        if tensor.dtype == torch.uint8 and "scales" in name and tensor.numel() and \
                int(tensor.max()) > mxfp4.MAX_FINITE_SCALE:  # packed already: quantize stays at or below it
            raise ValueError(f"{name} holds scale bytes up to {int(tensor.max())}, past {mxfp4.MAX_FINITE_SCALE}: "
                             "unpacked, those values are infinite (255 is MXFP4's NaN), so the loader would refuse "
                             "the checkpoint; the model's packed experts hold what no finite weight gives")
        if tensor.is_floating_point() and tensor.numel() and not _finite(tensor):
            if dtype == torch.float16:
                raise ValueError(f"{name} has values beyond float16's range (+-65504), which it would hold as "
                                 "infinite: write the checkpoint in torch.bfloat16 (the default) or torch.float32")
            raise ValueError(f"{name} has values beyond {str(dtype).removeprefix('torch.')}'s range, which it would "
                             "hold as infinite: scale them down, or write the checkpoint in torch.float64")
        yield name, tensor


def write_checkpoint(model: GPT, path: str | Path, mxfp4: bool = True, dtype: torch.dtype = torch.bfloat16,
                     max_shard_bytes: int | None = SHARD_BYTES, overwrite: bool = False, layout: str = "hf") -> Path:
    """Write ``model`` as a checkpoint folder in the real layout (MXFP4 experts by default).

    ``layout`` is "hf" (Hugging Face names, as the hub's root folder) or "original" (OpenAI's
    names, as the hub's ``original/`` folder: fused qkv, its own config keys). Files hold at
    most ``max_shard_bytes`` each (None: one file, as gpt-oss-20b's ``original/``), named and indexed
    as the HF layout's shards in either layout (the Hub's 120b ``original/`` names its own
    ``model--0000N-of-00007``; the loader reads every ``*.safetensors`` either way). One shard's
    tensors are in memory at a time, which bounds what a conversion (MXFP4 to dense) costs.
    ``overwrite`` replaces an earlier checkpoint, never a file nor a folder that holds other files too.

    The folder is written beside its destination and renamed into place, so an interrupted
    write never leaves a half-written checkpoint behind (a killed one leaves its temporary
    folder, which the next write reports).
    """
    if dtype not in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        raise ValueError(f"dtype={dtype!r}: the weights other than MXFP4 experts are written as a floating-point "
                         "torch dtype (torch.bfloat16, as the real checkpoints, or float16, float32, float64)")
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: the module it compiles
    path = away_from_here(path, "write_checkpoint: ", "my-checkpoint")
    safetensors_path(path, "write_checkpoint: ")  # refused before the work, not once the shards are written
    if restore_folder(path):  # a write killed between its two renames had set the checkpoint aside
        warnings.warn(f"{path} was missing, and the copy a cut-short write had set aside is back in its place",
                      stacklevel=2)
    # First what overwrite=True would not replace either, so that no message offers it in vain.
    check_replaceable(path, "write into an empty or new folder, or one that holds only a checkpoint")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} exists: pass overwrite=True to replace it")
    _diverged(model)  # before any work, and before the old checkpoint is replaced by one that would not load
    stale = leftovers(path)
    if stale:  # not removed here: another process may be writing the same checkpoint right now
        warnings.warn(f"beside {path} lies what writes killed mid-way left ({', '.join(p.name for p in stale)}): "
                      "it only takes disk space; remove it with "
                      f"gptoss_edu.files.remove_leftovers({str(path)!r}) once nothing else writes there",
                      stacklevel=2)
    if layout == "original":
        cfg_json = original_config(model.config)
        tensors = original_tensors(model, dtype)
    elif layout == "hf":
        cfg_json = model.config.to_hf_config()
        if not mxfp4:
            cfg_json.pop("quantization_config", None)
        cfg_json["torch_dtype"] = str(dtype).removeprefix("torch.")  # what the file holds (a GPT-2 preset says float32)
        tensors = hf_state_dict(model, mxfp4, dtype)
    else:
        raise ValueError(f"layout must be 'hf' or 'original', got {layout!r}")
    tensors = _within_range(tensors, dtype)  # before the old checkpoint is replaced by one that would not load
    path.parent.mkdir(parents=True, exist_ok=True)
    # The old checkpoint stays until the new one is complete: the disk must hold the whole new one beside it.
    need = _written_bytes(model.config, layout, mxfp4, dtype)
    if need > disk_free(path.parent):
        raise DiskFull(path, need, before=True)
    tmp = temporary_folder(path)
    size = total = 0
    try:
        # One shard in memory at a time; shards are named once their count is known.
        written: list[tuple[Path, list[str]]] = []
        shard: dict[str, torch.Tensor] = {}

        def flush() -> None:
            file = tmp / f"shard-{len(written)}.part"
            save_tensors(shard, file, metadata={"format": "pt"})
            written.append((file, list(shard)))
            shard.clear()

        for name, tensor in tensors:
            nbytes = tensor.numel() * tensor.element_size()
            if max_shard_bytes and shard and size + nbytes > max_shard_bytes:
                flush()
                size = 0
            shard[name] = tensor.contiguous()
            size, total = size + nbytes, total + nbytes
        flush()
        weight_map = {}
        for fname, (file, names) in zip(shard_names(len(written)), written):
            file.rename(tmp / fname)
            weight_map.update(dict.fromkeys(names, fname))
        if len(written) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
        share(tmp)
        replace_folder(tmp, path)
    except OSError as e:
        if not is_no_room(e) or isinstance(e, DiskFull):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # before the free space is measured for the message
        raise DiskFull(path, need, quota=e.errno == errno.EDQUOT) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already, unless something failed
    return path


def _written_bytes(cfg: ModelConfig, layout: str, mxfp4: bool, dtype: torch.dtype) -> int:
    """Bytes of the tensors write_checkpoint writes for ``cfg`` (its headers and config.json add a few KB)."""
    with torch.device("meta"):
        shadow = GPT(cfg, packed_experts=cfg.is_moe and (mxfp4 or layout == "original"))
    tensors = original_tensors(shadow, dtype) if layout == "original" else hf_state_dict(shadow, mxfp4, dtype)
    return sum(t.numel() * t.element_size() for _, t in tensors)


def manifest(cfg: ModelConfig, mxfp4_experts: bool = True) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype, shape) of every tensor the writer would produce for ``cfg``, with nothing allocated."""
    with torch.device("meta"):
        model = GPT(cfg, packed_experts=mxfp4_experts and cfg.is_moe)
    return [(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in hf_state_dict(model, mxfp4_experts)]


def manifest_bytes(entries: list[tuple[str, str, tuple[int, ...]]]) -> int:
    """Total bytes of a manifest's tensors."""
    size = {"bfloat16": 2, "float16": 2, "float32": 4, "uint8": 1}
    total = 0
    for _, dtype, shape in entries:
        n = 1
        for s in shape:
            n *= s
        total += n * size[dtype]
    return total
