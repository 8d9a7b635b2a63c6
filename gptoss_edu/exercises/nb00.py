"""Notebook 00's exercise: count the parameters of one GPT-2 block by hand."""

from __future__ import annotations

import copy
from typing import Callable

import torch

from ..config import ModelConfig, preset
from ..model import Block
from . import CheckResult, as_number, failed, not_a_function, passed

# GPT-2-shaped configs to try an answer on; the last has d_ff != 4 * d_model on purpose.
SHAPES = (
    dict(d_model=768, n_heads=12, n_kv_heads=12, head_dim=64, d_ff=3072),
    dict(d_model=64, n_heads=4, n_kv_heads=4, head_dim=16, d_ff=256),
    dict(d_model=96, n_heads=6, n_kv_heads=6, head_dim=16, d_ff=200),
)


def block_params(cfg: ModelConfig) -> int:
    """The parameters of one block of the package's model, counted from its tensors."""
    with torch.device("meta"):  # counting needs shapes only, no memory
        block = Block(cfg, 0)
    return sum(p.numel() for p in block.parameters())


def _mistakes(cfg: ModelConfig) -> dict[str, int]:
    """What typical wrong counts come out as, for this config."""
    d, f = cfg.d_model, cfg.d_ff
    right = block_params(cfg)
    return {
        "you left out the biases (attention has 3d + d of them, the MLP d_ff + d); "
        "every nn.Linear in GPT-2 has one": right - (4 * d + f + d),
        "you left out the two LayerNorms: each has a scale and a shift of d_model values (4 d in all)": right - 4 * d,
        "you left out the attention's biases: q, k, v and the output projection have d each": right - 4 * d,
        "you gave each LayerNorm only its scale: it has a shift (bias) too": right - 2 * d,
        "you counted one LayerNorm: the block has two, one before attention and one before the MLP": right - 2 * d,
        "you left out the attention's output projection (d x d weights plus d biases)": right - (d * d + d),
        "you counted q, k and v as one d x d matrix: they are three": right - 2 * (d * d + d),
        "you left out the MLP's two biases: d_ff values for the first layer, d_model for the second": right - (f + d),
        "the first MLP layer's bias has d_ff values, one per output, not d_model": right - f + d,
    }


def _in_vectors(diff: int, cfg: ModelConfig) -> str:
    """A difference read as whole vectors of d_model or d_ff values (a bias, a norm's scale or shift), if it is."""
    readings = [f"{diff // size:+d} x {name}" for name, size, most in (("d_model", cfg.d_model, 8), ("d_ff", cfg.d_ff, 2))
                if diff % size == 0 and 0 < abs(diff // size) <= most]
    if not readings:
        return ""
    return (f" = {' or '.join(readings)}: whole vectors {'missing' if diff < 0 else 'too many'}, so look at the "
            "biases and the LayerNorms' scales and shifts")


def check_block_params(fn: Callable[[ModelConfig], int]) -> CheckResult:
    """Try ``fn(cfg)`` on a few GPT-2-shaped configs against the package's Block."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    base = preset("gpt2-124m")
    for shape in SHAPES:
        cfg = base.replace(**shape)
        try:
            got = fn(copy.deepcopy(cfg))  # a copy: a learner's cfg.d_ff = 4 * d must not move the answer
        except Exception as e:  # the learner's code: report, don't crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None: did you forget to `return` the count?")
        got, problem = as_number(got, "your result")
        if problem:
            return failed(f"not yet: {problem} (the sum of the parts).")
        want = block_params(cfg)
        if got == want:
            continue
        whys = [why for why, wrong in _mistakes(cfg).items() if got == wrong]
        if whys:  # some mistakes come to the same count (4 d: the norms, or attention's biases): each is named
            return failed(f"not yet: {got:,} for d_model={cfg.d_model}, d_ff={cfg.d_ff} "
                          f"(expected {want:,}): {' - or - '.join(whys)}.")
        if cfg.d_ff != 4 * cfg.d_model and got == block_params(cfg.replace(d_ff=4 * cfg.d_model)):
            return failed(f"not yet: right for GPT-2 124M, wrong for d_ff={cfg.d_ff}: "
                          "use cfg.d_ff, not 4 * cfg.d_model.")
        return failed(f"not yet: {got:,} for d_model={cfg.d_model}, d_ff={cfg.d_ff}; the block has {want:,} "
                      f"(off by {got - want:+,}{_in_vectors(got - want, cfg)}). Count each nn.Linear as in*out + "
                      "out, each LayerNorm as 2*d.")
    return passed(f"Right: one GPT-2 124M block has {block_params(base):,} parameters (12 d^2 + 13 d for d_ff = 4d).")
