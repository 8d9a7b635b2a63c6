"""Notebook 08's exercise: dequantize MXFP4 blocks and scales by hand."""

from __future__ import annotations

from typing import Callable

import torch

from .. import mxfp4
from . import CheckResult, compare, failed, not_a_function, passed

Dequantize = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _lut_dequantize(blocks: torch.Tensor, scales: torch.Tensor, lut: torch.Tensor, high_first: bool = False,
                    bias: int = mxfp4.SCALE_BIAS, use_scale: bool = True, wrap: bool = False,
                    int_power: bool = False, signed: bool = False, int_divide: bool = False,
                    concatenated: bool = False) -> torch.Tensor:
    """A float32 dequantizer with one knob per typical mistake, to recognise what a wrong answer did."""
    lo, hi = lut[(blocks & 0x0F).long()], lut[(blocks >> 4).long()]
    pair = (hi, lo) if high_first else (lo, hi)
    values = torch.cat(pair, dim=-1) if concatenated else torch.stack(pair, dim=-1).flatten(-2)
    if use_scale:
        exponent = (scales.to(torch.int8) if signed else scales).long() - bias  # int8: 128..255 become -128..-1
        if wrap:  # what uint8 arithmetic does to scales - 127
            exponent = exponent % 256
        if int_divide:  # values / 2 ** (127 - scale) in integers: 2 ** -1 is 0, so a scale above 127 gives inf
            return (values / torch.pow(2, -exponent).unsqueeze(-1)).flatten(-2)
        # 2 ** an integer tensor stays integer: a negative exponent gives 0, not a fraction.
        power = torch.pow(2, exponent) if int_power else torch.pow(2.0, exponent.float())
        values = values * power.unsqueeze(-1)
    return values.flatten(-2)


def _typical_mistakes(blocks: torch.Tensor, scales: torch.Tensor) -> dict[str, torch.Tensor]:
    lut = mxfp4.fp4_lut(torch.float32)
    as_int = torch.arange(16, dtype=torch.float32)
    twos = torch.where(as_int < 8, as_int, as_int - 16)
    magnitude_only = lut[:8].repeat(2)
    # E2M1 by its formula, 2**(e - 1) * (1 + m/2), with exponent 0 read as a normal number (it is 0 or 0.5).
    no_subnormal = lut.clone()
    no_subnormal[[0, 1, 8, 9]] = torch.tensor([0.5, 0.75, -0.5, -0.75])
    return {
        "you put the high nibble first: the low nibble (byte & 0x0F) is element 2j, the high nibble (byte >> 4) "
        "element 2j + 1": _lut_dequantize(blocks, scales, lut, high_first=True),
        "you used 2**scale: the E8M0 scale has a bias of 127, so its value is 2**(scale - 127)":
            _lut_dequantize(blocks, scales, lut, bias=0),
        "scales - 127 wrapped around: the scales are uint8, which cannot go negative; convert first "
        "(scales.int() - 127)": _lut_dequantize(blocks, scales, lut, wrap=True),
        "2 ** an integer tensor stays an integer, so every negative exponent became 0: raise a float, "
        "2.0 ** (scales.int() - 127), or use torch.exp2(...float())":
            _lut_dequantize(blocks, scales, lut, int_power=True),
        "you read the scale as a signed int8: E8M0 is unsigned, 0..255, and scales from 128 up are positive "
        "exponents (2**1, 2**2, ...); convert with scales.int() or .long()":
            _lut_dequantize(blocks, scales, lut, signed=True),
        "2 ** an integer tensor stays an integer, so 2 ** (127 - scale) is 0 for every scale above 127 and the "
        "division gave inf: raise a float, 2.0 ** (scales.int() - 127), and multiply":
            _lut_dequantize(blocks, scales, lut, int_divide=True),
        "every value is half what it should be: the E8M0 bias is 127, not 128, so the scale is 2**(scale - 127)":
            _lut_dequantize(blocks, scales, lut, bias=128),
        "every value is twice what it should be: the E8M0 bias is 127, not 126, so the scale is 2**(scale - 127)":
            _lut_dequantize(blocks, scales, lut, bias=126),
        "you put the 16 low nibbles first, then the 16 high ones: interleave them, byte j's low nibble is element "
        "2j and its high nibble element 2j + 1 (torch.stack((lo, hi), dim=-1), then flatten)":
            _lut_dequantize(blocks, scales, lut, concatenated=True),
        "codes with exponent bits 0 are not 2**(0 - 1) * (1 + m/2): they are subnormal, 0 and 0.5 (m/2), so 0001 "
        "is 0.5 and 0000 is 0; look the codes up in FP4_VALUES":
            _lut_dequantize(blocks, scales, no_subnormal),
        "you left the scale out: every value of a block is multiplied by 2**(scale - 127)":
            _lut_dequantize(blocks, scales, lut, use_scale=False),
        "you read each 4-bit code as an integer 0..15: it is an E2M1 float, look it up in FP4_VALUES":
            _lut_dequantize(blocks, scales, as_int),
        "you read each 4-bit code as a two's-complement integer: it is an E2M1 float (sign bit, 2 exponent "
        "bits, 1 mantissa bit), look it up in FP4_VALUES": _lut_dequantize(blocks, scales, twos),
        "you dropped the sign: codes 8..15 are the negative values (bit 3 is the sign)":
            _lut_dequantize(blocks, scales, magnitude_only),
    }


