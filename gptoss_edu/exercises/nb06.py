"""Notebook 06's exercise: how much of each query's attention a sink takes, under a sliding window."""

from __future__ import annotations

from typing import Callable

import torch

from ..attention import attend
from . import CheckResult, failed, not_a_function, passed

# (tokens, window, sink logit): a window shorter than the sequence, full causal, a strong sink.
CASES = ((12, 4, 0.5), (10, 0, -1.0), (16, 5, 2.0))


def reference_sink_share(scores: torch.Tensor, sink: float, window: int) -> torch.Tensor:
    """The sink's share of each query's softmax mass, taken from the package's attention itself.

    With values = the identity, ``attend`` returns the attention weights; what they lack of 1 is
    the sink's share.
    """
    T = scores.shape[-1]
    q = scores[None, None].double()  # scores = q @ k.T with k = I and scale 1
    eye = torch.eye(T, dtype=torch.float64)[None, None]
    weights = attend(q, eye, eye, scale=1.0, window=window, sinks=torch.tensor([float(sink)], dtype=torch.float64))
    return (1 - weights.sum(-1))[0, 0].float()


def _share(scores: torch.Tensor, sink: float, allowed: torch.Tensor) -> torch.Tensor:
    lse = torch.logsumexp(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.sigmoid(sink - lse)


def _band(T: int, lo: int | None, causal: bool = True) -> torch.Tensor:
    """Allowed (query i, key j): j <= i if causal, and i - j < lo if lo is given."""
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = (j <= i) if causal else torch.ones(T, T, dtype=torch.bool)
    if lo is not None:
        allowed &= i - j < lo
    return allowed


def _diagnose(got: torch.Tensor, scores: torch.Tensor, sink: float, window: int) -> str:
    """Name the typical mistake behind ``got``, or say how far off it is."""
    T = scores.shape[-1]
    want = reference_sink_share(scores, sink, window)
    close = lambda other: torch.allclose(got.float(), other, atol=1e-5)
    w = window or None
    mistakes = [
        (1 - want, "that is the mass on the keys; the sink's share is what the keys do not get: 1 minus that."),
        (_share(scores, sink, _band(T, None, causal=False)),
         "you let every query see every key: mask the future (key j > query i) before the softmax."),
        (torch.sigmoid(sink - torch.logsumexp(scores * _band(T, w), dim=-1)),
         "you masked by multiplying (a masked score became 0): exp(0) = 1 still takes a share of the softmax. "
         "Set masked scores to -inf (scores.masked_fill(~allowed, float('-inf'))), whose exp is 0."),
        (torch.full_like(want, torch.sigmoid(torch.tensor(sink)).item()),
         "you took the softmax of the sink alone (sigmoid of the sink logit); its share depends on the "
         "scores too: it competes with every visible key in the same softmax."),
    ]
    if window:
        mistakes += [
            (_share(scores, sink, _band(T, None)),
             f"you ignored the window: with window {window} a query sees only the last {window} keys."),
            (_share(scores, sink, _band(T, window + 1)),
             f"the window is one key too wide: window {window} means {window} keys, the current one included "
             f"(query i sees keys i - {window - 1} .. i)."),
            (_share(scores, sink, _band(T, window - 1)),
             f"the window is one key too narrow: window {window} means {window} keys, the current one included "
             f"(query i sees keys i - {window - 1} .. i)."),
            (_share(scores, sink, _band(T, w, causal=False)),
             "keys after the query got through: the window limits how far back a query looks, and the causal "
             "mask still hides the future."),
        ]
    else:
        mistakes.append((torch.ones_like(want),
                         "window 0 means no window (each query sees every key up to itself, as in full causal "
                         "attention), not zero keys: with every key masked, the sink took all the mass."))
    for other, message in mistakes:
        if close(other):
            return message
    err = (got.float() - want).abs().max().item()
    return (f"with {T} tokens, window {window} and sink {sink:g} your shares differ by up to {err:.3g}. The sink "
            f"is one more logit in each row's softmax over the visible keys; its share is its probability.")


def check_sink_share(fn: Callable[[torch.Tensor, float, int], torch.Tensor]) -> CheckResult:
    """Check ``fn(scores [T, T], sink, window)`` returns the sink's share of each query's mass [T]."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    gen = torch.Generator().manual_seed(6)
    for T, window, sink in CASES:
        scores = torch.randn(T, T, generator=gen) * 2
        theirs = scores.clone()  # the diagnosis reads the scores as they were, whatever fn does to its copy
        try:
            got = fn(theirs, sink, window)
        except Exception as e:  # the learner's code: report, do not crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if got is None:
            return failed("not yet: your function returned None. Did you forget to `return` the shares?")
        if not isinstance(got, torch.Tensor):
            return failed(f"not yet: return a torch.Tensor, not {type(got).__name__}.")
        if got.shape != (T,):
            if got.shape == (T, 1):
                hint = " Drop the last dimension (keepdim=False, or .squeeze(-1))."
            elif got.dim() == 2:
                hint = " That looks like the whole weight matrix: return only the sink's column, one number per query."
            else:
                hint = ""
            return failed(f"not yet: for {T} queries the result should have shape ({T},), got {tuple(got.shape)}.{hint}")
        if not torch.allclose(got.float(), reference_sink_share(scores, sink, window), atol=1e-5):
            return failed("not yet: " + _diagnose(got, scores, sink, window))
        if not torch.equal(theirs, scores):
            return failed("not yet: the shares are right, but your function changed the scores it was given (an op "
                          "ending in _, such as masked_fill_, or an assignment such as scores[mask] = ...): a caller may "
                          "still need them. Use the out-of-place scores.masked_fill(...), which returns a new tensor")
    return passed(f"Right on {len(CASES)} cases (windows 4, 5 and full; sinks -1 to 2): the sink's share is "
                  "sigmoid(sink - logsumexp of the visible scores).")
