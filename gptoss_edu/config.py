"""ModelConfig: one config whose switches are the steps of the course, GPT-2 to gpt-oss."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .tokenizer import HARMONY_SPECIAL_TOKENS

Positions = Literal["learned", "rope", "yarn"]
Norm = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu", "gptoss_swiglu"]
LayerType = Literal["full_attention", "sliding_attention"]

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def _harmony_id(token: str, vocab_size: int) -> int | None:
    """The id of harmony's ``token``, or None when a vocabulary of ``vocab_size`` has no room for it."""
    token_id = HARMONY_SPECIAL_TOKENS[token]
    return token_id if token_id < vocab_size else None


def cached_repo_id(path: str | Path) -> str | None:
    """The repository of a Hugging Face cache snapshot, ``models--owner--name/snapshots/<commit>``: 'owner/name'."""
    path = Path(path)
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
    return None


def checkpoint_name(path: str | Path) -> str:
    """A checkpoint folder's model name: its own name, or its repository's in the Hugging Face cache (not the
    commit hash its snapshot folder is named by); for an ``original/`` folder, its parent's."""
    path = Path(path).expanduser().absolute()
    if path.name == "original":
        path = path.parent
    repo = cached_repo_id(path)
    return repo.split("/")[-1] if repo else path.name


# The fields validate() wants as Python ints, and as Python numbers.
WHOLE_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "context_length",
                "rope_original_context", "n_experts", "experts_per_token", "sliding_window")
NUMBER_FIELDS = ("rope_theta", "rope_scaling_factor", "rope_beta_fast", "rope_beta_slow", "norm_eps", "swiglu_alpha",
                 "swiglu_limit", "dropout")


