"""gptoss_kernels.memcheck: it sees a load or store outside a launch's tensors, and nothing else."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu.env import triton_gpu

triton = pytest.importorskip("triton", reason="Triton has no build for this platform (it needs Linux)")
import triton.language as tl  # noqa: E402

from gptoss_kernels.memcheck import byte_range, stray_accesses  # noqa: E402

pytestmark = pytest.mark.skipif(triton_gpu(), reason="compiled on a GPU, addresses cannot be watched")


@triton.jit
def copy(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n, other=0.0), mask=offs < n)


@triton.jit
def load_one_past(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs <= n, other=0.0)  # <=: reads x[n]; that lane is never stored
    tl.store(out_ptr + offs, x, mask=offs < n)


@triton.jit
def store_before(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs - 1, tl.load(x_ptr + offs, mask=offs < n, other=0.0), mask=offs < n)


def launch(kernel, n=5):
    # Both tensors are views inside one larger buffer: a stray access lands in real memory, and only
    # the views' own bounds tell it from a right one.
    buf = torch.zeros(64)
    x, out = buf[8:8 + n], buf[32:32 + n]
    x.copy_(torch.arange(1.0, n + 1))
    kernel[(1,)](x, out, n, BLOCK=8)
    return out


def test_a_right_kernel_touches_only_its_tensors():
    with stray_accesses() as strays:
        out = launch(copy)
    assert strays == [] and out.tolist() == [1, 2, 3, 4, 5]


def test_a_load_whose_lane_is_never_stored_is_seen():
    with stray_accesses() as strays:
        out = launch(load_one_past)
    assert out.tolist() == [1, 2, 3, 4, 5]  # the outputs cannot tell
    assert [(s.kernel, s.kind, s.count, s.first) for s in strays] == [("load_one_past", "load", 1, 5 * 4)]  # x[5]
    assert str(strays[0]) == "load_one_past: 1 stray load(s), the first +20 bytes from a tensor's start"


def test_a_store_before_the_start_is_seen():
    with stray_accesses() as strays:
        launch(store_before)
    assert [(s.kernel, s.kind, s.count, s.first) for s in strays] == [("store_before", "store", 1, -4)]


def test_the_watch_is_taken_off_after_the_block():
    from triton.runtime.interpreter import GridExecutor, InterpreterBuilder

    before = (GridExecutor._init_args_hst, InterpreterBuilder.create_masked_load,
              InterpreterBuilder.create_masked_store)
    with stray_accesses():
        launch(copy)
    assert (GridExecutor._init_args_hst, InterpreterBuilder.create_masked_load,
            InterpreterBuilder.create_masked_store) == before


def test_byte_range_follows_strides():
    t = torch.zeros(3, 4)
    assert byte_range(t) == (t.data_ptr(), t.data_ptr() + 12 * 4)
    assert byte_range(t.T) == byte_range(t)  # a transposed view spans the same memory
    col = t[:, 1]
    assert byte_range(col) == (t.data_ptr() + 4, t.data_ptr() + 4 + (2 * 4 + 1) * 4)
