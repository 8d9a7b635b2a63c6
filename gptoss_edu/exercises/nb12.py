"""Notebook 12's exercise: the memory plan of a gpt-oss model by hand (weights and KV cache)."""

from __future__ import annotations

import json
from typing import Any, Callable

from .. import memory
from ..config import PRESET_DIR, alternating_layer_types
from . import CheckResult, as_number, failed, not_a_function, passed

PlanFn = Callable[[dict, int], dict]


def hf_config(name: str) -> dict[str, Any]:
    """The Hugging Face ``config.json`` of a preset (gpt-oss-20b, gpt-oss-120b) as a dict."""
    return json.loads((PRESET_DIR / f"{name}.config.json").read_text())


def made_up_config() -> dict[str, Any]:
    """A gpt-oss-shaped config of no real model, so an answer that only knows 120b's numbers fails.

    Its 7 layers do not alternate (5 slide), so only an answer that reads ``layer_types`` gets its cache right.
    """
    cfg = hf_config("gpt-oss-120b")
    sliding, full = "sliding_attention", "full_attention"
    cfg.update(num_hidden_layers=7, num_local_experts=16, num_key_value_heads=4, num_attention_heads=32,
               hidden_size=1024, intermediate_size=1536, vocab_size=50_000, sliding_window=256,
               layer_types=[sliding, sliding, full, sliding, sliding, sliding, full])
    return cfg


def cases() -> list[tuple[str, dict[str, Any], int]]:
    """(label, HF config, context) the check tries, 120b first."""
    return [("gpt-oss-120b at 8,192 positions", hf_config("gpt-oss-120b"), 8192),
            ("gpt-oss-20b at 4,096 positions", hf_config("gpt-oss-20b"), 4096),
            ("a made-up gpt-oss-shaped config at 1,000 positions", made_up_config(), 1000),
            ("gpt-oss-20b at 64 positions (fewer than its sliding_window of 128)", hf_config("gpt-oss-20b"), 64)]


def _weights(config: dict, *, scales: bool = True, expert_bytes: float | None = None, gate_up: int = 2,
             untied: bool = True, attn_bias: bool = True, expert_bias: bool = True, sinks: bool = True,
             layer_norms: bool = True, final_norm: bool = True, router_bias: bool = True, rest_bytes: int = 2) -> int:
    """Weight bytes with one knob per typical mistake (the defaults give the right answer)."""
    c = memory.dims(config)
    d, L, E = c["hidden_size"], c["num_hidden_layers"], c["num_local_experts"]
    ff, V, hd = c["intermediate_size"], c["vocab_size"], c["head_dim"]
    H, q, kv = c["num_attention_heads"], c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    attn = d * (q + 2 * kv) + q * d + (q + 2 * kv + d if attn_bias else 0) + (H if sinks else 0)
    norms = 2 * d if layer_norms else 0
    layer_rest = attn + norms + E * d + (E if router_bias else 0) + (E * (gate_up * ff + d) if expert_bias else 0)
    values = L * E * (gate_up * ff * d + d * ff)  # expert weights, as numbers
    if expert_bytes is None:
        experts = values // 2 + (values // 32 if scales else 0)
    else:
        experts = int(values * expert_bytes)
    rest = V * d * (2 if untied else 1) + L * layer_rest + (d if final_norm else 0)
    return rest_bytes * rest + experts


def _kv(config: dict, context: int, *, k_and_v: int = 2, heads: str = "num_key_value_heads", dtype_bytes: int = 2,
        windowed: bool = True, per_token: bool = False, layers: bool = True, capped: bool = True,
        sliding_from: str = "layer_types") -> int:
    """KV-cache bytes with one knob per typical mistake (the defaults give the right answer).

    ``sliding_from`` other than "layer_types" guesses which layers slide instead: "even" layers
    (0, 2, ...) or "odd" ones (1, 3, ...), every other one as in the real models.
    """
    c = memory.dims(config)
    per_layer_token = k_and_v * c[heads] * c["head_dim"] * dtype_bytes
    windows = memory.layer_windows(config)
    if sliding_from != "layer_types":
        window, first = max(windows), {"even": 0, "odd": 1}[sliding_from]
        windows = [window if i % 2 == first else 0 for i in range(len(windows))]
    windows = windows[:None if layers else 1]
    positions = 1 if per_token else context
    return sum(per_layer_token * ((min(positions, w) if capped else w) if windowed and w else positions)
               for w in windows)


def _weight_mistakes(config: dict) -> dict[str, int]:
    right = _weights(config)
    return {
        "you left out the MXFP4 scales: every block of 32 expert values has one more byte, its E8M0 scale "
        "(4.25 bits a value, not 4)": _weights(config, scales=False),
        "you counted the experts in bf16 (2 bytes a value): on disk and in memory they stay MXFP4 "
        "(16 bytes of codes + 1 scale byte per 32 values)": _weights(config, expert_bytes=2),
        "you counted the experts at 1 byte a value: MXFP4 is two 4-bit codes a byte, plus a scale byte "
        "per 32 values": _weights(config, expert_bytes=1),
        "you made gate_up as wide as down: its output is 2 x intermediate_size (gate and up, interleaved)":
            _weights(config, gate_up=1),
        "you counted one vocabulary matrix: gpt-oss does not tie them (tie_word_embeddings is false), so the "
        "embedding and lm_head are two matrices": _weights(config, untied=False),
        "you left out the attention biases: q, k, v and o all have one (attention_bias is true)":
            _weights(config, attn_bias=False),
        "you left out the experts' biases: each expert has a gate_up bias (2 x intermediate_size) and a down "
        "bias (hidden_size), kept in bf16": _weights(config, expert_bias=False),
        "you left out the attention sinks: one bf16 logit per query head in every layer":
            _weights(config, sinks=False),
        "you left out the layers' norms: each layer has two RMSNorm scales (before attention and before the "
        "MLP), hidden_size numbers each": _weights(config, layer_norms=False),
        "you left out the final norm: one more RMSNorm scale (hidden_size numbers) before lm_head":
            _weights(config, final_norm=False),
        "you left out the router's bias: one bf16 number per expert in every layer":
            _weights(config, router_bias=False),
        "you counted the non-expert weights in float32: they are bf16, 2 bytes each": _weights(config, rest_bytes=4),
        "your answer is in bits: return bytes (divide by 8)": right * 8,
    }


