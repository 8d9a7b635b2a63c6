"""Notebook 10's exercise check: a right SwiGLU kernel passes, each typical mistake is named.

The kernels below run in Triton's interpreter when there is no GPU (tests/conftest.py sets
TRITON_INTERPRET=1 before any test module imports Triton).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from gptoss_edu.env import triton_gpu

triton = pytest.importorskip("triton", reason="Triton has no build for this platform (it needs Linux)")
import triton.language as tl  # noqa: E402

from gptoss_edu.exercises.nb10 import check_swiglu_kernel  # noqa: E402

ON_GPU = triton_gpu()  # a GPU Triton supports; an older one counts as none


@triton.jit
def right(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    gate = tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0)
    up = tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0)
    gate = tl.minimum(gate, limit)
    up = tl.minimum(tl.maximum(up, -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def stub(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    pid = tl.program_id(0)  # noqa: F841


@triton.jit
def no_mask(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate))


@triton.jit
def no_pid(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def pid_plus(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) + tl.arange(0, BLOCK)  # + instead of *
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def _body(gate_ptrs, up_ptrs, out_ptrs, mask, alpha, limit, gate_lo, up_lo, up_hi, gate_hi, plus):
    gate = tl.load(gate_ptrs, mask=mask, other=0.0)
    up = tl.load(up_ptrs, mask=mask, other=0.0)
    gate = tl.minimum(tl.maximum(gate, gate_lo), gate_hi)
    up = tl.minimum(tl.maximum(up, up_lo), up_hi)
    tl.store(out_ptrs, (up + plus) * gate * tl.sigmoid(alpha * gate), mask=mask)


BIG = tl.constexpr(1e30)  # a clamp at +-BIG is no clamp


@triton.jit
def swapped(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs + 1, gu_ptr + 2 * offs, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit,
          limit, 1.0)


@triton.jit
def halves(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + offs, gu_ptr + n + offs, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit, limit, 1.0)


@triton.jit
def not_doubled(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + offs, gu_ptr + offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit, limit, 1.0)


@triton.jit
def no_plus_one(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit,
          limit, 0.0)


@triton.jit
def no_alpha(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, 1.0, limit, -BIG, -limit, limit,
          limit, 1.0)


@triton.jit
def up_max_only(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -BIG, limit,
          limit, 1.0)


@triton.jit
def up_unclamped(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -BIG, BIG,
          limit, 1.0)


@triton.jit
def gate_both_sides(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -limit, -limit, limit,
          limit, 1.0)


@triton.jit
def gate_unclamped(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit,
          BIG, 1.0)


@triton.jit
def no_clamps(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -BIG, BIG,
          BIG, 1.0)


@triton.jit
def hard_limit(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -7.0, 7.0,
          7.0, 1.0)


@triton.jit
def hard_alpha(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, 1.702, limit, -BIG, -limit, limit,
          limit, 1.0)


@triton.jit
def off_by_a_bit(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _body(gu_ptr + 2 * offs, gu_ptr + 2 * offs + 1, out_ptr + offs, offs < n, alpha, limit, -BIG, -limit, limit,
          limit, 1.01)


@triton.jit
def crashes(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, not_defined_anywhere(offs), mask=offs < n)  # noqa: F821


@triton.jit
def loads_unmasked(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    # Right outputs, stores masked; the loads past n read what is not gu's (only the code shows it).
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=None), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def loads_masked_by_gu_size(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    # "gu holds 2n floats": a mask that reads gu[2n .. 4n) in lanes n .. 2n, whose stores are masked off.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=offs < 2 * n, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=offs < 2 * n, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def pairs_in_one_load(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    # Right, another way: one load of 2 x BLOCK interleaved floats, split into gate and up.
    pairs = tl.program_id(0) * 2 * BLOCK + tl.arange(0, 2 * BLOCK)
    gate, up = tl.split(tl.reshape(tl.load(gu_ptr + pairs, mask=pairs < 2 * n, other=0.0), (BLOCK, 2)))
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(gate, limit)
    up = tl.minimum(tl.maximum(up, -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def loads_clamped(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    # Right and safe another way: no mask on the loads, but every lane's offset is clamped into gu.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    safe = tl.minimum(offs, n - 1)
    gate = tl.minimum(tl.load(gu_ptr + 2 * safe), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * safe + 1), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@pytest.mark.skipif(ON_GPU, reason="the loads' addresses are watched in Triton's interpreter")
def test_unmasked_loads_of_offsets_clamped_into_gu_pass():
    """The watched addresses, not the absence of mask= in the source, decide: these loads never leave gu."""
    result = check_swiglu_kernel(loads_clamped)
    assert result.passed and "never reads outside gu" in result.message, result.message


@pytest.mark.skipif(ON_GPU, reason="the loads' addresses are watched in Triton's interpreter")
def test_a_load_past_gu_is_refused_even_when_its_lanes_are_never_stored():
    result = check_swiglu_kernel(loads_masked_by_gu_size)
    assert not result.passed
    assert re.search(r"read outside gu \(n = 1, BLOCK = 64\).*mask=offs < n", result.message), result.message


def test_one_load_of_the_pairs_passes():
    result = check_swiglu_kernel(pairs_in_one_load)
    assert result.passed, result.message
    assert "never reads outside gu" in result.message


@triton.jit
def reads_before_gu(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    prev = tl.load(gu_ptr + 2 * offs - 2, mask=mask, other=0.0)  # lane 0 reads 2 floats before gu
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate) + prev * 0.0, mask=mask)


@triton.jit
def pairs_one_float_past(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    pairs = tl.program_id(0) * 2 * BLOCK + tl.arange(0, 2 * BLOCK)
    loaded = tl.load(gu_ptr + pairs, mask=pairs <= 2 * n, other=0.0)  # <=: reads gu[2n], one float past
    gate, up = tl.split(tl.reshape(loaded, (BLOCK, 2)))
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(gate, limit)
    up = tl.minimum(tl.maximum(up, -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@pytest.mark.skipif(ON_GPU, reason="the loads' addresses are watched in Triton's interpreter")
@pytest.mark.parametrize("kernel", [reads_before_gu, pairs_one_float_past])
def test_a_load_just_outside_gu_is_refused(kernel):
    r = check_swiglu_kernel(kernel)
    assert not r.passed and "read outside gu (n = 1, BLOCK = 64)" in r.message, r.message


@pytest.mark.skipif(ON_GPU, reason="the interpreter only")
def test_the_watch_is_taken_off_and_the_pass_message_does_not_hedge():
    from triton.runtime.interpreter import InterpreterBuilder

    before = InterpreterBuilder.create_masked_load
    r = check_swiglu_kernel(right)
    assert InterpreterBuilder.create_masked_load is before
    assert r.passed and "checked in the interpreter only" not in r.message, r.message


def plain_python(gu, out, n, alpha, limit, BLOCK):
    return None


def test_right_kernel_passes():
    result = check_swiglu_kernel(right)
    assert result.passed, result.message
    assert repr(result).startswith("✅")


@pytest.mark.parametrize("kernel,message", [
    (stub, "wrote nothing"),
    (no_mask, "wrote outside out.*mask=offs < n"),
    (no_pid, "only the first BLOCK outputs"),
    (pid_plus, "never written"),
    (swapped, "swapped"),
    (halves, "two halves"),
    (not_doubled, r"gu\[i\] and gu\[i \+ 1\]"),
    (no_plus_one, r"\+1 on up is missing"),
    (no_alpha, r"sigmoid\(alpha \* gate\)"),
    (up_max_only, "only from above"),
    (up_unclamped, "up is not clamped"),
    (gate_both_sides, "from below too"),
    (gate_unclamped, "gate is not clamped"),
    (no_clamps, "nothing is clamped"),
    (hard_limit, "limit is hard-coded"),
    (hard_alpha, "alpha is hard-coded"),
    (off_by_a_bit, "differs by up to"),
    (crashes, "raised"),
    # In the interpreter the loads' addresses are watched; a compiled kernel is judged by its source.
    (loads_unmasked, "2 tl.load call" if ON_GPU else r"read outside gu \(n = 1, BLOCK = 64\)"),
    (plain_python, "decorated with @triton.jit"),
])
def test_typical_mistakes_are_named(kernel, message):
    result = check_swiglu_kernel(kernel)
    assert not result.passed
    assert repr(result).startswith("❌")
    assert re.search(message, result.message), result.message


def check_compiled_kernel(tmp_path, before: str = "") -> str:
    """What check_swiglu_kernel says of a learner's kernel compiled for a GPU (no interpreter), after ``before``."""
    (tmp_path / "learner.py").write_text(textwrap.dedent("""
        import triton
        import triton.language as tl

        @triton.jit
        def kernel(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
            pass
    """))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    code = textwrap.dedent(before) + "\nfrom learner import kernel\n" \
        "from gptoss_edu.exercises.nb10 import check_swiglu_kernel\nprint(check_swiglu_kernel(kernel))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(ON_GPU, reason="on a GPU the kernels are compiled, as they should be")
