"""Every Triton kernel of gptoss_kernels against its PyTorch reference.

Without a CUDA GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set below
before anything imports the kernels) in float32, on small shapes so the file stays quick.
With a GPU the same tests run compiled, in bfloat16 (plus a few gpt-oss-20b sized cases),
with the looser tolerances that bf16 rounding needs. Every buffer a kernel wrapper allocates
is filled with NaN first (GPTOSS_KERNELS_POISON=1), so an element no program writes fails.

Tolerances (stated per dtype below): float32 results differ from the references only by the
order of fp32 sums (a few 1e-7 relative); bf16 results by bf16 rounding of the inputs to
tl.dot, the probabilities, the SwiGLU output and the output itself (about 2^-8 relative).
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from gptoss_edu.env import triton_gpu

ON_GPU = triton_gpu()  # a GPU Triton supports; an older one counts as none


# tests/conftest.py sets TRITON_INTERPRET=1 (before any import of Triton) when there is no GPU, and
# GPTOSS_KERNELS_POISON=1.

import dataclasses  # noqa: E402
import importlib  # noqa: E402

import pytest  # noqa: E402

import gptoss_edu as g  # noqa: E402
import gptoss_kernels  # noqa: E402
from gptoss_edu import mxfp4  # noqa: E402
from gptoss_kernels.attention import attention, attention_decode, attention_prefill, attention_reference  # noqa: E402
from gptoss_kernels.moe import (dequantize_mxfp4, moe_mxfp4, moe_mxfp4_decode, moe_mxfp4_prefill,  # noqa: E402
                                moe_mxfp4_reference)
from gptoss_kernels.rmsnorm import rmsnorm, rmsnorm_reference  # noqa: E402
from gptoss_kernels.vector_add import vector_add, vector_add_reference  # noqa: E402

# The package exports the functions under the modules' names, so fetch the modules themselves.
attn_mod = importlib.import_module("gptoss_kernels.attention")
moe_mod = importlib.import_module("gptoss_kernels.moe")
common = importlib.import_module("gptoss_kernels._common")

DEVICE = "cuda" if ON_GPU else "cpu"
DTYPE = torch.bfloat16 if ON_GPU else torch.float32


# In the interpreter, no kernel may load or store outside the tensors of its launch (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_stray_memory")
# (rtol, atol) per kernel and dtype; MoE's atol is relative to the largest output.
TOL = {
    "rmsnorm": {torch.float32: (1e-5, 1e-6), torch.bfloat16: (1.6e-2, 1e-2)},
    "attention": {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)},
    "moe": {torch.float32: (1e-5, 1e-5), torch.bfloat16: (3e-2, 3e-2)},
}
# Largest error over the whole output, as a fraction of its size (relative L2). Element by element an
# absolute tolerance can swallow a whole output: attention over 8k keys averages its values to about
# 0.02, under bf16's atol. Emulated bf16 kernels come to about 0.0023 (test_the_gpu_*_cases_can_fail).
REL_L2 = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rand(*shape: int, seed: int, scale: float = 1.0, dtype: torch.dtype = DTYPE) -> torch.Tensor:
    """Seeded N(0, scale^2) values made on the CPU (same on every machine), moved to DEVICE."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * scale).to(device=DEVICE, dtype=dtype)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, kernel: str, scale_atol: bool = False) -> None:
    rtol, atol = TOL[kernel][expected.dtype]
    if scale_atol:
        atol *= 1 + expected.float().abs().max().item()
    assert not actual.isnan().any(), "the kernel left NaN (unwritten, poisoned) elements"
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)
    err, size = rel_l2(actual, expected), REL_L2[expected.dtype]
    assert err <= size, f"{kernel}: relative L2 error {err:.3g} is over {size:g}"