@dataclass
class ModelConfig:
    """Every switch the course turns, from GPT-2 (the defaults) to gpt-oss."""

    name: str = "gpt2-124m"
    vocab_size: int = 50257
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int = 12
    head_dim: int = 64
    d_ff: int = 3072
    context_length: int = 1024
    # positions
    positions: Positions = "learned"
    rope_theta: float = 10000.0
    rope_scaling_factor: float = 1.0  # > 1 with positions="yarn"
    rope_original_context: int = 4096
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    rope_truncate: bool = False
    # norms
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    # feed-forward
    mlp: MLPKind = "gelu"
    gelu_approximate: Literal["none", "tanh"] = "tanh"
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    mlp_bias: bool = True
    n_experts: int = 0  # 0: one dense MLP per block
    experts_per_token: int = 0
    # attention
    attn_bias: bool = True
    sliding_window: int = 0
    layer_types: tuple[LayerType, ...] = field(default_factory=tuple)  # empty: all full attention
    sinks: bool = False
    # training-only and output
    dropout: float = 0.1
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        self.layer_types = tuple(self.layer_types)
        # NumPy's numbers (a sweep over np.arange) are numbers: kept as Python's, which torch and JSON take.
        for f in WHOLE_FIELDS:
            v = getattr(self, f)
            if isinstance(v, numbers.Integral) and not isinstance(v, int):
                setattr(self, f, int(v))
        for f in NUMBER_FIELDS:
            v = getattr(self, f)
            if isinstance(v, numbers.Real) and not isinstance(v, (int, float)):
                setattr(self, f, float(v))
        self.validate()

    # ---- checks -------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"ModelConfig {self.name!r}: {msg}")

        # Types first: a config.json with "hidden_size": "32" or 4.0 would otherwise fail deep inside torch.
        for f in WHOLE_FIELDS:
            v = getattr(self, f)
            need(isinstance(v, int) and not isinstance(v, bool), f"{f} must be a whole number, got {v!r}")
        for f in NUMBER_FIELDS:
            v = getattr(self, f)
            need(isinstance(v, (int, float)) and not isinstance(v, bool), f"{f} must be a number, got {v!r}")
            need(math.isfinite(v), f"{f} must be a finite number, got {v!r}")  # JSON's NaN and Infinity too
        for f in ("rope_truncate", "mlp_bias", "attn_bias", "sinks", "tie_embeddings"):
            v = getattr(self, f)  # the string "false" would count as true
            need(isinstance(v, bool), f"{f} must be True or False, got {v!r}")
        need(self.norm_eps > 0, f"norm_eps must be positive (it keeps the norm from dividing by zero), got {self.norm_eps}")
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "context_length"):
            need(getattr(self, f) > 0, f"{f} must be positive, got {getattr(self, f)}")
        try:
            check_layer_count(self.n_layers)
        except ValueError as e:
            need(False, str(e))
        need(self.positions in ("learned", "rope", "yarn"), f"positions must be learned|rope|yarn, got {self.positions!r}")
        need(self.norm in ("layernorm", "rmsnorm"), f"norm must be layernorm|rmsnorm, got {self.norm!r}")
        need(self.mlp in ("gelu", "swiglu", "gptoss_swiglu"), f"mlp must be gelu|swiglu|gptoss_swiglu, got {self.mlp!r}")
        need(self.gelu_approximate in ("none", "tanh"),
             f"gelu_approximate must be none|tanh (torch's names: exact erf, or GPT-2's tanh), got {self.gelu_approximate!r}")
        for f in ("n_experts", "experts_per_token", "sliding_window"):
            need(getattr(self, f) >= 0, f"{f} must be 0 or more (0: none), got {getattr(self, f)}")
        need(self.n_heads % self.n_kv_heads == 0, f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        need(self.head_dim % 2 == 0 or self.positions == "learned", f"rotary positions need an even head_dim, got {self.head_dim}")
        need(self.positions != "yarn" or self.rope_scaling_factor >= 1, "YaRN needs rope_scaling_factor >= 1")
        need(self.positions == "learned" or self.rope_theta > 1,
             f"rope_theta must be more than 1 (the base of the rotary frequencies), got {self.rope_theta}")
        need(self.positions != "yarn" or self.rope_original_context > 0,
             f"rope_original_context must be positive, got {self.rope_original_context}")
        # YaRN's correction range counts rotations: log(context / (2 pi beta)) needs each beta positive.
        for f in ("rope_beta_fast", "rope_beta_slow"):
            need(self.positions != "yarn" or getattr(self, f) > 0, f"{f} must be positive, got {getattr(self, f)}")
        need(self.swiglu_limit > 0, f"swiglu_limit must be positive, got {self.swiglu_limit}")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_experts:
            need(1 <= self.experts_per_token <= self.n_experts,
                 f"experts_per_token must be in 1..n_experts ({self.n_experts}), got {self.experts_per_token}")
            need(self.mlp == "gptoss_swiglu", f"experts are gpt-oss SwiGLU experts: set mlp='gptoss_swiglu' (got {self.mlp!r})")
            need(self.mlp_bias, "gpt-oss experts always have biases (the checkpoint's gate_up_proj_bias and "
                 "down_proj_bias): mlp_bias=False is for a dense MLP, so keep mlp_bias=True with n_experts > 0")
        if self.layer_types:
            need(len(self.layer_types) == self.n_layers,
                 f"layer_types has {len(self.layer_types)} entries for {self.n_layers} layers")
            bad = {repr(t) for t in self.layer_types if t not in ("full_attention", "sliding_attention")}  # any JSON
            need(not bad, f"unknown layer types {', '.join(sorted(bad))}: use full_attention|sliding_attention")
            need("sliding_attention" not in self.layer_types or self.sliding_window > 0,
                 "sliding_attention layers need sliding_window > 0")

    # ---- derived ------------------------------------------------------------
    def window(self, layer: int) -> int:
        """The sliding window of ``layer`` in keys (0 = full causal attention)."""
        try:
            index = operator.index(layer)  # ints, numpy ints, 0-d integer tensors
        except TypeError:
            index = None
        if isinstance(layer, bool) or index is None or not 0 <= index < self.n_layers:
            raise ValueError(f"layer must be one of the model's layers, 0..{self.n_layers - 1}, got {layer!r}")
        layer = index
        if self.layer_types and self.layer_types[layer] == "sliding_attention":
            return self.sliding_window
        return 0

    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts (any experts at all)."""
        return self.n_experts > 0

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes`` applied (and checked): how each notebook takes one step."""
        return dataclasses.replace(self, **changes)

    # ---- parameter counts ---------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        """Parameters by part, with ``total`` and ``active`` (those one token is multiplied by)."""
        d, hd = self.d_model, self.head_dim
        q, kv = self.n_heads * hd, self.n_kv_heads * hd
        b = int(self.attn_bias)
        attn = d * (q + 2 * kv) + b * (q + 2 * kv) + q * d + b * d + (self.n_heads if self.sinks else 0)
        norm_p = d * (2 if self.norm == "layernorm" else 1)
        mb = int(self.mlp_bias)
        if self.mlp == "gelu":
            expert = d * self.d_ff + mb * self.d_ff + self.d_ff * d + mb * d
        else:  # both SwiGLUs: gate and up (d -> 2 d_ff), then down
            expert = d * 2 * self.d_ff + mb * 2 * self.d_ff + self.d_ff * d + mb * d
        if self.is_moe:
            router = d * self.n_experts + self.n_experts
            mlp_total, mlp_active = router + self.n_experts * expert, router + self.experts_per_token * expert
        else:
            mlp_total = mlp_active = expert
        per_layer_fixed = attn + 2 * norm_p
        embed = self.vocab_size * d
        pos = self.context_length * d if self.positions == "learned" else 0
        unembed = 0 if self.tie_embeddings else self.vocab_size * d
        body_total = self.n_layers * (per_layer_fixed + mlp_total) + norm_p
        body_active = self.n_layers * (per_layer_fixed + mlp_active) + norm_p
        # Active, as gpt-oss's model card counts it: what a token multiplies by. Embedding
        # lookups are not multiplications, unless the table doubles as the (tied) unembedding.
        return {
            "embedding": embed + pos,
            "attention": self.n_layers * attn,
            "mlp": self.n_layers * mlp_total,
            "mlp_active": self.n_layers * mlp_active,
            "norms": self.n_layers * 2 * norm_p + norm_p,
            "unembedding": unembed,
            "total": embed + pos + body_total + unembed,
            "active": body_active + (unembed if unembed else embed),
        }

    def kv_cache_bytes(self, tokens: int, batch: int = 1, dtype_bytes: int = 2) -> int:
        """Bytes of keys and values for ``tokens`` positions in every layer (before windows trim the sliding layers).

        What each new token adds while the context is shorter than the window; past it, the
        sliding layers' rolling buffers stop growing (``memory.kv_cache_bytes`` counts them so).
        """
        per_token = 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes
        return per_token * tokens * batch

    def weight_bytes(self, dtype_bytes: float = 2, mxfp4_experts: bool = False) -> int:
        """Bytes of all weights at ``dtype_bytes`` each, experts in MXFP4 (4.25 bits) if asked."""
        total = self.param_counts()["total"]
        if not (mxfp4_experts and self.is_moe):
            return int(total * dtype_bytes)
        d = self.d_model
        expert_w = self.n_experts * (d * 2 * self.d_ff + self.d_ff * d) * self.n_layers
        return int((total - expert_w) * dtype_bytes + expert_w * 17 / 32)

    # ---- HF config.json -----------------------------------------------------
    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], name: str | None = None) -> "ModelConfig":
        """Read a Hugging Face ``config.json`` dict of GPT-2 or gpt-oss."""
        kind = cfg.get("model_type")
        if kind == "gpt2":
            return _from_gpt2(cfg, name)
        if kind == "gpt_oss":
            return _from_gpt_oss(cfg, name)
        raise ValueError(
            f"config.json has model_type {kind!r}: the course reads GPT-2 ('gpt2') and gpt-oss ('gpt_oss') only"
        )

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        """Read a Hugging Face ``config.json`` file."""
        with open(path, "rb") as f:  # bytes: json reads them as UTF-8, whatever the locale
            folder = Path(path).parent
            return cls.from_hf_config(json.load(f), name=checkpoint_name(folder) if folder.name else None)

    def to_hf_config(self) -> dict[str, Any]:
        """This config as a Hugging Face ``config.json`` dict (GPT-2 or gpt-oss keys)."""
        if self.is_gpt2_shaped():
            return {
                "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "vocab_size": self.vocab_size, "n_positions": self.context_length, "n_embd": self.d_model,
                "n_layer": self.n_layers, "n_head": self.n_heads, "n_inner": self.d_ff,
                "activation_function": "gelu_new" if self.gelu_approximate == "tanh" else "gelu",
                "layer_norm_epsilon": self.norm_eps, "resid_pdrop": self.dropout, "embd_pdrop": self.dropout,
                "attn_pdrop": self.dropout, "tie_word_embeddings": self.tie_embeddings,
                "bos_token_id": 50256 if self.vocab_size > 50256 else None,
                "eos_token_id": 50256 if self.vocab_size > 50256 else None, "torch_dtype": "float32",
            }
        if self.is_gptoss_shaped():
            # Plain RoPE is YaRN with factor 1 (the same frequencies, no attention factor).
            factor = float(self.rope_scaling_factor) if self.positions == "yarn" else 1.0
            # gpt-oss's config.json has no swiglu_alpha (1.702 is built in); transformers 5 reads one if given.
            alpha = {} if self.swiglu_alpha == 1.702 else {"swiglu_alpha": self.swiglu_alpha}
            return alpha | {
                "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
                "attention_bias": self.attn_bias, "attention_dropout": 0.0,
                # The harmony ids, as gpt-oss's config.json has them; a small test vocabulary has no room for them.
                "eos_token_id": _harmony_id("<|return|>", self.vocab_size),
                "pad_token_id": _harmony_id("<|endoftext|>", self.vocab_size),
                "experts_per_token": self.experts_per_token, "num_experts_per_tok": self.experts_per_token,
                "head_dim": self.head_dim, "hidden_act": "silu", "hidden_size": self.d_model,
                "initial_context_length": self.rope_original_context, "initializer_range": 0.02,
                "intermediate_size": self.d_ff,
                "layer_types": list(self.layer_types) or ["full_attention"] * self.n_layers,
                "max_position_embeddings": self.context_length,
                "num_attention_heads": self.n_heads, "num_hidden_layers": self.n_layers,
                "num_key_value_heads": self.n_kv_heads, "num_local_experts": self.n_experts,
                "output_router_logits": False,
                "quantization_config": {
                    "modules_to_not_convert": [
                        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head",
                    ],
                    "quant_method": "mxfp4",
                },
                "rms_norm_eps": self.norm_eps,
                "rope_scaling": {
                    "beta_fast": float(self.rope_beta_fast), "beta_slow": float(self.rope_beta_slow),
                    "factor": factor,
                    "original_max_position_embeddings": self.rope_original_context,
                    "rope_type": "yarn", "truncate": self.rope_truncate,
                },
                "rope_theta": self.rope_theta, "router_aux_loss_coef": 0.9,
                "sliding_window": self.sliding_window, "swiglu_limit": self.swiglu_limit,
                "tie_word_embeddings": self.tie_embeddings, "torch_dtype": "bfloat16",
                "use_cache": True, "vocab_size": self.vocab_size,
            }
        raise ValueError(
            f"ModelConfig {self.name!r} is a course step between GPT-2 and gpt-oss: it has no Hugging Face "
            "config.json of its own (only the GPT-2 and gpt-oss shapes do)"
        )

    def is_gpt2_shaped(self) -> bool:
        """Whether this config is a GPT-2 (its checkpoint layout can hold it): learned positions, LayerNorm, GELU."""
        return (self.positions == "learned" and self.norm == "layernorm" and self.mlp == "gelu"
                and self.n_kv_heads == self.n_heads and not self.sinks and not self.layer_types
                and not self.is_moe and self.attn_bias and self.mlp_bias
                and self.head_dim * self.n_heads == self.d_model)

    def is_gptoss_shaped(self) -> bool:
        """Whether this config is a gpt-oss (its checkpoint layout can hold it): RoPE, RMSNorm, sinks, experts."""
        return (self.positions in ("rope", "yarn") and self.norm == "rmsnorm" and self.is_moe
                and self.sinks and self.mlp == "gptoss_swiglu" and self.mlp_bias)


