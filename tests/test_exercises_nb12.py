"""Notebook 12's exercise check: a right memory plan passes, each typical mistake is named."""

from __future__ import annotations

import re

import pytest

from gptoss_edu import memory
from gptoss_edu.exercises import nb12
from gptoss_edu.exercises.nb12 import check_memory_plan


def by_hand(config: dict, context: int, *, scales: bool = True, expert_bytes: float | None = None,
            gate_up: int = 2, lm_head: bool = True, attn_bias: bool = True, expert_bias: bool = True,
            sinks: bool = True, layer_norms: bool = True, final_norm: bool = True, router_bias: bool = True,
            rest_bytes: int = 2, kv_factor: int = 2, kv_heads: str = "num_key_value_heads",
            kv_bytes: int = 2, windowed: bool = True, per_token: bool = False, one_layer: bool = False,
            capped: bool = True, unit: float = 1) -> dict:
    """Written from scratch (not with nb12's helpers), the way a learner would; knobs make it wrong."""
    d, L, E = config["hidden_size"], config["num_hidden_layers"], config["num_local_experts"]
    ff, V, hd = config["intermediate_size"], config["vocab_size"], config["head_dim"]
    Hq, Hkv = config["num_attention_heads"], config["num_key_value_heads"]
    q, kv = Hq * hd, Hkv * hd
    attn = d * q + 2 * d * kv + q * d + (q + 2 * kv + d) * attn_bias + Hq * sinks
    router = E * d + E * router_bias
    norms = 2 * d * layer_norms
    biases = E * (gate_up * ff + d) * expert_bias
    bf16_numbers = V * d * (1 + lm_head) + L * (attn + router + norms + biases) + d * final_norm
    expert_values = L * E * (gate_up * ff * d + d * ff)
    experts = expert_values * expert_bytes if expert_bytes is not None else (
        expert_values // 2 + scales * expert_values // 32)
    weights = rest_bytes * bf16_numbers + experts
    cache = 0
    for i, kind in enumerate(config["layer_types"][:1] if one_layer else config["layer_types"]):
        positions = 1 if per_token else context
        if windowed and kind == "sliding_attention":
            positions = min(positions, config["sliding_window"]) if capped else config["sliding_window"]
        cache += kv_factor * config[kv_heads] * hd * kv_bytes * positions
    return {"weights": weights * unit, "kv_cache": cache * unit}


def test_right_answer_passes():
    result = check_memory_plan(by_hand)
    assert result.passed and repr(result).startswith("✅")
    assert "gpt-oss-120b" in result.message and "60.77 GiB" in result.message


def test_package_version_passes():
    assert check_memory_plan(lambda c, n: {"weights": memory.checkpoint_bytes(c),
                                           "kv_cache": memory.kv_cache_bytes(c, n)}).passed


def test_the_cases_agree_with_memory_plan_and_the_mistakes_are_all_wrong():
    for _, config, context in nb12.cases():
        plan = memory.plan(config, context, gpu_bytes=0)
        assert nb12._weights(config) == plan.weights and nb12._kv(config, context) == plan.kv_cache
        assert plan.weights not in nb12._weight_mistakes(config).values()
        assert plan.kv_cache not in nb12._kv_mistakes(config, context).values()


@pytest.mark.parametrize("knobs,message", [
    ({"scales": False}, "left out the MXFP4 scales"),
    ({"expert_bytes": 2}, "experts in bf16"),
    ({"expert_bytes": 1}, "1 byte a value"),
    ({"gate_up": 1}, "2 x intermediate_size"),
    ({"lm_head": False}, "does not tie"),
    ({"attn_bias": False}, "attention biases"),
    ({"expert_bias": False}, "experts' biases"),
    ({"sinks": False}, "sinks"),
    ({"layer_norms": False}, "the layers' norms"),
    ({"final_norm": False}, "the final norm"),
    ({"router_bias": False}, "router's bias"),
    ({"rest_bytes": 4}, "non-expert weights in float32"),
    ({"kv_factor": 1}, "only the keys"),
    ({"kv_heads": "num_attention_heads"}, "query heads"),
    ({"kv_bytes": 4}, "cache in float32"),
    ({"windowed": False}, "sliding layers for the whole context"),
    ({"per_token": True}, "one position"),
    ({"one_layer": True}, "one layer"),
    ({"unit": 1 / 2**30}, "return bytes, not GiB"),
])
def test_typical_mistakes_are_named(knobs, message):
    result = check_memory_plan(lambda c, n: by_hand(c, n, **knobs))
    assert not result.passed and repr(result).startswith("❌ not yet")
    assert "gpt-oss-120b" in result.message  # the first case already shows the mistake
    assert re.search(message, result.message), result.message


def test_sliding_layers_that_keep_more_positions_than_the_context_are_named():
    # Right whenever the context is longer than the window: only the short-context case shows it.
    result = check_memory_plan(lambda c, n: by_hand(c, n, capped=False))
    assert not result.passed and "64 positions" in result.message
    assert "min(context, sliding_window)" in result.message, result.message


def test_bits_are_named_and_an_ambiguous_kv_answer_names_both_readings():
    result = check_memory_plan(lambda c, n: by_hand(c, n, unit=8))
    assert "'weights': your answer is in bits" in result.message
    # 120b has 8 query heads per KV head: 8x the cache is either mistake.
    assert re.search(r"'kv_cache': .*query heads.* - or - .*in bits", result.message), result.message


def test_an_answer_that_only_knows_120b_fails_on_the_other_configs():
    want = by_hand(nb12.hf_config("gpt-oss-120b"), 8192)
    result = check_memory_plan(lambda c, n: dict(want))
    assert not result.passed and "gpt-oss-20b" in result.message and "bytes off" in result.message


@pytest.mark.parametrize("fn,message", [
    (lambda c, n: None, "returned None"),
    (lambda c, n: {"weights": 1}, "keys 'weights' and 'kv_cache'"),
    (lambda c, n: [1, 2], "keys 'weights' and 'kv_cache'"),
    (lambda c, n: {"weights": "big", "kv_cache": 0}, "should be one number of bytes, got str"),
    (lambda c, n: 1 / 0, "raised ZeroDivisionError"),
    (lambda c, n: {"weights": float("nan"), "kv_cache": 0}, "is nan"),
    (lambda c, n: {"weights": float("inf"), "kv_cache": 0}, "is inf"),
])
def test_broken_answers_give_a_verdict_not_an_exception(fn, message):
    result = check_memory_plan(fn)
    assert not result.passed and re.search(message, result.message), result.message


def test_an_unknown_mistake_gets_the_generic_message():
    result = check_memory_plan(lambda c, n: {k: v + 1000 for k, v in by_hand(c, n).items()})
    assert not result.passed and "'weights' is" in result.message, result.message
    # a small tensor is -0.00% of the whole: the bytes say how much is missing
    assert "+1,000 bytes off (+0.00%, +500 bf16 numbers;" in result.message, result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_eight_kv_heads_hard_coded_fails():
    # Both gpt-oss models have 8 KV heads; only the made-up config shows a hard-coded 8.
    def hard_kv(config, context):
        return by_hand({**config, "num_key_value_heads": 8}, context)

    r = check_memory_plan(hard_kv)
    assert not r.passed and "made-up" in r.message, r.message


def test_a_float_a_hair_under_the_bytes_passes():
    # Float sums can land just under the integer; the check rounds to whole bytes, not truncates.
    r = check_memory_plan(lambda c, n: {k: v - 1e-3 for k, v in by_hand(c, n).items()})
    assert r.passed, r.message


# ---- found by a review of wrong answers that passed ----

@pytest.mark.parametrize("which, count", [(lambda i, L: i % 2 == 0, 4), (lambda i, L: i % 2 == 1, 3),
                                          (lambda i, L: i < L // 2, 3)])
def test_an_answer_that_ignores_layer_types_fails_on_the_made_up_config(which, count):
    """Every other layer sliding (either parity), or half of them: right for the real models, not in general."""
    def guessed(c, n):
        L = c["num_hidden_layers"]
        return by_hand({**c, "layer_types": ["sliding_attention" if which(i, L) else "full_attention"
                                             for i in range(L)]}, n)
    result = check_memory_plan(guessed)
    assert not result.passed and "made-up" in result.message, result.message
    assert f"you counted {count} of the 7 layers as sliding" in result.message
    assert "this config slides 5: layers 0, 1, 3, 4 and 5" in result.message, result.message