def rel_l2(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64 (0 when both are zero)."""
    diff = (actual.double() - expected.double()).norm().item()
    return diff / expected.double().norm().item() if diff else 0.0


def test_interpreter_is_on_without_gpu() -> None:
    assert gptoss_kernels.triton_available()
    assert gptoss_kernels.interpreter_mode() == (not ON_GPU)
    gptoss_kernels.require_triton()  # a GPU or the interpreter: the kernels can run here


@pytest.mark.parametrize("value", ["1", " 1", "true", "TRUE", "y", "Y", "yes", "on", "0", "no", "", "2", "t"])
def test_interpreter_mode_reads_triton_interpret_as_triton_does(monkeypatch, value):
    # It picks the messages and the cache folder: " 1" (Triton compiles) or "y" (Triton interprets) read
    # otherwise would send a learner to the wrong fix. The fallback, for a Triton without knobs, agrees too.
    from triton import knobs

    monkeypatch.setenv("TRITON_INTERPRET", value)
    triton_says = bool(knobs.runtime.interpret)
    assert gptoss_kernels.interpreter_mode() is triton_says, repr(value)
    monkeypatch.setattr(common, "triton_available", lambda: False)
    assert gptoss_kernels.interpreter_mode() is triton_says, repr(value)


# ---------------------------------------------------------------------------- vector add


@pytest.mark.parametrize("n, block", [(1, 16), (1000, 256), (4097, 1024)])
def test_vector_add(n: int, block: int) -> None:
    x, y = rand(n, seed=1), rand(n, seed=2)
    out = vector_add(x, y, block=block)
    assert torch.equal(out, vector_add_reference(x, y))  # one addition per element: exact


# ------------------------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("shape", [(48,), (3, 48), (2, 5, 80), (7, 256), (4, 180), (2, 3, 4, 33)])
@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_rmsnorm(shape: tuple[int, ...], eps: float) -> None:
    x = rand(*shape, seed=3, scale=3.0) + 0.5
    w = 1 + rand(shape[-1], seed=4, scale=0.2)
    assert_close(rmsnorm(x, w, eps), rmsnorm_reference(x, w, eps), "rmsnorm")


def test_rmsnorm_strided_rows_and_columns() -> None:
    full = rand(6, 100, seed=5)
    x = full[:, :80]  # rows 100 apart: passed to the kernel as a stride
    w = rand(80, seed=6)
    assert_close(rmsnorm(x, w, 1e-5), rmsnorm_reference(x, w, 1e-5), "rmsnorm")
    xt = rand(80, 6, seed=7).T  # last dim not contiguous: copied first
    assert_close(rmsnorm(xt, w, 1e-5), rmsnorm_reference(xt, w, 1e-5), "rmsnorm")
    # A weight that is a strided view (or a broadcast of one value) is read by index too.
    for weight in (rand(160, seed=8)[::2], torch.full((1,), 2.0, device=DEVICE, dtype=DTYPE).expand(80)):
        assert_close(rmsnorm(x, weight, 1e-5), rmsnorm_reference(x, weight, 1e-5), "rmsnorm")


def test_rmsnorm_real_width() -> None:
    x = rand(3, 2880, seed=8)  # gpt-oss's width: 2880 is not a power of two
    w = rand(2880, seed=9)
    assert_close(rmsnorm(x, w, 1e-5), rmsnorm_reference(x, w, 1e-5), "rmsnorm")


@pytest.mark.parametrize("D", [33, 100, 2880])
@pytest.mark.parametrize("scale, eps", [(1e-3, 1e-5), (3e-3, 1e-6), (0.0, 1e-5)])
def test_rmsnorm_where_eps_matters(D: int, scale: float, eps: float) -> None:
    # mean(x^2) close to eps (or 0): leaving eps out, or adding it outside the square root, shows here.
    x = rand(3, D, seed=D, scale=scale)
    w = 1 + rand(D, seed=D + 1, scale=0.2)
    assert_close(rmsnorm(x, w, eps), rmsnorm_reference(x, w, eps), "rmsnorm")


def test_rmsnorm_sums_half_precision_in_fp32() -> None:
    # |x| ~ 30 over 2880 columns: a float16 sum of squares (~2.6e6) would overflow (max 65504).
    # float16 runs in the interpreter too (bfloat16 does not); tolerance: float16 rounding of the output.
    x = rand(2, 2880, seed=12, scale=30.0, dtype=torch.float16)
    w = 1 + rand(2880, seed=13, scale=0.2, dtype=torch.float16)
    out = rmsnorm(x, w, 1e-5)
    assert out.dtype == torch.float16 and out.isfinite().all()
    torch.testing.assert_close(out.float(), rmsnorm_reference(x, w, 1e-5).float(), rtol=2e-3, atol=2e-3)


def test_rmsnorm_bad_weight() -> None:
    with pytest.raises(ValueError, match="weight"):
        rmsnorm(rand(2, 48, seed=0), rand(47, seed=0), 1e-5)
    with pytest.raises(ValueError, match="x must have at least one dimension"):
        rmsnorm(torch.tensor(3.0), torch.ones(1), 1e-5)


def test_vector_add_and_dequantize_refuse_dtypes_they_would_get_silently_wrong() -> None:
    t = torch.tensor([True, True, False])
    with pytest.raises(TypeError, match="vector_add adds numbers"):
        vector_add(t, t)  # True + True wraps to False in the kernel; torch says True
    blocks, scales = mxfp4.quantize(torch.randn(2, 64, generator=torch.Generator().manual_seed(1)))
    for dtype in (torch.int32, torch.bool):
        with pytest.raises(TypeError, match=f"dtype must be a floating dtype .* got {dtype}"):
            dequantize_mxfp4(blocks, scales, dtype=dtype)


def test_vector_add_block_must_be_a_power_of_two() -> None:
    x = rand(10, seed=0)
    for bad in (0, -4, 24):
        with pytest.raises(ValueError, match=f"block must be a power of two .*got {bad}"):
            vector_add(x, x, block=bad)


# ----------------------------------------------------------------------------- attention

# (B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks)
PREFILL_CASES = [
    (1, 2, 2, 33, 33, 0, 48, 0, False),  # MHA (groups 1), D = 48, ragged last tiles
    (2, 4, 2, 40, 40, 0, 80, 8, True),  # groups 2, window smaller than the sequence
    (1, 4, 1, 29, 29, 0, 64, 64, True),  # groups 4 (MQA), window larger than the sequence
    (1, 4, 2, 20, 45, 25, 32, 10, True),  # a chunk of queries after 25 cached positions
    (1, 2, 1, 5, 5, 0, 16, 0, True),  # fewer queries than one tile
    (1, 2, 2, 40, 40, 0, 16, 8, False),  # window, no sinks: tiles a row's queries cannot see (no -inf - -inf)
]
DECODE_CASES = [
    (1, 8, 2, 1, 70, 69, 64, 0, True),  # one new token, groups 4
    (2, 4, 4, 1, 50, 49, 48, 16, False),  # groups 1, window smaller than the cache
    (1, 4, 2, 3, 45, 42, 80, 100, True),  # three new tokens, window larger than the cache
    (1, 4, 1, 4, 37, 33, 48, 5, True),  # window barely above the queries
    (1, 2, 1, 2, 2, 0, 16, 0, True),  # a two-token prompt
]
# gpt-oss-20b's heads at real lengths, on a GPU only (test_the_gpu_attention_cases_can_fail checks them anywhere)
GPU_DECODE_CASES = [(1, 64, 8, 1, 8192, 8191, 64, 0, True), (1, 64, 8, 1, 8192, 8191, 64, 128, True)]
if ON_GPU:
    PREFILL_CASES += [(1, 64, 8, 2048, 2048, 0, 64, 128, True), (1, 64, 8, 1024, 1024, 0, 64, 0, True)]
    DECODE_CASES += GPU_DECODE_CASES


def attention_inputs(B, Hq, Hkv, Tq, Tk, D, sinks, seed):
    # As the model passes them: q a transposed view, k and v the filled part of a longer cache.
    q = rand(B, Tq, Hq, D, seed=seed).transpose(1, 2)
    k = rand(B, Hkv, Tk + 7, D, seed=seed + 1)[:, :, :Tk]
    v = rand(B, Hkv, Tk + 7, D, seed=seed + 2)[:, :, :Tk]
    # A sink competes with every key's exp(score), so it is offset by log(Tk) to take a share at any length.
    s = (rand(Hq, seed=seed + 3, scale=2.0) + math.log(Tk)) if sinks else None
    return q, k, v, s


@pytest.mark.parametrize("case", PREFILL_CASES)
def test_attention_prefill(case) -> None:
    B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks = case
    q, k, v, s = attention_inputs(B, Hq, Hkv, Tq, Tk, D, sinks, seed=10)
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=q_start)
    blocks = {} if ON_GPU else dict(block_m=16, block_n=16)  # small tiles: several per row and edges
    assert_close(attention_prefill(q, k, v, **kw, **blocks), attention_reference(q, k, v, **kw), "attention")


@pytest.mark.parametrize("case", DECODE_CASES)
@pytest.mark.parametrize("num_splits", [None, 1, 3])
def test_attention_decode(case, num_splits) -> None:
    B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks = case
    q, k, v, s = attention_inputs(B, Hq, Hkv, Tq, Tk, D, sinks, seed=20)
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=q_start)
    blocks = {} if ON_GPU else dict(block_n=16)
    out = attention_decode(q, k, v, **kw, num_splits=num_splits, **blocks)
    assert_close(out, attention_reference(q, k, v, **kw), "attention")


@pytest.mark.parametrize("kernel", ["prefill", "decode"])
def test_attention_never_reads_keys_after_the_last_query(kernel) -> None:
    # A cache longer than the positions filled so far, its tail uninitialised (here NaN).
    Tq, q_start, filled, D = 5, 20, 25, 32
    q, k, v, s = attention_inputs(1, 4, 2, Tq, filled + 19, D, True, seed=33)
    k[:, :, filled:], v[:, :, filled:] = float("nan"), float("nan")
    kw = dict(scale=D ** -0.5, sinks=s, window=0, q_start=q_start)
    fn = attention_prefill if kernel == "prefill" else attention_decode
    out = fn(q, k, v, **kw, **({} if ON_GPU else dict(block_n=16)))
    assert_close(out, attention_reference(q, k[:, :, :filled], v[:, :, :filled], **kw), "attention")


PREFILL_WINDOWS, PREFILL_Q_STARTS = [1, 2, 3, 8, 9, 10, 11, 12, 15, 16, 17, 33, 63, 64, 65, 129], [0, 5]


def test_the_window_cases_start_at_every_offset_of_a_key_tile() -> None:
    """What the next test's comment says, computed as the kernel computes a tile's first key (tiles of 16)."""
    offsets = {max(q_start + m * 16 - window + 1, 0) % 16  # the kernel: lo = max(first_pos - window + 1, 0)
               for window in PREFILL_WINDOWS for q_start in PREFILL_Q_STARTS for m in range(math.ceil(150 / 16))}
    assert offsets == set(range(16))


@pytest.mark.parametrize("window", PREFILL_WINDOWS)
@pytest.mark.parametrize("q_start", PREFILL_Q_STARTS)
def test_attention_prefill_window_start_at_every_tile_offset(window: int, q_start: int) -> None:
    # A query tile's first visible key, first_pos - window + 1, lands at every offset of a key tile, the
    # tile's last slot included (window 2 at q_start 0); tiles of 16 here, a GPU's own (64) there.
    Tq, D = 150, 16
    q, k, v, s = attention_inputs(1, 2, 1, Tq, q_start + Tq, D, True, seed=window + q_start)
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=q_start)
    blocks = {} if ON_GPU else dict(block_m=16, block_n=16)
    assert_close(attention_prefill(q, k, v, **kw, **blocks), attention_reference(q, k, v, **kw), "attention")


@pytest.mark.parametrize("Tq", [1, 3, 32])  # 32: the first query sees no key of the last split (64 rows: float32's most)
@pytest.mark.parametrize("window", [0, 5, 37])
@pytest.mark.parametrize("sinks", [True, False])
def test_attention_decode_window_over_several_splits(Tq: int, window: int, sinks: bool) -> None:
    # A window that starts the keys late (kv_lo > 0): 37 keys or more still cut into 3 splits, and a window
    # of 5 into one, but for 32 queries.
    Tk, D = 90, 16
    q, k, v, s = attention_inputs(1, 4, 2, Tq, Tk, D, sinks, seed=Tq * 100 + window)
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=Tk - Tq)
    out = attention_decode(q, k, v, **kw, num_splits=3, **({} if ON_GPU else dict(block_n=16)))
    assert_close(out, attention_reference(q, k, v, **kw), "attention")


@pytest.mark.skipif(ON_GPU, reason="on a GPU every test runs these tile sizes")
@pytest.mark.parametrize("case", [
    # (B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks, kernel)
    (1, 8, 2, 100, 100, 0, 64, 0, True, "prefill"),  # 2 query and 2 key tiles of 64, both ragged
    (1, 4, 2, 70, 150, 80, 64, 70, True, "prefill"),  # a chunk at 80, the window starting mid-tile
    (1, 8, 1, 1, 600, 599, 64, 0, True, "decode"),  # 3 splits of 256 keys, the last ragged
    (1, 8, 1, 1, 600, 599, 64, 300, False, "decode"),  # a window: 2 splits from key 300
    (1, 4, 1, 3, 700, 697, 48, 0, True, "decode"),  # 3 queries, D not a power of two
])
def test_attention_gpu_tiles_in_the_interpreter(case, monkeypatch) -> None:
    # With AOT_TARGET set (as gptoss_kernels.aot sets it), the wrappers choose an H100's tiles and splits.
    B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks, kernel = case
    monkeypatch.setitem(common.AOT_TARGET, "sms", 132)
    q, k, v, s = attention_inputs(B, Hq, Hkv, Tq, Tk, D, sinks, seed=Tk)
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=q_start)
    fn = attention_prefill if kernel == "prefill" else attention_decode
    assert_close(fn(q, k, v, **kw), attention_reference(q, k, v, **kw), "attention")
    if kernel == "decode" and Tq == 1:  # the CUDA-graph step's kernel, at a few positions of the same cache
        for pos in (0, 63, 64, 300, Tk - 1):
            out = attn_mod.attention_decode_at(q, k, v, torch.tensor([pos]), scale=D ** -0.5, sinks=s,
                                               window=window)
            want = attention_reference(q, k[:, :, :pos + 1], v[:, :, :pos + 1], scale=D ** -0.5, sinks=s,
                                       window=window, q_start=pos)
            assert_close(out, want, "attention")


@pytest.mark.skipif(ON_GPU, reason="the split counts of an H100 (132 SMs) are set through the AOT target")
def test_decode_combine_compiles_once_as_the_context_grows(monkeypatch) -> None:
    # The split count grows with the context (256 keys a split); a BLOCK_S that followed it compiled the
    # combine kernel again at 512, 1k, 2k and 4k keys: a stall mid-generation without a CUDA graph.
    monkeypatch.setitem(common.AOT_TARGET, "sms", 132)
    launched = []

    class Recorder:  # stands in for the combine kernel: records each launch's constexprs
        def __getitem__(self, grid):
            return lambda *args, **constexprs: launched.append(constexprs)

    monkeypatch.setattr(attn_mod, "_attn_combine_kernel", Recorder())
    splits = []
    for Tk in (300, 700, 1100, 2100):
        q, k, v, s = attention_inputs(1, 8, 8, 1, Tk, 16, True, seed=Tk)  # 8 KV heads: up to 33 splits
        splits.append(attn_mod._default_splits(q.device, 8, Tk))
        attention_decode(q, k, v, scale=0.25, sinks=s, q_start=Tk - 1)
    assert splits == [2, 3, 5, 9] and len(launched) == 4
    assert {c["BLOCK_S"] for c in launched} == {64}  # next_power_of_2(33): one variant for every context


KERNELS = {"attention prefill": (attn_mod, "_attn_prefill_kernel"), "attention decode": (attn_mod, "_attn_decode_kernel"),
           "attention decode at": (attn_mod, "_attn_decode_at_kernel"),
           "moe prefill": (moe_mod, "_gate_up_grouped_kernel"), "moe decode": (moe_mod, "_gate_up_matvec_kernel")}
FOLLOWERS = {"combine": (attn_mod, "_attn_combine_kernel"), "moe prefill down": (moe_mod, "_down_grouped_kernel"),
             "moe decode down": (moe_mod, "_down_matvec_kernel")}  # launched after those, on their outputs


def default_tiles(monkeypatch) -> dict[str, dict[str, int]]:
    """The tile sizes each kernel is launched with when its wrapper is left to choose."""
    launched = {}

    class InterpretedFunction:  # stands in for a kernel (named as the interpreter's): records its tiles, computes nothing
        def __init__(self, what: str) -> None:
            self.what = what

        def __getitem__(self, grid):
            return lambda *args, **constexprs: launched.__setitem__(
                self.what, {k: v for k, v in constexprs.items() if k.startswith("BLOCK_") and k != "BLOCK_D"})
    with monkeypatch.context() as patch:
        for what, (mod, name) in (KERNELS | FOLLOWERS).items():
            patch.setattr(mod, name, InterpretedFunction(what))
        q, k, v, s = attention_inputs(1, 8, 2, 100, 300, 64, True, seed=1)
        attention_prefill(q, k, v, scale=0.125, sinks=s, q_start=200)
        attention_decode(q[:, :, -1:], k, v, scale=0.125, sinks=s, q_start=299)
        attn_mod.attention_decode_at(q[:, :, -1:], k, v, torch.tensor([299], device=DEVICE), scale=0.125, sinks=s)
        x, idx, wts, experts, _ = moe_case((20, 256, 256, 4, 2, (), 7.0), seed=2)
        moe_mxfp4_prefill(x, idx, wts, *experts)
        moe_mxfp4_decode(x[:1], idx[:1], wts[:1], *experts)
    return launched


@pytest.mark.skipif(ON_GPU, reason="compares the interpreter's choice with a GPU's")
def test_the_interpreter_takes_a_gpus_tiles_or_larger(monkeypatch) -> None:
    # Notebook 10 and `chat --backend triton` on a CPU wait on the interpreter, which runs a tile as numpy
    # arrays: 64-wide tiles run 2-9x faster there than the 16 and 32 it once took (the tests pass their own).
    interpreter = default_tiles(monkeypatch)
    monkeypatch.setitem(common.AOT_TARGET, "sms", 132)  # the wrappers choose an H100's tiles
    gpu = default_tiles(monkeypatch)
    assert set(interpreter) == set(KERNELS | FOLLOWERS)
    for what in ("attention prefill", "attention decode", "attention decode at", "moe prefill"):
        assert interpreter[what] == gpu[what], (what, interpreter[what], gpu[what])
    assert interpreter["attention prefill"] == {"BLOCK_M": 64, "BLOCK_N": 64}
    # The MoE's matrix-vector programs: 16 rows each fill a GPU at batch 1; the interpreter runs 64 at once.
    assert gpu["moe decode"] == {"BLOCK_I": 16, "BLOCK_B": 128} and interpreter["moe decode"] == {"BLOCK_I": 64,
                                                                                                   "BLOCK_B": 128}


def test_prefill_attention_launches_within_cudas_grid(monkeypatch) -> None:
    # CUDA allows 2**31 - 1 programs along a grid's first axis but 65,535 along the others: a batch
    # of 1,024 prompts at 64 query heads is 65,536 (batch, head) pairs, which must go on the first.
    grids = []

    class Recorder:  # stands in for the kernel: records the grid of each launch
        def __getitem__(self, grid):
            return lambda *args, **constexprs: grids.append(grid)

    monkeypatch.setattr(attn_mod, "_attn_prefill_kernel", Recorder())
    meta = torch.device("meta")
    for B, Tq in ((1024, 17), (1, 131072)):
        q, kv = torch.empty(B, 64, Tq, 64, device=meta), torch.empty(B, 8, Tq, 64, device=meta)
        attention_prefill(q, kv, kv, scale=0.125, block_m=64)
        programs = grids[-1][0] * math.prod(grids[-1][1:])
        assert programs == B * 64 * -(-Tq // 64) and max(grids[-1][1:]) <= 65535, (B, Tq, grids[-1])


def test_attention_decode_at_never_reads_past_the_cache() -> None:
    # The cache is a view of a longer buffer whose tail is NaN. A position at or past its end is outside the
    # kernel's contract (the static decoder clamps it), but no key past the cache may be read even then.
    Tk, D = 40, 16
    q, k_full, v_full, s = attention_inputs(1, 4, 2, 1, Tk + 16, D, True, seed=3)
    k_full, v_full = k_full.clone(), v_full.clone()
    k_full[:, :, Tk:], v_full[:, :, Tk:] = float("nan"), float("nan")
    k, v = k_full[:, :, :Tk], v_full[:, :, :Tk]
    for pos in (Tk, Tk + 5):
        for splits in (1, 2):
            out = attn_mod.attention_decode_at(q, k, v, torch.tensor([pos], device=DEVICE), scale=D ** -0.5,
                                               sinks=s, num_splits=splits, **({} if ON_GPU else dict(block_n=16)))
            assert out.isfinite().all(), f"position {pos}, {splits} splits: a key past the cache was read"


def test_attention_strided_sinks() -> None:
    # Sinks that are a view with a stride (one per query head, every other element) are read by head.
    q, k, v, _ = attention_inputs(1, 4, 2, 3, 20, 16, False, seed=35)
    sinks = rand(8, seed=36, scale=2.0)[::2]
    kw = dict(scale=0.25, sinks=sinks, window=6, q_start=17)
    want = attention_reference(q, k, v, **kw)
    assert_close(attention_prefill(q, k, v, **kw), want, "attention")
    assert_close(attention_decode(q, k, v, **kw, num_splits=2), want, "attention")
    position = torch.tensor([17], device=DEVICE)
    assert_close(attn_mod.attention_decode_at(q[:, :, :1], k, v, position, scale=0.25, sinks=sinks),
                 attention_reference(q[:, :, :1], k[:, :, :18], v[:, :, :18], scale=0.25, sinks=sinks, q_start=17),
                 "attention")


def test_kernels_refuse_to_be_trained_through() -> None:
    """The kernels have no backward: an activation that wants a gradient is refused unless grad is off."""
    x, w = rand(2, 32, seed=60).requires_grad_(), rand(32, seed=61).requires_grad_()
    with pytest.raises(RuntimeError, match=r"rmsnorm has no backward pass, and x requires grad.*torch.no_grad\(\)"):
        rmsnorm(x, w, 1e-5)
    with torch.no_grad():
        assert_close(rmsnorm(x, w, 1e-5), rmsnorm_reference(x, w, 1e-5), "rmsnorm")
    # A weight that requires grad (a module's parameter) with a plain input is fine: nothing is built on it.
    assert not rmsnorm(x.detach(), w, 1e-5).requires_grad
    q, k, v, s = attention_inputs(1, 2, 1, 1, 4, 16, True, seed=62)
    with pytest.raises(RuntimeError, match="attention has no backward pass, and q requires grad"):
        attention(q.requires_grad_(), k, v, scale=0.25, sinks=s, q_start=3)
    # A model on the Triton backend, training: an error, not gradients that silently stop at the kernels.
    cfg = dataclasses.replace(g.preset("gpt-oss-tiny"), vocab_size=64, n_layers=1, layer_types=("sliding_attention",))
    model = g.GPT(cfg, packed_experts=True).to(DEVICE).set_backend("triton")
    with pytest.raises(RuntimeError, match=r"has no backward pass.*model.set_backend\('torch'\)"):
        model(torch.zeros(1, 3, dtype=torch.long, device=DEVICE))


def test_a_float64_model_is_refused_by_the_triton_backend_with_what_to_do() -> None:
    """A learner's reference model in float64: set_backend('triton') was accepted, and the first forward said only
    "x must be one of [...]"."""
    cfg = dataclasses.replace(g.preset("gpt-oss-tiny"), vocab_size=64, n_layers=1, layer_types=("sliding_attention",))
    model = g.GPT(cfg).to(DEVICE).double()
    with pytest.raises(ValueError, match=r"Triton kernels take float32, bfloat16 or float16, and this model is "
                                         r"float64: convert it first \(model.float\(\)\)"):
        model.set_backend("triton")
    assert model.float().set_backend("triton") is model


def test_attention_sinks_take_mass() -> None:
    # A sink far above every score takes nearly all the mass; far below, it changes nothing.
    q, k, v, _ = attention_inputs(1, 2, 1, 1, 9, 16, False, seed=30)
    kw = dict(scale=0.25, q_start=8)
    plain = attention(q, k, v, **kw)
    low = attention(q, k, v, sinks=torch.full((2,), -1e4, device=DEVICE), **kw)
    high = attention(q, k, v, sinks=torch.full((2,), 1e4, device=DEVICE), **kw)
    assert_close(low, plain, "attention")
    assert high.float().abs().max() < 1e-6


def test_attention_dispatch(monkeypatch) -> None:
    calls = []
    for name in ("attention_decode", "attention_prefill"):
        real = getattr(attn_mod, name)
        monkeypatch.setattr(attn_mod, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    most = attn_mod.decode_max_rows(DTYPE) // 2  # queries per KV head with 2 query heads each
    for Tq, Tk in ((most, most + 5), (most + 1, most + 1)):
        q, k, v, s = attention_inputs(1, 4, 2, Tq, Tk, 32, True, seed=40)
        kw = dict(scale=32 ** -0.5, sinks=s, window=0, q_start=Tk - Tq)
        assert_close(attention(q, k, v, **kw), attention_reference(q, k, v, **kw), "attention")
    assert calls == ["attention_decode", "attention_prefill"]


def test_decode_rows_halve_in_float32() -> None:
    """A float32 tile of query rows takes twice the shared memory: the decode kernel takes half as many rows."""
    assert attn_mod.decode_max_rows(torch.bfloat16) == attn_mod.decode_max_rows(torch.float16) == 128
    assert attn_mod.decode_max_rows(torch.float32) == 64
    # Heads twice as wide (a head_dim-128 model) take half as many; narrower ones no more than at 64.
    assert attn_mod.decode_max_rows(torch.bfloat16, 128) == 64 and attn_mod.decode_max_rows(torch.float32, 128) == 32
    assert attn_mod.decode_max_rows(torch.float32, 12) == 64


def test_the_decode_kernels_called_directly_take_the_rows_of_their_dtype() -> None:
    """Only attention() held float32 to 64 rows: 128 float32 rows called directly needed 128 KB of shared
    memory, past a consumer GPU's 99 KB (a launch failure there, not this message)."""
    q, k, v, s = attention_inputs(1, 8, 1, 16, 24, 64, True, seed=41)  # 8 query heads x 16 tokens = 128 rows
    for kernel in (attn_mod.attention_decode, attn_mod.attention_decode_at):
        kw = dict(scale=0.125, sinks=s.float()) | (dict(q_start=8) if kernel is attn_mod.attention_decode else
                                           dict(position=torch.tensor([8]), window=0))
        with pytest.raises(ValueError, match=r"all 128 query rows .* takes at most 64 \(float32, head_dim 64\)"):
            kernel(q.float(), k.float(), v.float(), **kw)


def test_attention_bad_inputs() -> None:
    q, k, v, s = attention_inputs(1, 4, 2, 3, 8, 16, True, seed=50)
    with pytest.raises(ValueError, match="multiple of the KV heads"):
        attention(q, k[:, :1].repeat(1, 3, 1, 1), v[:, :1].repeat(1, 3, 1, 1), scale=0.25, q_start=5)
    with pytest.raises(ValueError, match="q_start"):
        attention(q, k, v, scale=0.25, q_start=6)
    with pytest.raises(ValueError, match="sinks"):
        attention(q, k, v, scale=0.25, sinks=s[:3], q_start=5)
    with pytest.raises(ValueError, match="k and v"):
        attention(q, k, v[:, :, :7], scale=0.25, q_start=5)
    with pytest.raises(ValueError, match=r"multiple of the KV heads \(0\)"):
        attention(q, k[:, :0], v[:, :0], scale=0.25, q_start=5)
    with pytest.raises(ValueError, match=r"window must be >= 0 \(0 = no window\), got -1"):
        attention(q, k, v, scale=0.25, q_start=5, window=-1)  # would run as no window at all
    with pytest.raises(TypeError, match=r"window must be a whole number \(an int\), got 4.0 \(float\)"):
        attention(q, k, v, scale=0.25, q_start=5, window=4.0)  # else an InterpreterError deep in Triton
    with pytest.raises(TypeError, match=r"q_start must be a whole number \(an int\), got 5.0"):
        attention(q, k, v, scale=0.25, q_start=5.0)


def test_a_tile_size_a_gpu_could_not_compile_is_refused() -> None:
    # The interpreter runs tiles of 8, or of 24; tl.dot on a GPU needs 16 or more, tl.arange a power of two.
    q, k, v, _ = attention_inputs(1, 4, 2, 3, 8, 16, False, seed=51)
    for bad in (8, 24, 0):
        with pytest.raises(ValueError, match=f"block_n must be a power of two, at least 16, got {bad}"):
            attention_prefill(q, k, v, scale=0.25, q_start=5, block_n=bad)
        with pytest.raises(ValueError, match=f"block_n must be a power of two, at least 16, got {bad}"):
            attention_decode(q, k, v, scale=0.25, q_start=5, block_n=bad)
    with pytest.raises(ValueError, match="block_m must be a power of two, at least 16, got 8"):
        attention_prefill(q, k, v, scale=0.25, q_start=5, block_m=8)
    x, idx, wts, experts, _ = moe_case((3, 64, 32, 4, 2, (), 7.0), seed=52)
    with pytest.raises(ValueError, match="block_bytes must be a power of two, at least 16, got 8"):
        moe_mxfp4_prefill(x, idx, wts, *experts, block_bytes=8)
    with pytest.raises(ValueError, match="block_rows must be a power of two, at least 1, got 12"):
        moe_mxfp4_decode(x, idx, wts, *experts, block_rows=12)


def test_the_decode_kernels_refuse_more_query_rows_than_one_tile_can_hold() -> None:
    # 8 query heads a KV head x 17 tokens: a 256-row tile, past a GPU's registers (the interpreter would run it).
    from gptoss_kernels.attention import DECODE_MAX_ROWS, attention_decode_at

    q, k, v, _ = attention_inputs(1, 16, 2, 17, 40, 16, False, seed=54)
    assert 8 * 17 > DECODE_MAX_ROWS
    said = (r"holds all 136 query rows of a KV head \(8 query heads x 17 tokens\) in one tile, and takes at most "
            f"{attn_mod.decode_max_rows(DTYPE, 16)}")
    with pytest.raises(ValueError, match="attention_decode " + said):
        attention_decode(q, k, v, scale=0.25, q_start=23)
    with pytest.raises(ValueError, match="attention_decode_at " + said):
        attention_decode_at(q, k, v, torch.tensor([23], device=q.device), scale=0.25)
    kw = dict(scale=0.25, q_start=23)
    assert_close(attention(q, k, v, **kw), attention_reference(q, k, v, **kw), "attention")  # what it advises


def test_tensors_on_two_devices_are_named_by_shape() -> None:
    from gptoss_kernels.attention import attention_decode_at

    q, k, v, _ = attention_inputs(1, 4, 2, 1, 8, 16, False, seed=53)
    position = torch.tensor([7], device="meta")  # as a position left behind on another device would be
    with pytest.raises(ValueError, match=r"one device, got .*\(1,\) on meta.*left on the CPU is the usual slip"):
        attention_decode_at(q, k, v, position, scale=0.25)


def test_tensors_on_two_gpus_are_two_devices() -> None:
    """cuda:0 and cuda:1 are one device *type*: the check once let such a launch through (stand-ins, no GPU)."""
    from types import SimpleNamespace

    from gptoss_kernels._common import check_launch
    from gptoss_kernels.rmsnorm import _rmsnorm_kernel

    def on(device):
        return SimpleNamespace(device=torch.device(device), shape=(2, 8), dtype=torch.float32)

    with pytest.raises(ValueError, match=r"one device, got \(2, 8\) on cuda:0, \(2, 8\) on cuda:1"):
        check_launch(_rmsnorm_kernel, "rmsnorm", on("cuda:0"), on("cuda:1"))


def test_the_torch_paths_an_error_names_can_be_typed_as_written() -> None:
    """Each name a kernel's error offers instead resolves by attribute access after `import gptoss_edu, gptoss_kernels`."""
    import re

    names = {name for text in common.TORCH_FALLBACK.values() for name in re.findall(r"gptoss_\w+(?:\.\w+)+", text)}
    assert len(names) == 6  # norm, attention: two each; experts, dequantizer: one each; vector_add's is `x + y`
    for name in names:
        obj = {"gptoss_edu": g, "gptoss_kernels": gptoss_kernels}[name.split(".")[0]]
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
        assert callable(obj), name


T4 = ("this GPU, Tesla T4, has compute capability 7.5, and the course runs its Triton kernels only on 8.0 and "
      "newer, the GPUs Triton supports (A100, RTX 30xx, L4, RTX 40xx, H100 and later)")


def test_a_gpu_too_old_for_triton_is_refused_with_what_runs_instead(stand_in_gpu, monkeypatch) -> None:
    """A T4 is older than Triton supports: the kernels are not run there, and the PyTorch path is named."""
    stand_in_gpu((7, 5), "Tesla T4")
    from types import SimpleNamespace

    on_gpu = SimpleNamespace(device=torch.device("cuda:0"), shape=(2, 8), dtype=torch.bfloat16)
    compiled = SimpleNamespace()  # a kernel that is not the interpreter's: it would be compiled
    with pytest.raises(RuntimeError) as err:
        common.check_launch(compiled, "rmsnorm", on_gpu, on_gpu)
    assert str(err.value) == (f"gptoss_kernels.rmsnorm cannot run on this GPU: {T4}. The PyTorch path runs on it: "
                              "model.set_backend('torch'), or gptoss_edu.norms.rms_norm (or "
                              "gptoss_kernels.rmsnorm_reference).")
    with pytest.raises(RuntimeError) as err:
        gptoss_kernels.require_triton("cuda:0")  # as model.set_backend("triton") asks for a model on the T4
    assert str(err.value) == (f"the Triton kernels cannot run on this GPU: {T4}. The PyTorch path runs on it: "
                              "model.set_backend('torch').")
    if ON_GPU:  # kernels compiled for the GPU cannot take a model left on the CPU
        with pytest.raises(RuntimeError, match="this model is on cpu: move it to the GPU first"):
            gptoss_kernels.require_triton("cpu")
    else:
        gptoss_kernels.require_triton("cpu")  # a model on the CPU: the interpreter runs the kernels
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"set_backend\('torch'\)\. Or set TRITON_INTERPRET=1 before importing"):
        gptoss_kernels.require_triton()  # no device: the GPU, unless the interpreter is asked for