def _require(cfg: dict[str, Any], keys: list[str], family: str) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise KeyError(f"{family} config.json is missing {', '.join(repr(k) for k in missing)}")


# The readers below check each value under its config.json name: "rope_theta" is what a reader of the file
# can find, not the course's field it becomes.
def _digits(n: int) -> str:
    """How many digits ``n`` has, said without str() failing past its 4,300-digit limit."""
    try:
        return f"{len(str(abs(n)))} digits"
    except ValueError:
        return "thousands of digits"


def read_number(d: dict[str, Any], key: str, default: Any, where: str = "config.json") -> float:
    """``d[key]`` (or ``default``) as a float; a clear ValueError naming ``where`` and the key if it is no number."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}'s {key!r} must be a number, got {v!r}")
    try:
        return float(v)
    except OverflowError:  # a whole number past float's range: JSON has no bound on digits
        raise ValueError(f"{where}'s {key!r} is too large a number ({_digits(v)})") from None


def read_whole(d: dict[str, Any], key: str, default: Any = None, where: str = "config.json") -> int:
    """``d[key]`` (or ``default``) as an int; a clear ValueError if it is not a whole number."""
    v = d.get(key, default)
    # 4096.0 is a whole number (some tools write every number as a float, and transformers reads it).
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not v.is_integer():
        raise ValueError(f"{where}'s {key!r} must be a whole number, got {v!r}")
    if abs(v) >= 2**63:  # torch's sizes are 64-bit integers
        raise ValueError(f"{where}'s {key!r} is too large a number ({_digits(int(v))})")
    return int(v)


def read_flag(d: dict[str, Any], key: str, default: bool, where: str = "config.json") -> bool:
    """``d[key]`` (or ``default``) as a bool; a clear ValueError if it is not true or false."""
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ValueError(f"{where}'s {key!r} must be true or false, got {v!r}")
    return v


def _from_gpt2(cfg: dict[str, Any], name: str | None) -> ModelConfig:
    _require(cfg, ["vocab_size", "n_embd", "n_layer", "n_head"], "GPT-2")
    d, h = read_whole(cfg, "n_embd"), read_whole(cfg, "n_head")
    if h > 0 and d % h:  # GPT-2's heads split the width evenly (transformers refuses this config too)
        raise ValueError(f"GPT-2 config.json has n_embd {d}, which its n_head ({h}) does not divide: each head "
                         f"would be {d / h:g} wide. Fix n_embd or n_head")
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu", "gelu_pytorch_tanh"):
        raise ValueError(f"GPT-2 config.json has activation_function {act!r}: the course supports gelu_new and gelu")
    # Two attention variants transformers' GPT-2 implements and the course's attention does not.
    if not read_flag(cfg, "scale_attn_weights", True):
        raise ValueError("GPT-2 config.json has scale_attn_weights false (scores not divided by sqrt(head_dim)): "
                         "the course's attention always scales them, so this model cannot be loaded")
    if read_flag(cfg, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("GPT-2 config.json has scale_attn_by_inverse_layer_idx true (layer i's scores divided by "
                         "i + 1): the course's attention does not, so this model cannot be loaded")
    return ModelConfig(
        name=name or "gpt2", vocab_size=read_whole(cfg, "vocab_size"), d_model=d, n_layers=read_whole(cfg, "n_layer"),
        n_heads=h, n_kv_heads=h, head_dim=d // h if h else 0,
        d_ff=read_whole(cfg, "n_inner") if cfg.get("n_inner") is not None else 4 * d,
        context_length=read_whole(cfg, "n_positions", 1024), positions="learned", norm="layernorm",
        norm_eps=read_number(cfg, "layer_norm_epsilon", 1e-5), mlp="gelu",
        gelu_approximate="none" if act == "gelu" else "tanh", dropout=read_number(cfg, "resid_pdrop", 0.1),
        tie_embeddings=read_flag(cfg, "tie_word_embeddings", True),
    )


def _from_gpt_oss(cfg: dict[str, Any], name: str | None) -> ModelConfig:
    _require(cfg, ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                   "head_dim", "intermediate_size", "num_local_experts"], "gpt-oss")
    k_key = "num_experts_per_tok" if "num_experts_per_tok" in cfg else "experts_per_token"
    if k_key not in cfg:
        raise KeyError("gpt-oss config.json is missing 'num_experts_per_tok' (or 'experts_per_token')")
    rs, rs_key = _rope_settings(cfg)
    theta_in = rs if "rope_theta" in rs else cfg  # set in both, transformers takes the rope settings' own
    if "rope_theta" not in theta_in:
        raise KeyError("gpt-oss config.json is missing 'rope_theta' (at the top or in 'rope_parameters')")
    factor = read_number(rs, "factor", 1.0, rs_key)
    # A missing sliding_window is transformers' default, 128; null or 0 means none.
    window = 128 if "sliding_window" not in cfg else 0 if cfg["sliding_window"] is None else read_whole(cfg, "sliding_window")
    n_layers = read_whole(cfg, "num_hidden_layers")
    if cfg.get("layer_types") is not None and not isinstance(cfg["layer_types"], list):  # a string, once split into letters
        raise ValueError(f"config.json's 'layer_types' must be a list with one \"sliding_attention\" or "
                         f"\"full_attention\" per layer, got {cfg['layer_types']!r}")
    layer_types = tuple(cfg.get("layer_types") or (alternating_layer_types(n_layers) if window else ()))
    return ModelConfig(
        name=name or "gpt-oss", vocab_size=read_whole(cfg, "vocab_size"), d_model=read_whole(cfg, "hidden_size"),
        n_layers=n_layers, n_heads=read_whole(cfg, "num_attention_heads"),
        n_kv_heads=read_whole(cfg, "num_key_value_heads"), head_dim=read_whole(cfg, "head_dim"),
        d_ff=read_whole(cfg, "intermediate_size"), context_length=read_whole(cfg, "max_position_embeddings", 131072),
        positions="yarn" if rs.get("rope_type", rs.get("type")) == "yarn" and factor > 1 else "rope",
        rope_theta=read_number(theta_in, "rope_theta", None, "config.json" if theta_in is cfg else rs_key),
        rope_scaling_factor=factor,
        rope_original_context=read_whole(rs, "original_max_position_embeddings",
                                     read_whole(cfg, "initial_context_length", 4096), rs_key),
        rope_beta_fast=read_number(rs, "beta_fast", 32.0, rs_key), rope_beta_slow=read_number(rs, "beta_slow", 1.0, rs_key),
        rope_truncate=read_flag(rs, "truncate", True, rs_key),
        norm="rmsnorm", norm_eps=read_number(cfg, "rms_norm_eps", 1e-5), mlp="gptoss_swiglu",
        swiglu_alpha=read_number(cfg, "swiglu_alpha", 1.702), swiglu_limit=read_number(cfg, "swiglu_limit", 7.0),
        mlp_bias=True,
        n_experts=read_whole(cfg, "num_local_experts"), experts_per_token=read_whole(cfg, k_key),
        attn_bias=read_flag(cfg, "attention_bias", True), sliding_window=window,
        layer_types=layer_types, sinks=True, dropout=0.0, tie_embeddings=read_flag(cfg, "tie_word_embeddings", False),
    )


# The keys each rope type reads, as transformers' validation lists them; the course's YaRN is gpt-oss's,
# so the keys that change other models' YaRN (attention_factor, mscale, ...) are refused, not ignored.
_ROPE_KEYS = {
    "yarn": {"rope_type", "type", "factor", "original_max_position_embeddings", "rope_theta", "beta_fast",
             "beta_slow", "truncate"},
    "default": {"rope_type", "type", "rope_theta"},
}
_ROPE_UNSUPPORTED = {"attention_factor", "mscale", "mscale_all_dim", "partial_rotary_factor"}


# What transformers' GptOssConfig takes when config.json has no rope settings: gpt-oss's own YaRN.
GPT_OSS_DEFAULT_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                        "original_max_position_embeddings": 4096}


def _rope_settings(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """gpt-oss's rope settings, checked, and where they were: a typo here would otherwise silently turn YaRN off."""
    # The Hub's config.json has rope_scaling and a top-level rope_theta; transformers 5 saves both
    # inside rope_parameters instead.
    key = "rope_scaling" if cfg.get("rope_scaling") is not None else "rope_parameters"
    if cfg.get(key) is None or cfg[key] == {}:  # none (null, or empty): transformers reads gpt-oss's YaRN, as we do
        return dict(GPT_OSS_DEFAULT_ROPE), "the default rope settings"
    rs = cfg[key]
    if not isinstance(rs, dict):
        raise ValueError(f"config.json's {key!r} must be an object like {{\"rope_type\": \"yarn\", \"factor\": 32.0, "
                         f"...}}, got {rs!r}")
    rope_type = rs.get("rope_type", rs.get("type"))
    if rope_type is not None and not isinstance(rope_type, str):  # a list or an object: not a name to look up
        raise ValueError(f"config.json's {key} has rope_type {rope_type!r}: it must be a string, 'yarn' (gpt-oss's) "
                         "or 'default' (plain RoPE)")
    if rope_type not in _ROPE_KEYS:
        raise ValueError(f"config.json's {key} has rope_type {rope_type!r}{_did_you_mean(rope_type, _ROPE_KEYS)}: "
                         "the course runs 'yarn' (gpt-oss's) and 'default' (plain RoPE)")
    for name in rs:
        if name in _ROPE_UNSUPPORTED:
            raise ValueError(f"config.json's {key} sets {name!r}, which gpt-oss's YaRN does not have and the course "
                             "does not implement (its attention factor comes from 'factor' alone)")
        if name not in _ROPE_KEYS[rope_type]:
            raise ValueError(f"config.json's {key} has an unknown key {name!r}{_did_you_mean(name, _ROPE_KEYS[rope_type])}; "
                             f"rope_type {rope_type!r} reads {', '.join(sorted(_ROPE_KEYS[rope_type] - {'type'}))}")
    if rope_type == "yarn":
        missing = [k for k in ("factor", "original_max_position_embeddings") if k not in rs]
        if missing:
            raise KeyError(f"config.json's {key} (rope_type 'yarn') is missing {', '.join(map(repr, missing))}")
        if isinstance(rs["factor"], bool) or not isinstance(rs["factor"], (int, float)) or not rs["factor"] >= 1:
            raise ValueError(f"config.json's {key}: YaRN's 'factor' must be a number >= 1, got {rs['factor']!r}")
    return rs, f"config.json's {key}"


