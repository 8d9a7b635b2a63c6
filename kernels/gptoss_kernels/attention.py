"""Attention for gpt-oss in Triton: causal, sliding window, learned sinks, grouped-query heads.

Two kernels share one idea, the online softmax: walk over the keys a tile at a time, keep for
every query row the running maximum ``m``, the running denominator ``l`` and the running
weighted sum of values ``acc``, and rescale them whenever the maximum grows (``_attend_tile``,
one tile's step, which both kernels call). A sink is one more
logit in every row that has no value attached: starting with ``m = sink`` and ``l = 1``
(that is, ``exp(sink - m)``) folds it into the denominator for free (with several decode splits,
the sink is added once, where the splits are combined).

- ``attention_prefill``: flash-attention style, one program per (batch row and query head, block
  of queries).
- ``attention_decode``: a few queries over a long KV cache. One program per (batch row and KV
  head, split of the keys) handles all the query heads that share that KV head, so each key is
  read once; the splits of a long cache run in parallel and a small kernel combines them: the
  largest ``m`` of the splits (and the sink) is the common maximum, and each split's ``l`` and
  ``acc`` are scaled by ``exp2(m_split - m)`` before they are summed.

Scores are computed in base 2 (``exp2`` is the fast instruction): ``s * log2(e)``.
"""

import functools
import math
import numbers

import torch

from ._common import (AOT_TARGET, DOT_PRECISION, FLOAT_DTYPES, check_index_range, check_launch, check_tensor, extent,
                      new_buffer, on_tensors_device, refuse_grad, tile_size, tl, triton)

LOG2E = math.log2(math.e)
# attention() uses the decode kernel while the query rows per KV head (queries x heads per KV head)
# stay this few: 16 new tokens for gpt-oss's 8 query heads per KV head, in bf16 or fp16.
DECODE_MAX_ROWS = 128
# Keys (and queries) a tile: a GPU's size, and the interpreter's too, which runs a tile as numpy
# arrays and so takes fewer, larger tiles faster (4x for 256 tokens of 64-wide heads, than at 32).
TILE = 64