@pytest.mark.skipif(ON_GPU, reason="needs the kernels imported under TRITON_INTERPRET=1, as without a GPU")
def test_kernels_interpreted_on_a_gpu_are_refused_with_the_cause(stand_in_gpu) -> None:
    """TRITON_INTERPRET inherited on an H100: set_backend('triton') passed, then bf16 failed as if on the CPU."""
    stand_in_gpu((9, 0), "NVIDIA H100 80GB HBM3")
    from types import SimpleNamespace

    from gptoss_kernels.rmsnorm import _rmsnorm_kernel

    on_gpu = SimpleNamespace(device=torch.device("cuda:0"), shape=(2, 8), dtype=torch.bfloat16)
    with pytest.raises(RuntimeError) as err:
        common.check_launch(_rmsnorm_kernel, "rmsnorm", on_gpu, on_gpu)
    assert str(err.value).startswith("gptoss_kernels.rmsnorm got GPU tensors, but TRITON_INTERPRET was set when "
                                     "gptoss_kernels was imported")
    assert "Unset TRITON_INTERPRET" in str(err.value) and "bfloat16" not in str(err.value).split("(")[0]
    with pytest.raises(RuntimeError, match=r"^the Triton kernels cannot run on cuda:0: TRITON_INTERPRET was set .* "
                                           r"The PyTorch path runs as it is: model.set_backend\('torch'\)\.$"):
        gptoss_kernels.require_triton("cuda:0")
    gptoss_kernels.require_triton("cpu")  # CPU tensors are what the interpreter is for
    # On a T4 the course sets TRITON_INTERPRET itself: the GPU's age is the reason given, not the variable.
    stand_in_gpu((7, 5), "Tesla T4")
    with pytest.raises(RuntimeError) as err:
        common.check_launch(_rmsnorm_kernel, "rmsnorm", on_gpu, on_gpu)
    assert str(err.value).startswith(f"gptoss_kernels.rmsnorm cannot run on this GPU: {T4}.")