def _did_you_mean(word: Any, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# gpt-oss-120b has 36 layers. A config.json with a billion took 90 s and 8.5 GB to build its layer
# types before any check could refuse it; this many cost a millisecond.
MAX_LAYERS = 10_000


def check_layer_count(n_layers: int) -> None:
    """ValueError for a layer count no model has, before anything is built per layer."""
    if isinstance(n_layers, int) and n_layers > MAX_LAYERS:
        raise ValueError(f"n_layers is {n_layers:,}: the course reads models of up to {MAX_LAYERS:,} layers "
                         "(gpt-oss-120b has 36); the config is damaged, or not a model's")


def alternating_layer_types(n_layers: int) -> tuple[LayerType, ...]:
    """gpt-oss's layer pattern: sliding-window attention on even layers, full attention on odd ones."""
    check_layer_count(n_layers)
    return tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers))


def _load_preset_json(name: str) -> dict[str, Any]:
    with open(PRESET_DIR / f"{name}.config.json") as f:
        return json.load(f)


def preset(name: str) -> ModelConfig:
    """A named config: the two real families, and small CPU-sized ones of the same kinds."""
    if name == "gpt2-124m":
        return ModelConfig(name=name)
    if name in ("gpt-oss-20b", "gpt-oss-120b"):
        return ModelConfig.from_hf_config(_load_preset_json(name), name=name)
    if name == "gpt2-tiny":
        return ModelConfig(name=name, vocab_size=50257, d_model=64, n_layers=2, n_heads=4, n_kv_heads=4,
                           head_dim=16, d_ff=256, context_length=256)
    if name == "gpt-oss-tiny":
        return preset("gpt-oss-20b").replace(
            name=name, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=64,
            n_experts=8, experts_per_token=2, sliding_window=8, layer_types=alternating_layer_types(4),
            context_length=4096, rope_original_context=256, rope_scaling_factor=16.0)
    raise KeyError(f"no preset {name!r}; choose from {', '.join(PRESETS)}")