def test_compiled_kernel_without_gpu_gets_advice(tmp_path):
    out = check_compiled_kernel(tmp_path)
    assert "TRITON_INTERPRET" in out and out.startswith("❌ there is no GPU here"), out


@pytest.mark.skipif(ON_GPU, reason="on a GPU the kernels are compiled, as they should be")
def test_compiled_kernel_on_a_gpu_too_old_for_triton_gets_advice(tmp_path):
    """A Tesla T4 (compute capability 7.5), older than Triton supports: advice, not a compile."""
    out = check_compiled_kernel(tmp_path, """
        import torch
        torch.cuda.is_available = lambda: True  # a stand-in T4
        torch.cuda.get_device_capability = lambda device=None: (7, 5)
        torch.cuda.get_device_name = lambda device=None: "Tesla T4"
    """)
    assert out.startswith("❌ this GPU, Tesla T4, has compute capability 7.5"), out
    assert "TRITON_INTERPRET" in out


@triton.jit
def named_like_the_tutorials(gu_ptr, out_ptr, n_elements, alpha, limit, BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_elements
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


def test_a_kernel_whose_block_size_has_another_name_runs():
    """BLOCK_SIZE, as in Triton's tutorials: the launch said 'missing 1 required positional argument'."""
    result = check_swiglu_kernel(named_like_the_tutorials)
    assert result.passed, result.message


@triton.jit
def loads_clamped_inline(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    gate = tl.minimum(tl.load(gu_ptr + 2 * tl.minimum(offs, n - 1)), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * tl.minimum(offs, n - 1) + 1), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def clamped_one_too_far(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    safe = tl.minimum(offs, n)  # n, not n - 1: reads gu[2n] and gu[2n + 1]
    gate = tl.minimum(tl.load(gu_ptr + 2 * safe), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * safe + 1), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def clamped_from_below_only(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    idx = tl.where(offs < n, 2 * offs, 2 * offs)  # a where that clamps nothing
    gate = tl.minimum(tl.load(gu_ptr + tl.maximum(idx, 0)), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + idx + 1), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=offs < n)


@triton.jit
def clamped_by_where(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    safe = tl.where(m, offs, 0)  # lanes past n read gu[0] and gu[1]
    g = tl.minimum(tl.load(gu_ptr + 2 * safe), limit)
    u = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * safe + 1), -limit), limit)
    tl.store(out_ptr + offs, (u + 1.0) * g * tl.sigmoid(alpha * g), mask=m)


@triton.jit
def clamped_spelled_otherwise(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    last = n - 1
    c = tl.minimum(offs, last)
    gate_ptrs = gu_ptr + c * 2
    g = tl.minimum(tl.load(gate_ptrs), limit)
    u = tl.minimum(tl.maximum(tl.load(gu_ptr + (1 + 2 * c)), -limit), limit)
    tl.store(out_ptr + offs, (u + 1.0) * g * tl.sigmoid(alpha * g), mask=offs < n)


@triton.jit
def clamped_by_tl_clamp_through_a_pointer(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pairs = gu_ptr + 2 * tl.clamp(offs, 0, n - 1)
    g = tl.minimum(tl.load(pairs), limit)
    u = tl.minimum(tl.maximum(tl.load(pairs + 1), -limit), limit)
    tl.store(out_ptr + offs, (u + 1.0) * g * tl.sigmoid(alpha * g), mask=offs < n)


@triton.jit
def where_past_gu(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    safe = tl.where(offs < 2 * n, offs, 0)  # keeps lanes n .. 2n: they read gu[2n ..]
    pairs = gu_ptr + 2 * safe
    g = tl.minimum(tl.load(pairs), limit)
    u = tl.minimum(tl.maximum(tl.load(pairs + 2), -limit), limit)  # and + 2 reads the next pair's gate
    tl.store(out_ptr + offs, (u + 1.0) * g * tl.sigmoid(alpha * g), mask=offs < n)


@triton.jit
def one_pair_too_far(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pairs = gu_ptr + 2 * tl.minimum(offs, n - 1)
    g = tl.minimum(tl.load(pairs), limit)
    u = tl.minimum(tl.maximum(tl.load(pairs + 3), -limit), limit)  # the next pair's up: gu[2n + 1] in the last lane
    tl.store(out_ptr + offs, (u + 1.0) * g * tl.sigmoid(alpha * g), mask=offs < n)


@pytest.mark.parametrize("kernel, unmasked", [(loads_unmasked, 2), (loads_clamped, 0), (loads_clamped_inline, 0),
                                              (clamped_one_too_far, 2), (clamped_from_below_only, 2),
                                              (clamped_by_where, 0), (clamped_spelled_otherwise, 0),
                                              (clamped_by_tl_clamp_through_a_pointer, 0)])
def test_a_compiled_kernels_source_counts_only_loads_that_can_leave_gu(kernel, unmasked, monkeypatch):
    """On a GPU the loads cannot be watched and the source decides: clamped offsets are as safe as a mask
    (the message said so, then failed the kernel)."""
    import contextlib

    from gptoss_edu.exercises import nb10

    assert nb10._unmasked_loads(kernel) == unmasked
    # The check as a GPU runs it: no addresses recorded.
    monkeypatch.setattr(nb10, "_recorded_loads", lambda: contextlib.nullcontext(None))
    result = check_swiglu_kernel(kernel)
    if kernel is clamped_by_tl_clamp_through_a_pointer and "Only floating point clamp" in result.message:
        # Triton 3.7 (which PyPI's CUDA torch 2.13 brings) clamps floats only; 3.9 integers too. The launch fails
        # there, and the check says so in the learner's words.
        assert not result.passed and "launching your kernel" in result.message, result.message
        return
    assert result.passed is (unmasked == 0), result.message
    if unmasked:
        assert "2 tl.load call(s) in your kernel have no mask, and the check cannot see" in result.message
    else:
        assert "masks or clamps its loads into gu (judged from its source" in result.message


# ---- found by a review of wrong answers that passed ----

@triton.jit
def clamps_into_gu(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    tl.store(gu_ptr + 2 * offs, gate, mask=mask)  # the clamped gate written back over the input
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def scratch_past_gu(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(gu_ptr + 2 * n + offs, gate, mask=mask)  # scratch space just past gu: another tensor's memory
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


def test_a_kernel_that_writes_into_its_input_or_past_it_fails():
    r = check_swiglu_kernel(clamps_into_gu)
    assert not r.passed and "wrote into gu, its input" in r.message, r.message
    r = check_swiglu_kernel(scratch_past_gu)
    assert not r.passed and "wrote past gu" in r.message and "wrote outside out" not in r.message, r.message
    assert "writes nothing but out" in check_swiglu_kernel(right).message


def test_the_source_reading_refuses_clamps_that_leave_gu():
    """A where that keeps lanes up to 2n, and an offset of + 2 past a clamped pair, reach past gu's 2n floats."""
    from gptoss_edu.exercises import nb10

    assert nb10._unmasked_loads(where_past_gu) == 2
    assert nb10._unmasked_loads(one_pair_too_far) == 1


@triton.jit
def store_doubled(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + 2 * offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)  # the load's arithmetic


@triton.jit
def width_64(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * 64 + tl.arange(0, 64)  # right while BLOCK is 64
    mask = offs < n
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def mask_at_half(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = 2 * offs < n  # as if n were gu's length
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@triton.jit
def mask_at_n_over_2(gu_ptr, out_ptr, n, alpha, limit, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n // 2
    gate = tl.minimum(tl.load(gu_ptr + 2 * offs, mask=mask, other=0.0), limit)
    up = tl.minimum(tl.maximum(tl.load(gu_ptr + 2 * offs + 1, mask=mask, other=0.0), -limit), limit)
    tl.store(out_ptr + offs, (up + 1) * gate * tl.sigmoid(alpha * gate), mask=mask)


@pytest.mark.parametrize("kernel, says", [
    (store_doubled, r"stored output i at out_ptr \+ 2 \* i \(n = 128, BLOCK = 64\).*tl.store\(out_ptr \+ offs"),
    (mask_at_half, r"^not yet: only the first 500 of 1000 outputs were written \(n = 1000, BLOCK = 256\): your mask stops"),
    (mask_at_n_over_2, r"^not yet: only the first 500 of 1000 outputs were written \(n = 1000, BLOCK = 256\): your mask"),
    # 4 programs of 64 write the first 256 outputs, as 4 programs of the same block of 256 would.
    (width_64, r"\(n = 1000, BLOCK = 256\): every program wrote the same block, or each wrote fewer than BLOCK"),
])
def test_a_store_or_a_mask_sized_for_gu_is_named(kernel, says):
    """The load's 2 * offs copied into the store was told to mask its stores (its mask was right); a mask at n / 2
    was told its offsets ignore the program id, or to store at out_ptr + offs (it did)."""
    r = check_swiglu_kernel(kernel)
    assert not r.passed and re.search(says, r.message), r.message
    r = check_swiglu_kernel(no_pid)  # at n = 2 BLOCK it writes what a mask at n / 2 writes: told apart by the next size
    assert "every program wrote the same block" in r.message and "mask stops" not in r.message, r.message
