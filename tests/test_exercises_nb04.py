"""Notebook 04's exercise check: the right answer passes; each typical mistake gets its explanation."""

from __future__ import annotations

import torch

from gptoss_edu.exercises.nb04 import check_interleave, reference_interleave


def right(gate, up):
    out = torch.empty(2 * gate.shape[0], gate.shape[1])
    out[0::2], out[1::2] = gate, up
    return out


def test_right_answers_pass():
    for fn in (right, reference_interleave):
        result = check_interleave(fn)
        assert result.passed, result.message
        assert result.message.startswith("Right: ")


def check_fails(fn, pattern):
    result = check_interleave(fn)
    assert not result.passed
    assert result.message.startswith("not yet: ")
    assert pattern in result.message, result.message


def test_stub_returning_none():
    check_fails(lambda g, u: None, "returned None")


def test_not_a_tensor():
    check_fails(lambda g, u: [g, u], "return a torch.Tensor")


def test_raising_is_reported_not_raised():
    def broken(g, u):
        raise RuntimeError("boom")
    check_fails(broken, "raised RuntimeError: boom")


def test_concatenated_halves():
    check_fails(lambda g, u: torch.cat((g, u)), "concatenated the two halves")
    check_fails(lambda g, u: torch.cat((u, g)), "concatenated the two halves")


def test_swapped_gate_and_up():
    check_fails(lambda g, u: right(u, g), "gate and up are swapped")


def test_transposed():
    check_fails(lambda g, u: right(g, u).T, "transposed")


def test_interleaved_columns():
    check_fails(lambda g, u: torch.stack((g, u), dim=-1).reshape(g.shape[0], -1), "interleaved columns")


def test_wrong_odd_rows():
    check_fails(lambda g, u: right(g, g), "odd rows are not the up rows")


def test_wrong_even_rows():
    check_fails(lambda g, u: right(u, u), "even rows are not the gate rows")


def test_numbers_interleaved_instead_of_rows():
    # stack along the last dim, then reshape to the right shape: each row mixes gate and up numbers.
    check_fails(lambda g, u: torch.stack((g, u), dim=2).reshape(2 * g.shape[0], -1), "your rows mix gate and up")


def test_changed_values():
    check_fails(lambda g, u: right(g, u) * 2, "move rows, do not change their values")


def test_a_float64_answer_passes():
    # numpy's default dtype: the same values, so the same weight.
    result = check_interleave(lambda gate, up: right(gate, up).double())
    assert result.passed, result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_an_answer_that_changes_its_inputs_cannot_pass():
    # If the check handed over its own tensors, zeroing them would make the expected weight zeros too.
    def zero_everything(gate, up):
        gate.zero_(), up.zero_()
        return torch.zeros(2 * gate.shape[0], gate.shape[1])

    r = check_interleave(zero_everything)
    assert not r.passed and r.message.startswith("not yet: ")