PRESETS = ("gpt2-124m", "gpt-oss-20b", "gpt-oss-120b", "gpt2-tiny", "gpt-oss-tiny")


def yarn_correction_range(cfg: ModelConfig) -> tuple[float, float]:
    """YaRN's (low, high) correction range: pairs below low (fast) are kept, pairs above high (slow) divided by the factor."""
    def dim_for(rotations: float) -> float:
        return cfg.head_dim * math.log(cfg.rope_original_context / (rotations * 2 * math.pi)) / (2 * math.log(cfg.rope_theta))

    low, high = dim_for(cfg.rope_beta_fast), dim_for(cfg.rope_beta_slow)
    if cfg.rope_truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0.0), min(high, cfg.head_dim - 1.0)


# What each notebook changes, applied in order: course_config(n) is the block after notebook n.
# The last notebook's number: course_config takes 0..LAST_STEP, and `train` course-step-01 .. course-step-LAST_STEP.
LAST_STEP = 13
COURSE_STEPS: dict[int, dict[str, Any]] = {
    1: {},  # GPT-2 as it is
    2: {"positions": "rope", "dropout": 0.0},
    3: {"norm": "rmsnorm"},
    4: {"mlp": "gptoss_swiglu"},
    5: {"n_kv_heads": "half"},  # half the base's query heads (2 of gpt2-tiny's 4)
    6: {"sliding_window": 8, "layer_types": "alternating", "sinks": True},
    7: {"n_experts": 8, "experts_per_token": 2, "tie_embeddings": False},
    9: {"positions": "yarn", "rope_scaling_factor": 4.0, "rope_original_context": 64},
}


