"""Notebook 08's exercise check: a right dequantizer passes, each typical mistake is named."""

from __future__ import annotations

import re

import pytest
import torch

from gptoss_edu import mxfp4
from gptoss_edu.exercises.nb08 import check_dequantize

LUT = torch.tensor(mxfp4.FP4_VALUES)


def right(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    values = torch.stack((lo, hi), dim=-1).flatten(-2)
    return (values * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def high_first(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((hi, lo), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def no_bias(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** scales.float()[..., None]).flatten(-2)


def uint8_wrap(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales - 127)[..., None]).flatten(-2)


def int_power(blocks, scales):
    # "int first", read as: the whole power in integers.
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * (2 ** (scales.int() - 127))[..., None]).flatten(-2)


def no_scale(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return torch.stack((lo, hi), dim=-1).flatten(-2).flatten(-2)


def as_integers(blocks, scales):
    lo, hi = (blocks & 0xF).float(), (blocks >> 4).float()
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def twos_complement(blocks, scales):
    def signed(c):
        c = c.int()
        return torch.where(c < 8, c, c - 16).float()
    lo, hi = signed(blocks & 0xF), signed(blocks >> 4)
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def unsigned(blocks, scales):
    lut = LUT.abs()
    lo, hi = lut[(blocks & 0xF).long()], lut[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def signed_scale(blocks, scales):
    # "int first: uint8 can't go negative", read as: a signed 8-bit integer.
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.to(torch.int8).int() - 127).float()[..., None]).flatten(-2)


def int_divide(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) / (2 ** (127 - scales.int()))[..., None]).flatten(-2)


def bias_128(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * torch.pow(2.0, scales.int() - 128).float()[..., None]).flatten(-2)


def bias_126(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * torch.pow(2.0, scales.int() - 126).float()[..., None]).flatten(-2)


def concatenated(blocks, scales):
    lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
    return (torch.cat((lo, hi), dim=-1) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def by_formula_without_subnormals(blocks, scales):
    def e2m1(c):
        c = c.int()
        sign = torch.where(c >= 8, -1.0, 1.0)
        e, m = (c >> 1) & 3, c & 1
        return sign * 2.0 ** (e - 1).float() * (1 + m / 2)
    lo, hi = e2m1(blocks & 0xF), e2m1(blocks >> 4)
    return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)


def not_flattened(blocks, scales):
    return right(blocks, scales).unflatten(-1, (-1, 32))


def stub(blocks, scales):
    return None


def raises(blocks, scales):
    raise NotImplementedError("fill me in")


def test_right_answer_passes():
    result = check_dequantize(right)
    assert result.passed and repr(result).startswith("✅")


def test_package_version_passes():
    assert check_dequantize(lambda b, s: mxfp4.dequantize(b, s, torch.float32)).passed


@pytest.mark.parametrize("fn,message", [
    (high_first, "high nibble first"),
    (no_bias, "bias of 127"),
    (uint8_wrap, "wrapped around"),
    (no_scale, "left the scale out"),
    (int_power, r"negative exponent became 0.*2.0 \*\*"),
    (signed_scale, "signed int8"),
    (int_divide, r"2 \*\* \(127 - scale\) is 0"),
    (as_integers, "integer 0..15"),
    (twos_complement, "two's-complement"),
    (unsigned, "dropped the sign"),
    (bias_128, "half what it should be"),
    (bias_126, "twice what it should be"),
    (concatenated, "16 low nibbles first"),
    (by_formula_without_subnormals, "subnormal"),
    (not_flattened, r"\[..., G, 32\]"),
    (stub, "returned None"),
    (raises, "raised NotImplementedError: fill me in"),
])
def test_typical_mistakes_are_named(fn, message):
    result = check_dequantize(fn)
    assert not result.passed
    assert repr(result).startswith("❌ not yet")
    assert re.search(message, result.message), result.message


def test_a_wrong_answer_of_no_known_kind_gets_the_generic_message():
    result = check_dequantize(lambda b, s: right(b, s) * 1.01)
    assert not result.passed and "differs by up to" in result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_scales_minus_127_in_place_is_named_as_wrap_around():
    # `scales -= 127` wraps the uint8 scales in place; it must be named, which needs the check's
    # scales untouched (the learner gets a copy).
    def in_place(blocks, scales):
        scales -= 127
        lo, hi = LUT[(blocks & 0xF).long()], LUT[(blocks >> 4).long()]
        return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** scales[..., None]).flatten(-2)

    r = check_dequantize(in_place)
    assert not r.passed and "wrapped around" in r.message, r.message


