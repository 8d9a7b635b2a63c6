"""Hello Triton: add two vectors, one block of elements per program."""

import torch

from ._common import check_index_range, check_launch, new_buffer, on_tensors_device, tl, triton


@triton.jit
def _add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    # Program pid handles elements pid*BLOCK .. pid*BLOCK + BLOCK - 1; the mask guards the tail.
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y, mask=mask)


@on_tensors_device
def vector_add(x: torch.Tensor, y: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """x + y for two tensors of the same shape, dtype and device, computed by a Triton kernel."""
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"x and y must match: x is {tuple(x.shape)} {x.dtype}, y is {tuple(y.shape)} {y.dtype}")
    if x.dtype == torch.bool:  # True + True would wrap to False in the kernel, where torch gives True
        raise TypeError("vector_add adds numbers: convert bool tensors first (x.int(), or x | y for a logical or)")
    check_launch(_add_kernel, "vector_add", x, y)
    if block <= 0 or block & (block - 1):
        raise ValueError(f"block must be a power of two (tl.arange needs one), got {block}")
    x, y = x.contiguous(), y.contiguous()
    n = x.numel()
    check_index_range("vector_add", x=n)  # pid * BLOCK + lane is a 32-bit offset
    out = new_buffer(tuple(x.shape), x.dtype, x.device)
    _add_kernel[(triton.cdiv(n, block),)](x, y, out, n, BLOCK=block)
    return out


def vector_add_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same sum in PyTorch."""
    return x + y
