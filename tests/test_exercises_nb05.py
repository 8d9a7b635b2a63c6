"""Notebook 05's exercise check: the right answer passes; each typical mistake gets its explanation."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu.exercises.nb05 import check_kv_bytes_per_token


def right(cfg, dtype_bytes):
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * dtype_bytes


def test_right_answers_pass():
    for fn in (right, lambda cfg, b: float(right(cfg, b))):
        result = check_kv_bytes_per_token(fn)
        assert result.passed, result.message
        assert "48 KiB per token" in result.message  # gpt-oss-20b, computed by the check from the config


def test_the_answer_taken_from_kv_cache_bytes_is_not_the_exercise():
    """The notebook asks for the fields, not cfg.kv_cache_bytes: the right number that way used to pass."""
    from gptoss_edu import memory

    for fn in (lambda cfg, b: cfg.kv_cache_bytes(1, dtype_bytes=b), lambda cfg, b: cfg.kv_cache_bytes(2, dtype_bytes=b) // 2,
               lambda cfg, b: memory.kv_cache_bytes(cfg, 1, dtype_bytes=b)):
        result = check_kv_bytes_per_token(fn)
        assert not result.passed and "they come from the package's kv_cache_bytes" in result.message, result.message
    from gptoss_edu.config import ModelConfig
    assert ModelConfig.kv_cache_bytes.__name__ == "kv_cache_bytes"  # the check put them back
    assert memory.kv_cache_bytes.__name__ == "kv_cache_bytes"

    def checked_against_it(cfg, b):  # built from the fields, the package's answer only compared with
        mine = right(cfg, b)
        print("same as the package's:", mine == cfg.kv_cache_bytes(1, dtype_bytes=b))
        return mine

    assert check_kv_bytes_per_token(checked_against_it).passed


@pytest.mark.parametrize("fn,pattern", [
    (lambda cfg, b: None, "returned None"),
    (lambda cfg, b: "480", "should be one number, got str"),
    (lambda cfg, b: torch.tensor([1.0, 2.0]), "got Tensor of shape (2,)"),
    (lambda cfg, b: 1 / 0, "raised ZeroDivisionError"),
    (lambda cfg, b: right(cfg, b) // 2, "keys only"),
    (lambda cfg, b: 2 * cfg.n_layers * cfg.n_heads * cfg.head_dim * b, "used n_heads"),
    (lambda cfg, b: 2 * cfg.n_kv_heads * cfg.head_dim * b, "one layer's cache"),
    (lambda cfg, b: right(cfg, b) * 8, "bits, not bytes"),
    (lambda cfg, b: 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim, "multiply by dtype_bytes"),
    (lambda cfg, b: 2 * cfg.n_layers * cfg.d_model * b, "you used d_model"),
    (lambda cfg, b: right(cfg, b) + 1, "expected"),
])
def test_typical_mistakes_are_explained(fn, pattern):
    result = check_kv_bytes_per_token(fn)
    assert not result.passed
    assert result.message.startswith("not yet: ")
    assert pattern in result.message, result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_any_exception_is_reported_not_raised():
    # Hugging Face's names (n_layer) are a usual slip: the AttributeError must become a verdict.
    r = check_kv_bytes_per_token(lambda cfg, b: 2 * cfg.n_layer * cfg.n_kv_heads * cfg.head_dim * b)
    assert not r.passed and "raised AttributeError" in r.message


def test_a_bool_is_not_a_number_of_bytes():
    # as_number refuses bools (True would otherwise count as 1).
    r = check_kv_bytes_per_token(lambda cfg, b: True)
    assert not r.passed and "got bool" in r.message


def test_a_number_too_large_for_a_float_is_a_verdict_not_an_overflow():
    # math.isfinite raised OverflowError through the check (2**1024 - 1 too: it rounds up past any float), and
    # str() a ValueError past 4,300 digits.
    for huge in (2 ** 1024 - 1, 10 ** 400, 10 ** 5000):
        r = check_kv_bytes_per_token(lambda cfg, b: huge)
        assert not r.passed and "has over 300 digits: far too large" in r.message, r.message


def test_hard_coded_bf16_bytes_is_not_called_keys_only():
    r = check_kv_bytes_per_token(lambda cfg, b: 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2)
    # (Its answer is half the right one at 4-byte values, as "keys only" would be.)
    assert not r.passed and "does not change with dtype_bytes" in r.message, r.message


def test_a_function_that_writes_to_cfg_is_checked_against_the_real_config():
    """cfg.n_kv_heads = cfg.n_heads (the multi-head mistake, written into the config) moved the expected bytes too."""
    def writes_cfg(cfg, dtype_bytes):
        cfg.n_kv_heads = cfg.n_heads
        return right(cfg, dtype_bytes)

    r = check_kv_bytes_per_token(writes_cfg)
    assert not r.passed and "you used n_heads" in r.message, r.message