def _call(fn: Dequantize, blocks: torch.Tensor, scales: torch.Tensor) -> tuple[object, CheckResult | None]:
    """``fn``'s result on these blocks, and the failure to report if its values are right: it wrote into its inputs."""
    before = blocks.clone(), scales.clone()
    try:
        got = fn(blocks, scales)
    except Exception as e:  # the learner's code: show what went wrong, don't crash the notebook
        return None, failed(f"not yet: your function raised {type(e).__name__}: {e}")
    changed = [name for name, t, b in (("blocks", blocks, before[0]), ("scales", scales, before[1]))
               if not torch.equal(t, b)]
    blocks.copy_(before[0]), scales.copy_(before[1])  # the diagnosis reads them as they were
    if changed:
        return got, failed(f"not yet: your function changed {' and '.join(changed)} in place (an op ending in _, "
                           "or >>=, &=, -=, ...): on a checkpoint's tensors that would destroy the stored weights. "
                           "Compute new tensors instead: blocks & 0x0F, blocks >> 4, scales.int() - 127")
    return got, None


def check_dequantize(fn: Dequantize) -> CheckResult:
    """Try ``fn(blocks, scales)`` on fresh random MXFP4 data against gptoss_edu.mxfp4.dequantize."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    gen = torch.Generator().manual_seed(8)
    blocks = torch.randint(0, 256, (3, 5, 4, 16), dtype=torch.uint8, generator=gen)
    # Scales mostly 110..126: below 127, so uint8 wrap-around shows. One row's blocks are 128..131, so
    # scales above the bias (positive exponents) are tried too: read as int8 they would turn negative.
    scales = torch.randint(110, 127, (3, 5, 4), dtype=torch.uint8, generator=gen)
    scales[1, 2] = torch.tensor([128, 129, 130, 131], dtype=torch.uint8)
    want = mxfp4.dequantize(blocks, scales, dtype=torch.float32)
    got, in_place = _call(fn, blocks, scales)
    if got is None and in_place is not None:  # it raised
        return in_place
    if isinstance(got, torch.Tensor) and got.shape == (3, 5, 4, 32):
        return failed("not yet: the shape is [..., G, 32]; flatten the last two dims to [..., G * 32] "
                      "(one row of the weight)")
    problem = compare(got, want, "your function", atol=0)
    if problem is None and got.dtype != torch.float32:
        return failed(f"not yet: the values are right, but the result is {got.dtype}: return float32")
    if problem is None and not torch.equal(torch.signbit(got), torch.signbit(want)):
        # -0.0 == +0.0, so only the sign bits tell them apart: "bit for bit" below must mean it.
        return failed("not yet: the values compare equal, but code 8 is -0.0, not +0.0 (bit 3 is the sign, for "
                      "zero too): look the codes up in mxfp4.FP4_VALUES as it is")
    if problem is None:
        if in_place is not None:
            return in_place
        # One weight, as mxfp4.quantize(w) gives it: the leading dimensions are the caller's, not always 2.
        one = blocks[1, :, :3].clone(), scales[1, :, :3].clone()
        got, in_place = _call(fn, *one)
        if in_place is not None:
            return in_place
        if (problem := compare(got, mxfp4.dequantize(*one, dtype=torch.float32), "your function", atol=0)) is not None:
            return failed("not yet: right on [experts, rows, G, 16] blocks, but on one weight's [rows, G, 16] "
                          f"(5 x 3 x 16): {problem.message}. Keep every leading dimension as it comes "
                          "(reshape(*blocks.shape[:-2], -1), or flatten(-2)), so any [..., G, 16] works")
        return passed("your dequantizer matches gptoss_edu.mxfp4.dequantize bit for bit on fresh blocks "
                      "(3 experts x 5 rows x 4 blocks, and one weight of 5 rows x 3 blocks).")
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        for message, wrong in _typical_mistakes(blocks, scales).items():
            if torch.allclose(got.float(), wrong, rtol=1e-6, atol=0, equal_nan=True):
                return failed("not yet: " + message + ".")
        if torch.allclose(got.float(), want, rtol=1e-5, atol=0):
            rel = ((got.float() - want).abs() / want.abs().clamp_min(torch.finfo(torch.float32).tiny)).max().item()
            return failed(f"almost: your values are right to float32 rounding (relative differences up to {rel:.1e}) "
                          "but not bit for bit: something was rounded on the way. Every E8M0 scale is a power of "
                          "two, exact in float32: compute it as 2.0 ** (scales.int() - 127) or torch.exp2(scales.float() "
                          "- 127) (exp(x * ln 2) rounds), and multiply each FP4 value by it once")
    return in_place or failed("not yet: " + problem.message)
