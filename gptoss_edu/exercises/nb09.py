"""Notebook 09's exercise: YaRN's correction range, the dims where the ramp between kept and stretched runs."""

from __future__ import annotations

import math
from typing import Callable

from ..config import preset, yarn_correction_range
from . import CheckResult, failed, not_a_function, passed

CorrectionRange = Callable[[int, float, int, float, float, bool], tuple[float, float]]

# (head_dim, base, original_context, beta_fast, beta_slow, truncate): gpt-oss both ways, a
# LLaMA-like head, a small one where the low end falls below 0 and one where the high end passes
# head_dim - 1: both must be clamped.
CASES = [
    (64, 150000.0, 4096, 32.0, 1.0, False),
    (64, 150000.0, 4096, 32.0, 1.0, True),
    (128, 10000.0, 4096, 32.0, 1.0, True),
    (16, 10000.0, 64, 32.0, 1.0, False),
    (16, 100.0, 65536, 32.0, 1.0, False),
]
# A float32 computation of the same formula is right: allow its rounding, nothing a mistake gives.
RTOL = 1e-6


def _reference(head_dim: int, base: float, context: int, beta_fast: float, beta_slow: float,
               truncate: bool) -> tuple[float, float]:
    cfg = preset("gpt-oss-20b").replace(head_dim=head_dim, rope_theta=base, rope_original_context=context,
                                        rope_beta_fast=beta_fast, rope_beta_slow=beta_slow, rope_truncate=truncate)
    return yarn_correction_range(cfg)


Rounding = tuple[Callable[[float], float], Callable[[float], float]]


def _variant(head_dim: int, base: float, context: int, beta_fast: float, beta_slow: float, truncate: bool, *,
             two_pi: bool = True, d: float | None = None, clamp: bool = True, top: float | None = None,
             swap: bool = False, rounding: Rounding | None | str = "auto") -> tuple[float, float]:
    """The correction range with one knob per typical mistake ("auto" rounding: floor/ceil when truncating)."""
    d = head_dim if d is None else d

    def dim_for(rotations: float) -> float:
        return d * math.log(context / (rotations * (2 * math.pi if two_pi else 1))) / (2 * math.log(base))

    low, high = dim_for(beta_fast), dim_for(beta_slow)
    if swap:
        low, high = high, low
    if rounding == "auto":
        rounding = (math.floor, math.ceil) if truncate else None
    if rounding is not None:
        low, high = rounding[0](low), rounding[1](high)
    if clamp:
        low, high = max(low, 0.0), min(high, head_dim - 1.0 if top is None else top)
    return low, high


def _typical_mistakes(case: tuple) -> list[tuple[str, tuple[float, float]]]:
    mistakes = {
        "low and high are swapped: low comes from beta_fast (many turns over the context: fast dims), "
        "high from beta_slow": _variant(*case, swap=True),
        "the 2*pi is missing: a pair turns L * theta_i / (2*pi) times over L positions, so solve "
        "L * theta_i / (2*pi) = rotations": _variant(*case, two_pi=False),
        "use d = head_dim in the formula (the exponent of a pair is 2i / head_dim), not head_dim / 2":
            _variant(*case, d=case[0] / 2),
        "clamp the range to the dims that exist: low at least 0, high at most head_dim - 1":
            _variant(*case, clamp=False),
        "clamp high to head_dim - 1, as transformers' YaRN does, not to the last pair (head_dim / 2 - 1)":
            _variant(*case, top=case[0] / 2 - 1),
    }
    if case[-1]:
        mistakes["truncate is true here: round low down (floor) and high up (ceil)"] = _variant(*case, rounding=None)
        mistakes["round low down (floor) and high up (ceil): truncation widens the ramp, never narrows it"] = \
            _variant(*case, rounding=(math.ceil, math.floor))
        one_way = ("round low down with floor and high up with ceil: round(), int(), or one of floor and ceil on "
                   "both ends moves high down or low up, and narrows the ramp")
        return list(mistakes.items()) + [(one_way, _variant(*case, rounding=(f, f)))
                                         for f in (round, math.floor, math.ceil)]
    else:
        mistakes["truncate is false here: keep the exact values; rounding them anyway is what a config without "
                 "the key gets (a vLLM version's bug: it moves gpt-oss's ramp)"] = _variant(*case, rounding=(math.floor, math.ceil))
    return list(mistakes.items())


def _same(got: tuple[float, float], want: tuple[float, float]) -> bool:
    return all(math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9) for a, b in zip(got, want))


def check_correction_range(fn: CorrectionRange) -> CheckResult:
    """Try ``fn(head_dim, base, original_context, beta_fast, beta_slow, truncate)`` on several heads."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for case in CASES:
        want = _reference(*case)
        try:
            got = fn(*case)
        except Exception as e:  # the learner's code: say what went wrong, don't crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None: return (low, high)")
        try:
            low, high = (float(v) for v in got)
        except (TypeError, ValueError):
            return failed("not yet: return a pair of numbers (low, high)")
        if _same((low, high), want):
            continue
        where = f"head_dim {case[0]}, base {case[1]:g}, context {case[2]}, truncate {case[5]}"
        for message, wrong in _typical_mistakes(case):
            if _same((low, high), wrong):
                return failed(f"not yet ({where}): {message}.")
        return failed(f"not yet ({where}): got ({low:.7g}, {high:.7g}), expected ({want[0]:.7g}, {want[1]:.7g})")
    return passed("your correction range matches gptoss_edu.config.yarn_correction_range, "
                  "with and without truncation.")
