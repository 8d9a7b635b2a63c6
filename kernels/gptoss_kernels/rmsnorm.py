"""RMSNorm as a Triton kernel: one program normalises one row, in float32."""

import torch

from ._common import (FLOAT_DTYPES, check_index_range, check_launch, check_shape, check_tensor, extent, new_buffer,
                      on_tensors_device, refuse_grad, tl, triton)

# One program holds a whole row in registers; beyond this the row would spill.
MAX_D = 65536


@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, out_ptr, stride_x, stride_out, D, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_D)
    mask = offs < D  # BLOCK_D is D rounded up to a power of two (2880 -> 4096)
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    # Masked lanes are 0, so they add nothing to the sum; divide by the true D.
    mean_sq = tl.sum(x * x, axis=0) / D
    rstd = 1.0 / tl.sqrt(mean_sq + eps)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = w * (x * rstd)
    tl.store(out_ptr + row * stride_out + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


@on_tensors_device
def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight over the last dim of x [..., D], in fp32, cast back to x's dtype."""
    check_tensor("x", x, dtypes=FLOAT_DTYPES)
    check_tensor("weight", weight, ndim=1, dtypes=FLOAT_DTYPES)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (rmsnorm normalises over the last one), got a 0-d tensor")
    D = x.shape[-1]
    check_shape("weight", weight, (D,))
    if D == 0 or D > MAX_D:
        raise ValueError(f"rmsnorm needs 0 < D <= {MAX_D} (the last dim of x), got x of shape {tuple(x.shape)}")
    check_launch(_rmsnorm_kernel, "rmsnorm", x, weight)
    refuse_grad("rmsnorm", x=x)
    x2 = x.reshape(-1, D)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    check_index_range("rmsnorm", x=extent(x2), out=x2.numel())  # row * stride is a 32-bit product
    out = new_buffer(tuple(x2.shape), x.dtype, x.device)
    if x2.shape[0]:
        block = triton.next_power_of_2(D)
        weight = weight.detach().contiguous()  # read as w_ptr + column
        _rmsnorm_kernel[(x2.shape[0],)](x2, weight, out, x2.stride(0), out.stride(0), D, float(eps),
                                        BLOCK_D=block, num_warps=min(16, max(1, block // 512)))
    return out.view(x.shape)


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The same in PyTorch: normalise by the root mean square in float32, scale, cast back."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * xf).to(x.dtype)
