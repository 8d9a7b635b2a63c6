"""Notebook 04's exercise: lay out gate and up weights the way gpt-oss stores them."""

from __future__ import annotations

from typing import Callable

import torch

from ..mlp import gptoss_swiglu
from . import CheckResult, failed, not_a_function, passed

# Shapes where rows (outputs) and columns (inputs) differ, so a transpose cannot pass by accident.
SHAPES = ((6, 10), (16, 8), (3, 5))


def reference_interleave(gate_weight: torch.Tensor, up_weight: torch.Tensor) -> torch.Tensor:
    """gpt-oss's gate_up weight [2 * d_ff, d]: row 2i is gate row i, row 2i + 1 is up row i."""
    return torch.stack((gate_weight, up_weight), dim=1).reshape(-1, gate_weight.shape[-1])


def _diagnose(got: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> str:
    """Name the typical mistake that produced ``got``, or describe the difference."""
    ff, d = gate.shape
    if got.shape == (d, 2 * ff):
        return ("your weight is [d_model, 2 * d_ff]: it is transposed. nn.Linear keeps weights as "
                "[out_features, in_features], so the 2 * d_ff outputs are the rows.")
    if got.shape == (ff, 2 * d):
        return ("you interleaved columns (the input dimension). Interleave rows: each row is one output, "
                "and the outputs alternate gate, up, gate, up, ...")
    if got.shape != (2 * ff, d):
        return f"the result has shape {tuple(got.shape)}; expected [2 * d_ff, d_model] = {(2 * ff, d)}."
    if torch.equal(got, torch.cat((gate, up))) or torch.equal(got, torch.cat((up, gate))):
        return ("you concatenated the two halves (all gate rows, then all up rows). gpt-oss interleaves them: "
                "row 2i is gate row i and row 2i + 1 is up row i.")
    if torch.equal(got, reference_interleave(up, gate)):
        return "gate and up are swapped: even rows (0, 2, 4, ...) must hold gate, odd rows hold up."
    if torch.equal(got[0::2], gate) and not torch.equal(got[1::2], up):
        return "the even rows hold gate correctly, but the odd rows are not the up rows."
    if torch.equal(got[1::2], up) and not torch.equal(got[0::2], gate):
        return "the odd rows hold up correctly, but the even rows are not the gate rows."
    if torch.equal(got.flatten().sort().values, torch.cat((gate, up)).flatten().sort().values):
        return ("every number is there, but in the wrong places: your rows mix gate and up numbers. Interleave "
                "whole rows, e.g. torch.stack((gate, up), dim=1).reshape(2 * d_ff, d_model): stacking along "
                "dim 2 (or the last) interleaves single numbers instead.")
    err = (got - reference_interleave(gate, up)).abs().max().item()
    return (f"the shape is right but the values differ from the interleaved weight by up to {err:.3g}: "
            "move rows, do not change their values.")


def check_interleave(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check ``fn(gate_weight, up_weight)`` builds gpt-oss's interleaved gate_up weight."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    gen = torch.Generator().manual_seed(4)
    for ff, d in SHAPES:
        gate, up = torch.randn(ff, d, generator=gen), torch.randn(ff, d, generator=gen)
        try:
            got = fn(gate.clone(), up.clone())
        except Exception as e:  # the learner's code: report, do not crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None. Did you forget to `return` the weight?")
        if not isinstance(got, torch.Tensor):
            return failed(f"not yet: return a torch.Tensor, not {type(got).__name__}.")
        if got.shape != (2 * ff, d) or not torch.equal(got, reference_interleave(gate, up)):
            return failed("not yet: " + _diagnose(got, gate, up))
        got = got.to(gate.dtype)  # a float64 copy (numpy's default) holds the same values
    # The weight in use: one projection, then gpt-oss's gate, equals the two separate projections.
    x = torch.randn(5, d, generator=gen) * 3
    fused = gptoss_swiglu(x @ got.T)
    g, u = (x @ gate.T).clamp(max=7.0), (x @ up.T).clamp(-7.0, 7.0)
    assert torch.allclose(fused, (u + 1) * g * torch.sigmoid(1.702 * g), atol=1e-5)
    return passed(f"Right: rows alternate gate, up on {len(SHAPES)} shapes, and one projection with your "
                  "weight gives the same SwiGLU as the two separate ones.")
