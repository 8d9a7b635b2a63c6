"""Notebook 01's exercise: GPT-2's GELU, the tanh approximation, written from its formula."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.nn import functional as F

from . import CheckResult, compare, failed, not_a_function, passed

ATOL = 1e-6  # float32 rounding; the nearest wrong answer (exact GELU) is 4.7e-4 away
C = math.sqrt(2 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The package's GELU (gptoss_edu.mlp.GeluMLP with gelu_approximate='tanh')."""
    return F.gelu(x, approximate="tanh")


# Typical wrong answers, each with what went wrong.
MISTAKES: tuple[tuple[Callable[[torch.Tensor], torch.Tensor], str], ...] = (
    (lambda x: F.gelu(x),
     "this is the exact GELU, x * Phi(x) with erf; GPT-2 uses the tanh approximation ('gelu_new')"),
    (lambda x: x * torch.sigmoid(1.702 * x),
     "this is the sigmoid approximation x * sigmoid(1.702 x) (gpt-oss's SwiGLU uses it, notebook 04); "
     "GPT-2's uses tanh"),
    (lambda x: 0.5 * x * (1 + torch.tanh(C * x)),
     "the cubic term is missing: tanh(sqrt(2/pi) * (x + 0.044715 x^3))"),
    (lambda x: 0.5 * x * (1 + torch.tanh(x + 0.044715 * x**3)),
     "the factor sqrt(2/pi) in front of (x + 0.044715 x^3) is missing"),
    (lambda x: 0.5 * x * (1 + torch.tanh(C * x + 0.044715 * x**3)),
     "sqrt(2/pi) multiplies the whole bracket (x + 0.044715 x^3), not only x"),
    (lambda x: x * (1 + torch.tanh(C * (x + 0.044715 * x**3))),
     "twice too large: the formula starts with 0.5 * x"),
    (lambda x: 0.5 * (1 + torch.tanh(C * (x + 0.044715 * x**3))),
     "the leading x is missing: GELU is x times a smooth step, not the step alone"),
    (lambda x: torch.relu(x), "this is ReLU; GELU is smooth and slightly negative for small negative x"),
)


def _inputs() -> list[torch.Tensor]:
    # A private generator: inputs the learner did not pick, same on every run, global RNG untouched.
    gen = torch.Generator().manual_seed(1701)
    return [torch.randn(4, 7, 16, generator=gen) * 3, torch.linspace(-8, 8, 161), torch.randn(3, 5, generator=gen)]


def check_gelu(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Try ``fn`` on fresh random inputs against the package's GELU; name the usual mistakes."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for x in _inputs():
        x_before = x.clone()
        try:
            got = fn(x)
        except Exception as e:  # the learner's code: report, don't crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if not torch.equal(x, x_before):
            return failed("not yet: your function changed its input in place; compute a new tensor instead")
        want = gelu_tanh(x)
        verdict = compare(got, want, "your GELU", atol=ATOL)
        if verdict is None and got.dtype != x.dtype:
            return failed(f"not yet: the values are right, but x is {x.dtype} and your result is {got.dtype}: an "
                          "activation keeps its input's dtype (compute in x's own dtype, or .to(x.dtype) at the end)")
        if verdict is None:
            continue
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            for wrong, why in MISTAKES:
                if torch.allclose(got.float(), wrong(x), atol=ATOL, rtol=0):
                    return failed(f"not yet: {why}.")
            if torch.allclose(got.float(), want, atol=2e-4, rtol=0):  # below the exact GELU, 4.7e-4 away
                return failed(f"nearly: {verdict.message}. That small a difference is a rounded constant: write "
                              "sqrt(2/pi) as math.sqrt(2 / math.pi) (0.7978845608...), not 0.7979 or 0.79788, "
                              "and 0.044715 as it is")
        return failed("not yet: " + verdict.message)
    return passed("Right: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) equals F.gelu(x, approximate='tanh').")
