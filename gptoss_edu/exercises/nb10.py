"""Notebook 10's exercise: gpt-oss's clamped SwiGLU as a Triton kernel.

The learner writes ``swiglu_kernel(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr)``: ``gu``
holds 2n floats with gate and up interleaved (gate i at 2i, up i at 2i + 1, the layout of the
experts' first matmul), and ``out[i] = (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g)``
with ``g = min(gate, limit)``. The check launches it itself, one program per BLOCK outputs.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..config import preset
from ..env import triton_gpu_problem
from ..mlp import gptoss_swiglu
from . import CheckResult, compare, failed, passed

_GPTOSS = preset("gpt-oss-20b")
ALPHA, LIMIT = _GPTOSS.swiglu_alpha, _GPTOSS.swiglu_limit
# (n, BLOCK, alpha, limit): a single element, exact multiples of BLOCK and not; gpt-oss's alpha and
# limit first (the named mistakes show there), then other values (a hard-coded constant shows there).
CASES = ((1, 64, ALPHA, LIMIT), (128, 64, ALPHA, LIMIT), (1000, 256, ALPHA, LIMIT), (333, 128, ALPHA, LIMIT),
         (777, 64, 1.0, 3.0))
GUARD_VALUE = 1234.5  # what the memory around ``out`` holds; a kernel that writes there changes it
TOLERANCE = 1e-4
# Half the outputs written, the first ones: a mask at n / 2 (offs < n // 2, 2 * offs < n), as if n were gu's length.
HALF_MASK = "your mask stops at n / 2, but n counts the outputs (gu's floats are 2n): mask=offs < n"
INF = float("inf")


def _swiglu(gate: torch.Tensor, up: torch.Tensor, alpha: float, gate_min: float = -INF, gate_max: float = INF,
            up_min: float = -INF, up_max: float = INF, plus_one: float = 1.0) -> torch.Tensor:
    # The SwiGLU with every clamp and constant a knob, to recognise what a wrong kernel computed.
    gate = gate.clamp(min=gate_min, max=gate_max)
    up = up.clamp(min=up_min, max=up_max)
    return (up + plus_one) * (gate * torch.sigmoid(alpha * gate))


def _typical_mistakes(gu: torch.Tensor, n: int, alpha: float, limit: float) -> dict[str, torch.Tensor]:
    """What each usual mistake computes on these inputs, named by the advice that fixes it."""
    gate, up = gu[0::2], gu[1::2]
    right = dict(gate_max=limit, up_min=-limit, up_max=limit)
    return {
        "gate and up are swapped: gate i is gu[2i] (even), up i is gu[2i + 1] (odd)":
            _swiglu(up, gate, alpha, **right),
        "you read gate and up as two halves (gu[i] and gu[n + i]); gpt-oss interleaves them: gate i is gu[2i], "
        "up i is gu[2i + 1]": _swiglu(gu[:n], gu[n:], alpha, **right),
        "you loaded gu[i] and gu[i + 1]: output i needs gate = gu[2i] and up = gu[2i + 1] (offsets times two)":
            _swiglu(gu[:n], gu[1:n + 1], alpha, **right),
        "the +1 on up is missing: out = (up + 1) * gate * sigmoid(alpha * gate)":
            _swiglu(gate, up, alpha, plus_one=0.0, **right),
        "sigmoid(gate) should be sigmoid(alpha * gate)": _swiglu(gate, up, 1.0, **right),
        "up is clamped only from above: clamp it to [-limit, limit]":
            _swiglu(gate, up, alpha, gate_max=limit, up_max=limit),
        "up is not clamped: clamp it to [-limit, limit]": _swiglu(gate, up, alpha, gate_max=limit),
        "the gate is clamped from below too: gpt-oss clamps the gate only from above (min(gate, limit))":
            _swiglu(gate, up, alpha, gate_min=-limit, **right),
        "the gate is not clamped: g = min(gate, limit)": _swiglu(gate, up, alpha, up_min=-limit, up_max=limit),
        "nothing is clamped: g = min(gate, limit) and up = clamp(up, -limit, limit)": _swiglu(gate, up, alpha),
        f"the limit is hard-coded: use the limit argument (this case passes limit={limit:g})":
            _swiglu(gate, up, alpha, gate_max=LIMIT, up_min=-LIMIT, up_max=LIMIT),
        f"alpha is hard-coded: use the alpha argument (this case passes alpha={alpha:g})":
            _swiglu(gate, up, ALPHA, **right),
    }


def _is_interpreted(kernel: Any) -> bool:
    # Triton reads TRITON_INTERPRET when @triton.jit runs; the kernel's type says which it got.
    return type(kernel).__name__ == "InterpretedFunction"


@contextlib.contextmanager
def _recorded_loads() -> Iterator[list[tuple[int, int]] | None]:
    """In Triton's interpreter, the lowest and highest byte address each tl.load reads; None when it cannot tell."""
    # A load past the end of gu whose lanes are never stored leaves no trace in the outputs; its
    # addresses do (gptoss_kernels.memcheck watches the interpreter's loads).
    from gptoss_kernels.memcheck import watch_accesses

    seen: list[tuple[int, int]] = []

    def record(kernel: str, kind: str, touched: np.ndarray, size: int, ranges: list) -> None:
        if kind == "load":
            seen.append((int(touched.min()), int(touched.max())))

    with watch_accesses(record) as watching:
        yield seen if watching else None


