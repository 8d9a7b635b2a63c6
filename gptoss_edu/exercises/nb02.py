"""Notebook 02's exercise: apply rotary embeddings the way gpt-oss does (dim i pairs with i + d/2)."""

from __future__ import annotations

from typing import Callable

import torch

from ..rotary import apply_rotary, rope_inv_freq
from . import CheckResult, compare, failed, not_a_function, passed

ATOL = 1e-5  # float32 rounding of a rotation of unit-scale values


def _interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.chunk(2, dim=-1)


# Typical wrong answers, each with what went wrong.
MISTAKES: tuple[tuple[Callable[..., torch.Tensor], str], ...] = (
    (_interleaved,
     "you rotated interleaved pairs (0,1), (2,3), ...; gpt-oss (and transformers) pair dim i with i + d/2: "
     "split x into halves with x.chunk(2, dim=-1)"),
    (lambda x, c, s: torch.cat((_halves(x)[0] * c + _halves(x)[1] * s, _halves(x)[1] * c - _halves(x)[0] * s), -1),
     "you rotated the wrong way (by -angle): the first half is a*cos - b*sin, the second b*cos + a*sin"),
    (lambda x, c, s: torch.cat((_halves(x)[1] * c + _halves(x)[0] * s, _halves(x)[0] * c - _halves(x)[1] * s), -1),
     "the two halves come back swapped: return cat(first, second) with first = a*cos - b*sin"),
    (lambda x, c, s: torch.cat((_halves(x)[0] * c - _halves(x)[1] * s, _halves(x)[1]), -1),
     "only the first half is rotated: the second half must become b*cos + a*sin"),
    (lambda x, c, s: torch.cat((_halves(x)[0] * c, _halves(x)[1] * c), -1),
     "you scaled by cos but left out the sin terms: a rotation mixes the two halves"),
    (lambda x, c, s: torch.stack((_halves(x)[0] * c - _halves(x)[1] * s, _halves(x)[1] * c + _halves(x)[0] * s),
                                 -1).flatten(-2),
     "the halves are paired right, but you interleaved the results: put them back as halves, "
     "torch.cat((a*cos - b*sin, b*cos + a*sin), dim=-1)"),
    (lambda x, c, s: x, "nothing is rotated: x comes back unchanged"),
)


def _inputs() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    # A private generator: inputs the learner did not pick, same on every run, global RNG untouched.
    gen = torch.Generator().manual_seed(2024)
    cases = []
    for shape, theta in (((2, 3, 7, 16), 10000.0), ((5, 8), 150000.0), ((1, 4, 12, 64), 10000.0)):
        d, T = shape[-1], shape[-2]
        positions = torch.randint(0, 500, (T,), generator=gen).float()
        angles = positions[:, None] * rope_inv_freq(d, theta)[None, :]
        cases.append((torch.randn(*shape, generator=gen), angles.cos(), angles.sin()))
    return cases


def check_rope(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Try ``fn(x, cos, sin)`` on fresh inputs against gptoss_edu.rotary.apply_rotary; name the usual mistakes."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for x, cos, sin in _inputs():
        x_before = x.clone()
        want = apply_rotary(x, cos, sin)  # before the learner's code runs, on inputs it cannot touch
        given_cos, given_sin = cos.clone(), sin.clone()
        try:
            got = fn(x, given_cos, given_sin)
        except Exception as e:  # the learner's code: report, don't crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e} (x is [..., T, d], "
                          f"cos and sin are [T, d/2])")
        if not torch.equal(x, x_before):
            return failed("not yet: your function changed x in place; compute a new tensor instead")
        verdict = compare(got, want, f"your rotation of x {tuple(x.shape)}", atol=ATOL)
        if verdict is None and got.dtype != x.dtype:  # q and k in float64 would take attention there with them
            return failed(f"not yet: the values are right, but x is {x.dtype} and your result is {got.dtype}: the "
                          "rotated q and k keep x's dtype (compute in it, or .to(x.dtype) at the end)")
        if verdict is None:
            for name, given, kept in (("cos", given_cos, cos), ("sin", given_sin, sin)):
                if not torch.equal(given, kept):  # the model rotates q, then k, with the same cos and sin
                    return failed(f"not yet: your rotation is right, but your function changed {name} in place; the "
                                  "model uses the same cos and sin for q and then for k, so k would turn by the wrong "
                                  "angle: compute new tensors instead")
            continue
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            for wrong, why in MISTAKES:
                if torch.allclose(got.float(), wrong(x, cos, sin), atol=ATOL, rtol=0):
                    return failed(f"not yet: {why}.")
        return failed("not yet: " + verdict.message)
    return passed("Right: each pair (x[i], x[i + d/2]) turns by its angle, exactly as gpt-oss and transformers do.")
