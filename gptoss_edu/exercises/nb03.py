"""Notebook 03's exercise: RMSNorm as gpt-oss computes it (float32 inside, the weight too, one cast back)."""

from __future__ import annotations

from typing import Callable

import torch

from ..norms import rms_norm
from . import CheckResult, compare, failed, not_a_function, passed

ATOL = 1e-5  # float32 inputs: rounding only
# bfloat16 inputs: two correct float32 computations can round to different bf16 values in a few
# places (1/sqrt vs rsqrt); a real mistake changes a fifth or more of them.
BF16_MISMATCH = 1e-3


def _float32_mistakes(x: torch.Tensor, w: torch.Tensor, eps: float) -> list[tuple[torch.Tensor, str]]:
    ms = x.pow(2).mean(-1, keepdim=True)
    xc = x - x.mean(-1, keepdim=True)
    return [
        (xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps) * w,
         "you subtracted the mean: that is LayerNorm (without its shift); RMSNorm divides x itself by its "
         "root mean square"),
        (x / (ms.sqrt() + eps) * w, "eps goes inside the square root: x / sqrt(mean(x^2) + eps)"),
        (x * torch.rsqrt(ms) * w, "eps is missing: x / sqrt(mean(x^2) + eps) (it matters when x is tiny)"),
        *[(x * torch.rsqrt(ms + own) * w,
           f"you used eps = {own:g} of your own: use the `eps` argument (the model passes its config's "
           "rms_norm_eps; transformers' class would default to 1e-6)") for own in (1e-5, 1e-6) if own != eps],
        (x / (x.std(-1, keepdim=True) + eps) * w,
         "you divided by the standard deviation (which centres); RMSNorm uses sqrt(mean(x^2))"),
        (x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * w,
         "you summed the squares: take their mean (divide by d)"),
        (x * torch.rsqrt(ms + eps), "the learned scale `weight` is missing"),
    ]


IN_BF16 = "you computed in bfloat16: upcast x to float32 first (x.float()), as gpt-oss does"


def _bf16_mistakes(x: torch.Tensor, w: torch.Tensor, eps: float) -> list[tuple[torch.Tensor, str]]:
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return [
        (w * normed.to(x.dtype),
         "you cast back to bfloat16 before multiplying by the weight (LLaMA's order); gpt-oss multiplies by "
         "the weight in float32 and casts once, at the end"),
        (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w, IN_BF16),
        (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w, IN_BF16),
    ]


def _inputs() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    # A private generator: inputs the learner did not pick, same on every run, global RNG untouched.
    gen = torch.Generator().manual_seed(303)
    # Tiny inputs first, where eps matters: two values of it, so that an eps of one's own is caught.
    return [
        (1e-3 * torch.randn(3, 64, generator=gen), 1 + 0.1 * torch.randn(64, generator=gen), 1e-5),
        (1e-3 * torch.randn(3, 64, generator=gen), 1 + 0.1 * torch.randn(64, generator=gen), 1e-4),
        (torch.randn(4, 7, 32, generator=gen) + 0.5, 1 + 0.1 * torch.randn(32, generator=gen), 1e-5),
        ((3 * torch.randn(16, 2880, generator=gen) + 0.5).bfloat16(),
         (1 + 0.1 * torch.randn(2880, generator=gen)).bfloat16(), 1e-5),
        # OpenAI's code keeps the norm's weight in float32 beside bf16 activations: the result is still x's dtype.
        ((3 * torch.randn(5, 2880, generator=gen) - 0.5).bfloat16(),
         (1 + 0.1 * torch.randn(2880, generator=gen)).bfloat16().float(), 1e-5),
    ]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if b.dtype == torch.bfloat16:
        return a.dtype == b.dtype and (a != b).float().mean().item() <= BF16_MISMATCH
    return torch.allclose(a.float(), b.float(), atol=ATOL, rtol=0)


def check_rms_norm(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """Try ``fn(x, weight, eps)`` in float32 and bfloat16 against gptoss_edu.norms.rms_norm; name the slips."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for x, w, eps in _inputs():
        x_before = x.clone()
        want = rms_norm(x, w, eps)  # before the learner's code runs, on inputs it cannot touch
        try:
            got = fn(x, w.clone(), eps)
        except Exception as e:  # the learner's code: report, don't crash the notebook
            hint = (" Did the mean over the last dimension keep that dimension (keepdim=True), so that it "
                    "broadcasts against x?" if "must match the size of tensor" in str(e) else "")
            return failed(f"not yet: your function raised {type(e).__name__}: {e}.{hint}")
        if not torch.equal(x, x_before):
            return failed("not yet: your function changed x in place; compute a new tensor instead (x.float() "
                          "and .to() return x itself when it already has that dtype, so an in-place op such as "
                          "mul_ on their result writes into x: use out-of-place ops, or .clone() first)")
        shape_or_none = compare(got, want, "your RMSNorm", atol=float("inf"))
        if shape_or_none is not None:
            return failed("not yet: " + shape_or_none.message)
        if got.dtype != x.dtype:
            weight = f" (the weight is {w.dtype}: the result follows x, not the weight)" if w.dtype != x.dtype else ""
            return failed(f"not yet: x is {x.dtype} but your result is {got.dtype}{weight}: cast back to x's dtype "
                          "at the end (.to(x.dtype))")
        if _same(got, want):
            continue
        mistakes = _bf16_mistakes(x, w, eps) if x.dtype == torch.bfloat16 else _float32_mistakes(x, w, eps)
        for wrong, why in mistakes:
            if _same(got, wrong):
                return failed(f"not yet: {why}.")
        if x.dtype == torch.bfloat16:
            frac = (got != want).float().mean().item()
            return failed(f"not yet: right in float32, but on bfloat16 input {frac:.0%} of the values differ from "
                          "gpt-oss's: compute in float32, multiply by the weight, then cast back once")
        return failed("not yet: " + compare(got, want, "your RMSNorm", atol=ATOL).message)
    return passed("Right: float32 inside, the weight applied in float32, one cast back: "
                  "RMSNorm as gpt-oss computes it.")
