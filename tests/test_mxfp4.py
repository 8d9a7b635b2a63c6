"""MXFP4 (gptoss_edu.mxfp4) against transformers' dequantizer and against the format's definition.

Tolerances: dequantizing is exact arithmetic (a 4-bit code times a power of two), so every
comparison with transformers is bit for bit (compared as integers of the same width).
Quantizing is checked by brute force: each value must land on a nearest point of its block's
grid (the 16 E2M1 values times the block's scale), ties allowed either way.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

from gptoss_edu import mxfp4

INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float tensor, so -0.0 != +0.0 and NaN == NaN of the same payload."""
    return t.contiguous().view(INT_VIEW[t.dtype])


def reference(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """transformers' dequantizer, its final transpose (to [E, in, out]) undone."""
    return convert_moe_packed_tensors(blocks, scales, dtype=dtype).transpose(1, 2)


def grid(scale_code: int) -> torch.Tensor:
    """The 16 values a block with this E8M0 scale can hold, in float64."""
    return torch.tensor([v * 2.0 ** (scale_code - 127) for v in mxfp4.FP4_VALUES], dtype=torch.float64)


# ---- the E2M1 codes --------------------------------------------------------------------------

def test_fp4_values_follow_from_their_bits():
    # E2M1: sign bit, 2 exponent bits (bias 1), 1 mantissa bit; exponent 0 is subnormal.
    for code in range(16):
        s, e, m = mxfp4.e2m1_bits(code).split()
        sign = -1.0 if s == "1" else 1.0
        e, m = int(e, 2), int(m, 2)
        value = sign * (m * 0.5 if e == 0 else 2.0 ** (e - 1) * (1 + m / 2))
        assert value == mxfp4.FP4_VALUES[code] and math.copysign(1, value) == math.copysign(1, mxfp4.FP4_VALUES[code])


def test_e2m1_bits_refuses_codes_outside_0_15():
    with pytest.raises(ValueError, match="0..15"):
        mxfp4.e2m1_bits(16)


# ---- dequantize: bit-exact with transformers -------------------------------------------------

SHAPES = [(1, 1, 1), (4, 6, 3), (2, 33, 5), (3, 64, 90)]  # [experts, rows, blocks per row]; the last is 20b's row width


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_dequantize_matches_transformers_bit_for_bit(shape, dtype):
    gen = torch.Generator().manual_seed(sum(shape))
    blocks = torch.randint(0, 256, (*shape, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(100, 151, shape, dtype=torch.uint8, generator=gen)  # the range real checkpoints use
    got = mxfp4.dequantize(blocks, scales, dtype=dtype)
    want = reference(blocks, scales, dtype)
    assert got.shape == (*shape[:-1], shape[-1] * 32)
    assert torch.equal(bits(got), bits(want))
    assert got.abs().max() > 0  # not an all-zero comparison


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_every_byte_and_every_scale_code(dtype):
    # 16 rows of one block each hold all 256 byte values; each scale code 0..254 in turn.
    blocks = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 1, 16).expand(255, 16, 1, 16).contiguous()
    scales = torch.arange(255, dtype=torch.uint8).reshape(255, 1, 1).expand(255, 16, 1).contiguous()
    got = mxfp4.dequantize(blocks, scales, dtype=dtype)
    assert torch.equal(bits(got), bits(reference(blocks, scales, dtype)))
    # And against the definition, in Python floats: low nibble is element 2j, high nibble 2j + 1.
    for scale in (0, 1, 100, 127, 150, 254):
        for byte in range(256):
            row, j = divmod(byte, 16)
            lo = math.ldexp(mxfp4.FP4_VALUES[byte & 0xF], scale - 127)
            hi = math.ldexp(mxfp4.FP4_VALUES[byte >> 4], scale - 127)
            pair = got[scale, row, 2 * j: 2 * j + 2].double().tolist()
            assert pair == [float(torch.tensor(lo, dtype=dtype)), float(torch.tensor(hi, dtype=dtype))], (scale, byte)


def test_dequantize_refuses_mismatched_inputs():
    blocks = torch.zeros(2, 3, 4, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="scales must be blocks.shape"):
        mxfp4.dequantize(blocks, torch.zeros(2, 3, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="16 bytes"):
        mxfp4.dequantize(torch.zeros(2, 3, 4, 8, dtype=torch.uint8), torch.zeros(2, 3, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        mxfp4.dequantize(blocks.float(), torch.zeros(2, 3, 4, dtype=torch.uint8))


# ---- quantize: each value on a nearest grid point --------------------------------------------

def assert_nearest_on_grid(w: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor) -> None:
    """Brute force: every dequantized value is a nearest of its block's 16 grid values to the input."""
    q = mxfp4.dequantize(blocks, scales, dtype=torch.float32).double().reshape(-1, 32)
    x = w.double().reshape(-1, 32)
    s = scales.reshape(-1).tolist()
    for i in range(x.shape[0]):
        g = grid(s[i])
        dist = (x[i, :, None] - g[None, :]).abs()  # [32, 16]
        best = dist.min(dim=1).values
        assert torch.isin(q[i], g).all(), f"block {i}: a value is off its grid"
        assert torch.equal((x[i] - q[i]).abs(), best), f"block {i}: a value did not land on a nearest grid point"


def assert_scale_is_smallest_that_fits(w: torch.Tensor, scales: torch.Tensor) -> None:
    """The documented choice: the smallest power of two with amax <= 6 * scale (no saturation)."""
    amax = w.double().reshape(-1, 32).abs().amax(dim=1)
    for a, s in zip(amax.tolist(), scales.reshape(-1).tolist()):
        if a == 0:
            assert s == 0
            continue
        assert a <= 6 * 2.0 ** (s - 127), "the block's largest value saturates"
        assert s == 0 or a > 6 * 2.0 ** (s - 128), "a smaller scale would have held the block"


@pytest.mark.parametrize("shape,std", [((4, 64), 1.0), ((3, 7, 96), 0.02), ((33, 160), 1e-3), ((2, 32), 300.0)])
def test_quantize_lands_on_nearest_grid_point(shape, std):
    gen = torch.Generator().manual_seed(shape[-1])
    w = torch.randn(shape, generator=gen) * std
    blocks, scales = mxfp4.quantize(w)
    assert blocks.shape == (*shape[:-1], shape[-1] // 32, 16) and blocks.dtype == torch.uint8
    assert scales.shape == (*shape[:-1], shape[-1] // 32) and scales.dtype == torch.uint8
    assert_nearest_on_grid(w, blocks, scales)
    assert_scale_is_smallest_that_fits(w, scales)


def test_quantize_handles_exact_grid_values_and_ties():
    # A block of exact grid values comes back unchanged; a midpoint goes to the even code (an even mantissa),
    # as round-to-nearest-even does (notebook 08 rebuilds this rule by hand and compares bytes).
    exact = torch.tensor(mxfp4.FP4_VALUES * 2).reshape(1, 32) * 0.25
    b, s = mxfp4.quantize(exact)
    assert torch.equal(mxfp4.dequantize(b, s, torch.float32), exact)
    mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 4).reshape(1, 32)
    mids[0, 16:] *= -1
    b, s = mxfp4.quantize(mids)
    assert_nearest_on_grid(mids, b, s)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    even = torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0])  # codes 0, 2, 2, 4, 4, 6, 6
    for sign in (1, -1):
        codes = mxfp4.round_to_e2m1(sign * ties)
        assert torch.equal(codes & 7, torch.tensor([0, 2, 2, 4, 4, 6, 6], dtype=torch.uint8))
        assert torch.equal(torch.tensor(mxfp4.FP4_VALUES)[codes.long()], sign * even)
    assert mxfp4.round_to_e2m1(torch.tensor([-0.25])).item() == 0  # rounds to zero: stored as +0


def test_zero_block():
    w = torch.zeros(3, 64)
    w[1, 32:] = torch.linspace(-1, 1, 32)  # one live block among zero ones
    blocks, scales = mxfp4.quantize(w)
    back = mxfp4.dequantize(blocks, scales, torch.float32)
    assert torch.equal(back[0], torch.zeros(64)) and torch.equal(back[1, :32], torch.zeros(32))
    assert torch.isfinite(back).all()
    assert_nearest_on_grid(w, blocks, scales)


def test_a_zero_is_stored_as_plus_zero():
    # E2M1 has two zeros (codes 0 and 8). Quantizing keeps one of them, so that a value that rounds
    # to zero packs to the same byte whatever its sign: -0.0, tiny negatives, a negative tie at 0.25.
    assert mxfp4.round_to_e2m1(torch.tensor([-0.0, 0.0, -1e-30, -0.1, -0.25, 0.25])).tolist() == [0] * 6
    w = torch.zeros(2, 32)
    w[:, 0] = 6.0  # scale 1: the grid is FP4_VALUES itself
    w[0, 1:5] = torch.tensor([-0.0, -0.2, -0.25, 1e-3])
    w[1, 1:5] = torch.tensor([0.0, 0.2, 0.25, -1e-3])
    blocks, scales = mxfp4.quantize(w)
    assert torch.equal(blocks[0], blocks[1]) and torch.equal(scales[0], scales[1])
    assert blocks[0, 0, 0].item() == 0x07 and blocks[0, 0, 1:].eq(0).all()  # 6.0 is code 7, in the low nibble


def test_block_with_one_huge_value():
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(2, 64, generator=gen) * 0.01
    w[0, 5] = 1e4
    w[1, 40] = -3e3
    blocks, scales = mxfp4.quantize(w)
    back = mxfp4.dequantize(blocks, scales, torch.float32)
    assert_nearest_on_grid(w, blocks, scales)
    assert_scale_is_smallest_that_fits(w, scales)
    # The outlier is kept to within half a grid step (at most 1/5 of it between 4 and 6), its
    # neighbours flush to zero, and the blocks without an outlier keep their small values.
    assert abs(back[0, 5] - 1e4) <= 0.2 * 1e4 and abs(back[1, 40] + 3e3) <= 0.2 * 3e3
    assert torch.equal(back[0, :32].clone().index_fill_(0, torch.tensor([5]), 0), torch.zeros(32))
    assert (back[0, 32:] != 0).any()


@pytest.mark.parametrize("shape", [(4, 33), (2, 16), (8, 100), (3,)])
def test_quantize_refuses_widths_not_multiple_of_32(shape):
    with pytest.raises(ValueError, match="multiple of 32"):
        mxfp4.quantize(torch.randn(shape))


def test_quantize_refuses_inf_and_nan():
    w = torch.randn(2, 32)
    w[1, 3] = float("nan")
    with pytest.raises(ValueError, match="inf or NaN"):
        mxfp4.quantize(w)


@pytest.mark.parametrize("lo,hi", [(100, 151), (0, 253)])
def test_round_trip_is_stable_in_values(lo, hi):
    # Already-quantized values quantize to themselves (the bits may differ: a block whose largest
    # code is small gets a smaller scale and larger codes). Scale codes above 252 are left out:
    # 6 * 2**126 overflows float32 (and bf16) to inf, in transformers' dequantizer as in ours.
    gen = torch.Generator().manual_seed(lo)
    blocks = torch.randint(0, 256, (3, 20, 4, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(lo, hi, (3, 20, 4), dtype=torch.uint8, generator=gen)
    w = mxfp4.dequantize(blocks, scales, dtype=torch.float32)
    w2 = mxfp4.dequantize(*mxfp4.quantize(w), dtype=torch.float32)
    assert torch.equal(w2, w)
    w_bf16 = mxfp4.dequantize(blocks, scales)  # the default, bf16
    assert torch.equal(mxfp4.dequantize(*mxfp4.quantize(w_bf16)), w_bf16)


def test_nbytes_is_17_bytes_per_32_values():
    assert mxfp4.nbytes((32, 5760, 2880)) == 32 * 5760 * 90 * 17
    b, s = mxfp4.quantize(torch.randn(5, 96))
    assert mxfp4.nbytes((5, 96)) == b.numel() + s.numel()


def test_quantization_error_orders_formats():
    gen = torch.Generator().manual_seed(0)
    err = mxfp4.quantization_error(torch.randn(64, 256, generator=gen) * 0.02)
    assert err["bf16"] < err["int8"] < err["mxfp4"] < 0.2


DEQUANTIZE_PEAK = """
import resource, torch
from gptoss_edu import mxfp4
blocks = torch.randint(0, 256, (2048, 1024, 16), dtype=torch.uint8)  # 2**26 weights: 128 MiB in bf16
scales = torch.full((2048, 1024), 120, dtype=torch.uint8)
mxfp4.dequantize(blocks[:1], scales[:1])  # the lookup table, made once
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = mxfp4.dequantize(blocks, scales)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, out.numel() * out.element_size())
"""


def peak_growth(script: str) -> tuple[int, int]:
    """Run ``script`` in a fresh Python; it prints how many bytes its peak RSS grew by, and a size to compare with."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    grew, size = map(int, done.stdout.split())
    return grew, size


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_dequantize_needs_little_more_memory_than_its_result():
    # A dense load dequantizes a layer's experts one projection at once (2.1 billion weights in gpt-oss-120b's gate_up_proj).
    # Unpacked in one go that took about 14 bytes a weight of temporaries (920 MiB here, 7 times the
    # result); by chunks of rows, the result plus a few tens of MB. Measured in a fresh process.
    grew, result = peak_growth(DEQUANTIZE_PEAK)
    assert grew < 2.5 * result, f"dequantize's peak grew by {grew / 2**20:.0f} MiB for a {result / 2**20:.0f} MiB result"


@pytest.mark.parametrize("chunk", [1, 64, 100, 1000])
def test_dequantize_by_chunks_equals_one_pass(monkeypatch, chunk):
    # 21 rows of 64 weights. A chunk of 1 or of 64 weights is a row at a time, 100 rounds down to one
    # row, 1000 makes two uneven chunks (15 rows, then 6); the default takes all 21 in one pass. The
    # bytes must not depend on how the rows were grouped.
    gen = torch.Generator().manual_seed(3)
    blocks = torch.randint(0, 256, (3, 7, 2, 16), dtype=torch.uint8, generator=gen)
    scales = torch.randint(110, 140, (3, 7, 2), dtype=torch.uint8, generator=gen)
    whole = mxfp4.dequantize(blocks, scales, torch.float32)
    monkeypatch.setattr(mxfp4, "_DEQUANT_CHUNK", chunk)
    got = mxfp4.dequantize(blocks, scales, torch.float32)
    assert got.shape == (3, 7, 64) and torch.equal(got.view(torch.int32), whole.view(torch.int32))


QUANTIZE_PEAK = """
import resource, torch
from gptoss_edu import mxfp4
w = torch.randn(1024, 32768, generator=torch.Generator().manual_seed(0)).bfloat16()  # 2**25 weights, 64 MiB
mxfp4.quantize(w[:1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
blocks, scales = mxfp4.quantize(w)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, w.numel())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_quantize_needs_a_bounded_workspace():
    # write_checkpoint quantizes a dense model's experts a layer's projection at once (531 million weights in
    # gpt-oss-20b's gate_up_proj). In one go that took 57 bytes a weight of temporaries (1.9 GB here, 30 GB for
    # that projection); by chunks of rows, about 9 (the packed result plus a few hundred MB). A fresh process.
    grew, weights = peak_growth(QUANTIZE_PEAK)
    assert grew < 16 * weights, f"quantize's peak grew by {grew / weights:.1f} bytes a weight"


@pytest.mark.parametrize("chunk", [1, 64, 100, 1000])
def test_quantize_by_chunks_equals_one_pass(monkeypatch, chunk):
    """The bytes must not depend on how the rows were grouped (1 and 64 weights: a row at a time; 1000: uneven)."""
    w = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(4)) * torch.logspace(-3, 3, 64)
    whole = mxfp4.quantize(w)
    monkeypatch.setattr(mxfp4, "_QUANT_CHUNK", chunk)
    got = mxfp4.quantize(w)
    assert got[0].shape == (3, 7, 2, 16) and got[1].shape == (3, 7, 2)
    assert torch.equal(got[0], whole[0]) and torch.equal(got[1], whole[1])
    late = w.clone().double()
    late[2, 6, 63] = 1e39  # in the last chunk, after the others were quantized
    with pytest.raises(ValueError, match="values up to 1e\\+39"):
        mxfp4.quantize(late)
    late[2, 6, 63] = float("nan")
    with pytest.raises(ValueError, match="cannot represent inf or NaN"):
        mxfp4.quantize(late)
    assert [t.shape for t in mxfp4.quantize(torch.zeros(0, 5, 64))] == [(0, 5, 2, 16), (0, 5, 2)]
    assert [t.shape for t in mxfp4.quantize(torch.zeros(4, 0))] == [(4, 0, 16), (4, 0)]


def test_values_past_float32_and_integer_dtypes_are_refused_not_truncated():
    """A float64 1e39 became inf in float32 after the finiteness check and quantized to 6.0; dequantize to
    int32 truncated every value to a whole number (0.5 to 0)."""
    w = torch.zeros(2, 32, dtype=torch.float64)
    w[0, 3] = 1e39
    with pytest.raises(ValueError, match="values up to 1e\\+39, beyond float32's range"):
        mxfp4.quantize(w)
    blocks, scales = mxfp4.quantize(torch.randn(2, 32))
    for dtype in (torch.int32, torch.uint8, "float32"):
        with pytest.raises(ValueError, match="MXFP4 unpacks to a floating-point dtype"):
            mxfp4.dequantize(blocks, scales, dtype)
    assert mxfp4.dequantize(blocks, scales, torch.float64).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_every_scale_byte_unpacks_to_the_spec_value_in_every_dtype(dtype):
    """value * 2^(scale - 127), computed in float64 and rounded once to ``dtype``: for all 256 scale bytes and 16 codes
    (byte 255, NaN in the OCP spec and refused by load_model, as transformers unpacks it).

    At scale 255 the power 2^128 overflows float32: 0 must stay 0 (not inf * 0 = NaN) and 0.5 be 2^127; and
    in float64 nothing overflows at all.
    """
    codes = torch.tensor([c | (c << 4) for c in range(16)], dtype=torch.uint8)  # each code as both nibbles
    blocks = codes.expand(256, 1, 16).contiguous()
    scales = torch.arange(256, dtype=torch.uint8)[:, None]
    value = torch.tensor(mxfp4.FP4_VALUES, dtype=torch.float64).repeat_interleave(2)
    want = (value[None, :] * torch.pow(2.0, torch.arange(256, dtype=torch.float64) - 127)[:, None]).to(dtype)
    got = mxfp4.dequantize(blocks, scales, dtype)
    assert not got.isnan().any()
    assert torch.equal(got, want)


def test_the_largest_weights_get_a_scale_the_loader_takes_and_saturate():
    """Above 2.55e38 quantize wrote scale 253, which unpacks to inf and which the loader refuses."""
    from gptoss_edu.mxfp4 import MAX_FINITE_SCALE, dequantize, quantize

    w = torch.tensor([[2.6e38, 3.0e38, -3.3e38] + [1.0] * 29])
    blocks, scales = quantize(w)
    assert scales.max().item() == MAX_FINITE_SCALE
    back = dequantize(blocks, scales, torch.float32)
    assert back.isfinite().all() and back[0, :3].tolist() == [6 * 2.0 ** 125, 6 * 2.0 ** 125, -6 * 2.0 ** 125]


# ---- found by mutation testing: scales' dtype, zero widths, zero blocks, int8's step --------------

def test_dequantize_refuses_scales_that_are_not_uint8():
    # Scale bytes read as int32 or float (a hand-made tensor, a file edited with numpy) unpacked without a word;
    # the blocks' own dtype was checked, the scales' was not.
    blocks = torch.zeros(2, 3, 4, 16, dtype=torch.uint8)
    for dtype in (torch.int32, torch.float32):
        with pytest.raises(TypeError, match="uint8"):
            mxfp4.dequantize(blocks, torch.full((2, 3, 4), 127, dtype=dtype))


def test_a_weight_of_width_0_round_trips():
    # quantize takes [rows, 0] (G = 0 blocks a row); dequantize must give [rows, 0] back, not divide by G.
    for shape in ((4, 0), (2, 3, 0)):
        back = mxfp4.dequantize(*mxfp4.quantize(torch.zeros(shape)), torch.float32)
        assert back.shape == shape and back.dtype == torch.float32


def test_an_all_zero_block_gets_scale_byte_0():
    # frexp(0) gives exponent 0, i.e. scale byte 127; quantize writes 0 instead (the smallest scale, as
    # assert_scale_is_smallest_that_fits documents), so a zero block's bytes do not depend on that detail.
    w = torch.zeros(3, 64)
    w[1, 32:] = torch.linspace(-1, 1, 32)
    _, scales = mxfp4.quantize(w)
    assert scales[0].tolist() == [0, 0] and scales[1, 0].item() == 0 and scales[2].tolist() == [0, 0]
    assert_scale_is_smallest_that_fits(w, scales)


def test_quantization_errors_int8_is_exact_on_whole_numbers_up_to_127():
    # Per-row absmax int8 has a step of absmax / 127: a row of the integers -127..127 is held exactly (a step of
    # absmax / 128 would round most of them), while MXFP4 is not exact there.
    w = torch.cat([torch.arange(-127.0, 128.0), torch.zeros(1)]).reshape(1, 256)
    err = mxfp4.quantization_error(w)
    assert err["int8"] == 0.0 and err["bf16"] == 0.0 and err["mxfp4"] > 0.0