def _run(kernel: Any, gu: torch.Tensor, n: int, block: int, alpha: float,
         limit: float) -> tuple[torch.Tensor, str | None, bool, bool | None]:
    """Launch the kernel with guard memory around both buffers: out; where it wrote outside them ("gu", "doubled"
    for out's outputs stored at out_ptr + 2 * i, "out", or None); whether gu changed; whether a load left gu (None
    where the loads could not be watched: compiled for a GPU)."""
    import triton

    device = gu.device
    # Room on both sides for the usual slips (an unmasked tail, offsets times two) to land in our memory.
    pad = 2 * n + 4 * block
    gu_buf = torch.zeros(pad + 2 * n + 2 * pad, device=device)
    gu_buf[pad:pad + 2 * n] = gu
    out_buf = torch.full((pad + n + 2 * pad,), GUARD_VALUE, device=device)
    out_buf[pad:pad + n] = float("nan")  # an output never written stays NaN
    gu_before = gu_buf.clone()
    with _recorded_loads() if _is_interpreted(kernel) else contextlib.nullcontext() as loads:
        # By position, so a kernel whose block size has another name (BLOCK_SIZE, as Triton's tutorials) runs too.
        kernel[(triton.cdiv(n, block),)](gu_buf[pad:], out_buf[pad:], n, alpha, limit, block)
    if device.type == "cuda":
        torch.cuda.synchronize()
    guard = torch.cat((out_buf[:pad], out_buf[pad + n:]))
    gu_guard = torch.cat((gu_buf[:pad] != gu_before[:pad], gu_buf[pad + 2 * n:] != gu_before[pad + 2 * n:]))
    wrote_outside = None
    if gu_guard.any():
        wrote_outside = "gu"
    elif (guard != GUARD_VALUE).any():
        # The load's arithmetic copied into the store: output i at out_ptr + 2 * i, over twice out's length.
        want = gptoss_swiglu(gu.cpu(), alpha, limit)
        atol = TOLERANCE * (1 + want.abs().max().item())
        doubled = (torch.allclose(out_buf[pad:pad + 2 * n:2].cpu(), want, rtol=TOLERANCE, atol=atol)
                   and not torch.allclose(out_buf[pad:pad + n].cpu(), want, rtol=TOLERANCE, atol=atol))  # not a tail
        wrote_outside = "doubled" if doubled else "out"
    wrote_gu = not torch.equal(gu_buf[pad:pad + 2 * n], gu_before[pad:pad + 2 * n])
    first = gu_buf[pad:].data_ptr()
    last = first + (2 * n - 1) * gu_buf.element_size()
    read_outside = None if loads is None else any(lo < first or hi > last for lo, hi in loads)
    return out_buf[pad:pad + n].clone(), wrote_outside, wrote_gu, read_outside


