"""Notebook 01's exercise check (GELU, tanh approximation): right answers pass, each mistake is named."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from gptoss_edu.exercises.nb01 import check_gelu
from gptoss_edu.mlp import GeluMLP
from gptoss_edu import preset

C = math.sqrt(2 / math.pi)


def right(x):
    return 0.5 * x * (1 + torch.tanh(C * (x + 0.044715 * x**3)))


def test_right_answers_pass():
    assert check_gelu(right).passed
    assert check_gelu(lambda x: F.gelu(x, approximate="tanh")).passed


def test_the_reference_is_the_packages_mlp_activation():
    mlp = GeluMLP(preset("gpt2-tiny"))
    assert mlp.approximate == "tanh"


@pytest.mark.parametrize("wrong, message", [
    (lambda x: F.gelu(x), "exact GELU"),
    (lambda x: x * torch.sigmoid(1.702 * x), "sigmoid approximation"),
    (lambda x: 0.5 * x * (1 + torch.tanh(C * x)), "cubic term is missing"),
    (lambda x: 0.5 * x * (1 + torch.tanh(x + 0.044715 * x**3)), "sqrt(2/pi) in front"),
    (lambda x: 0.5 * x * (1 + torch.tanh(C * x + 0.044715 * x**3)), "multiplies the whole bracket"),
    (lambda x: 2 * right(x), "twice too large"),
    (lambda x: 0.5 * (1 + torch.tanh(C * (x + 0.044715 * x**3))), "leading x is missing"),
    (torch.relu, "this is ReLU"),
])
def test_typical_mistakes_are_named(wrong, message):
    r = check_gelu(wrong)
    assert not r.passed and message in r.message and r.message.startswith("not yet: ")


def test_other_failures():
    assert "returned None" in check_gelu(lambda x: None).message
    assert "has shape (3,)" in check_gelu(lambda x: torch.zeros(3)).message
    assert "raised RuntimeError" in check_gelu(lambda x: x @ x).message
    assert "in place" in check_gelu(lambda x: x.mul_(0.5)).message
    wider = check_gelu(lambda x: right(x.double()))  # right values, but the model downstream would turn float64
    assert not wider.passed and "x is torch.float32 and your result is torch.float64" in wider.message, wider.message
    generic = check_gelu(lambda x: right(x) + 0.01)
    assert not generic.passed and "differs by up to 0.01" in generic.message


def test_the_check_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    check_gelu(right)
    assert torch.equal(torch.rand(3), a)


@pytest.mark.parametrize("constant", [0.79788, 0.7979, 0.798])
def test_a_rounded_constant_is_named(constant):
    # Right formula, sqrt(2/pi) typed in by hand: off by more than float32 rounding, and told why.
    r = check_gelu(lambda x: 0.5 * x * (1 + torch.tanh(constant * (x + 0.044715 * x**3))))
    assert not r.passed and r.message.startswith("nearly: ") and "math.sqrt(2 / math.pi)" in r.message, r.message


def test_nearly_only_for_a_difference_a_rounded_constant_can_make():
    # 1% off, or 3e-4 everywhere: a different mistake, not a rounded constant (the line is at 2e-4).
    for fn in (lambda x: F.gelu(x, approximate="tanh") * 1.01, lambda x: F.gelu(x, approximate="tanh") + 3e-4):
        r = check_gelu(fn)
        assert not r.passed and r.message.startswith("not yet: "), r.message
