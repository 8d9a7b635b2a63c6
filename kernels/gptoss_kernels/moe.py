"""gpt-oss's mixture of experts as Triton kernels that read the MXFP4 weights as stored.

The expert weights stay packed in memory (4 bits a value plus one byte of scale per 32
values, about 4.25 bits a weight) and are turned into numbers only in registers, right before
they are multiplied. That is the whole point: a decode step is limited by how many bytes it
reads, and MXFP4 reads about a quarter of bf16's.

Per token t and chosen expert e (weight w):
    gate_up = x[t] @ W1[e].T + b1[e]       rows of W1 interleaved: even = gate, odd = up
    h       = (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g),   g = clamp(gate, max=limit)
    out[t] += w * (h @ W2[e].T + b2[e])

Two paths, chosen by the number of tokens:
- decode (a few tokens): matrix-vector products straight off the packed rows, the first with one
  program per (token, expert) pair and block of its rows, the second with one program per token and
  block of output rows, which sums that token's experts itself (no atomics);
- prefill (many tokens): pairs sorted by expert, each expert's rows cut into tiles of
  BLOCK_M, and a grouped matmul with tl.dot, so each expert's weights are read once per tile.
In both, the SwiGLU runs in the first matmul's epilogue (a program computes the gate row and
the up row of the same units, so the 2I-wide gate_up never goes to memory, only h), and the
bias and routing weight are applied in the second's.

Packing (gptoss_edu.mxfp4): byte j of a 32-value block holds value 2j in its low nibble and
2j + 1 in its high nibble. Rather than interleave the two nibbles back into one row, the
kernels split the activations instead: dot(x, w) = dot(x_even, w_low) + dot(x_odd, w_high).
"""

import torch

from ._common import (DOT_PRECISION, FLOAT_DTYPES, _interpreted, check_index_range, check_launch, check_shape,
                      check_tensor, extent, gpu_tiles, new_buffer, on_tensors_device, refuse_grad, tile_size, tl, triton)

# moe_mxfp4() takes the decode path up to this many tokens. That path reads an expert's weights once
# for every (token, expert) pair, which costs nothing extra while the few tokens of a decode step
# rarely share an expert (8 tokens make 32 pairs among gpt-oss-20b's 32 experts); the prefill path
# groups the tokens by expert and reads each chosen expert once, but pays for sorting them first.
# The crossing point is a guess until measured on a GPU (benchmarks/bench_gptoss20b.py).
DECODE_MAX_TOKENS = 8


@triton.jit
def _load_mxfp4(blk_ptrs, scl_ptrs, mask):
    """Load packed bytes and their E8M0 scales; return the (low nibble, high nibble) values in fp32."""
    byte = tl.load(blk_ptrs, mask=mask, other=0).to(tl.uint16)
    s = tl.load(scl_ptrs, mask=mask, other=127).to(tl.uint32)  # masked lanes: scale 2^0, a finite 0 * 1
    # An E2M1 code's three magnitude bits, put where fp16's exponent meets its mantissa, read as
    # fp16 are the code's value times 2^-14, and its sign bit goes to fp16's: code 1 (0.5) lands on
    # fp16's subnormal 2^-15, so zero, 0.5 and the normal codes need no branch. Building the fp32
    # bits field by field took twice the instructions a pass (python -m gptoss_kernels.aot counts
    # them), and a decode step has only a few to spend per byte it streams.
    lo = (((byte & 7) << 9) | ((byte & 8) << 12)).to(tl.float16, bitcast=True).to(tl.float32)
    hi = (((byte & 0x70) << 5) | ((byte & 0x80) << 8)).to(tl.float16, bitcast=True).to(tl.float32)
    # The scale 2^(s - 127) takes the 2^14 back: the float with exponent field s + 14, a normal
    # float for every s up to 240. Above, that float would overflow, so the scale is 2^(s - 127)
    # (exponent field s) and the 2^14 a factor of its own; both products are exact while they are
    # finite: up to s = 252, the most a checkpoint may hold (gptoss_edu.checkpoint refuses more; at
    # 253 and 254 the larger codes pass float32's range, and 255, MXFP4's NaN, reads here as NaN for
    # the zero codes and inf for the others).
    big = s > 240
    scale = tl.where(big, s << 23, (s + 14) << 23).to(tl.float32, bitcast=True)
    fix = tl.where(big, 16384.0, 1.0)
    return lo * fix * scale, hi * fix * scale


