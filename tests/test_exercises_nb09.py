"""Notebook 09's exercise check: a right correction range passes, each typical mistake is named."""

from __future__ import annotations

import math
import re

import pytest
import torch

from gptoss_edu.exercises.nb09 import check_correction_range


def make(two_pi=True, half=False, clamp=True, swap=False, truncate_mode="right", top=None, one_way=None):
    def fn(head_dim, theta, context, beta_fast, beta_slow, truncate):
        d = head_dim / 2 if half else head_dim

        def dim_for(rot):
            return d * math.log(context / (rot * (2 * math.pi if two_pi else 1))) / (2 * math.log(theta))

        low, high = dim_for(beta_fast), dim_for(beta_slow)
        if swap:
            low, high = high, low
        rounding = {"right": truncate, "never": False, "always": True, "backwards": False}[truncate_mode]
        if rounding:
            low, high = math.floor(low), math.ceil(high)
        if truncate_mode == "backwards" and truncate:
            low, high = math.ceil(low), math.floor(high)
        if one_way and truncate:
            low, high = one_way(low), one_way(high)
        if clamp:
            low, high = max(low, 0), min(high, head_dim - 1 if top is None else top(head_dim))
        return low, high
    return fn


def test_right_answer_passes():
    result = check_correction_range(make())
    assert result.passed and repr(result).startswith("✅"), result.message


def test_right_answer_with_log2_passes():
    # Any logarithm base works: the formula is a ratio of logs.
    def fn(head_dim, theta, context, beta_fast, beta_slow, truncate):
        dim_for = lambda r: head_dim * math.log2(context / (r * 2 * math.pi)) / (2 * math.log2(theta))  # noqa: E731
        low, high = dim_for(beta_fast), dim_for(beta_slow)
        if truncate:
            low, high = math.floor(low), math.ceil(high)
        return max(low, 0), min(high, head_dim - 1)
    assert check_correction_range(fn).passed


@pytest.mark.parametrize("fn,message", [
    (make(swap=True), "swapped"),
    (make(two_pi=False), "2\\*pi is missing"),
    (make(half=True), "not head_dim / 2"),
    (make(clamp=False), "clamp the range"),
    (make(top=lambda d: 1e9), "clamp the range"),  # only the low end clamped
    (make(top=lambda d: d), "head_dim 16, base 100"),  # clamped one dim too high
    (make(top=lambda d: d // 2 - 1), "not to the last pair"),  # clamped to the pairs
    (make(truncate_mode="never"), "truncate is true here"),
    (make(truncate_mode="always"), "truncate is false here.*vLLM"),
    (make(truncate_mode="backwards"), "widens the ramp"),
    *[(make(truncate_mode="never", one_way=f), "round\\(\\), int\\(\\), or one of floor and ceil") for f in (round, int, math.floor, math.ceil)],
    (lambda *a: None, "returned None"),
    (lambda *a: 3.0, "pair of numbers"),
    (lambda *a: 1 / 0, "raised ZeroDivisionError"),
])
def test_typical_mistakes_are_named(fn, message):
    result = check_correction_range(fn)
    assert not result.passed and repr(result).startswith("❌ not yet")
    assert re.search(message, result.message), result.message


def test_right_answer_in_float32_passes():
    def fn(head_dim, theta, context, beta_fast, beta_slow, truncate):
        def dim_for(rot):
            return head_dim * torch.log(torch.tensor(context / (2 * math.pi * rot))) / (2 * torch.log(torch.tensor(theta)))
        low, high = dim_for(beta_fast), dim_for(beta_slow)
        if truncate:
            low, high = torch.floor(low), torch.ceil(high)
        return low.clamp(min=0), high.clamp(max=head_dim - 1)
    result = check_correction_range(fn)
    assert result.passed, result.message


def test_unknown_mistake_shows_expected_values():
    result = check_correction_range(lambda *a: (1.0, 2.0))
    assert not result.passed and "expected (8.092779, 17.39802)" in result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def with_pi(pi=math.pi):
    def fn(head_dim, theta, context, beta_fast, beta_slow, truncate):
        def dim_for(rot):
            return head_dim * math.log(context / (2 * pi * rot)) / (2 * math.log(theta))
        low, high = dim_for(beta_fast), dim_for(beta_slow)
        if truncate:
            low, high = math.floor(low), math.ceil(high)
        return max(low, 0), min(high, head_dim - 1)
    return fn


def test_more_than_two_values_is_not_a_pair():
    # (low, high, extra) raises ValueError on unpacking: a verdict, not a crash, and never a pass.
    r = check_correction_range(lambda *a: with_pi()(*a) + (0.0,))
    assert not r.passed and "pair of numbers" in r.message, r.message


def test_pi_as_3_14_fails():
    # Off by ~2e-4 relative: the tolerance is for float32 rounding only.
    r = check_correction_range(with_pi(pi=3.14))
    assert not r.passed and "expected" in r.message, r.message