def test_set_backend_asks_about_the_models_own_device(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(gptoss_kernels, "require_triton", lambda device=None: asked.append(device))
    model = g.GPT(dataclasses.replace(g.preset("gpt-oss-tiny"), vocab_size=64))
    assert model.set_backend("triton") is model and asked == [torch.device("cpu")]
    model.set_backend("torch")
    assert asked == [torch.device("cpu")]  # the PyTorch path needs nothing of Triton


def test_set_backend_refuses_a_cpu_model_the_kernels_were_not_made_to_run(stand_in_gpu, monkeypatch) -> None:
    """A model left on the CPU of a GPU machine, or TRITON_INTERPRET set after the import: the switch passed and
    the first forward failed, leaving the model on the triton backend."""
    model = g.GPT(dataclasses.replace(g.preset("gpt-oss-tiny"), vocab_size=64))
    monkeypatch.setattr(common, "interpreter_problem", lambda: None)
    monkeypatch.setattr(common, "_interpreted", lambda kernel: False)  # as imported without TRITON_INTERPRET
    stand_in_gpu((9, 0), "NVIDIA H100 80GB HBM3")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"^the Triton kernels compile for the GPU, and this model is on cpu: move "
                                           r"it to the GPU first \(model.to\('cuda'\)\), or set TRITON_INTERPRET=1 "
                                           r"before importing .*interpreter\. The PyTorch path runs anywhere"):
        model.set_backend("triton")
    assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"torch"}
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # set now, too late for the kernels
    with pytest.raises(RuntimeError, match=r"interpreter\. TRITON_INTERPRET is set now but was not when "
                                           r"gptoss_kernels was imported: restart Python"):
        model.set_backend("triton")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"^the Triton kernels need a CUDA GPU, or set TRITON_INTERPRET=1 .*"
                                           r"set now but was not"):
        gptoss_kernels.require_triton("cpu")
    # Made for the interpreter, with the variable unset since: the kernels still run on the CPU.
    monkeypatch.setattr(common, "_interpreted", lambda kernel: True)
    monkeypatch.delenv("TRITON_INTERPRET")
    gptoss_kernels.require_triton("cpu")
    assert model.set_backend("triton") is model


class _OnSecondGpu(torch.Tensor):
    """A CPU tensor that says it is on cuda:1, to see which device a wrapper makes current."""

    @property
    def is_cuda(self):
        return True

    @property
    def device(self):
        return torch.device("cuda", 1)


def test_a_wrapper_runs_with_its_tensors_gpu_current(monkeypatch) -> None:
    """Triton launches on the current CUDA device, not the tensors': a model on cuda:1 ran its kernels on cuda:0."""
    from gptoss_kernels._common import on_tensors_device

    current, entered = [0], []

    class Current:  # torch.cuda.device, recorded
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            entered.pop()

    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "device", Current)
    seen: list = []
    launch = on_tensors_device(lambda *args, **kwargs: seen.append(list(entered)) or "out")
    on_gpu_1 = torch.zeros(2).as_subclass(_OnSecondGpu)
    assert launch(on_gpu_1, 3, scale=1.0) == "out" and seen[-1] == [torch.device("cuda", 1)] and entered == []
    assert launch(torch.zeros(2), on_gpu_1) == "out" and seen[-1] == []  # the first tensor decides: a CPU one
    current[0] = 1
    assert launch(on_gpu_1) == "out" and seen[-1] == []  # already current: nothing to switch


KERNEL_WRAPPERS = ["attention.attention_prefill", "attention.attention_decode", "attention.attention_decode_at",
                   "moe.moe_mxfp4_decode", "moe.moe_mxfp4_prefill", "moe.dequantize_mxfp4", "rmsnorm.rmsnorm",
                   "vector_add.vector_add"]


def test_every_public_function_that_launches_a_kernel_is_listed() -> None:
    # A new wrapper left out of KERNEL_WRAPPERS (and so, perhaps, undecorated) would run on cuda:0 for a
    # model on cuda:1: find every public function whose own code launches a kernel (`kernel[grid](...)`).
    import inspect
    import re

    launching = []
    for module in ("attention", "moe", "rmsnorm", "vector_add"):
        mod = importlib.import_module(f"gptoss_kernels.{module}")
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            own = getattr(fn, "__wrapped__", fn)
            if not name.startswith("_") and own.__module__ == mod.__name__ and \
                    re.search(r"\b_\w+_kernel\[.*?\]\(", inspect.getsource(own), re.S):
                launching.append(f"{module}.{name}")
    assert "attention.attention_decode" in launching and "moe.dequantize_mxfp4" in launching  # the search works
    assert sorted(launching) == sorted(KERNEL_WRAPPERS)


