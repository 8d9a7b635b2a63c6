"""Compile the kernels ahead of time for a GPU that need not be here, and look at what came out.

Triton can compile for any NVIDIA architecture without a GPU (it ships its own ptxas), so this
checks on a laptop or in CI that every kernel builds for an H100 (sm_90) with the tile sizes
the wrappers launch on a GPU, and reports each one's shared memory and registers per thread.

    python -m gptoss_kernels.aot            # bf16, sm_90
    python -m gptoss_kernels.aot --dtype fp32 --arch 80

It needs the kernels compiled, not interpreted: run it without TRITON_INTERPRET.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from ._common import _interpreted, triton, triton_available


@dataclass
class Compiled:
    """One kernel compiled for one configuration."""

    name: str
    constexprs: dict[str, Any]
    num_warps: int
    shared_bytes: int
    registers: int | None  # per thread, from cuobjdump when it is available
    ptx_lines: int


def _specs(dtype: str) -> list[tuple[Any, dict[str, str], dict[str, Any], int, int]]:
    """(kernel, argument types, constexprs, num_warps, num_stages): gpt-oss-20b shapes, GPU tile sizes."""
    # The package exports functions under the modules' names: fetch the modules themselves.
    A, M, R, V = (importlib.import_module(f"{__package__}.{m}") for m in ("attention", "moe", "rmsnorm", "vector_add"))

    prec = "ieee" if dtype == "fp32" else "tf32"
    attn = {"qk_scale": "fp32", "m_ptr": "*fp32", "l_ptr": "*fp32", "acc_ptr": "*fp32"}
    moe = {"alpha": "fp32", "limit": "fp32", "idx_ptr": "*i32", "order_ptr": "*i32", "tile_expert_ptr": "*i32",
           "tile_start_ptr": "*i32", "tile_end_ptr": "*i32", "blk_ptr": "*u8", "scl_ptr": "*u8",
           "wt_ptr": "*fp32", "y_ptr": "*fp32"}
    d, i = 2880 // 2, 2880 // 2  # bytes per packed row of each expert matrix
    return [
        (V._add_kernel, {}, dict(BLOCK=1024), 4, 3),
        (R._rmsnorm_kernel, {"eps": "fp32"}, dict(BLOCK_D=4096), 8, 3),
        (A._attn_prefill_kernel, attn, dict(GROUPS=8, HAS_SINKS=True, DOT_PREC=prec, BLOCK_M=64, BLOCK_N=64,
                                            BLOCK_D=64), 4, 2),
        (A._attn_decode_kernel, attn, dict(GROUPS=8, FOLD_SINK=True, FINAL=True, DOT_PREC=prec, BLOCK_M=16,
                                           BLOCK_N=64, BLOCK_D=64), 4, 3),
        (A._attn_decode_kernel, attn, dict(GROUPS=8, FOLD_SINK=False, FINAL=False, DOT_PREC=prec, BLOCK_M=16,
                                           BLOCK_N=64, BLOCK_D=64), 4, 3),
        (A._attn_combine_kernel, attn, dict(GROUPS=8, HAS_SINKS=True, BLOCK_S=32, BLOCK_D=64), 1, 3),
        (M._dequant_kernel, moe, dict(BLOCK=1024), 4, 3),
        (M._gate_up_matvec_kernel, moe, dict(ROW_BYTES=d, BLOCK_I=16, BLOCK_B=128), 4, 3),
        (M._down_matvec_kernel, moe, dict(ROW_BYTES=i, BLOCK_N=16, BLOCK_B=128), 4, 3),
        (M._gate_up_grouped_kernel, moe, dict(ROW_BYTES=d, DOT_PREC=prec, BLOCK_M=64, BLOCK_I=64, BLOCK_B=32), 8, 3),
        (M._down_grouped_kernel, moe, dict(ROW_BYTES=i, DOT_PREC=prec, BLOCK_M=64, BLOCK_N=64, BLOCK_B=32), 8, 3),
    ]


def _registers(cubin: bytes) -> int | None:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("REG:"):
            return int(word[4:])
    return None


def compile_all(dtype: str = "bf16", arch: int = 90) -> list[Compiled]:
    """Compile every kernel for ``arch`` (90 = H100) with activations in ``dtype`` ('bf16' or 'fp32')."""
    if not triton_available():
        raise RuntimeError("compiling the kernels needs Triton, which is not installed")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    results = []
    for kernel, types, constexprs, num_warps, num_stages in _specs(dtype):
        if _interpreted(kernel):
            raise RuntimeError("the kernels were imported with TRITON_INTERPRET set: run this without it")
        sig = {}
        for name in inspect.signature(kernel.fn).parameters:
            if name in constexprs:
                sig[name] = "constexpr"
            elif name.endswith("_ptr"):
                sig[name] = types.get(name, "*" + dtype)
            else:
                sig[name] = types.get(name, "i32")
        k = triton.compile(ASTSource(kernel, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", arch, 32),
                           options={"num_warps": num_warps, "num_stages": num_stages})
        results.append(Compiled(kernel.fn.__name__, constexprs, num_warps, k.metadata.shared,
                                _registers(k.asm["cubin"]), k.asm["ptx"].count("\n")))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Compile the gptoss_kernels for a GPU architecture (no GPU needed).")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--arch", type=int, default=90, help="compute capability times ten: 80 A100, 90 H100")
    args = p.parse_args(argv)
    print(f"{'kernel':<26}{'warps':>6}{'shared B':>10}{'regs':>6}{'PTX lines':>11}  constexprs")
    for c in compile_all(args.dtype, args.arch):
        print(f"{c.name:<26}{c.num_warps:>6}{c.shared_bytes:>10}{c.registers or '?':>6}{c.ptx_lines:>11}  {c.constexprs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