@triton.jit
def _gptoss_swiglu(gate, up, alpha, limit):
    # PropagateNan.ALL: as torch.clamp does, a NaN stays NaN (the default returns the other operand, the limit,
    # and would turn a blow-up upstream into plausible numbers).
    gate = tl.minimum(gate, limit, propagate_nan=tl.PropagateNan.ALL)  # no lower clamp on the gate
    up = tl.maximum(up, -limit, propagate_nan=tl.PropagateNan.ALL)
    up = tl.minimum(up, limit, propagate_nan=tl.PropagateNan.ALL)
    return (up + 1.0) * (gate * tl.sigmoid(alpha * gate))


@triton.jit
def _dequant_kernel(blk_ptr, scl_ptr, out_ptr, n_bytes, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_bytes
    lo, hi = _load_mxfp4(blk_ptr + offs, scl_ptr + offs // 16, mask)  # 16 bytes share a scale
    tl.store(out_ptr + 2 * offs, lo.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + 2 * offs + 1, hi.to(out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- decode path


@triton.jit
def _gate_up_matvec_kernel(
    x_ptr, idx_ptr, blk_ptr, scl_ptr, bias_ptr, h_ptr,
    I, K, stride_x, alpha, limit,
    ROW_BYTES: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr,
):
    pair = tl.program_id(0)  # pair = token * K + slot
    pid_i = tl.program_id(1)
    token = pair // K
    e = tl.load(idx_ptr + pair).to(tl.int64)
    G = ROW_BYTES // 16  # scales per row
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    i_mask = offs_i < I
    gate_rows = e * 2 * I + 2 * offs_i  # even rows of W1[e] are the gate, odd the up
    up_rows = gate_rows + 1
    acc_g = tl.zeros([BLOCK_I], dtype=tl.float32)
    acc_u = tl.zeros([BLOCK_I], dtype=tl.float32)
    for kb in range(0, ROW_BYTES, BLOCK_B):
        offs_b = kb + tl.arange(0, BLOCK_B)
        b_mask = offs_b < ROW_BYTES
        x_even = tl.load(x_ptr + token * stride_x + 2 * offs_b, mask=b_mask, other=0.0).to(tl.float32)
        x_odd = tl.load(x_ptr + token * stride_x + 2 * offs_b + 1, mask=b_mask, other=0.0).to(tl.float32)
        mask = i_mask[:, None] & b_mask[None, :]
        lo, hi = _load_mxfp4(blk_ptr + gate_rows[:, None] * ROW_BYTES + offs_b[None, :],
                             scl_ptr + gate_rows[:, None] * G + offs_b[None, :] // 16, mask)
        acc_g += tl.sum(lo * x_even[None, :] + hi * x_odd[None, :], axis=1)
        lo, hi = _load_mxfp4(blk_ptr + up_rows[:, None] * ROW_BYTES + offs_b[None, :],
                             scl_ptr + up_rows[:, None] * G + offs_b[None, :] // 16, mask)
        acc_u += tl.sum(lo * x_even[None, :] + hi * x_odd[None, :], axis=1)
    gate = acc_g + tl.load(bias_ptr + gate_rows, mask=i_mask, other=0.0).to(tl.float32)
    up = acc_u + tl.load(bias_ptr + up_rows, mask=i_mask, other=0.0).to(tl.float32)
    h = _gptoss_swiglu(gate, up, alpha, limit)
    tl.store(h_ptr + pair * I + offs_i, h.to(h_ptr.dtype.element_ty), mask=i_mask)


@triton.jit
def _down_matvec_kernel(
    h_ptr, idx_ptr, wt_ptr, blk_ptr, scl_ptr, bias_ptr, out_ptr,
    D, I, K, stride_out,
    ROW_BYTES: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr,
):
    token = tl.program_id(0)
    pid_n = tl.program_id(1)
    G = ROW_BYTES // 16
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < D
    out = tl.zeros([BLOCK_N], dtype=tl.float32)
    # The K chosen experts of this token are summed here, in order, without atomics.
    for slot in range(0, K):
        pair = token * K + slot
        e = tl.load(idx_ptr + pair).to(tl.int64)
        w = tl.load(wt_ptr + pair).to(tl.float32)
        rows = e * D + offs_n
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for kb in range(0, ROW_BYTES, BLOCK_B):
            offs_b = kb + tl.arange(0, BLOCK_B)
            b_mask = offs_b < ROW_BYTES
            h_even = tl.load(h_ptr + pair * I + 2 * offs_b, mask=b_mask, other=0.0).to(tl.float32)
            h_odd = tl.load(h_ptr + pair * I + 2 * offs_b + 1, mask=b_mask, other=0.0).to(tl.float32)
            lo, hi = _load_mxfp4(blk_ptr + rows[:, None] * ROW_BYTES + offs_b[None, :],
                                 scl_ptr + rows[:, None] * G + offs_b[None, :] // 16,
                                 n_mask[:, None] & b_mask[None, :])
            acc += tl.sum(lo * h_even[None, :] + hi * h_odd[None, :], axis=1)
        bias = tl.load(bias_ptr + rows, mask=n_mask, other=0.0).to(tl.float32)
        out += w * (acc + bias)
    tl.store(out_ptr + token * stride_out + offs_n, out.to(out_ptr.dtype.element_ty), mask=n_mask)


# ---------------------------------------------------------------------------- prefill path


@triton.jit
def _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, BLOCK_M: tl.constexpr):
    """This program's tile: its expert, its rows and their mask, and the (token, slot) pair of each row."""
    tile = tl.program_id(0)
    e = tl.load(tile_expert_ptr + tile).to(tl.int64)
    row_start = tl.load(tile_start_ptr + tile)
    row_end = tl.load(tile_end_ptr + tile)
    # Rows of a tile are positions in the expert-sorted list of (token, slot) pairs.
    offs_m = row_start + tl.arange(0, BLOCK_M)
    m_mask = offs_m < row_end
    pair = tl.load(order_ptr + offs_m, mask=m_mask, other=0)
    return e, offs_m, m_mask, pair


@triton.jit
def _gate_up_grouped_kernel(
    x_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, blk_ptr, scl_ptr, bias_ptr, h_ptr,
    I, K, stride_x, alpha, limit,
    ROW_BYTES: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr,
):
    pid_i = tl.program_id(1)
    G = ROW_BYTES // 16
    e, offs_m, m_mask, pair = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, BLOCK_M)
    token = pair // K
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    i_mask = offs_i < I
    gate_rows = e * 2 * I + 2 * offs_i
    up_rows = gate_rows + 1
    acc_g = tl.zeros([BLOCK_M, BLOCK_I], dtype=tl.float32)
    acc_u = tl.zeros([BLOCK_M, BLOCK_I], dtype=tl.float32)
    for kb in range(0, ROW_BYTES, BLOCK_B):
        offs_b = kb + tl.arange(0, BLOCK_B)
        b_mask = offs_b < ROW_BYTES
        x_mask = m_mask[:, None] & b_mask[None, :]
        x_rows = x_ptr + token[:, None] * stride_x + 2 * offs_b[None, :]
        x_even = tl.load(x_rows, mask=x_mask, other=0.0)  # [BLOCK_M, BLOCK_B]
        x_odd = tl.load(x_rows + 1, mask=x_mask, other=0.0)
        w_mask = b_mask[:, None] & i_mask[None, :]  # weights as [BLOCK_B, BLOCK_I]: W1[e].T
        lo, hi = _load_mxfp4(blk_ptr + gate_rows[None, :] * ROW_BYTES + offs_b[:, None],
                             scl_ptr + gate_rows[None, :] * G + offs_b[:, None] // 16, w_mask)
        acc_g += tl.dot(x_even, lo.to(x_even.dtype), input_precision=DOT_PREC)
        acc_g += tl.dot(x_odd, hi.to(x_odd.dtype), input_precision=DOT_PREC)
        lo, hi = _load_mxfp4(blk_ptr + up_rows[None, :] * ROW_BYTES + offs_b[:, None],
                             scl_ptr + up_rows[None, :] * G + offs_b[:, None] // 16, w_mask)
        acc_u += tl.dot(x_even, lo.to(x_even.dtype), input_precision=DOT_PREC)
        acc_u += tl.dot(x_odd, hi.to(x_odd.dtype), input_precision=DOT_PREC)
    gate = acc_g + tl.load(bias_ptr + gate_rows, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    up = acc_u + tl.load(bias_ptr + up_rows, mask=i_mask, other=0.0).to(tl.float32)[None, :]
    h = _gptoss_swiglu(gate, up, alpha, limit)
    tl.store(h_ptr + offs_m[:, None] * I + offs_i[None, :], h.to(h_ptr.dtype.element_ty),
             mask=m_mask[:, None] & i_mask[None, :])


@triton.jit
def _down_grouped_kernel(
    h_ptr, order_ptr, wt_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, blk_ptr, scl_ptr, bias_ptr, y_ptr,
    D, I,
    ROW_BYTES: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr,
):
    pid_n = tl.program_id(1)
    G = ROW_BYTES // 16
    e, offs_m, m_mask, pair = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < D
    rows = e * D + offs_n
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for kb in range(0, ROW_BYTES, BLOCK_B):
        offs_b = kb + tl.arange(0, BLOCK_B)
        b_mask = offs_b < ROW_BYTES
        h_rows = h_ptr + offs_m[:, None] * I + 2 * offs_b[None, :]
        h_mask = m_mask[:, None] & b_mask[None, :]
        h_even = tl.load(h_rows, mask=h_mask, other=0.0)
        h_odd = tl.load(h_rows + 1, mask=h_mask, other=0.0)
        lo, hi = _load_mxfp4(blk_ptr + rows[None, :] * ROW_BYTES + offs_b[:, None],
                             scl_ptr + rows[None, :] * G + offs_b[:, None] // 16,
                             b_mask[:, None] & n_mask[None, :])
        acc += tl.dot(h_even, lo.to(h_even.dtype), input_precision=DOT_PREC)
        acc += tl.dot(h_odd, hi.to(h_odd.dtype), input_precision=DOT_PREC)
    bias = tl.load(bias_ptr + rows, mask=n_mask, other=0.0).to(tl.float32)
    w = tl.load(wt_ptr + pair, mask=m_mask, other=0.0).to(tl.float32)
    y = (acc + bias[None, :]) * w[:, None]
    # Written back in (token, slot) order; the K slots of a token are summed afterwards.
    tl.store(y_ptr + pair[:, None] * D + offs_n[None, :], y, mask=m_mask[:, None] & n_mask[None, :])


# ------------------------------------------------------------------------------- wrappers


def _check_moe_inputs(x, expert_idx, expert_weights, gate_up_blocks, gate_up_scales, gate_up_bias,
                      down_blocks, down_scales, down_bias, check_indices: bool) -> tuple[int, int, int, int, int]:
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES)
    check_tensor("expert_idx", expert_idx, ndim=2, dtypes=(torch.int32, torch.int64))
    check_tensor("expert_weights", expert_weights, ndim=2, dtypes=FLOAT_DTYPES)
    check_tensor("gate_up_blocks", gate_up_blocks, ndim=4, dtypes=(torch.uint8,))
    check_tensor("gate_up_scales", gate_up_scales, ndim=3, dtypes=(torch.uint8,))
    check_tensor("gate_up_bias", gate_up_bias, ndim=2, dtypes=FLOAT_DTYPES)
    check_tensor("down_blocks", down_blocks, ndim=4, dtypes=(torch.uint8,))
    check_tensor("down_scales", down_scales, ndim=3, dtypes=(torch.uint8,))
    check_tensor("down_bias", down_bias, ndim=2, dtypes=FLOAT_DTYPES)
    N, D = x.shape
    K = expert_idx.shape[1]
    E, two_i = gate_up_blocks.shape[0], gate_up_blocks.shape[1]
    I = down_blocks.shape[2] * 32
    if D % 32 or two_i != 2 * I:
        raise ValueError(f"MXFP4 experts need D = x.shape[1] ({D}) a multiple of 32 and gate_up rows (2I = {two_i}) "
                         f"twice the down_proj input I = {I} (down_blocks.shape[2] * 32)")
    check_shape("expert_idx", expert_idx, (N, K))
    check_shape("expert_weights", expert_weights, (N, K))
    check_shape("gate_up_blocks", gate_up_blocks, (E, 2 * I, D // 32, 16))
    check_shape("gate_up_scales", gate_up_scales, (E, 2 * I, D // 32))
    check_shape("gate_up_bias", gate_up_bias, (E, 2 * I))
    check_shape("down_blocks", down_blocks, (E, D, I // 32, 16))
    check_shape("down_scales", down_scales, (E, D, I // 32))
    check_shape("down_bias", down_bias, (E, D))
    # The prefill path keeps a [N * K, I] buffer and writes [N * K, D]; x and the experts are read in place.
    check_index_range("moe", x=extent(x), **{"the N x K x I hidden buffer": N * K * I, "the N x K x D output": N * K * D},
                      gate_up_blocks=extent(gate_up_blocks), down_blocks=extent(down_blocks))
    if check_indices and expert_idx.numel() and bool(((expert_idx < 0) | (expert_idx >= E)).any()):
        raise ValueError(f"expert_idx holds values outside 0..{E - 1} (there are {E} experts)")
    return N, D, K, E, I


def _prepare(x, expert_idx, expert_weights, tensors):
    check_launch(_gate_up_matvec_kernel, "moe", x, expert_idx, expert_weights, *tensors)
    refuse_grad("moe", x=x, expert_weights=expert_weights)
    x = x if x.stride(-1) == 1 else x.contiguous()
    return x, expert_idx.to(torch.int32).contiguous(), expert_weights.contiguous(), [t.detach().contiguous() for t in tensors]


@on_tensors_device
def moe_mxfp4_decode(x: torch.Tensor, expert_idx: torch.Tensor, expert_weights: torch.Tensor,
                     gate_up_blocks: torch.Tensor, gate_up_scales: torch.Tensor, gate_up_bias: torch.Tensor,
                     down_blocks: torch.Tensor, down_scales: torch.Tensor, down_bias: torch.Tensor, *,
                     alpha: float = 1.702, limit: float = 7.0, check_indices: bool = True,
                     block_rows: int | None = None, block_bytes: int | None = None) -> torch.Tensor:
    """The MoE by matrix-vector products per (token, expert) pair; best for a few tokens."""
    N, D, K, E, I = _check_moe_inputs(x, expert_idx, expert_weights, gate_up_blocks, gate_up_scales, gate_up_bias,
                                      down_blocks, down_scales, down_bias, check_indices)
    x, idx, wts, (gu_b, gu_s, gu_bias, dn_b, dn_s, dn_bias) = _prepare(
        x, expert_idx, expert_weights, [gate_up_blocks, gate_up_scales, gate_up_bias, down_blocks, down_scales, down_bias])
    out = new_buffer((N, D), x.dtype, x.device)
    if N == 0:
        return out
    if K == 0:
        return out.zero_()
    # 16 rows a program: enough programs to fill a GPU at batch 1, and registers to spare (96 registers
    # a thread on sm_90, of the 255 a thread may have: python -m gptoss_kernels.aot prints them).
    # The interpreter runs programs one after another, so it takes 64 (4.5x faster at notebook 10's sizes).
    block_i = block_n = tile_size("block_rows", block_rows, 16 if gpu_tiles(x) else 64, least=1)  # no tl.dot
    block_b = tile_size("block_bytes", block_bytes, 128, least=1)
    h = new_buffer((N * K, I), x.dtype, x.device)
    _gate_up_matvec_kernel[(N * K, triton.cdiv(I, block_i))](
        x, idx, gu_b, gu_s, gu_bias, h, I, K, x.stride(0), float(alpha), float(limit),
        ROW_BYTES=D // 2, BLOCK_I=block_i, BLOCK_B=block_b, num_warps=4)
    _down_matvec_kernel[(N, triton.cdiv(D, block_n))](
        h, idx, wts, dn_b, dn_s, dn_bias, out, D, I, K, out.stride(0),
        ROW_BYTES=I // 2, BLOCK_N=block_n, BLOCK_B=block_b, num_warps=4)
    return out


def _expert_tiles(idx: torch.Tensor, E: int, block_m: int):
    """Sort the (token, slot) pairs by expert and cut each expert's run into tiles of block_m rows."""
    flat = idx.flatten()
    order = torch.argsort(flat, stable=True).to(torch.int32)  # sorted position -> pair id
    counts = torch.bincount(flat, minlength=E)
    seg_end = torch.cumsum(counts, 0)
    seg_start = seg_end - counts
    tiles = (counts + block_m - 1) // block_m  # an expert nobody chose gets no tile
    n_tiles = int(tiles.sum())  # one host sync; the prefill path is compute-bound anyway
    experts = torch.arange(E, device=idx.device)
    tile_expert = torch.repeat_interleave(experts, tiles, output_size=n_tiles)
    first_tile = torch.cumsum(tiles, 0) - tiles
    j = torch.arange(n_tiles, device=idx.device) - first_tile[tile_expert]
    tile_start = seg_start[tile_expert] + j * block_m
    tile_end = seg_end[tile_expert]
    as32 = lambda t: t.to(torch.int32).contiguous()  # noqa: E731
    return order, as32(tile_expert), as32(tile_start), as32(tile_end), n_tiles


@on_tensors_device
def moe_mxfp4_prefill(x: torch.Tensor, expert_idx: torch.Tensor, expert_weights: torch.Tensor,
                      gate_up_blocks: torch.Tensor, gate_up_scales: torch.Tensor, gate_up_bias: torch.Tensor,
                      down_blocks: torch.Tensor, down_scales: torch.Tensor, down_bias: torch.Tensor, *,
                      alpha: float = 1.702, limit: float = 7.0, check_indices: bool = True,
                      block_m: int | None = None, block_n: int | None = None,
                      block_bytes: int | None = None) -> torch.Tensor:
    """The MoE as grouped matmuls over tokens sorted by expert; best for many tokens."""
    N, D, K, E, I = _check_moe_inputs(x, expert_idx, expert_weights, gate_up_blocks, gate_up_scales, gate_up_bias,
                                      down_blocks, down_scales, down_bias, check_indices)
    x, idx, wts, (gu_b, gu_s, gu_bias, dn_b, dn_s, dn_bias) = _prepare(
        x, expert_idx, expert_weights, [gate_up_blocks, gate_up_scales, gate_up_bias, down_blocks, down_scales, down_bias])
    if N == 0 or K == 0:
        return torch.zeros((N, D), dtype=x.dtype, device=x.device)
    # A GPU's tiles, in the interpreter too: 9x faster there than tiles of 16 at notebook 10's sizes.
    block_m = tile_size("block_m", block_m, 64)
    block_n = tile_size("block_n", block_n, 64)
    block_b = tile_size("block_bytes", block_bytes, 32)  # bytes of a row per step: 2 * block_b values
    order, tile_expert, tile_start, tile_end, n_tiles = _expert_tiles(idx, E, block_m)
    h = new_buffer((N * K, I), x.dtype, x.device)  # rows in expert-sorted order
    y = new_buffer((N * K, D), torch.float32, x.device)  # rows in (token, slot) order
    _gate_up_grouped_kernel[(n_tiles, triton.cdiv(I, block_n))](
        x, order, tile_expert, tile_start, tile_end, gu_b, gu_s, gu_bias, h, I, K, x.stride(0),
        float(alpha), float(limit), ROW_BYTES=D // 2, DOT_PREC=DOT_PRECISION,
        BLOCK_M=block_m, BLOCK_I=block_n, BLOCK_B=block_b, num_warps=8)
    _down_grouped_kernel[(n_tiles, triton.cdiv(D, block_n))](
        h, order, wts, tile_expert, tile_start, tile_end, dn_b, dn_s, dn_bias, y, D, I,
        ROW_BYTES=I // 2, DOT_PREC=DOT_PRECISION, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_B=block_b, num_warps=8)
    return y.view(N, K, D).sum(dim=1).to(x.dtype)


def moe_mxfp4(x: torch.Tensor, expert_idx: torch.Tensor, expert_weights: torch.Tensor,
              gate_up_blocks: torch.Tensor, gate_up_scales: torch.Tensor, gate_up_bias: torch.Tensor,
              down_blocks: torch.Tensor, down_scales: torch.Tensor, down_bias: torch.Tensor, *,
              alpha: float = 1.702, limit: float = 7.0, check_indices: bool = True) -> torch.Tensor:
    """gpt-oss experts on x [N, D] from MXFP4 weights; the decode path for few tokens, else prefill."""
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES)
    path = moe_mxfp4_decode if x.shape[0] <= DECODE_MAX_TOKENS else moe_mxfp4_prefill
    return path(x, expert_idx, expert_weights, gate_up_blocks, gate_up_scales, gate_up_bias,
                down_blocks, down_scales, down_bias, alpha=alpha, limit=limit, check_indices=check_indices)


@on_tensors_device
def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triton twin of gptoss_edu.mxfp4.dequantize (which defaults to bf16, this to float32): [..., G, 16] to [..., G * 32]."""
    check_tensor("blocks", blocks, dtypes=(torch.uint8,))
    check_tensor("scales", scales, dtypes=(torch.uint8,))
    if not dtype.is_floating_point:  # an int would truncate every weight below 1 to 0
        raise TypeError(f"dtype must be a floating dtype (float32, bfloat16, ...), got {dtype}")
    if blocks.dim() < 2 or blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 blocks must be [..., G, 16] and scales [..., G]; got {tuple(blocks.shape)} "
                         f"and {tuple(scales.shape)}")
    check_launch(_dequant_kernel, "moe.dequantize_mxfp4", blocks, scales)
    if dtype == torch.bfloat16 and _interpreted(_dequant_kernel):  # the inputs are bytes: check_launch cannot see it
        raise RuntimeError("gptoss_kernels.moe.dequantize_mxfp4 cannot write bfloat16 in Triton's interpreter, which "
                           "gets bfloat16 wrong (the smallest weights, at scale bytes 0 and 1, come out 0): on the CPU "
                           "ask for dtype=torch.float32, or use gptoss_edu.mxfp4.dequantize, which writes bfloat16")
    check_index_range("dequantize_mxfp4", **{"the output": 2 * blocks.numel()})  # two weights a byte, 32-bit offsets
    blocks, scales = blocks.contiguous(), scales.contiguous()
    out = new_buffer((*blocks.shape[:-2], blocks.shape[-2] * 32), dtype, blocks.device)
    n = blocks.numel()
    if n:
        _dequant_kernel[(triton.cdiv(n, 1024),)](blocks, scales, out, n, BLOCK=1024)
    return out


def moe_mxfp4_reference(x: torch.Tensor, expert_idx: torch.Tensor, expert_weights: torch.Tensor,
                        gate_up_blocks: torch.Tensor, gate_up_scales: torch.Tensor, gate_up_bias: torch.Tensor,
                        down_blocks: torch.Tensor, down_scales: torch.Tensor, down_bias: torch.Tensor, *,
                        alpha: float = 1.702, limit: float = 7.0) -> torch.Tensor:
    """The same experts in plain PyTorch: dequantize every expert, then loop over the chosen ones, in fp32."""
    from gptoss_edu.mxfp4 import dequantize

    w1 = dequantize(gate_up_blocks, gate_up_scales, torch.float32)  # [E, 2I, D]
    w2 = dequantize(down_blocks, down_scales, torch.float32)  # [E, D, I]
    xf = x.float()
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in expert_idx.unique().tolist():
        token, slot = (expert_idx == e).nonzero(as_tuple=True)  # who chose expert e, and as which of its K
        gate_up = xf[token] @ w1[e].T + gate_up_bias[e].float()
        gate, up = gate_up[:, 0::2], gate_up[:, 1::2]
        gate = gate.clamp(max=limit)
        up = up.clamp(min=-limit, max=limit)
        h = (up + 1) * (gate * torch.sigmoid(alpha * gate))
        y = h @ w2[e].T + down_bias[e].float()
        out.index_add_(0, token, y * expert_weights[token, slot].float()[:, None])
    return out.to(x.dtype)
