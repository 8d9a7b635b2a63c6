"""Compile the kernels ahead of time for a GPU that need not be here, and look at what came out.

Triton can compile for any NVIDIA architecture without a GPU (it ships its own ptxas), so this
checks on a laptop or in CI that every kernel builds for an H100 or H200 (sm_90), and reports
each one's shared memory, registers per thread and spills. What it compiles is what a GPU would
run: it calls the wrappers (attention, moe_mxfp4, rmsnorm, ...) at gpt-oss-20b's shapes with
the GPU's tile sizes and split counts, records each kernel launch instead of running it, and
compiles it with the argument types and specialisations Triton's JIT would give it there
(strides equal to 1 become constants; sizes and addresses divisible by 16 are marked so).

    python -m gptoss_kernels.aot            # bf16, sm_90
    python -m gptoss_kernels.aot --dtype fp32 --arch 80 --sms 108

It needs the kernels compiled, not interpreted: run it without TRITON_INTERPRET.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ._common import AOT_TARGET, _interpreted, interpreter_mode, triton, triton_available

H100_SMS = 132  # an H100 SXM's, and an H200's (an H100 PCIe has 114): the split counts of attention_decode depend on it


@dataclass
class Compiled:
    """One kernel compiled as one or more launches would run it."""

    name: str
    constexprs: dict[str, Any]  # by parameter name, the specialised-away arguments included
    num_warps: int
    shared_bytes: int
    registers: int | None  # per thread, from cuobjdump when it is available
    spilled_bytes: int | None  # local memory per thread: registers that did not fit
    loop_instructions: int | None  # SASS in one pass of its longest innermost loop (None: no loop, or no cuobjdump)
    ptx_lines: int
    launches: list[str] = field(default_factory=list)  # what launched it, e.g. "decode attention at 8k"


def _launches(dtype: torch.dtype) -> list[tuple[str, Callable[[], Any]]]:
    """(what, call): the kernel launches of a gpt-oss-20b forward, and of notebook 10's demos, at real shapes."""
    # The package exports functions under the modules' names: fetch the modules themselves.
    A, M, R, V = (importlib.import_module(f"{__package__}.{m}") for m in ("attention", "moe", "rmsnorm", "vector_add"))
    d, hq, hkv, hd, E, K, window = 2880, 64, 8, 64, 32, 4, 128
    gen = torch.Generator().manual_seed(0)

    def act(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype)

    def queries(T: int) -> torch.Tensor:  # as the model makes them: [B, T, H, D] viewed as [B, H, T, D]
        return act(1, T, hq, hd).transpose(1, 2)

    def cache(slots: int, filled: int) -> torch.Tensor:  # a KVCache layer, sliced to its filled positions
        return act(1, hkv, slots, hd)[:, :, :filled]

    sinks = act(hq)
    scale = hd ** -0.5
    experts = [torch.empty(shape, dtype=t) for shape, t in (
        ((E, 2 * d, d // 32, 16), torch.uint8), ((E, 2 * d, d // 32), torch.uint8), ((E, 2 * d), dtype),
        ((E, d, d // 32, 16), torch.uint8), ((E, d, d // 32), torch.uint8), ((E, d), dtype))]

    def moe(tokens: int) -> None:
        x = act(tokens, d)
        idx = torch.randint(0, E, (tokens, K), generator=gen)
        M.moe_mxfp4(x, idx, torch.empty(tokens, K), *experts, check_indices=False)

    position = torch.zeros(1, dtype=torch.long)
    most = A.decode_max_rows(dtype, hd) // (hq // hkv)  # prompt tokens: 16 in bf16, 8 in float32
    return [
        ("rmsnorm, one token", lambda: R.rmsnorm(act(1, 1, d), act(d), 1e-5)),
        ("rmsnorm, a 2048-token prompt", lambda: R.rmsnorm(act(1, 2048, d), act(d), 1e-5)),
        ("prefill attention, 2048 tokens, full layer",
         lambda: A.attention(queries(2048), cache(2048, 2048), cache(2048, 2048), scale=scale, sinks=sinks)),
        ("prefill attention, 2048 tokens, sliding layer",
         lambda: A.attention(queries(2048), cache(2048, 2048), cache(2048, 2048), scale=scale, sinks=sinks,
                             window=window)),
        ("decode attention at 1k, full layer",
         lambda: A.attention(queries(1), cache(1060, 1025), cache(1060, 1025), scale=scale, sinks=sinks, q_start=1024)),
        ("decode attention at 8k, full layer",
         lambda: A.attention(queries(1), cache(8228, 8193), cache(8228, 8193), scale=scale, sinks=sinks, q_start=8192)),
        ("decode attention, sliding layer (its 128 slots)",
         lambda: A.attention(queries(1), cache(window, window), cache(window, window), scale=scale, sinks=sinks,
                             window=window, q_start=window - 1)),
        (f"decode attention, a prompt of {most} tokens (the most query rows it takes)",
         lambda: A.attention(queries(most), cache(2048, most), cache(2048, most), scale=scale, sinks=sinks)),
        ("CUDA-graph decode attention, 8k cache, full layer",
         lambda: A.attention_decode_at(queries(1), cache(8228, 8228), cache(8228, 8228), position, scale=scale,
                                       sinks=sinks)),
        ("CUDA-graph decode attention, sliding layer",
         lambda: A.attention_decode_at(queries(1), cache(window, window), cache(window, window), position, scale=scale,
                                       sinks=sinks, window=window)),
        ("experts, one token", lambda: moe(1)),
        ("experts, the most tokens their decode path takes", lambda: moe(M.DECODE_MAX_TOKENS)),
        ("experts, a 2048-token prompt", lambda: moe(2048)),
        ("dequantize one expert's gate_up", lambda: M.dequantize_mxfp4(experts[0][0], experts[1][0], dtype)),
        ("notebook 10's vector_add", lambda: V.vector_add(act(1 << 20), act(1 << 20))),
    ]


@contextmanager
def _recording(sms: int) -> Iterator[list[tuple[Any, tuple, dict]]]:
    """Record (kernel, args, kwargs) of every launch instead of running it, with the GPU's tiles and splits."""
    from triton.runtime.jit import JITFunction

    launches: list[tuple[Any, tuple, dict]] = []

    def record(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> None:
        launches.append((self, args, kwargs))

    saved = JITFunction.run
    JITFunction.run = record
    AOT_TARGET["sms"] = sms
    try:
        yield launches
    finally:
        JITFunction.run = saved
        AOT_TARGET.clear()


def _resources(cubin: bytes) -> tuple[int | None, int | None, int | None]:
    """(registers and local memory bytes per thread, SASS of one longest-loop pass) from cuobjdump, if it is there."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None, None, None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
        sass = subprocess.run([tool, "-sass", path], capture_output=True, text=True).stdout
    found = {word.split(":")[0]: int(word.split(":")[1]) for word in out.split()
             if word.startswith(("REG:", "LOCAL:")) and word.split(":")[1].isdigit()}
    return found.get("REG"), found.get("LOCAL"), innermost_loop(sass)


def innermost_loop(sass: str) -> int | None:
    """Instructions in one pass of the longest innermost loop of cuobjdump's SASS listing (None: no loop)."""
    # The loop that streams the weights or keys: its count per pass, over the bytes a pass reads, is
    # what a GPU that runs out of instruction slots before it runs out of bandwidth is limited by.
    addresses = [int(m.group(1), 16) for m in re.finditer(r"^\s+/\*([0-9a-f]{4,})\*/\s+\S", sass, re.M)]
    loops = [(int(m.group(2), 16), int(m.group(1), 16))  # (first address, the branch back to it)
             for m in re.finditer(r"^\s+/\*([0-9a-f]{4,})\*/\s+[^;]*\bBRA\b[^;]*?0x([0-9a-f]+)", sass, re.M)
             if int(m.group(2), 16) < int(m.group(1), 16)]
    innermost = [(start, end) for start, end in loops
                 if not any((s, e) != (start, end) and start <= s and e <= end for s, e in loops)]
    return max((sum(start <= a <= end for a in addresses) for start, end in innermost), default=None)


def _compile(kernel: Any, args: tuple, kwargs: dict, target: Any) -> tuple[Any, dict[str, Any]]:
    """Compile one recorded launch as JITFunction.run would: the same binder, specialisation and options."""
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, dict(kwargs), bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)
    names = list(signature)
    return compiled, {names[path[0]]: value for path, value in constexprs.items()}


def compile_all(dtype: str = "bf16", arch: int = 90, sms: int = H100_SMS) -> list[Compiled]:
    """Compile every kernel launch of gpt-oss-20b for ``arch`` (90 = H100/H200), activations in ``dtype``."""
    if not triton_available():
        raise RuntimeError("compiling the kernels needs Triton, which is not installed")
    attention = importlib.import_module(f"{__package__}.attention")
    if interpreter_mode() or _interpreted(attention._attn_prefill_kernel):
        raise RuntimeError("the kernels are interpreted here (TRITON_INTERPRET is set, or was when they were "
                           "imported): run this without TRITON_INTERPRET, so that they compile")
    from triton.backends.compiler import GPUTarget

    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    target = GPUTarget("cuda", arch, 32)
    variants: dict[str, Compiled] = {}
    for what, call in _launches(torch_dtype):
        with _recording(sms) as launches:
            call()
        if not launches:
            raise RuntimeError(f"{what} launched no kernel")
        for kernel, args, kwargs in launches:
            compiled, constexprs = _compile(kernel, args, kwargs, target)
            key = compiled.hash if hasattr(compiled, "hash") else compiled.asm["ptx"]
            if key not in variants:
                registers, spilled, loop = _resources(compiled.asm["cubin"])
                variants[key] = Compiled(kernel.fn.__name__, constexprs, compiled.metadata.num_warps,
                                         compiled.metadata.shared, registers, spilled, loop,
                                         compiled.asm["ptx"].count("\n"))
            if what not in variants[key].launches:
                variants[key].launches.append(what)
    return list(variants.values())


def main(argv: list[str] | None = None) -> int:
    """The command line: compile every recorded launch and print each variant's registers and shared memory."""
    p = argparse.ArgumentParser(description="Compile the gptoss_kernels for a GPU architecture (no GPU needed), "
                                            "as a gpt-oss-20b forward launches them.")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--arch", type=int, default=90, help="compute capability times ten: 80 A100, 90 H100/H200")
    p.add_argument("--sms", type=int, default=H100_SMS, help="the GPU's multiprocessors (sets decode split counts)")
    args = p.parse_args(argv)
    try:
        compiled = compile_all(args.dtype, args.arch, args.sms)
    except RuntimeError as e:  # no Triton, or interpreted kernels: said, not a traceback
        print(f"gptoss_kernels.aot: {e}", file=sys.stderr)
        return 2
    print(f"{'kernel':<26}{'warps':>6}{'shared B':>10}{'regs':>6}{'spilled B':>10}{'loop SASS':>10}{'PTX lines':>11}"
          "  launched by")
    for c in compiled:
        regs = "?" if c.registers is None else c.registers
        spilled = "?" if c.spilled_bytes is None else c.spilled_bytes
        loop = "?" if c.loop_instructions is None else c.loop_instructions  # "?": no loop, or no cuobjdump
        print(f"{c.name:<26}{c.num_warps:>6}{c.shared_bytes:>10}{regs:>6}{spilled:>10}{loop:>10}{c.ptx_lines:>11}  "
              f"{'; '.join(c.launches)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