def decode_max_rows(dtype: torch.dtype, head_dim: int = 64) -> int:
    """The most query rows per KV head the decode kernel takes, for activations of ``dtype`` and heads of ``head_dim``."""
    # The decode kernel holds all its rows in one tile. At 128 rows and head_dim 64 that tile needs
    # 64 KB of shared memory in bf16 but 128 KB in float32 (python -m gptoss_kernels.aot --dtype fp32),
    # more than a consumer GPU has (99 KB on sm_86 and sm_89). Half the rows take 96 KB in float32.
    # Wider heads (a head_dim-128 model) take proportionally fewer rows.
    rows = DECODE_MAX_ROWS if dtype.itemsize <= 2 else DECODE_MAX_ROWS // 2
    return max(16, rows * 64 // max(64, _block_d(head_dim)))


@triton.jit
def _attend_tile(q, q_pos, k_base, v_base, offs_n, n_mask, offs_d, d_mask, window, qk_scale,
                 m_i, l_i, acc, skt, skd, svt, svd, DOT_PREC: tl.constexpr):
    """One tile of keys in the online softmax: scores, causal/window mask, rescale; the new (m, l, acc)."""
    kt = tl.load(k_base + offs_n[None, :] * skt + offs_d[:, None] * skd,
                 mask=n_mask[None, :] & d_mask[:, None], other=0.0)  # [BLOCK_D, BLOCK_N]
    s = tl.dot(q, kt, input_precision=DOT_PREC) * qk_scale
    delta = q_pos[:, None] - offs_n[None, :]
    allowed = (delta >= 0) & (delta < window) & n_mask[None, :]
    s = tl.where(allowed, s, float("-inf"))

    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    # A row that has seen no key yet keeps m = -inf; subtracting 0 instead avoids -inf - -inf.
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    rescale = tl.exp2(m_i - m_safe)  # what was summed under the old maximum
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * rescale + tl.sum(p, axis=1)
    v = tl.load(v_base + offs_n[:, None] * svt + offs_d[None, :] * svd,
                mask=n_mask[:, None] & d_mask[None, :], other=0.0)  # [BLOCK_N, BLOCK_D]
    acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
    return m_new, l_i, acc


# Lengths and positions change every decode step: compiling a variant per divisibility would stall.
@triton.jit(do_not_specialize=["Tq", "Tk", "q_start", "window"])
def _attn_prefill_kernel(
    q_ptr, k_ptr, v_ptr, sink_ptr, o_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, sob, soh, sot, sod,
    Hq, Tq, Tk, D, q_start, window, qk_scale,
    GROUPS: tl.constexpr, HAS_SINKS: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # (batch, head) pairs on axis 0, which may pass CUDA's 65,535 programs of axes 1 and 2 (a batch of
    # 1,024 prompts has 65,536 with 64 heads); blocks of queries on axis 1 (2,048 at 131,072 tokens).
    bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = bh // Hq
    h = bh % Hq
    hkv = h // GROUPS  # grouped-query attention: GROUPS query heads read one KV head

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < D  # head_dim need not be a power of two
    q_pos = q_start + offs_m
    q = tl.load(q_ptr + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :] * sqd,
                mask=(offs_m < Tq)[:, None] & d_mask[None, :], other=0.0)

    if HAS_SINKS:
        sink = tl.load(sink_ptr + h).to(tl.float32) * 1.4426950408889634  # log2(e)
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + sink
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    else:
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # Only the keys some query of this block may see: from the window start of the first query
    # up to the last query itself. The start is rounded down to a whole tile, so that every block's
    # tiles begin at multiples of BLOCK_N as in full attention; the few extra keys are masked.
    first_pos = q_start + pid_m * BLOCK_M
    last_pos = tl.minimum(first_pos + BLOCK_M, q_start + Tq) - 1
    hi = tl.minimum(last_pos + 1, Tk)
    lo = tl.maximum(first_pos - window + 1, 0)
    lo = (lo // BLOCK_N) * BLOCK_N

    k_base = k_ptr + b * skb + hkv * skh
    v_base = v_ptr + b * svb + hkv * svh
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        # Keys past the last query are never loaded: a preallocated cache may hold anything there (NaN * 0 is NaN).
        m_i, l_i, acc = _attend_tile(q, q_pos, k_base, v_base, offs_n, offs_n < hi, offs_d, d_mask, window,
                                     qk_scale, m_i, l_i, acc, skt, skd, svt, svd, DOT_PREC)

    # Every real row saw at least its own key (l > 0); padding rows past Tq divide by 1, unstored.
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(o_ptr + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :] * sod,
             out.to(o_ptr.dtype.element_ty), mask=(offs_m < Tq)[:, None] & d_mask[None, :])


@triton.jit(do_not_specialize=["Tq", "Tk", "q_start", "window", "kv_lo", "kv_hi", "chunk", "n_splits"])
def _attn_decode_kernel(
    q_ptr, k_ptr, v_ptr, sink_ptr, o_ptr, m_ptr, l_ptr, acc_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, sob, soh, sot, sod,
    Hkv, Tq, Tk, D, q_start, window, qk_scale, kv_lo, kv_hi, chunk, n_splits,
    GROUPS: tl.constexpr, FOLD_SINK: tl.constexpr, FINAL: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bk = tl.program_id(0)
    split = tl.program_id(1)
    b = bk // Hkv
    hkv = bk % Hkv

    # Row r of this program is query t = r % Tq of query head hkv * GROUPS + r // Tq.
    R = GROUPS * Tq
    offs_r = tl.arange(0, BLOCK_M)
    r_mask = offs_r < R
    g = offs_r // Tq
    t = offs_r % Tq
    h = hkv * GROUPS + g
    q_pos = q_start + t
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < D
    q = tl.load(q_ptr + b * sqb + h[:, None] * sqh + t[:, None] * sqt + offs_d[None, :] * sqd,
                mask=r_mask[:, None] & d_mask[None, :], other=0.0)

    if FOLD_SINK:
        sink = tl.load(sink_ptr + h, mask=r_mask, other=0.0).to(tl.float32) * 1.4426950408889634  # log2(e)
        m_i = sink
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32) + 1.0
    else:
        # With several splits the sink is added once, when the splits are combined.
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    start = kv_lo + split * chunk
    end = tl.minimum(start + chunk, kv_hi)
    k_base = k_ptr + b * skb + hkv * skh
    v_base = v_ptr + b * svb + hkv * svh
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        m_i, l_i, acc = _attend_tile(q, q_pos, k_base, v_base, offs_n, offs_n < end, offs_d, d_mask, window,
                                     qk_scale, m_i, l_i, acc, skt, skd, svt, svd, DOT_PREC)

    if FINAL:
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # padding rows only
        tl.store(o_ptr + b * sob + h[:, None] * soh + t[:, None] * sot + offs_d[None, :] * sod,
                 out.to(o_ptr.dtype.element_ty), mask=r_mask[:, None] & d_mask[None, :])
    else:
        # Partial state of this split, laid out [B * Hkv, n_splits, R(, D)].
        row = (bk * n_splits + split) * R + offs_r
        tl.store(m_ptr + row, m_i, mask=r_mask)
        tl.store(l_ptr + row, l_i, mask=r_mask)
        tl.store(acc_ptr + row[:, None] * D + offs_d[None, :], acc, mask=r_mask[:, None] & d_mask[None, :])


@triton.jit(do_not_specialize=["Tq", "n_splits"])
def _attn_combine_kernel(
    sink_ptr, o_ptr, m_ptr, l_ptr, acc_ptr, sob, soh, sot, sod, Hkv, Tq, D, n_splits,
    GROUPS: tl.constexpr, HAS_SINKS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bk = tl.program_id(0)
    r = tl.program_id(1)  # one row: query t of query head hkv * GROUPS + g
    b = bk // Hkv
    hkv = bk % Hkv
    g = r // Tq
    t = r % Tq
    h = hkv * GROUPS + g
    R = GROUPS * Tq

    offs_s = tl.arange(0, BLOCK_S)
    s_mask = offs_s < n_splits
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < D
    rows = (bk * n_splits + offs_s) * R + r
    m_s = tl.load(m_ptr + rows, mask=s_mask, other=float("-inf"))
    l_s = tl.load(l_ptr + rows, mask=s_mask, other=0.0)
    acc_s = tl.load(acc_ptr + rows[:, None] * D + offs_d[None, :], mask=s_mask[:, None] & d_mask[None, :], other=0.0)

    m = tl.max(m_s, axis=0)
    if HAS_SINKS:
        sink = tl.load(sink_ptr + h).to(tl.float32) * 1.4426950408889634  # log2(e)
        m = tl.maximum(m, sink)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(m_s - m_safe)  # a split that saw no key has m = -inf and weight 0
    l_tot = tl.sum(l_s * w, axis=0)
    if HAS_SINKS:
        l_tot += tl.exp2(sink - m_safe)
    out = tl.sum(acc_s * w[:, None], axis=0) / l_tot
    tl.store(o_ptr + b * sob + h * soh + t * sot + offs_d * sod, out.to(o_ptr.dtype.element_ty), mask=d_mask)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor | None,
                  window: int, q_start: int) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, ndim=4, dtypes=FLOAT_DTYPES)
    B, Hq, Tq, D = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape [B, Hkv, Tk, D], got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k [B, Hkv, Tk, D] {tuple(k.shape)} does not match q [B, Hq, Tq, D] {tuple(q.shape)} in B or D")
    if k.shape[1] == 0 or Hq % k.shape[1]:
        raise ValueError(f"the query heads ({Hq}) must be a multiple of the KV heads ({k.shape[1]})")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if sinks is not None:
        check_tensor("sinks", sinks, ndim=1, dtypes=FLOAT_DTYPES)
        if sinks.shape[0] != Hq:
            raise ValueError(f"sinks must have one logit per query head ({Hq}), got shape {tuple(sinks.shape)}")
    for name, value in (("window", window), ("q_start", q_start)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # 5.0 would fail deep in Triton
            raise TypeError(f"{name} must be a whole number (an int), got {value!r} ({type(value).__name__})")
    if window < 0:
        raise ValueError(f"window must be >= 0 (0 = no window), got {window}")
    check_index_range("attention", q=max(extent(q), q.numel()), k=extent(k), v=extent(v))  # numel: the output
    if q_start < 0 or q_start + Tq > k.shape[2]:
        raise ValueError(f"the queries sit at positions q_start..q_start+Tq-1 = {q_start}..{q_start + Tq - 1}, "
                         f"which must be keys too (Tk = {k.shape[2]}): need 0 <= q_start <= Tk - Tq")


def _as_float(name: str, value: float) -> float:
    """``value`` as a Python float (a 0-d tensor or numpy float would reach the kernel as another type)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)) or (
            isinstance(value, torch.Tensor) and value.numel() != 1):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _effective_window(window: int, q_start: int, Tq: int) -> int:
    # "No window" becomes a window wider than any distance, so the kernels need no branch.
    return window if window > 0 else q_start + Tq + 1


def _block_d(D: int) -> int:
    return max(16, triton.next_power_of_2(D))  # tl.dot needs every dimension >= 16


@on_tensors_device
def attention_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
                      sinks: torch.Tensor | None = None, window: int = 0, q_start: int = 0,
                      block_m: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """Flash-attention kernel: q [B, Hq, Tq, D] over k, v [B, Hkv, Tk, D] -> [B, Hq, Tq, D]."""
    _check_inputs(q, k, v, sinks, window, q_start)
    window, q_start, scale = int(window), int(q_start), _as_float("scale", scale)  # numpy's ints fail in Triton
    check_launch(_attn_prefill_kernel, "attention", q, k, v, *([sinks] if sinks is not None else []))
    refuse_grad("attention", q=q, k=k, v=v)
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    out = new_buffer((B, Hq, Tq, D), q.dtype, q.device)
    if out.numel() == 0:
        return out
    block_d = _block_d(D)
    block_m = tile_size("block_m", block_m, TILE)
    block_n = tile_size("block_n", block_n, TILE)
    sink_arg = sinks.detach().contiguous() if sinks is not None else q  # read as sink_ptr + head
    grid = (B * Hq, triton.cdiv(Tq, block_m))
    _attn_prefill_kernel[grid](
        q, k, v, sink_arg, out, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hq, Tq, Tk, D, q_start, _effective_window(window, q_start, Tq), scale * LOG2E,
        GROUPS=Hq // Hkv, HAS_SINKS=sinks is not None, DOT_PREC=DOT_PRECISION,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4,
        num_stages=1 if q.dtype.itemsize > 2 and block_d >= 128 else 2,  # float32 tiles of wide heads: one stage fits
    )
    return out


def _num_sms(device: torch.device) -> int:
    if AOT_TARGET:
        return AOT_TARGET["sms"]
    return _device_sms(device)


@functools.lru_cache(maxsize=None)
def _device_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 2


def _most_splits(device: torch.device, batch_kv_heads: int) -> int:
    """Enough programs to fill the GPU twice over: the most splits a long context gets."""
    return max(1, 2 * _num_sms(device) // batch_kv_heads)


def _default_splits(device: torch.device, batch_kv_heads: int, n_keys: int) -> int:
    """Enough programs to fill the GPU twice over, but at least 256 keys per split."""
    return max(1, min(_most_splits(device, batch_kv_heads), triton.cdiv(n_keys, 256)))


def _split_state(q: torch.Tensor, programs: int, num_splits: int, R: int, D: int) -> tuple[torch.Tensor, ...]:
    """Buffers for each split's partial (m, l, acc); one split writes its result directly, so q stands in."""
    if num_splits == 1:
        return q, q, q  # unused
    # The kernels address the partial sums with 32-bit offsets too; many splits (num_splits given by the
    # caller) over a large batch could pass 2**31 where q, k and v do not.
    spans = {f"the buffer of {num_splits:,} splits' partial sums": programs * num_splits * R * D}
    check_index_range("attention", **spans)
    return (new_buffer((programs, num_splits, R), torch.float32, q.device),
            new_buffer((programs, num_splits, R), torch.float32, q.device),
            new_buffer((programs, num_splits, R, D), torch.float32, q.device))


def _combine_splits(sink_arg: torch.Tensor, has_sinks: bool, out: torch.Tensor, parts: tuple[torch.Tensor, ...],
                    Hkv: int, groups: int, num_splits: int, block_d: int) -> None:
    """Merge the splits' partial softmax states into ``out`` (and add the sink once)."""
    B, _, Tq, D = out.shape
    # BLOCK_S for the most splits this GPU's contexts get, not this context's: the split count grows
    # with the context, and a BLOCK_S that followed it would compile the kernel again mid-generation
    # (at 512, 1k, 2k and 4k keys), a stall each time on the path without a CUDA graph.
    most = max(num_splits, _most_splits(out.device, B * Hkv))
    _attn_combine_kernel[(B * Hkv, groups * Tq)](
        sink_arg, out, *parts, *out.stride(), Hkv, Tq, D, num_splits,
        GROUPS=groups, HAS_SINKS=has_sinks,
        BLOCK_S=triton.next_power_of_2(most), BLOCK_D=block_d, num_warps=1,
    )


def _decode_tile_rows(groups: int, Tq: int, name: str, dtype: torch.dtype, head_dim: int) -> int:
    """BLOCK_M of the decode kernel, which holds every query row of a KV head in one tile; refuses too many."""
    rows, most = groups * Tq, decode_max_rows(dtype, head_dim)
    if rows > most:  # past this the tile outgrows a GPU's registers and shared memory
        raise ValueError(f"{name} holds all {rows} query rows of a KV head ({groups} query heads x {Tq} tokens) in "
                         f"one tile, and takes at most {most} ({str(dtype).removeprefix('torch.')}, head_dim "
                         f"{head_dim}): call attention(), which gives more to attention_prefill")
    return max(16, triton.next_power_of_2(rows))


@on_tensors_device
def attention_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
                     sinks: torch.Tensor | None = None, window: int = 0, q_start: int = 0,
                     num_splits: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """Split-K decode kernel for a few queries over a long cache; same arguments and result as attention.

    ``num_splits`` is an upper bound: the keys are cut into that many chunks of whole ``block_n``
    tiles, so a short range runs in fewer (50 keys in tiles of 64: one split, whatever was asked).
    """
    _check_inputs(q, k, v, sinks, window, q_start)
    window, q_start, scale = int(window), int(q_start), _as_float("scale", scale)  # numpy's ints fail in Triton
    check_launch(_attn_decode_kernel, "attention", q, k, v, *([sinks] if sinks is not None else []))
    refuse_grad("attention", q=q, k=k, v=v)
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    groups = Hq // Hkv
    out = new_buffer((B, Hq, Tq, D), q.dtype, q.device)
    if out.numel() == 0:
        return out
    span = _effective_window(window, q_start, Tq)
    # Keys any of the queries can see: from the first query's window start to the last query.
    kv_lo = max(0, q_start - span + 1)
    kv_hi = q_start + Tq
    n_keys = kv_hi - kv_lo
    block_n = tile_size("block_n", block_n, TILE)
    if num_splits is None:
        num_splits = _default_splits(q.device, B * Hkv, n_keys)
    chunk = triton.cdiv(triton.cdiv(n_keys, max(1, num_splits)), block_n) * block_n
    num_splits = triton.cdiv(n_keys, chunk)
    R = groups * Tq
    block_m = _decode_tile_rows(groups, Tq, "attention_decode", q.dtype, D)
    block_d = _block_d(D)
    final = num_splits == 1
    sink_arg = sinks.detach().contiguous() if sinks is not None else q  # read as sink_ptr + head
    parts = _split_state(q, B * Hkv, num_splits, R, D)
    _attn_decode_kernel[(B * Hkv, num_splits)](
        q, k, v, sink_arg, out, *parts,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hkv, Tq, Tk, D, q_start, span, scale * LOG2E, kv_lo, kv_hi, chunk, num_splits,
        GROUPS=groups, FOLD_SINK=final and sinks is not None, FINAL=final, DOT_PREC=DOT_PRECISION,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4,
    )
    if not final:
        _combine_splits(sink_arg, sinks is not None, out, parts, Hkv, groups, num_splits, block_d)
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
              sinks: torch.Tensor | None = None, window: int = 0, q_start: int = 0) -> torch.Tensor:
    """Causal attention of q [B, Hq, Tq, D] (query i at position q_start + i) over k, v [B, Hkv, Tk, D]."""
    _check_inputs(q, k, v, sinks, window, q_start)
    window, q_start, scale = int(window), int(q_start), _as_float("scale", scale)  # numpy's ints fail in Triton
    rows = q.shape[1] // k.shape[1] * q.shape[2]  # query rows per KV head
    kernel = attention_decode if rows <= decode_max_rows(q.dtype, q.shape[3]) else attention_prefill
    return kernel(q, k, v, scale=scale, sinks=sinks, window=window, q_start=q_start)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
                        sinks: torch.Tensor | None = None, window: int = 0, q_start: int = 0) -> torch.Tensor:
    """The same attention in plain PyTorch, in float32, materialising the whole score matrix."""
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    k = k.float().repeat_interleave(Hq // Hkv, dim=1)  # query head h reads KV head h // groups
    v = v.float().repeat_interleave(Hq // Hkv, dim=1)
    scores = (q.float() @ k.transpose(-1, -2)) * scale  # [B, Hq, Tq, Tk]
    q_pos = torch.arange(q_start, q_start + Tq, device=q.device)[:, None]
    k_pos = torch.arange(Tk, device=q.device)[None, :]
    allowed = k_pos <= q_pos
    if window > 0:
        allowed &= q_pos - k_pos < window  # the window counts the query's own key
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        sink_col = sinks.float().view(1, Hq, 1, 1).expand(B, Hq, Tq, 1)
        probs = torch.softmax(torch.cat((scores, sink_col), dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1)
    return (probs @ v).to(q.dtype)


# ------------------------------------------------- decode at a position held on the device
#
# attention_decode takes the query position as a Python int and slices the keys to it, so every
# step has other launch arguments. For a CUDA graph, which replays the very same launches, the
# position must instead live in device memory: this kernel reads it there, derives the key range
# from it, then runs the decode kernel's own body (Triton inlines the call), so the math is the same.


# The cache's length (and with it the splits, and a full layer's window) changes with every chat turn's
# cache: a variant per divisibility would compile again during some turns' graph capture.
@triton.jit(do_not_specialize=["Tq", "Tk", "window", "n_splits"])
def _attn_decode_at_kernel(
    pos_ptr, q_ptr, k_ptr, v_ptr, sink_ptr, o_ptr, m_ptr, l_ptr, acc_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, sob, soh, sot, sod,
    Hkv, Tq, Tk, D, window, qk_scale, n_splits,
    GROUPS: tl.constexpr, FOLD_SINK: tl.constexpr, FINAL: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    q_start = tl.load(pos_ptr).to(tl.int32)
    kv_lo = tl.maximum(q_start - window + 1, 0)
    kv_hi = tl.minimum(q_start + Tq, Tk)  # never read past the cache, whatever the position says
    # Split the keys this position can see (not the whole cache) evenly, in whole tiles.
    chunk = tl.cdiv(tl.cdiv(kv_hi - kv_lo, n_splits), BLOCK_N) * BLOCK_N
    _attn_decode_kernel(
        q_ptr, k_ptr, v_ptr, sink_ptr, o_ptr, m_ptr, l_ptr, acc_ptr,
        sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, sob, soh, sot, sod,
        Hkv, Tq, Tk, D, q_start, window, qk_scale, kv_lo, kv_hi, chunk, n_splits,
        GROUPS=GROUPS, FOLD_SINK=FOLD_SINK, FINAL=FINAL, DOT_PREC=DOT_PREC,
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
    )


@on_tensors_device
def attention_decode_at(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, position: torch.Tensor, *,
                        scale: float, sinks: torch.Tensor | None = None, window: int = 0,
                        num_splits: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """attention_decode with q_start read on the device from ``position`` [1]; k, v [B, Hkv, Tk, D] the whole cache.

    ``position + Tq`` must not pass Tk. That is the caller's to keep (gptoss_edu.static_decode's
    CUDAGraphDecoder checks it on the host): checking it here would read ``position`` back from the
    device and stall every step.
    """
    # Keys from position + Tq on are never read, so the cache past the filled part may hold anything.
    # The launches depend only on the shapes, never on the position: a CUDA graph can replay them.
    _check_inputs(q, k, v, sinks, window, 0)
    window, scale = int(window), _as_float("scale", scale)  # numpy's ints fail in Triton, a tensor is a pointer
    check_tensor("position", position, ndim=1, dtypes=(torch.int32, torch.int64))
    if position.numel() != 1:
        raise ValueError(f"position must hold one position (shared by the batch), got shape {tuple(position.shape)}")
    check_launch(_attn_decode_at_kernel, "attention", q, k, v, position, *([sinks] if sinks is not None else []))
    refuse_grad("attention", q=q, k=k, v=v)
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    groups = Hq // Hkv
    out = new_buffer((B, Hq, Tq, D), q.dtype, q.device)
    if out.numel() == 0:
        return out
    span = window if window > 0 else Tk + 1  # wider than any distance in the cache
    block_n = tile_size("block_n", block_n, TILE)
    most_keys = min(Tk, span + Tq - 1)  # the most keys any position can see
    if num_splits is None:  # as attention_decode, for the longest key range this cache allows
        num_splits = _default_splits(q.device, B * Hkv, most_keys)
    num_splits = max(1, min(num_splits, triton.cdiv(most_keys, block_n)))  # no split is always empty
    R = groups * Tq
    block_m = _decode_tile_rows(groups, Tq, "attention_decode_at", q.dtype, D)
    block_d = _block_d(D)
    final = num_splits == 1
    sink_arg = sinks.detach().contiguous() if sinks is not None else q  # read as sink_ptr + head
    parts = _split_state(q, B * Hkv, num_splits, R, D)
    _attn_decode_at_kernel[(B * Hkv, num_splits)](
        position, q, k, v, sink_arg, out, *parts,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hkv, Tq, Tk, D, span, scale * LOG2E, num_splits,
        GROUPS=groups, FOLD_SINK=final and sinks is not None, FINAL=final, DOT_PREC=DOT_PRECISION,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4,
    )
    if not final:
        # A split that the position leaves without keys stored m = -inf, l = 0: the combine weighs it 0.
        _combine_splits(sink_arg, sinks is not None, out, parts, Hkv, groups, num_splits, block_d)
    return out