def _unmasked_loads(kernel: Any) -> int:
    """How many tl.load calls in the kernel's source may read past gu: no mask, offsets not clamped (0: unreadable)."""
    # A load past the end cannot be seen from the outputs (the stores are masked), only in the code. Clamped
    # offsets are as safe as a mask: gu_ptr + 2 * c (+ 1), however spelled, with c = tl.minimum(offs, n - 1),
    # tl.clamp(offs, 0, n - 1) or tl.where(offs < n, offs, 0), inline or through variables.
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(kernel.fn)))
        fn = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
        gu, n = fn.args.args[0].arg, fn.args.args[2].arg
    except (AttributeError, OSError, TypeError, SyntaxError, StopIteration, IndexError):
        return 0

    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    assigned.setdefault(t.id, []).append(node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            assigned.setdefault(node.target.id, []).append(node.value or node.target)

    def value(e: ast.expr, depth: int = 0) -> ast.expr:  # a name assigned once stands for what it was given
        while isinstance(e, ast.Name) and len(assigned.get(e.id, [])) == 1 and depth < 8:
            e, depth = assigned[e.id][0], depth + 1
        return e

    def same(a: ast.expr, b: ast.expr) -> bool:
        return ast.dump(value(a)) == ast.dump(value(b))

    n_minus_1 = ast.parse(f"{n} - 1", mode="eval").body

    def is_n(e: ast.expr) -> bool:
        return isinstance(value(e), ast.Name) and value(e).id == n

    def below_n(cond: ast.expr, x: ast.expr) -> bool:  # x < n, x <= n - 1 or n > x
        c = value(cond)
        if not (isinstance(c, ast.Compare) and len(c.ops) == 1):
            return False
        left, op, right = c.left, c.ops[0], c.comparators[0]
        return ((isinstance(op, ast.Lt) and same(left, x) and is_n(right))
                or (isinstance(op, ast.LtE) and same(left, x) and same(right, n_minus_1))
                or (isinstance(op, ast.Gt) and is_n(left) and same(right, x)))

    def linear(e: ast.expr, depth: int = 0) -> tuple[int, int] | None:
        """(a, b) when e is at most a * (n - 1) + b for every lane and never negative; None: not known."""
        if depth > 16:
            return None
        if isinstance(e, ast.Constant) and type(e.value) is int:
            return (0, e.value) if e.value >= 0 else None
        if isinstance(e, ast.Name):
            bounds = {linear(v, depth + 1) for v in assigned.get(e.id, [])}
            return bounds.pop() if len(bounds) == 1 else None  # assigned once, or always the same bound
        if isinstance(e, ast.BinOp):
            a, b = linear(e.left, depth + 1), linear(e.right, depth + 1)
            if a is None or b is None:
                return None
            if isinstance(e.op, ast.Add):
                return a[0] + b[0], a[1] + b[1]
            if isinstance(e.op, ast.Mult) and (a[0] == 0 or b[0] == 0):
                k, m = (a[1], b) if a[0] == 0 else (b[1], a)
                return k * m[0], k * m[1]
            return None
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute):
            name, args = e.func.attr, e.args
            if name == "minimum" and len(args) == 2 and any(same(a, n_minus_1) for a in args):
                return 1, 0
            if name == "maximum" and len(args) == 2:  # raising the low end keeps the bound of the other
                rest = [linear(a, depth + 1) for a in args if not (isinstance(a, ast.Constant) and a.value == 0)]
                return rest[0] if len(rest) == 1 else None
            if name == "clamp" and len(args) == 3 and same(args[2], n_minus_1) and linear(args[1], depth + 1) == (0, 0):
                return 1, 0
            if name == "where" and len(args) == 3 and below_n(args[0], args[1]) and linear(args[2], depth + 1) == (0, 0):
                return 1, 0
        return None

    def offset(pointer: ast.expr, depth: int = 0) -> tuple[int, int] | None:  # how far past gu_ptr it reaches
        p = value(pointer)
        if depth > 16 or not (isinstance(p, ast.BinOp) and isinstance(p.op, ast.Add)):
            return None
        for base, rest in ((p.left, p.right), (p.right, p.left)):
            if isinstance(value(base), ast.Name) and value(base).id == gu:
                return linear(rest)
            inner, more = offset(base, depth + 1), linear(rest)
            if inner is not None and more is not None:
                return inner[0] + more[0], inner[1] + more[1]
        return None

    def inside(pointer: ast.expr) -> bool:  # every lane within gu's 2n floats: at most 2 (n - 1) + 1
        o = offset(pointer)
        return o is not None and o[0] <= 2 and o[1] <= 1

    return sum(1 for node in ast.walk(fn)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
               and len(node.args) < 2 and not any(k.arg == "mask" and not _is_none(k.value) for k in node.keywords)
               and not (node.args and inside(node.args[0])))


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def check_swiglu_kernel(kernel: Callable) -> CheckResult:
    """Launch the learner's @triton.jit ``kernel`` on fresh inputs of several sizes against gptoss_swiglu."""
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return failed(f"this exercise needs Triton, which is not installed here ({err})")
    kind = type(kernel).__name__
    if kind not in ("JITFunction", "InterpretedFunction"):
        return failed(f"pass the kernel itself, decorated with @triton.jit (got a {kind}); the check launches it")
    interpreted = _is_interpreted(kernel)
    # An interpreted kernel runs on the CPU, even where a GPU is (one too old for Triton, say).
    device = torch.device("cuda" if torch.cuda.is_available() and not interpreted else "cpu")
    if device.type == "cpu" and not interpreted:
        return failed("there is no GPU here, and the kernel was compiled for one: set os.environ['TRITON_INTERPRET'] "
                      "= '1' before importing triton (first cell of the notebook), restart, and run again")
    problem = triton_gpu_problem(device) if device.type == "cuda" else None
    if problem:
        return failed(f"{problem}: set os.environ['TRITON_INTERPRET'] = '1' before importing triton (first cell of "
                      "the notebook), restart, and run again, to run it in Triton's interpreter on the CPU")
    gen = torch.Generator().manual_seed(10)
    read_past, watched, nothing_written, ambiguous = None, True, None, None
    for n, block, alpha, limit in CASES:
        # Scale 6: about a quarter of the gates and ups pass the limit of 7, so every clamp matters.
        gu = torch.randn(2 * n, generator=gen) * 6
        where = f"(n = {n}, BLOCK = {block})"
        try:
            got, wrote_outside, wrote_gu, read_outside = _run(kernel, gu.to(device), n, block, alpha, limit)
        except Exception as e:  # the learner's code: report it, don't crash the notebook
            return failed(f"not yet: launching your kernel {where} raised {type(e).__name__}: {e}")
        got = got.cpu()
        if wrote_outside == "gu":
            return failed(f"not yet: your kernel wrote past gu {where}: its 2n floats are all of its memory (what "
                          "lies past them is another tensor's). Keep what you compute in variables, and store only the "
                          "output, at out_ptr + offs")
        if wrote_outside == "doubled":
            return failed(f"not yet: your kernel stored output i at out_ptr + 2 * i {where}, past the end of out: gu "
                          "holds two floats an output, out holds one. tl.store(out_ptr + offs, y, mask=offs < n)")
        if wrote_outside:
            return failed(f"not yet: your kernel wrote outside out {where}. The last program's lanes past n must "
                          f"not store: tl.store(out_ptr + offs, y, mask=offs < n) (and mask the loads too)")
        if wrote_gu:
            return failed(f"not yet: your kernel wrote into gu, its input {where}: a layer's activations may be "
                          f"read again (by autograd, or another kernel). Keep the clamped gate and up in variables "
                          f"(registers) and store only the output, at out_ptr + offs")
        watched = watched and read_outside is not None
        if read_outside and read_past is None:
            read_past = where  # told after the outputs: a wrong result is the first thing to fix
        unwritten = got.isnan()
        written = int((~unwritten).sum())
        prefix = written in (n // 2, (n + 1) // 2) and not unwritten[:written].any()
        if unwritten.all():
            if n == 1 and nothing_written is None:  # a stub, or a mask at n // 2 (0 here): the next size tells
                nothing_written = where
                continue
            return failed(f"not yet: your kernel wrote nothing into out {nothing_written or where}: tl.store the "
                          "result at out_ptr + offs")
        if unwritten.any():
            same_block = n > block and not unwritten[:block].any() and unwritten[block:].all()
            if same_block and prefix and ambiguous is None:  # n = 2 BLOCK: either mistake; the next size tells
                ambiguous = where
                continue
            if same_block:
                # A width written as a number (64) where BLOCK belongs leaves the same prefix when grid * 64 = BLOCK.
                return failed(f"not yet: only the first BLOCK outputs were written {where}: every program wrote the "
                              f"same block, or each wrote fewer than BLOCK (a number where BLOCK belongs). Offsets "
                              f"must start at the program's block and span it: "
                              f"offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)")
            if prefix:
                return failed(f"not yet: only the first {written} of {n} outputs were written {where}: {HALF_MASK}")
            return failed(f"not yet: {int(unwritten.sum())} of {n} outputs were never written {where}. Program pid "
                          f"handles offs = pid * BLOCK + tl.arange(0, BLOCK), and stores all of them (mask offs < n)")
        want = gptoss_swiglu(gu, alpha, limit)
        problem = compare(got, want, f"your kernel's output {where}", atol=TOLERANCE * (1 + want.abs().max().item()))
        if problem is None:
            continue
        for message, wrong in _typical_mistakes(gu, n, alpha, limit).items():
            if torch.allclose(got, wrong, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True):
                return failed(f"not yet {where}: {message}.")
        return failed("not yet: " + problem.message)
    if ambiguous is not None:  # right for every other size
        return failed(f"not yet: only the first BLOCK outputs were written {ambiguous}: every program wrote the same "
                      f"block (offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)) - or - {HALF_MASK}")
    if nothing_written is not None:  # right for every other size
        return failed(f"not yet: your kernel wrote nothing into out {nothing_written}: tl.store the result at "
                      "out_ptr + offs, with mask=offs < n (n counts the outputs)")
    # Where every load's addresses were watched they are the evidence (an unmasked load of offsets clamped
    # into gu is safe); a kernel compiled for a GPU is judged by its source.
    unmasked = 0 if watched else _unmasked_loads(kernel)
    if unmasked:
        return failed(f"not yet: the outputs are right, but {unmasked} tl.load call(s) in your kernel have no mask, "
                      "and the check cannot see that their offsets stay inside gu (a GPU cannot watch the loads, so "
                      "it reads your code: it knows gu_ptr + 2 * c (+ 1) with c = tl.minimum(offs, n - 1), "
                      "tl.clamp(offs, 0, n - 1) or tl.where(offs < n, offs, 0)). Unclamped, the last program's lanes "
                      "past n read memory that is not gu's (another tensor's, or an illegal address). Load with "
                      "mask=offs < n, other=0.0")
    if read_past is not None:
        return failed(f"not yet: the outputs are right, but your kernel read outside gu {read_past}: some lanes' "
                      f"loads reach before its first or past its last of 2n floats (on a GPU, another tensor's "
                      f"memory or an illegal address), even though the stores throw those lanes away. Mask each "
                      f"load by the output it serves: output i reads gu[2i] and gu[2i + 1], so mask=offs < n")
    sizes = ", ".join(str(c[0]) for c in CASES)
    reads = ("never reads outside gu (every load's addresses watched)" if watched else
             "masks or clamps its loads into gu (judged from its source: a GPU cannot watch them)")
    return passed(f"your kernel matches gptoss_edu.mlp.gptoss_swiglu on fresh inputs of {len(CASES)} sizes "
                  f"(n = {sizes}; BLOCK 64 to 256, tails included), {reads} and writes nothing but out.")