def test_bit_for_bit_means_no_slack():
    # The check promises a bit-exact match: a relative error of 1e-6 fails.
    r = check_dequantize(lambda b, s: right(b, s) * (1 + 2 ** -20))
    assert not r.passed and "right to float32 rounding (relative differences up to 9.5e-07) but not bit for bit" \
        in r.message, r.message
    r = check_dequantize(lambda b, s: right(b, s) * (1 + 2 ** -12))  # beyond rounding: where they differ, and by how much
    assert not r.passed and "differs by up to" in r.message


def test_bit_for_bit_means_the_sign_of_zero_and_float32_too():
    plus_zero = LUT.clone()
    plus_zero[8] = 0.0  # -0.0 == +0.0: only the sign bit differs

    def no_negative_zero(blocks, scales):
        lo, hi = plus_zero[(blocks & 0xF).long()], plus_zero[(blocks >> 4).long()]
        return (torch.stack((lo, hi), dim=-1).flatten(-2) * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)

    r = check_dequantize(no_negative_zero)
    assert not r.passed and "code 8 is -0.0" in r.message, r.message
    r = check_dequantize(lambda b, s: right(b, s).double())
    assert not r.passed and "torch.float64: return float32" in r.message, r.message


def test_scales_above_the_bias_are_tried():
    """An answer wrong only where the exponent is positive (scale >= 128) must not pass."""
    def wrong_above_127(blocks, scales):
        out = right(blocks, scales).unflatten(-1, (-1, 32))
        return torch.where((scales >= 128)[..., None], 0.0, out).flatten(-2)

    assert not check_dequantize(wrong_above_127).passed


def test_a_scale_rounded_on_the_way_is_told_how_to_make_it_exact():
    """2^e written as exp(e ln 2) is the right formula, rounded: 'differs by 3.49e-10' did not say why."""
    import math

    lut = torch.tensor(mxfp4.FP4_VALUES)

    def rounded(b, s):
        v = torch.stack((lut[(b & 0x0F).long()], lut[(b >> 4).long()]), -1).flatten(-2)
        return (v * torch.exp((s.float() - 127) * math.log(2))[..., None]).flatten(-2)

    result = check_dequantize(rounded)
    assert not result.passed and "almost: your values are right to float32 rounding" in result.message
    assert "2.0 ** (scales.int() - 127)" in result.message  # int first: uint8 - 127 would wrap around
    exact = lambda b, s: (torch.stack((lut[(b & 0x0F).long()], lut[(b >> 4).long()]), -1).flatten(-2)  # noqa: E731
                          * torch.exp2(s.float() - 127)[..., None]).flatten(-2)
    assert check_dequantize(exact).passed


# ---- found by a review of wrong answers that passed ----

def test_leading_dimensions_hard_coded_to_two_fail_on_one_weight():
    """flatten(2) is right for [E, rows, G, 16] only; one weight's [rows, G, 16] (as quantize(w) gives) tells."""
    r = check_dequantize(lambda b, s: right(b, s).unflatten(-1, (b.shape[-2], 32)).flatten(2))
    assert not r.passed and "one weight's [rows, G, 16]" in r.message and "expected (5, 96)" in r.message, r.message


def test_a_right_answer_that_writes_into_its_inputs_fails():
    def shifts_in_place(blocks, scales):
        lo = LUT[(blocks & 0xF).long()]
        blocks >>= 4
        return (torch.stack((lo, LUT[blocks.long()]), dim=-1).flatten(-2)
                * 2.0 ** (scales.int() - 127).float()[..., None]).flatten(-2)

    r = check_dequantize(shifts_in_place)
    assert not r.passed and "changed blocks in place" in r.message, r.message