def _kv_mistakes(config: dict, context: int) -> dict[str, int]:
    right = _kv(config, context)
    window = config.get("sliding_window") or 0
    windows = memory.layer_windows(config)
    slide = [str(i) for i, w in enumerate(windows) if w]
    kinds = f"this config slides {len(slide)}: layers {', '.join(slide[:-1])} and {slide[-1]}" if len(slide) > 1 else ""
    return {
        "you counted only the keys: the cache holds keys and values (factor 2)": _kv(config, context, k_and_v=1),
        "you used the query heads: keys and values exist only for the num_key_value_heads KV heads "
        "(grouped-query attention)": _kv(config, context, heads="num_attention_heads"),
        "you counted the cache in float32: it is bf16, 2 bytes a number": _kv(config, context, dtype_bytes=4),
        # Each of the two window mistakes shows on one side of the window only.
        **({"you counted the sliding layers for the whole context: a sliding_attention layer never looks more "
            "than sliding_window keys back, so the course's KVCache keeps only its last sliding_window positions "
            "(a rolling buffer, notebook 06)": _kv(config, context, windowed=False)} if context > window else {}),
        **{f"you counted {(len(windows) + 1 - first) // 2} of the {len(windows)} layers as sliding, every other one "
           f"as in the real models: read each layer's kind from config['layer_types'] ({kinds})":
           guess
           for parity, first in (("even", 0), ("odd", 1))
           if context > window and (guess := _kv(config, context, sliding_from=parity)) != right},
        "you gave the bytes of one position: multiply by the context": _kv(config, context, per_token=True),
        "you counted one layer: every layer has its own keys and values": _kv(config, context, layers=False),
        "your answer is in bits: return bytes (divide by 8)": right * 8,
        **({"you gave the sliding layers sliding_window positions though the context is shorter: a layer never "
            "holds more positions than there are, min(context, sliding_window)": _kv(config, context, capped=False)}
           if context < window else {}),
    }


def _as_bytes(value: Any, what: str, want: int) -> tuple[int | None, str | None]:
    """The value as a whole number of bytes, or a message saying why it is not one."""
    value, problem = as_number(value, what)
    if problem:
        return None, problem.replace("one number", "one number of bytes")
    if 0 < value < want / 2**20:
        return None, f"{what} is {value:g}: return bytes, not GiB or MiB"
    return round(value), None


def check_memory_plan(fn: PlanFn) -> CheckResult:
    """Try ``fn(config, context)`` -> {"weights": bytes, "kv_cache": bytes} against gptoss_edu.memory.plan."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    summary = []
    for label, config, context in cases():
        plan = memory.plan(config, context, gpu_bytes=0)
        try:
            got = fn(dict(config), context)
        except Exception as e:  # the learner's code: show what went wrong, don't crash the notebook
            return failed(f"not yet: for {label} your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None: did you forget to `return` the dict?")
        if not isinstance(got, dict) or not {"weights", "kv_cache"} <= set(got):
            return failed("not yet: return a dict with the keys 'weights' and 'kv_cache' (both in bytes), got "
                          f"{got!r:.80}")
        problems = []
        for key, want, mistakes in (("weights", plan.weights, lambda: _weight_mistakes(config)),
                                    ("kv_cache", plan.kv_cache, lambda: _kv_mistakes(config, context))):
            value, problem = _as_bytes(got[key], f"'{key}'", want)
            if problem is None and value != want:
                known = [m for m, wrong in mistakes().items() if wrong == value]
                if known:  # two mistakes can give the same number (8 query heads per KV head, 8 bits a byte)
                    problem = f"'{key}': " + " - or - ".join(known)
                else:
                    off = value - want  # in bytes too: a forgotten small tensor is -0.00% of the whole
                    numbers = f", {off // 2:+,} bf16 numbers" if off % 2 == 0 else ""
                    problem = (f"'{key}' is {value:,} bytes, {off:+,} bytes off ({off / want:+.2%}{numbers}; check "
                               "each tensor kind: bf16 weights and biases, expert blocks and scales; for the cache: "
                               "layers, KV heads, head_dim, keys and values, bytes, and which layers keep only "
                               "their sliding_window positions)")
            if problem is not None:
                problems.append(problem)
        if problems:
            return failed(f"not yet, for {label}: " + "; ".join(problems) + ".")
        summary.append((label, plan))
    label, plan = summary[0]
    return passed(f"your plan equals memory.plan for {label} (weights {memory.format_bytes(plan.weights)}, "
                  f"KV cache {memory.format_bytes(plan.kv_cache)}), for gpt-oss-20b at 4,096 and at 64 positions (fewer "
                  f"than its window), and for a made-up config.")
