"""Notebook 05's exercise: the KV cache's bytes per token, from a config."""

from __future__ import annotations

import copy
from typing import Callable
from unittest import mock

from ..config import ModelConfig, preset
from . import CheckResult, as_number, failed, not_a_function, passed


def _configs() -> list[tuple[ModelConfig, int]]:
    """Configs where every factor differs (so each mistake gives a different number), with dtype sizes."""
    odd = preset("gpt2-tiny").replace(name="odd", n_layers=3, n_heads=12, n_kv_heads=4, head_dim=10, d_model=56)
    return [(odd, 4), (odd, 2), (preset("gpt-oss-20b"), 2), (preset("gpt-oss-120b"), 1), (preset("gpt2-124m"), 4)]


def _diagnose(got: float, cfg: ModelConfig, dtype_bytes: int) -> str:
    """Name the typical mistake behind ``got``, or say what the answer should be made of."""
    want = cfg.kv_cache_bytes(1, dtype_bytes=dtype_bytes)
    L, hkv, hd = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
    mistakes = [
        (want / 2, "you counted keys only (or values only): the cache holds both, so multiply by 2."),
        (want * cfg.n_heads / hkv, "you used n_heads (query heads); the cache stores keys and values only for "
                                   "the n_kv_heads key/value heads."),
        (want / L, "that is one layer's cache: every layer keeps its own keys and values, so multiply by n_layers."),
        (want * 8, "that is bits, not bytes: dtype_bytes is already in bytes."),
        (want / dtype_bytes, "you counted values, not bytes: multiply by dtype_bytes."),
        (2 * L * cfg.d_model * dtype_bytes, "you used d_model; a key (or value) per token and layer has "
                                            "n_kv_heads * head_dim numbers, which need not equal d_model."),
    ]
    for value, message in mistakes:
        if got == value and value != want:
            return message
    return (f"for {cfg.name} in {dtype_bytes}-byte values you gave {got:,}, expected {want:,}. Multiply: "
            f"2 (keys and values) x n_layers ({L}) x n_kv_heads ({hkv}) x head_dim ({hd}) x dtype_bytes "
            f"({dtype_bytes}).")


def _ignores_dtype(fn: Callable[[ModelConfig, int], int], cfg: ModelConfig, dtype_bytes: int, got: float) -> bool:
    """Whether ``fn`` gives ``got`` for another dtype size too (a size hard-coded, not read from dtype_bytes)."""
    try:
        other, problem = as_number(fn(copy.deepcopy(cfg), 1 if dtype_bytes != 1 else 2), "")
    except Exception:  # the learner's code: any failure here only means "not that mistake"
        return False
    return problem is None and other == got


def _taken_from_the_package(fn: Callable[[ModelConfig, int], int]) -> bool:
    """Whether ``fn``'s answer follows the package's own kv_cache_bytes (ModelConfig's or memory's) when those lie.

    Calling them to compare with is fine: only an answer that moves with theirs is theirs.
    """
    from .. import memory

    real_method, real_function = ModelConfig.kv_cache_bytes, memory.kv_cache_bytes
    cfg, dtype_bytes = _configs()[0]
    try:
        honest = fn(copy.deepcopy(cfg), dtype_bytes)
        # Twice theirs and one more: an answer derived from theirs (scaled, divided, rounded) moves with it.
        with mock.patch.object(ModelConfig, "kv_cache_bytes", lambda self, *a, **k: 2 * real_method(self, *a, **k) + 1), \
                mock.patch.object(memory, "kv_cache_bytes", lambda *a, **k: 2 * real_function(*a, **k) + 1):
            lied_to = fn(copy.deepcopy(cfg), dtype_bytes)
    except Exception:  # noqa: BLE001 - the learner's code: a failure here is no evidence either way
        return False
    return lied_to != honest


def check_kv_bytes_per_token(fn: Callable[[ModelConfig, int], int]) -> CheckResult:
    """Check ``fn(cfg, dtype_bytes)`` gives the KV cache bytes one token takes (all layers, batch 1)."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for cfg, dtype_bytes in _configs():
        try:
            got = fn(copy.deepcopy(cfg), dtype_bytes)  # a copy: a learner's cfg.n_kv_heads = ... must not move the answer
        except Exception as e:  # the learner's code: report, do not crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None. Did you forget to `return` the number?")
        got, problem = as_number(got, "your result")
        if problem:
            return failed(f"not yet: {problem} (a number of bytes).")
        if got != cfg.kv_cache_bytes(1, dtype_bytes=dtype_bytes):
            if _ignores_dtype(fn, cfg, dtype_bytes, got):
                return failed(f"not yet: your result does not change with dtype_bytes ({got:,} for {dtype_bytes}-byte "
                              "values and for others): multiply by dtype_bytes instead of a fixed size such as "
                              "bf16's 2.")
            return failed("not yet: " + _diagnose(got, cfg, dtype_bytes))
    if _taken_from_the_package(fn):
        return failed("not yet: the numbers are right, but they come from the package's kv_cache_bytes, the answer "
                      "itself. Build them from the config's fields: n_layers, n_kv_heads, head_dim, and dtype_bytes")
    oss = preset("gpt-oss-20b")
    per_token = oss.kv_cache_bytes(1, dtype_bytes=2)
    return passed(f"Right on {len(_configs())} configs; gpt-oss-20b in bf16 keeps {per_token // 1024} KiB per token, "
                  f"{oss.kv_cache_bytes(oss.context_length) / 2**30:.3g} GiB at its full context in every layer "
                  "(notebook 06's sliding windows halve that).")
