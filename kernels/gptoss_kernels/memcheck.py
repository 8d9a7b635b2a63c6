"""Which memory a kernel touches in Triton's interpreter: every load and store, checked against its tensors.

A kernel that loads past the end of a tensor can still give the right outputs: the lanes that
made the stray load are masked off when storing, or the stray value is multiplied by zero. On a
GPU the same load reads another tensor's memory or faults. Triton's interpreter runs every load
and store through one builder, so on the CPU the addresses themselves can be watched:

    with stray_accesses() as strays:
        rmsnorm(x, w, 1e-5)
    assert not strays, strays

The tests wrap every kernel test in it (tests/test_kernels.py). It needs TRITON_INTERPRET=1.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

# (kernel, kind, the byte addresses it touched, bytes an element, the byte ranges of the launch's tensors:
# the watcher's own list, valid during the call)
Access = Callable[[str, str, np.ndarray, int, list[tuple[int, int]]], None]


def byte_range(t: torch.Tensor) -> tuple[int, int]:
    """[first byte, one past the last byte) of the memory a tensor's elements occupy, strides included."""
    last = sum((n - 1) * s for n, s in zip(t.shape, t.stride()))  # torch strides are never negative
    return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()


@contextlib.contextmanager
def watch_accesses(on_access: Access) -> Iterator[bool]:
    """Call ``on_access`` for every masked load and store the interpreter makes; yields whether it can watch."""
    try:
        from triton.runtime.interpreter import GridExecutor, InterpreterBuilder

        real_args, real_load = GridExecutor._init_args_hst, InterpreterBuilder.create_masked_load
        real_store = InterpreterBuilder.create_masked_store
    except (ImportError, AttributeError):  # no Triton, or another Triton's internals: watch nothing
        yield False
        return
    ranges: list[tuple[int, int]] = []
    kernel = ["?"]

    def args(self: Any, args_dev: Any, kwargs: Any) -> Any:
        args_hst, kwargs_hst = real_args(self, args_dev, kwargs)
        kernel[0] = getattr(self.fn, "__name__", "?")
        # The launch's own tensors, as the interpreter hands them to the kernel (same memory on a CPU).
        ranges[:] = [byte_range(a) for a in (*args_hst, *kwargs_hst.values())
                     if isinstance(a, torch.Tensor) and a.numel()]
        return args_hst, kwargs_hst

    def seen(kind: str, ptrs: Any, mask: Any) -> None:
        data = np.asarray(ptrs.data)
        touched = data[np.broadcast_to(np.asarray(mask.data, dtype=bool), data.shape)]
        if touched.size:
            on_access(kernel[0], kind, touched.astype(np.int64), ptrs.get_element_ty().primitive_bitwidth // 8, ranges)

    def load(self: Any, ptrs: Any, mask: Any, *rest: Any, **kw: Any) -> Any:
        seen("load", ptrs, mask)
        return real_load(self, ptrs, mask, *rest, **kw)

    def store(self: Any, ptrs: Any, value: Any, mask: Any, *rest: Any, **kw: Any) -> Any:
        seen("store", ptrs, mask)
        return real_store(self, ptrs, value, mask, *rest, **kw)

    GridExecutor._init_args_hst, InterpreterBuilder.create_masked_load = args, load
    InterpreterBuilder.create_masked_store = store
    try:
        yield True
    finally:
        GridExecutor._init_args_hst, InterpreterBuilder.create_masked_load = real_args, real_load
        InterpreterBuilder.create_masked_store = real_store


@dataclass
class Stray:
    """Elements a load or store touched outside every tensor its launch was given."""

    kernel: str
    kind: str
    count: int
    first: int  # the first stray address, in bytes from the nearest tensor's start (negative: before it)

    def __str__(self) -> str:
        return f"{self.kernel}: {self.count} stray {self.kind}(s), the first {self.first:+,} bytes from a tensor's start"


@contextlib.contextmanager
def stray_accesses() -> Iterator[list[Stray]]:
    """The loads and stores inside the block that touched memory outside the launch's tensors."""
    strays: list[Stray] = []

    def check(kernel: str, kind: str, touched: np.ndarray, size: int, ranges: list[tuple[int, int]]) -> None:
        inside = np.zeros(touched.shape, dtype=bool)
        for lo, hi in ranges:
            inside |= (touched >= lo) & (touched + size <= hi)
        if not inside.all():
            bad = int(touched[~inside][0])
            start = min((lo for lo, _ in ranges), key=lambda lo: abs(bad - lo), default=0)
            strays.append(Stray(kernel, kind, int((~inside).sum()), bad - start))

    with watch_accesses(check) as watching:
        if not watching:
            raise RuntimeError("Triton's interpreter cannot be watched here: run with TRITON_INTERPRET=1 "
                               "and the Triton version constraints.txt pins")
        yield strays
