"""MXFP4: 4-bit E2M1 values in blocks of 32 that share one E8M0 (power-of-two) scale.

Layout (the one gpt-oss checkpoints use): a weight [..., rows, cols] is stored as
``blocks`` uint8 [..., rows, cols // 32, 16] (two codes a byte, low nibble first) and
``scales`` uint8 [..., rows, cols // 32] (value = FP4_VALUES[code] * 2 ** (scale - 127)).
"""

from __future__ import annotations

import torch

BLOCK_SIZE = 32
SCALE_BIAS = 127
# The largest scale byte whose every value float32 and bfloat16 hold: 6 x 2^(252 - 127) < 2^128 <= 4 x 2^126.
MAX_FINITE_SCALE = 252
# float16 holds far less (its largest value is 65504): above 140, 6 x 2^(141 - 127) = 98304 is past it.
MAX_FINITE_SCALE_FP16 = 140


def max_finite_scale(dtype: torch.dtype) -> int:
    """The largest scale byte whose every value ``dtype`` holds: 252 in float32 and bfloat16, 140 in float16."""
    return MAX_FINITE_SCALE_FP16 if dtype == torch.float16 else MAX_FINITE_SCALE

# The 16 E2M1 codes: bit 3 is the sign, bits 2-1 the exponent, bit 0 the mantissa.
FP4_VALUES: tuple[float, ...] = (
    +0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
    -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
)
FP4_MAX = 6.0
_MAGNITUDES = torch.tensor(FP4_VALUES[:8])
_MIDPOINTS = (_MAGNITUDES[1:] + _MAGNITUDES[:-1]) / 2