def course_config(step: int, base: ModelConfig | None = None) -> ModelConfig:
    """The config after notebook ``step`` (0..LAST_STEP; 0 and 1 are the base), built from ``base`` (default: gpt2-tiny)."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= LAST_STEP:
        raise ValueError(f"step is a notebook's number, a whole number 0..{LAST_STEP}, got {step!r}")
    if base is not None and not isinstance(base, ModelConfig):
        raise TypeError(f"base must be a ModelConfig (e.g. preset({base!r})), got {type(base).__name__}")
    cfg = base or preset("gpt2-tiny")
    for n in sorted(COURSE_STEPS):
        if n > step:
            break
        changes = dict(COURSE_STEPS[n])
        if changes.get("layer_types") == "alternating":
            changes["layer_types"] = alternating_layer_types(cfg.n_layers)
        if changes.get("n_kv_heads") == "half":
            changes["n_kv_heads"] = max(1, cfg.n_heads // 2)
        cfg = cfg.replace(**changes)
    return cfg.replace(name=f"{cfg.name.split('@')[0]}@step{step:02d}")


def config_diff(old: ModelConfig, new: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two configs, as {field: (old, new)}; the name is left out."""
    return {f.name: (getattr(old, f.name), getattr(new, f.name)) for f in dataclasses.fields(ModelConfig)
            if f.name != "name" and getattr(old, f.name) != getattr(new, f.name)}