@pytest.mark.parametrize("wrapper", KERNEL_WRAPPERS)
def test_every_kernel_wrapper_launches_on_its_tensors_gpu(wrapper) -> None:
    from gptoss_kernels._common import on_tensors_device

    module, name = wrapper.split(".")
    fn = getattr(importlib.import_module(f"gptoss_kernels.{module}"), name)
    assert fn.__code__ is on_tensors_device(lambda: None).__code__, f"{wrapper} is not wrapped in on_tensors_device"
    assert fn.__wrapped__.__name__ == name

def test_launches_past_32_bit_offsets_are_refused_before_they_wrap() -> None:
    """Offsets are 32-bit in the kernels: a launch that would pass 2**31 elements is refused (meta: no memory)."""
    meta = torch.device("meta")
    q = torch.empty(5, 64, 131072, 64, device=meta)  # five full-context prompts of gpt-oss at once
    kv = torch.empty(5, 8, 131072, 64, device=meta)
    with pytest.raises(ValueError, match=r"attention: q spans 2,684,354,560 elements, past the 2\*\*31"):
        attention(q, kv, kv, scale=0.125)
    N, D, I, E, K = 190_000, 2880, 2880, 32, 4  # tokens x K slots x 2880 > 2**31
    u8 = dict(dtype=torch.uint8, device=meta)
    args = (torch.empty(N, D, device=meta), torch.empty(N, K, dtype=torch.int64, device=meta),
            torch.empty(N, K, device=meta), torch.empty(E, 2 * I, D // 32, 16, **u8),
            torch.empty(E, 2 * I, D // 32, **u8), torch.empty(E, 2 * I, device=meta),
            torch.empty(E, D, I // 32, 16, **u8), torch.empty(E, D, I // 32, **u8), torch.empty(E, D, device=meta))
    with pytest.raises(ValueError, match="moe: the N x K x I hidden buffer spans 2,188,800,000 elements"):
        moe_mxfp4_prefill(*args)
    # The elementwise kernels too: eight full-context prompts through RMSNorm (row * stride passes
    # 2**31 from row 745,655 of 2880), and a tensor of 2**30 MXFP4 bytes (2**31 weights out).
    x = torch.empty(8, 131072, 2880, device=meta)
    with pytest.raises(ValueError, match=r"rmsnorm: x spans 3,019,898,880 elements, out spans"):
        rmsnorm(x, torch.empty(2880, device=meta), 1e-5)
    with pytest.raises(ValueError, match=r"vector_add: x spans 3,019,898,880 elements"):
        vector_add(x, x)
    with pytest.raises(ValueError, match=r"dequantize_mxfp4: the output spans 2,147,483,648 elements"):
        dequantize_mxfp4(torch.empty(2**26, 16, **u8), torch.empty(2**26, **u8))
    # Splits the caller asks for: their partial sums, [B*Hkv, splits, rows, D], pass 2**31 where q, k
    # and v do not (8,192 splits of 16 keys over a 131,072-key cache hold 64 rows each: 4x the keys).
    q10, kv10 = torch.empty(10, 64, 8, 64, device=meta), torch.empty(10, 8, 131072, 64, device=meta)
    too_many = "attention: the buffer of 8,192 splits' partial sums spans 2,684,354,560 elements"
    with pytest.raises(ValueError, match=too_many):
        attention_decode(q10, kv10, kv10, scale=0.125, q_start=131064, num_splits=8192, block_n=16)
    with pytest.raises(ValueError, match=too_many):
        attn_mod.attention_decode_at(q10, kv10, kv10, torch.zeros(1, dtype=torch.int64, device=meta), scale=0.125,
                                     num_splits=8192, block_n=16)
    # One full-context prompt of gpt-oss-20b passes the checks.
    from gptoss_kernels.attention import _check_inputs
    from gptoss_kernels.moe import _check_moe_inputs

    _check_inputs(q[:1], kv[:1], kv[:1], None, 128, 0)
    one = 131072
    _check_moe_inputs(args[0][:one], args[1][:one], args[2][:one], *args[3:], check_indices=False)


# ---------------------------------------------------------------------------------- MoE


def test_dequantize_mxfp4_bit_exact() -> None:
    # Every byte (two codes) under every scale whose products stay finite (6 * 2^125 < fp32 max).
    # On a GPU the range starts at 2^-125, where every product is a normal float: whether the
    # compiled multiply keeps subnormals is the compiler's choice (real checkpoints have scale
    # codes below 2 only on all-zero blocks).
    codes = range(2 if ON_GPU else 0, 253)
    blocks = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(16, 16).repeat(len(codes), 1, 1)
    scales = torch.tensor(codes, dtype=torch.uint8)[:, None].expand(-1, 16).contiguous()
    blocks, scales = blocks.to(DEVICE), scales.to(DEVICE)
    ref = mxfp4.dequantize(blocks, scales, torch.float32)
    out = dequantize_mxfp4(blocks, scales, torch.float32)
    assert torch.equal(out, ref)


def make_experts(E: int, D: int, I: int, seed: int):
    """Random experts in the checkpoint layout: MXFP4 blocks and scales, biases in DTYPE.

    Scaled by width, so that at every size each term shows in the output: gate/up values of std 3 for
    inputs of std 1 (1 to 3% pass the limit 7), the down projection keeping that size, biases of std 1.
    With a fixed std of 0.1, 20b's 2880 inputs saturated every clamp and no bias mattered.
    """
    gu_blocks, gu_scales = mxfp4.quantize(rand(E, 2 * I, D, seed=seed, scale=3 / D ** 0.5, dtype=torch.float32))
    dn_blocks, dn_scales = mxfp4.quantize(rand(E, D, I, seed=seed + 1, scale=I ** -0.5, dtype=torch.float32))
    return (gu_blocks, gu_scales, rand(E, 2 * I, seed=seed + 2),
            dn_blocks, dn_scales, rand(E, D, seed=seed + 3))


def routing(N: int, E: int, K: int, seed: int, unused: tuple[int, ...] = ()):
    """Top-K experts per token (never one of ``unused``) and softmax weights over them, in fp32."""
    logits = rand(N, E, seed=seed, dtype=torch.float32)
    logits[:, list(unused)] = float("-inf")
    top, idx = logits.topk(K, dim=-1)
    return idx, torch.softmax(top, dim=-1)


# (N, D, I, E, K, unused experts, limit)
MOE_DECODE_CASES = [
    (1, 64, 32, 4, 1, (), 7.0),
    (1, 96, 64, 6, 4, (2,), 7.0),  # D = 96: 48 bytes a row, a partial last step of a GPU's 128
    (2, 64, 96, 8, 3, (1, 4, 6), 1.0),  # a small limit: the clamps bite
    (3, 160, 32, 5, 2, (), 7.0),
    (2, 64, 32, 128, 4, (), 7.0),  # gpt-oss-120b's 128 experts, top 4
]
MOE_PREFILL_CASES = [
    (24, 64, 64, 8, 2, (1, 4, 6), 7.0),
    (40, 96, 32, 6, 4, (), 1.0),
    (17, 160, 96, 4, 1, (3,), 7.0),
    (33, 64, 32, 16, 3, (0, 5, 9, 15), 7.0),  # many experts, several with no token
    (12, 64, 32, 128, 4, (), 7.0),  # gpt-oss-120b's 128 experts, top 4: most with no token (about 90 of 128)
]
# gpt-oss-20b's expert shapes, on a GPU only (test_the_gpu_moe_cases_can_fail checks their widths anywhere)
GPU_MOE_DECODE_CASE, GPU_MOE_PREFILL_CASE = (1, 2880, 2880, 32, 4, (), 7.0), (300, 2880, 2880, 32, 4, (), 7.0)
if ON_GPU:
    MOE_DECODE_CASES.append(GPU_MOE_DECODE_CASE)
    MOE_PREFILL_CASES.append(GPU_MOE_PREFILL_CASE)


def moe_case(case, seed):
    N, D, I, E, K, unused, limit = case
    x = rand(N, D, seed=seed)
    idx, wts = routing(N, E, K, seed=seed + 1, unused=unused)
    return x, idx, wts, make_experts(E, D, I, seed=seed + 2), limit


@pytest.mark.parametrize("case", MOE_DECODE_CASES)
def test_moe_decode(case) -> None:
    x, idx, wts, experts, limit = moe_case(case, seed=60)
    kw = dict(alpha=1.702, limit=limit)
    blocks = {} if ON_GPU else dict(block_rows=16, block_bytes=16)  # small tiles: several per row (partial ones: below)
    out = moe_mxfp4_decode(x, idx.to(torch.int32), wts, *experts, **kw, **blocks)
    assert_close(out, moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe", scale_atol=True)


@pytest.mark.parametrize("case", MOE_PREFILL_CASES)
def test_moe_prefill(case) -> None:
    x, idx, wts, experts, limit = moe_case(case, seed=70)
    kw = dict(alpha=1.702, limit=limit)
    blocks = {} if ON_GPU else dict(block_m=16, block_n=16, block_bytes=16)  # small tiles: several per row, ragged token rows
    # (partial byte and column tiles: test_moe_prefill_partial_tiles)
    out = moe_mxfp4_prefill(x, idx, wts, *experts, **kw, **blocks)
    assert_close(out, moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe", scale_atol=True)


# I = 96 and D = 96 or 160 leave partial tiles of 64 rows and of 32 bytes (48 or 80 bytes a row).
@pytest.mark.parametrize("case", [(20, 96, 96, 4, 2, (), 7.0), (13, 160, 96, 3, 3, (), 7.0), (9, 96, 32, 5, 1, (), 7.0)])
@pytest.mark.parametrize("block_m, block_n, block_bytes", [(64, 64, 32), (16, 64, 32), (32, 32, 32), (32, 16, 32)])
def test_moe_prefill_partial_tiles(case, block_m: int, block_n: int, block_bytes: int) -> None:
    x, idx, wts, experts, limit = moe_case(case, seed=sum(case[:5]))
    kw = dict(alpha=1.702, limit=limit)
    out = moe_mxfp4_prefill(x, idx, wts, *experts, **kw, block_m=block_m, block_n=block_n, block_bytes=block_bytes)
    assert_close(out, moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe", scale_atol=True)


@pytest.mark.parametrize("case", [(3, 96, 96, 4, 2, (), 7.0), (20, 64, 96, 4, 2, (), 7.0)])
def test_moe_takes_tokens_whose_rows_are_not_next_to_each_other(case) -> None:
    """hidden[:, -1], each sequence's last token: rows 3 * D apart. The kernels read x as rows of D (22.6 off)."""
    x, idx, wts, experts, limit = moe_case(case, seed=sum(case[:5]) + 2)
    kw = dict(alpha=1.702, limit=limit)
    hidden = torch.randn(x.shape[0], 3, x.shape[1], dtype=x.dtype, device=x.device)
    hidden[:, -1] = x
    last = hidden[:, -1]  # decode for 3 tokens, prefill for 20
    assert not last.is_contiguous()
    assert_close(moe_mxfp4(last, idx, wts, *experts, **kw), moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe",
                 scale_atol=True)


@pytest.mark.parametrize("case", [(3, 96, 96, 4, 2, (), 7.0), (1, 160, 32, 3, 3, (), 7.0)])
def test_moe_decode_partial_tiles(case) -> None:
    x, idx, wts, experts, limit = moe_case(case, seed=sum(case[:5]))
    kw = dict(alpha=1.702, limit=limit)
    out = moe_mxfp4_decode(x, idx, wts, *experts, **kw, block_rows=64, block_bytes=128)
    assert_close(out, moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe", scale_atol=True)


@pytest.mark.skipif(ON_GPU, reason="on a GPU every test runs these tile sizes")
@pytest.mark.parametrize("case", [(20, 96, 96, 4, 2, (), 1.0), (2, 160, 96, 3, 3, (), 1.0)])
def test_moe_gpu_tiles_in_the_interpreter(case, monkeypatch) -> None:
    monkeypatch.setitem(common.AOT_TARGET, "sms", 132)  # the wrappers choose an H100's tiles
    x, idx, wts, experts, limit = moe_case(case, seed=sum(case[:5]) + 1)
    kw = dict(alpha=1.702, limit=limit)
    assert_close(moe_mxfp4(x, idx, wts, *experts, **kw), moe_mxfp4_reference(x, idx, wts, *experts, **kw), "moe",
                 scale_atol=True)


@pytest.mark.parametrize("block_m", [64] if ON_GPU else [16, 64])
def test_moe_prefill_expert_rows_at_tile_edges(block_m: int) -> None:
    # Each expert's rows are cut into tiles of block_m: experts with 1, block_m - 1, 0, block_m, block_m + 1 and
    # 2 block_m + 1 rows, so a tile count off by one loses or adds a row.
    counts = [1, block_m - 1, 0, block_m, block_m + 1, 2 * block_m + 1]
    idx = torch.cat([torch.full((c,), e) for e, c in enumerate(counts)])
    idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))][:, None].to(DEVICE)
    N, D, I = len(idx), 64, 32
    x = rand(N, D, seed=N, scale=2.0)
    wts = 0.5 + rand(N, 1, seed=N + 1, dtype=torch.float32).abs()
    experts = make_experts(len(counts), D, I, seed=N + 2)
    out = moe_mxfp4_prefill(x, idx, wts, *experts, block_m=block_m)
    assert_close(out, moe_mxfp4_reference(x, idx, wts, *experts), "moe", scale_atol=True)


def test_moe_clamps_are_exercised() -> None:
    # The limit-1.0 cases above only test the clamps if some gate/up values pass the limit.
    x, idx, wts, experts, limit = moe_case(MOE_PREFILL_CASES[1], seed=70)
    w1 = mxfp4.dequantize(experts[0], experts[1], torch.float32)
    gate_up = torch.einsum("nd,nkod->nko", x.float(), w1[idx]) + experts[2].float()[idx]
    assert (gate_up[..., 0::2] > limit).any() and (gate_up[..., 1::2].abs() > limit).any()


def test_moe_dispatch(monkeypatch) -> None:
    calls = []
    for name in ("moe_mxfp4_decode", "moe_mxfp4_prefill"):
        real = getattr(moe_mod, name)
        monkeypatch.setattr(moe_mod, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    for N in (1, moe_mod.DECODE_MAX_TOKENS + 1):
        x, idx, wts, experts, _ = moe_case((N, 64, 32, 4, 2, (), 7.0), seed=80)
        assert_close(moe_mxfp4(x, idx, wts, *experts), moe_mxfp4_reference(x, idx, wts, *experts), "moe", True)
    assert calls == ["moe_mxfp4_decode", "moe_mxfp4_prefill"]


def test_moe_bad_inputs() -> None:
    x, idx, wts, experts, _ = moe_case((2, 64, 32, 4, 2, (), 7.0), seed=90)
    with pytest.raises(ValueError, match="expert_idx"):
        moe_mxfp4(x, idx + 3, wts, *experts)
    for bad in (4, -1):  # just past either end: 4 experts are 0..3
        with pytest.raises(ValueError, match=r"expert_idx holds values outside 0\.\.3 \(there are 4 experts\)"):
            moe_mxfp4(x, torch.full_like(idx, bad), wts, *experts)
    with pytest.raises(ValueError, match="down_scales"):
        moe_mxfp4(x, idx, wts, *experts[:4], experts[4][:, :-1], experts[5])
    with pytest.raises(ValueError, match="expert_weights"):
        moe_mxfp4(x, idx, wts[:, :1], *experts)


def test_moe_with_no_expert_per_token_adds_nothing() -> None:
    # K = 0: the output buffer (NaN under GPTOSS_KERNELS_POISON) must come back as zeros, not as it was allocated.
    x, idx, wts, experts, _ = moe_case((3, 64, 32, 4, 2, (), 7.0), seed=91)
    for run in (moe_mxfp4_decode, moe_mxfp4_prefill):
        out = run(x, idx[:, :0], wts[:, :0], *experts)
        assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x)), run.__name__


# ------------------------------------------------------- can the gpt-oss-20b sized cases fail?
#
# The 20b-sized cases above run on a GPU only, in bf16, where nobody may look at them for a while.
# These checks run everywhere, on the same inputs (the MoE's at their widths, with fewer tokens and
# experts): a kernel that skipped a piece of the work must miss REL_L2 several times over, and bf16
# rounded where the kernels round it must pass with room.
MISS, ROOM = 3.0, 3.0


def bf16(t: torch.Tensor) -> torch.Tensor:
    """A test input as the GPU tests pass it: rounded to bf16, here held in float32 on the CPU."""
    return t.cpu().to(torch.bfloat16).float()


def attention_rounded_as_the_kernel(q, k, v, *, scale, sinks, window, q_start):
    """The reference with the kernels' rounding: unnormalised probabilities go to bf16 before p @ v."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) * scale
    q_pos = torch.arange(q_start, q_start + q.shape[2])[:, None]
    k_pos = torch.arange(k.shape[2])[None, :]
    seen = (k_pos <= q_pos) & ((q_pos - k_pos < window) if window else True)
    scores = scores.masked_fill(~seen, float("-inf"))
    sink = sinks.view(1, -1, 1, 1)
    m = torch.maximum(scores.amax(-1, keepdim=True), sink)
    p = torch.exp(scores - m)
    total = p.sum(-1, keepdim=True) + torch.exp(sink - m)
    return bf16((bf16(p) @ v) / total)


@pytest.mark.parametrize("case", GPU_DECODE_CASES)
def test_the_gpu_attention_cases_can_fail(case) -> None:
    B, Hq, Hkv, Tq, Tk, q_start, D, window, sinks = case
    q, k, v, s = map(bf16, attention_inputs(B, Hq, Hkv, Tq, Tk, D, sinks, seed=20))  # test_attention_decode's
    kw = dict(scale=D ** -0.5, sinks=s, window=window, q_start=q_start)
    want = attention_reference(q, k, v, **kw)
    assert rel_l2(attention_rounded_as_the_kernel(q, k, v, **kw), want) < REL_L2[torch.bfloat16] / ROOM

    wrong = {}
    block = 16 if window else 256  # 256 keys: one split of 32 at 8k; in the window, one interpreter tile
    for start in range(Tk - window if window else 0, Tk, block):  # the keys [start, start + block) left out
        kept = lambda t: torch.cat((t[:, :, :start], t[:, :, start + block:]), dim=2)  # noqa: E731
        wrong[f"keys {start}.."] = attention_reference(q, kept(k), kept(v), **{
            **kw, "q_start": q_start - block, "window": window - block if window else 0})
    if window:
        wrong["window - 1"] = attention_reference(q, k, v, **{**kw, "window": window - 1})
        wrong["window + 1"] = attention_reference(q, k, v, **{**kw, "window": window + 1})
    wrong["no sinks"] = attention_reference(q, k, v, **{**kw, "sinks": None})
    wrong["scale times log2(e)"] = attention_reference(q, k, v, **{**kw, "scale": kw["scale"] * math.log2(math.e)})
    # Query head h reading KV head h % Hkv, not h // groups: the reference run on the heads reordered.
    to = torch.tensor([(h % Hkv) * (Hq // Hkv) + h // Hkv for h in range(Hq)])
    q2, s2 = torch.empty_like(q), torch.empty_like(s)
    q2[:, to], s2[to] = q, s
    wrong["KV head h % Hkv"] = attention_reference(q2, k, v, **{**kw, "sinks": s2})[:, to]
    assert_each_is_caught(wrong, want)


def assert_each_is_caught(wrong: dict[str, torch.Tensor], want: torch.Tensor) -> None:
    errors = {what: round(rel_l2(out, want), 4) for what, out in wrong.items()}
    missed = {what: e for what, e in errors.items() if e <= MISS * REL_L2[torch.bfloat16]}
    assert not missed, f"relative L2 errors too small to be caught with room in bf16: {missed}"


def moe_rounded_as_the_kernel(x, idx, wts, gu_b, gu_s, gu_bias, dn_b, dn_s, dn_bias, *, alpha, limit):
    """The reference with the kernels' rounding: the SwiGLU output h is stored in bf16 between the projections."""
    w1, w2 = mxfp4.dequantize(gu_b, gu_s, torch.float32), mxfp4.dequantize(dn_b, dn_s, torch.float32)
    out = torch.zeros_like(x)
    for e in idx.unique().tolist():
        token, slot = (idx == e).nonzero(as_tuple=True)
        gate_up = x[token] @ w1[e].T + gu_bias[e]
        gate, up = gate_up[:, 0::2].clamp(max=limit), gate_up[:, 1::2].clamp(-limit, limit)
        h = bf16((up + 1) * gate * torch.sigmoid(alpha * gate))
        out.index_add_(0, token, (h @ w2[e].T + dn_bias[e]) * wts[token, slot, None])
    return bf16(out)


def swap_gate_up(blocks: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor):
    """The gate/up projection with its interleaved gate and up rows exchanged."""
    swap = torch.arange(blocks.shape[1]).view(-1, 2).flip(1).flatten()
    return blocks[:, swap], scales[:, swap], bias[:, swap]


def test_the_gpu_moe_cases_can_fail() -> None:
    # The 20b cases' widths and limit, with 12 tokens, 3 experts and 2 a token to stay quick on a CPU.
    assert GPU_MOE_DECODE_CASE[1:3] == GPU_MOE_PREFILL_CASE[1:3]
    _, D, I, _, _, _, limit = GPU_MOE_PREFILL_CASE
    x, idx, wts, experts, limit = moe_case((12, D, I, 3, 2, (), limit), seed=70)
    x, idx, wts = bf16(x), idx.cpu(), wts.cpu()
    experts = [t.cpu() if t.dtype == torch.uint8 else bf16(t) for t in experts]
    kw = dict(alpha=1.702, limit=limit)
    want = moe_mxfp4_reference(x, idx, wts, *experts, **kw)
    assert rel_l2(moe_rounded_as_the_kernel(x, idx, wts, *experts, **kw), want) < REL_L2[torch.bfloat16] / ROOM

    def without(i: int) -> list[torch.Tensor]:
        return [torch.zeros_like(t) if j == i else t for j, t in enumerate(experts)]
    wrong = {
        "no gate/up bias": moe_mxfp4_reference(x, idx, wts, *without(2), **kw),
        "no down bias": moe_mxfp4_reference(x, idx, wts, *without(5), **kw),
        "no clamps": moe_mxfp4_reference(x, idx, wts, *experts, alpha=1.702, limit=float("inf")),
        "alpha 1": moe_mxfp4_reference(x, idx, wts, *experts, alpha=1.0, limit=limit),
        "equal routing weights": moe_mxfp4_reference(x, idx, torch.full_like(wts, 0.5), *experts, **kw),
        "first expert only": moe_mxfp4_reference(x, idx[:, :1], wts[:, :1], *experts, **kw),
        "gate and up swapped": moe_mxfp4_reference(x, idx, wts, *swap_gate_up(*experts[:3]), *experts[3:], **kw),
    }
    assert_each_is_caught(wrong, want)


# ------------------------------------------------------------------ the model on the kernels


def test_model_triton_backend_matches_torch(monkeypatch) -> None:
    """A tiny gpt-oss (packed experts, window, sinks, GQA): prefill and cached decode, both backends.

    In float32 on every device: in bf16 the two backends' rounding differs enough to flip a
    near-tie in the router's top-k, which is a different model, not a kernel error.
    """
    monkeypatch.setattr(attn_mod, "DECODE_MAX_ROWS", 8)  # 18 x 2 query rows per KV head: the prefill kernel
    # A tiny model's gate/up values stay near 1, far under 7: a low limit makes the clamps bite.
    cfg = dataclasses.replace(g.preset("gpt-oss-tiny"), vocab_size=512, n_layers=2, layer_types=(
        "sliding_attention", "full_attention"), swiglu_limit=0.5)
    clamped = []

    def watched_swiglu(gate_up: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
        clamped.append(((gate_up[..., 0::2] > limit).float().mean().item(),
                        (gate_up[..., 1::2].abs() > limit).float().mean().item()))
        return swiglu(gate_up, alpha, limit)
    swiglu = importlib.import_module("gptoss_edu.moe").gptoss_swiglu
    monkeypatch.setattr(importlib.import_module("gptoss_edu.moe"), "gptoss_swiglu", watched_swiglu)
    torch.manual_seed(0)
    model = g.GPT(cfg, packed_experts=True).to(device=DEVICE, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "sinks" in name or name.endswith("bias"):
                p.normal_(0.0, 0.5)
    ids = torch.randint(0, cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    logits = {}
    for backend in ("torch", "triton"):
        model.set_backend(backend)
        cache = model.new_cache(1, 24)
        with torch.no_grad():
            first = model(ids[:, :18], cache)  # 18 tokens: both prefill paths (with the lowered switch)
            rest = model(ids[:, 18:], cache)  # 2 more: both decode paths
        logits[backend] = torch.cat((first, rest), dim=1)
    gate_share, up_share = torch.tensor(clamped).mean(dim=0).tolist()  # the torch backend's calls
    assert 0.05 < gate_share < 0.5 and 0.05 < up_share < 0.5, (gate_share, up_share)
    torch.testing.assert_close(logits["triton"], logits["torch"], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ without Triton


def run_python(code: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_import_without_triton_then_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = run_python("""
        import sys
        sys.modules["triton"] = None  # as if Triton were not installed
        import torch, gptoss_kernels
        from gptoss_kernels.rmsnorm import rmsnorm
        assert not gptoss_kernels.triton_available()
        try:
            rmsnorm(torch.ones(2, 8), torch.ones(8), 1e-5)
        except RuntimeError as err:
            print(err)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert "not installed" in proc.stdout and "set_backend('torch')" in proc.stdout


@pytest.mark.skipif(ON_GPU, reason="the interpreter runs only without a GPU here")
def test_the_interpreter_refuses_bfloat16() -> None:
    # Its bfloat16 arithmetic is wrong (a bf16 add gives NaN): an error, never a silent wrong answer.
    x = torch.randn(64).bfloat16()
    with pytest.raises(RuntimeError, match="bfloat16 tensors in Triton's interpreter.*float32"):
        vector_add(x, x)
    with pytest.raises(RuntimeError, match="bfloat16 tensors in Triton's interpreter"):
        rmsnorm(x[None], torch.ones(64, dtype=torch.bfloat16), 1e-5)


@pytest.mark.skipif(ON_GPU, reason="the interpreter runs only without a GPU here")
def test_an_interpreter_that_cannot_run_with_this_numpy_is_named_before_launch(monkeypatch) -> None:
    # Triton 3.6's interpreter with numpy 2.4 stops mid-kernel in an InterpreterError about
    # 0-dimensional arrays (seen here with the attention kernels): say which versions, and what to install.
    problem = "Triton 3.6.0's interpreter cannot run with numpy 2.4.6"
    monkeypatch.setattr(common, "interpreter_problem", lambda: problem)
    x = torch.randn(2, 64)
    with pytest.raises(RuntimeError, match=f"gptoss_kernels.rmsnorm cannot run: {problem}.*set_backend"):
        rmsnorm(x, torch.ones(64), 1e-5)
    with pytest.raises(RuntimeError, match=f"cannot run here: {problem}"):
        gptoss_kernels.require_triton("cpu")
    monkeypatch.setattr(common, "interpreter_problem", lambda: None)
    assert_close(rmsnorm(x, torch.ones(64), 1e-5), rmsnorm_reference(x, torch.ones(64), 1e-5), "rmsnorm")
    gptoss_kernels.require_triton("cpu")


def test_cpu_tensors_without_interpreter_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = run_python("""
        import torch
        from gptoss_kernels.rmsnorm import rmsnorm
        try:
            rmsnorm(torch.ones(2, 8), torch.ones(8), 1e-5)
        except RuntimeError as err:
            print(err)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert "TRITON_INTERPRET=1" in proc.stdout and "set_backend('torch')" in proc.stdout


def test_dequantize_mxfp4_names_itself_and_its_fallback_without_the_interpreter() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = run_python("""
        import torch
        from gptoss_kernels.moe import dequantize_mxfp4
        try:
            dequantize_mxfp4(torch.zeros(2, 16, dtype=torch.uint8), torch.zeros(2, dtype=torch.uint8))
        except RuntimeError as err:
            print(err)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gptoss_kernels.moe.dequantize_mxfp4 got CPU tensors"), proc.stdout
    assert proc.stdout.rstrip().endswith("or gptoss_edu.mxfp4.dequantize."), proc.stdout


@pytest.mark.skipif(ON_GPU, reason="the interpreter runs only without a GPU here")
def test_dequantize_mxfp4_refuses_to_write_bfloat16_in_the_interpreter() -> None:
    """Its inputs are bytes, so the launch check's bfloat16 guard missed it: scale bytes 0 and 1 came out 0."""
    blocks = torch.full((2, 16), 0x11, dtype=torch.uint8)
    scales = torch.tensor([0, 1], dtype=torch.uint8)
    assert mxfp4.dequantize(blocks, scales, torch.bfloat16).abs().min() > 0  # subnormal, not 0
    with pytest.raises(RuntimeError, match=r"dequantize_mxfp4 cannot write bfloat16 in Triton's interpreter.*"
                                           r"dtype=torch.float32, or use gptoss_edu.mxfp4.dequantize"):
        dequantize_mxfp4(blocks, scales, torch.bfloat16)
    assert torch.equal(dequantize_mxfp4(blocks, scales, torch.float32), mxfp4.dequantize(blocks, scales, torch.float32))


def test_aot_refuses_interpreted_kernels() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "gptoss_kernels.aot"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2 and "run this without TRITON_INTERPRET" in proc.stderr
    assert proc.stderr.startswith("gptoss_kernels.aot: the kernels are interpreted here") and "Traceback" not in proc.stderr


def compile_table(arch: str, dtype: str, home: Path | None = None) -> list[list[str]]:
    """The rows of `python -m gptoss_kernels.aot`'s table: kernel, warps, shared bytes, registers, spills, PTX, launches."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if home is not None:  # Triton's cache goes where HOME says, unless TRITON_CACHE_DIR says otherwise
        env = {k: v for k, v in env.items() if k not in ("TRITON_CACHE_DIR", "TRITON_HOME")} | {"HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "gptoss_kernels.aot", "--arch", arch, "--dtype", dtype],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if home is not None:
        assert "Triton's cache" in proc.stderr and "set TRITON_CACHE_DIR" in proc.stderr, proc.stderr[-3000:]
    return [line.split(None, 6) for line in proc.stdout.splitlines()[1:] if line.strip()]


def test_kernels_compile_for_h100(tmp_path) -> None:
    """Every kernel launch of a gpt-oss-20b forward compiles for sm_90 as the GPU would run it (no GPU needed)."""
    # With a HOME that cannot be written (a read-only container, the account nobody): Triton has no fallback
    # for its cache and stopped at the first compile with a PermissionError; the kernels give it one.
    (tmp_path / "file").write_text("")
    rows = compile_table("90", "bf16", home=tmp_path / "file" / "home")
    names = {r[0] for r in rows}
    assert {"_rmsnorm_kernel", "_attn_prefill_kernel", "_attn_decode_kernel", "_attn_combine_kernel",
            "_attn_decode_at_kernel", "_gate_up_matvec_kernel", "_down_matvec_kernel", "_gate_up_grouped_kernel",
            "_down_grouped_kernel", "_dequant_kernel", "_add_kernel"} == names
    launched = " ".join(r[6] for r in rows)
    for what in ("decode attention at 8k", "CUDA-graph decode attention, sliding layer", "experts, one token",
                 "experts, a 2048-token prompt", "prefill attention, 2048 tokens",
                 "decode attention, a prompt of 16 tokens", "experts, the most tokens their decode path takes"):
        assert what in launched
    for r in rows:
        assert int(r[2]) <= 227 * 1024, f"{r[0]} needs {r[2]} bytes of shared memory, more than an H100 has"
        assert r[4] in ("0", "?"), f"{r[0]} spills {r[4]} bytes a thread to local memory"


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernels_fit_a_consumer_gpu(dtype) -> None:
    """Every launch fits the 99 KB of shared memory a block gets on sm_86 and sm_89 (RTX 30xx, 40xx), float32 too."""
    rows = compile_table("89", dtype)
    most = 16 if dtype == "bf16" else 8  # the decode kernel's most query rows, over gpt-oss's 8 per KV head
    assert f"decode attention, a prompt of {most} tokens" in " ".join(r[6] for r in rows)
    for r in rows:
        assert int(r[2]) <= 99 * 1024, f"{r[0]} needs {r[2]} bytes of shared memory on sm_89 in {dtype} ({r[6]})"


def test_aot_compiles_the_gpu_tiles_and_splits() -> None:
    """What kernels.aot compiles carries an H100's tile sizes, split counts and tensor-core dots, not the CPU's."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = run_python("""
        import json
        from gptoss_kernels.aot import compile_all
        print(json.dumps([(c.name, {k: v for k, v in c.constexprs.items() if k.isupper()}, c.launches,
                           c.num_warps, c.loop_instructions, c.shared_bytes, c.registers)
                          for c in compile_all("bf16", 90, 132)]))
    """, env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])

    def tiles(name: str, *keys: str) -> set[tuple]:
        return {tuple(c[k] for k in keys) for n, c, *_ in rows if n == name}

    assert tiles("_attn_prefill_kernel", "BLOCK_M", "BLOCK_N", "DOT_PREC") == {(64, 64, "ieee")}
    for name in ("_attn_decode_kernel", "_attn_decode_at_kernel"):
        assert tiles(name, "BLOCK_N", "DOT_PREC") == {(64, "ieee")}, name
    for name in ("_gate_up_grouped_kernel", "_down_grouped_kernel"):
        assert tiles(name, "BLOCK_M", "BLOCK_B", "DOT_PREC") == {(64, 32, "ieee")}, name
    for name in ("_gate_up_matvec_kernel", "_down_matvec_kernel"):
        assert tiles(name, "BLOCK_B") == {(128,)}, name
    # 8193 keys over 8 KV heads on 132 SMs: 33 splits of 256 keys, combined with BLOCK_S = 64.
    combine_8k = [c["BLOCK_S"] for n, c, what, *_ in rows
                  if n == "_attn_combine_kernel" and "decode attention at 8k, full layer" in what]
    assert combine_8k == [64]
    # A decode step's experts: the loop over the packed weights must stay cheaper per byte than the
    # bandwidth it streams. Decoding E2M1 bit by bit in fp32 cost 43 instructions per byte a thread
    # reads (a GPU would have run out of instruction slots first); read as fp16 bits, about 21.
    for name, rows_per_pass, weights in (("_gate_up_matvec_kernel", "BLOCK_I", 2), ("_down_matvec_kernel", "BLOCK_N", 1)):
        (c, warps, loop), = {(json.dumps(c), w, n) for k, c, _, w, n, *_ in rows if k == name}
        c = json.loads(c)
        bytes_a_thread = c[rows_per_pass] * c["BLOCK_B"] * weights / (warps * 32)
        assert loop is not None, f"{name}: no loop found in cuobjdump's SASS (is cuobjdump in triton's nvidia backend?)"
        assert loop / bytes_a_thread <= 28, f"{name}: {loop} SASS instructions a pass for {bytes_a_thread:g} bytes a thread"
    # benchmarks/RESULTS.md's table of these kernels (its Triton 3.9 halves) is what they compile to now: a kernel
    # change must refresh it (python -m gptoss_kernels.aot prints the figures).
    table: collections.Counter = collections.Counter()
    for line in (Path(__file__).parents[1] / "benchmarks" / "RESULTS.md").read_text().splitlines():
        m = re.match(r"\| `(_\w+)`.*\| (\d+) \| (\d+) / \d+ \| (\d+) / \d+ \| (?:(\d+) / \d+|\(no loop\)) \|$", line)
        if m:
            table[(m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5]) if m[5] else None)] += 1
    assert sum(table.values()) == 12, table  # the table's rows, all read
    compiled = collections.Counter((n, w, shared, regs, loop) for n, _, _, w, loop, shared, regs in rows
                                   if n in {row[0] for row in table})
    assert table == compiled, (f"benchmarks/RESULTS.md says {sorted(table - compiled)}, the kernels compile to "
                               f"{sorted(compiled - table)} (kernel, warps, shared bytes, registers, loop SASS)")


def test_dot_precision_and_poison() -> None:
    # float32 dots stay exact (the interpreter's checks rely on it); bf16 and fp16 dots are the same either way,
    # and "tf32" stopped every bf16 kernel with a dot on most AMD GPUs.
    assert common.DOT_PRECISION == "ieee"
    # Every test above relies on unwritten elements being NaN.
    assert os.environ[common.POISON_ENV] == "1"
    assert common.new_buffer((3, 5), torch.float32, torch.device("cpu")).isnan().all()


def test_aot_compiles_decode_attention_at_its_most_query_rows(monkeypatch):
    """kernels.aot's 'most query rows' launch gives the decode kernel exactly decode_max_rows, in both dtypes."""
    from gptoss_kernels import aot

    seen = []
    monkeypatch.setattr(attn_mod, "attention", lambda q, k, v, **kw: seen.append((q.shape, k.shape)))
    for dtype in (torch.bfloat16, torch.float32):
        seen.clear()
        (call,) = [c for what, c in aot._launches(dtype) if "the most query rows" in what]
        call()
        ((_, hq, tq, _), (_, hkv, tk, _)), = seen
        assert hq // hkv * tq == attn_mod.decode_max_rows(dtype) and tk == tq


@pytest.mark.parametrize("kernel", [moe_mxfp4_decode, moe_mxfp4_prefill])
def test_moe_keeps_a_nan_where_the_reference_does(kernel) -> None:
    """A NaN reaching the experts stays NaN, as torch.clamp keeps it: the clamps must not turn it into the limit."""
    x, idx, wts, experts, _ = moe_case((3, 64, 32, 4, 2, (), 7.0), seed=90)
    x[1, 7] = float("nan")  # one activation of token 1 blew up upstream
    want = moe_mxfp4_reference(x, idx, wts, *experts, alpha=1.702, limit=7.0)
    got = kernel(x, idx.to(torch.int32) if kernel is moe_mxfp4_decode else idx, wts, *experts, alpha=1.702, limit=7.0)
    assert want[1].isnan().all() and not want[[0, 2]].isnan().any()  # the case is what it claims
    assert torch.equal(got.isnan(), want.isnan())
    assert_close(got[[0, 2]], want[[0, 2]], "moe", scale_atol=True)


@pytest.mark.parametrize("kernel", [moe_mxfp4_decode, moe_mxfp4_prefill])
@pytest.mark.parametrize("half", [0, 1], ids=["gate", "up"])
def test_moe_keeps_a_nan_in_the_gate_or_the_up_half_alone(kernel, half) -> None:
    """A NaN in x reaches gate and up alike; one in a bias reaches one half only, and each clamp must keep it."""
    x, idx, wts, experts, _ = moe_case((6, 64, 32, 4, 2, (), 7.0), seed=91)
    experts = list(experts)
    experts[2] = experts[2].clone()
    experts[2][1, half] = float("nan")  # expert 1's first unit: its gate (even entry) or its up (odd entry)
    want = moe_mxfp4_reference(x, idx, wts, *experts, alpha=1.702, limit=7.0)
    got = kernel(x, idx.to(torch.int32) if kernel is moe_mxfp4_decode else idx, wts, *experts, alpha=1.702, limit=7.0)
    to_expert_1 = (idx == 1).any(dim=1)
    assert to_expert_1.any() and not to_expert_1.all()  # the case is what it claims
    assert torch.equal(want.isnan().all(dim=1), to_expert_1) and not want[~to_expert_1].isnan().any()
    assert torch.equal(got.isnan(), want.isnan())
    assert_close(got[~to_expert_1], want[~to_expert_1], "moe", scale_atol=True)


def test_lengths_and_positions_are_not_specialized_on() -> None:
    """Triton compiles a variant per integer argument that is 1 or a multiple of 16 unless told not to: arguments
    that change with the prompt or the cache must be listed, or a chat turn may stop to compile (the CUDA-graph
    decode kernel once was left out)."""
    import ast
    from pathlib import Path

    varying = {"Tq", "Tk", "q_start", "window", "kv_lo", "kv_hi", "chunk", "n_splits"}
    source = Path(gptoss_kernels.__file__).with_name("attention.py").read_text()
    kernels = [f for f in ast.walk(ast.parse(source)) if isinstance(f, ast.FunctionDef) and f.name.endswith("_kernel")]
    assert len(kernels) == 4
    for f in kernels:
        (jit,) = f.decorator_list
        keywords = jit.keywords if isinstance(jit, ast.Call) else []  # a bare @triton.jit lists nothing
        listed = next((ast.literal_eval(k.value) for k in keywords if k.arg == "do_not_specialize"), [])
        args = {a.arg for a in f.args.args}
        assert args & varying <= set(listed), f"{f.name}: {sorted(args & varying - set(listed))} not listed"


def test_a_home_that_may_not_be_entered_gets_a_temporary_triton_cache(tmp_path, monkeypatch) -> None:
    """A container run as another user with HOME=/root: Path.exists raises PermissionError inside it, and importing
    the kernels failed with it where Triton would only have needed another cache folder."""
    from gptoss_kernels import _common
    from simulated import unenterable

    locked = tmp_path / "locked"
    unenterable(monkeypatch, locked)
    monkeypatch.setattr(_common, "interpreter_mode", lambda: False)
    monkeypatch.setattr(_common, "triton_available", lambda: True)
    for name in ("TRITON_CACHE_DIR", "TRITON_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(locked / "home"))
    with pytest.warns(UserWarning, match="set TRITON_CACHE_DIR"):
        folder = _common.writable_triton_cache()
    assert folder is not None and os.environ["TRITON_CACHE_DIR"] == folder and os.path.isdir(folder)
    monkeypatch.setenv("HOME", str(tmp_path))  # a home that can be written: nothing to do
    monkeypatch.delenv("TRITON_CACHE_DIR")
    assert _common.writable_triton_cache() is None and "TRITON_CACHE_DIR" not in os.environ
    # A TRITON_CACHE_DIR of the learner's own that cannot be written stopped the first compile deep inside Triton.
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "a-file" / "triton"))
    with pytest.warns(UserWarning, match=r"TRITON_CACHE_DIR=.*a-file/triton cannot be written here \(.*is a file"):
        folder = _common.writable_triton_cache()
    assert os.environ["TRITON_CACHE_DIR"] == folder and os.path.isdir(folder)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))  # one that can: kept
    assert _common.writable_triton_cache() is None and os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "mine")


def test_numpy_numbers_and_a_tensor_scale_are_taken_as_the_reference_takes_them() -> None:
    """np.int64 passed the whole-number check and failed inside Triton ("cannot convert ... to tensor"); a 0-d
    tensor scale reached the kernel as a pointer. attend and the reference take both."""
    import numpy as np

    from gptoss_kernels.attention import attention_decode_at

    q, k, v, s = attention_inputs(1, 4, 2, 2, 9, 16, True, seed=70)
    want = attention_reference(q, k, v, scale=0.25, sinks=s, window=3, q_start=7)
    for kernel in (attention, attention_prefill, attention_decode):
        for scale in (np.float32(0.25), torch.tensor(0.25)):
            got = kernel(q, k, v, scale=scale, sinks=s, window=np.int64(3), q_start=np.int64(7))
            assert_close(got, want, "attention")
    one = q[:, :, :1]
    got = attention_decode_at(one, k, v, torch.tensor([8], device=DEVICE), scale=torch.tensor(0.25), sinks=s,
                              window=np.int64(3))
    assert_close(got, attention_reference(one, k, v, scale=0.25, sinks=s, window=3, q_start=8), "attention")
    with pytest.raises(TypeError, match="scale must be a number, got 'x'"):
        attention(q, k, v, scale="x", sinks=s, q_start=7)


def test_no_queries_give_an_empty_result_on_both_paths() -> None:
    """The reference attend stopped on torch.cat of an empty list; the kernels gave [B, Hq, 0, D]."""
    q, k, v, s = attention_inputs(1, 4, 2, 0, 5, 16, True, seed=71)
    assert g.attention.attend(q, k, v, scale=0.25, sinks=s, q_start=5).shape == (1, 4, 0, 16)
    assert attention(q, k, v, scale=0.25, sinks=s, q_start=5).shape == (1, 4, 0, 16)