def fp4_lut(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 E2M1 values as a lookup table indexed by code."""
    return torch.tensor(FP4_VALUES, dtype=dtype, device=device)


_LUTS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _doubled_lut(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """2 * FP4_VALUES in ``dtype`` on ``device`` (dequantize's table: see there why doubled)."""
    # One table per device and dtype, made once and kept: a CUDA graph may record a decode step that
    # dequantizes experts, and a table copied from the host inside the recording would fail it.
    if (device, dtype) not in _LUTS:
        _LUTS[device, dtype] = fp4_lut(dtype, device) * 2
    return _LUTS[device, dtype]


def e2m1_bits(code: int) -> str:
    """The four bits of an E2M1 code as 'S EE M', for showing a code by hand."""
    if not 0 <= code < 16:
        raise ValueError(f"an E2M1 code is 0..15, got {code}")
    b = f"{code:04b}"
    return f"{b[0]} {b[1:3]} {b[3]}"


def _check_packed(blocks: torch.Tensor, scales: torch.Tensor) -> None:
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise TypeError(f"MXFP4 blocks and scales must be uint8, got {blocks.dtype} and {scales.dtype}")
    if blocks.shape[-1] != BLOCK_SIZE // 2:
        raise ValueError(f"MXFP4 blocks must end in {BLOCK_SIZE // 2} bytes, got shape {tuple(blocks.shape)}")
    if blocks.shape[:-1] != scales.shape:
        raise ValueError(
            f"MXFP4 blocks {tuple(blocks.shape)} and scales {tuple(scales.shape)} disagree: "
            f"scales must be blocks.shape[:-1]"
        )


# Unpacking makes at most about 13 bytes of temporaries a weight (indices, two float32 halves, their
# interleaving; twice the halves for a float64 result): rows go through a few million weights at a time, so one
# layer's gate_up_proj of gpt-oss-120b (2.1 billion weights) never needs more than its result plus a few tens of MB.
_DEQUANT_CHUNK = 1 << 22  # weights


def dequantize(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Unpack ``blocks`` [..., rows, G, 16] with ``scales`` [..., rows, G] to [..., rows, G * 32]."""
    _check_packed(blocks, scales)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r}: MXFP4 unpacks to a floating-point dtype (torch.bfloat16, float16, "
                         "float32, float64); an integer one would truncate 0.5, 1.5 and every scaled value")
    # float64 keeps every scale finite (2^128 overflows float32); the other dtypes unpack in float32, exactly.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    lut = _doubled_lut(blocks.device, work)
    G = blocks.shape[-2]
    if blocks.numel() == 0:
        return torch.empty(*blocks.shape[:-2], G * 32, dtype=dtype, device=blocks.device)
    flat_blocks, flat_scales = blocks.reshape(-1, G, 16), scales.reshape(-1, G)
    out = torch.empty(flat_blocks.shape[0], G * 32, dtype=dtype, device=blocks.device)
    step = max(1, _DEQUANT_CHUNK // (G * 32))  # whole rows; G > 0 here (no elements returned above)
    for start in range(0, flat_blocks.shape[0], step):
        b, s = flat_blocks[start:start + step], flat_scales[start:start + step]
        # Low nibble is element 2j, high nibble element 2j + 1.
        values = torch.stack((lut[(b & 0x0F).long()], lut[(b >> 4).long()]), dim=-1).flatten(-2)  # [rows, G, 32]
        # 2 * value * 2^(scale - 128): the same numbers as value * 2^(scale - 127), but the power of two stays
        # finite at scale 255 (2^127, not 2^128 = inf), so 0 stays 0 there, not inf * 0 = NaN. The OCP spec
        # reserves 255 for NaN (notebook 08) and load_model refuses it; unpacked here it gives what
        # transformers' unpacking gives, so the two agree on every byte.
        exponents = (s.to(torch.int32) - (SCALE_BIAS + 1)).unsqueeze(-1).to(work)
        out[start:start + step] = torch.ldexp(values, exponents).flatten(-2)  # cast to dtype as it is stored
    return out.reshape(*blocks.shape[:-2], G * 32)


def round_to_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 of the nearest E2M1 value to ``x`` (ties to an even mantissa)."""
    mags = x.abs()
    mids = _MIDPOINTS.to(device=x.device, dtype=x.dtype)
    down = torch.bucketize(mags, mids, right=False)
    up = torch.bucketize(mags, mids, right=True)
    # Where the two differ the value sits exactly between two codes: keep the even one.
    idx = torch.where((down != up) & (down % 2 == 1), up, down)
    sign = (torch.signbit(x) & (idx > 0)).to(torch.int64) << 3  # what rounds to zero is +0 (code 0), never -0 (8)
    return (idx | sign).to(torch.uint8)


# Quantizing makes about 60 bytes of temporaries a weight (a float32 copy, its scaled values, int64 bucket
# indices): rows go through a few million weights at a time, so writing one layer's experts of gpt-oss-20b
# (531 million weights in gate_up_proj) needs its packed result plus a few hundred MB, not 30 GB.
_QUANT_CHUNK = 1 << 22  # weights


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``w`` [..., rows, cols] (cols a multiple of 32) to MXFP4 ``(blocks, scales)``.

    Each block's scale is the smallest power of two that brings its largest magnitude
    within E2M1's range (so nothing saturates below 6 x 2**125, the largest scale kept), then each
    value rounds to the nearest code.
    """
    if w.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"MXFP4 needs the last dimension to be a multiple of {BLOCK_SIZE}, got {tuple(w.shape)}")
    G = w.shape[-1] // BLOCK_SIZE
    rows = w.detach().reshape(w.shape[:-1].numel(), G, BLOCK_SIZE)  # numel(): -1 is ambiguous when G is 0
    blocks = torch.empty(*rows.shape[:2], BLOCK_SIZE // 2, dtype=torch.uint8, device=w.device)
    scales = torch.empty(rows.shape[:2], dtype=torch.uint8, device=w.device)
    step = max(1, _QUANT_CHUNK // max(1, G * BLOCK_SIZE))  # whole rows at a time
    chunks = [slice(start, start + step) for start in range(0, rows.shape[0], step)]
    for chunk in chunks:
        if not torch.isfinite(rows[chunk]).all():
            raise ValueError("MXFP4 cannot represent inf or NaN: the weight to quantize has some")
    for chunk in chunks:
        x = rows[chunk].to(torch.float32)
        if not torch.isfinite(x).all():  # finite in float64, past float32's 3.4e38 (and MXFP4's 6 * 2**127)
            largest = max(rows[c].abs().max().item() for c in chunks)
            raise ValueError(f"the weight has values up to {largest:.3g}, beyond float32's range and "
                             "MXFP4's largest scale (2**127): scale it down first")
        blocks[chunk], scales[chunk] = _quantize_blocks(x)
    return blocks.reshape(*w.shape[:-1], G, BLOCK_SIZE // 2), scales.reshape(*w.shape[:-1], G)


def _quantize_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks [..., 32] of finite float32 values as their packed codes [..., 16] and scale bytes [...]."""
    amax = x.abs().amax(dim=-1)
    # frexp gives amax / 6 = m * 2**e with m in [0.5, 1): 2**e is then the smallest power
    # of two >= amax / 6, except that an exact power of two m == 0.5 needs e - 1.
    m, e = torch.frexp(amax / FP4_MAX)
    e = torch.where(m == 0.5, e - 1, e)
    # Scales past 252 unpack past float32's range (and the loader refuses them): the largest blocks saturate
    # at 6 x 2**125 instead.
    e = torch.where(amax == 0, torch.full_like(e, -SCALE_BIAS), e).clamp(-SCALE_BIAS, MAX_FINITE_SCALE - SCALE_BIAS)
    scaled = torch.ldexp(x, (-e).unsqueeze(-1).to(torch.float32))
    codes = round_to_e2m1(scaled.clamp(-FP4_MAX, FP4_MAX))
    return codes[..., 0::2] | (codes[..., 1::2] << 4), (e + SCALE_BIAS).to(torch.uint8)


def nbytes(shape: tuple[int, ...]) -> int:
    """Bytes of blocks plus scales for a weight of ``shape`` [..., rows, cols] in MXFP4."""
    *lead, cols = shape
    n_blocks = int(torch.tensor(lead).prod()) * (cols // BLOCK_SIZE) if lead else cols // BLOCK_SIZE
    return n_blocks * (BLOCK_SIZE // 2 + 1)


def quantization_error(w: torch.Tensor) -> dict[str, float]:
    """Errors of MXFP4, int8 (per-row absmax) and bf16 against ``w`` as a dict of relative RMS errors."""
    w = w.detach().float()
    rms = w.pow(2).mean().sqrt()

    def rel(q: torch.Tensor) -> float:
        return float((q - w).pow(2).mean().sqrt() / rms)

    mx = dequantize(*quantize(w), dtype=torch.float32)
    step = w.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30) / 127
    int8 = (w / step).round().clamp(-127, 127) * step
    return {"mxfp4": rel(mx), "int8": rel(int8), "bf16": rel(w.bfloat16().float())}
