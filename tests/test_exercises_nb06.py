"""Notebook 06's exercise check: the right answer passes; each typical mistake gets its explanation."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu.exercises.nb06 import check_sink_share, reference_sink_share


def band(T, window, causal=True, extra=0):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = (j <= i) if causal else torch.ones(T, T, dtype=torch.bool)
    if window:
        allowed &= i - j < window + extra
    return allowed


def via_softmax(scores, sink, window, **kw):
    s = scores.masked_fill(~band(scores.shape[-1], window, **kw), float("-inf"))
    return torch.softmax(torch.cat([s, torch.full((s.shape[0], 1), sink)], dim=-1), dim=-1)[:, -1]


def via_sigmoid(scores, sink, window):
    s = scores.masked_fill(~band(scores.shape[-1], window), float("-inf"))
    return torch.sigmoid(sink - torch.logsumexp(s, dim=-1))


def test_right_answers_pass():
    for fn in (via_softmax, via_sigmoid):
        result = check_sink_share(fn)
        assert result.passed, result.message


def test_reference_matches_a_plain_softmax():
    torch.manual_seed(0)
    scores = torch.randn(9, 9) * 2
    for window in (0, 1, 3, 9):
        torch.testing.assert_close(reference_sink_share(scores, 0.7, window), via_softmax(scores, 0.7, window),
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("fn,pattern", [
    (lambda s, sink, w: None, "returned None"),
    (lambda s, sink, w: 0.5, "return a torch.Tensor"),
    (lambda s, sink, w: s[s.shape[0]], "raised IndexError"),
    (lambda s, sink, w: torch.softmax(s, -1), "whole weight matrix"),
    (lambda s, sink, w: 1 - via_softmax(s, sink, w), "mass on the keys"),
    (lambda s, sink, w: via_softmax(s, sink, 0, causal=False), "every query see every key"),
    (lambda s, sink, w: torch.sigmoid(torch.tensor(sink)).expand(s.shape[0]), "softmax of the sink alone"),
    (lambda s, sink, w: via_softmax(s, sink, 0), "ignored the window"),
    (lambda s, sink, w: via_softmax(s, sink, w, extra=1), "one key too wide"),
    (lambda s, sink, w: via_softmax(s, sink, w, extra=-1), "one key too narrow"),
    (lambda s, sink, w: via_softmax(s, sink, w, causal=False), "causal mask still hides the future"),
    (lambda s, sink, w: via_softmax(s, sink + 0.5, w), "differ by up to"),
    # the statement's "0 means no window" read as a window of zero keys: every key masked
    (lambda s, sink, w: torch.sigmoid(sink - torch.logsumexp(s.masked_fill(
        ~(band(s.shape[-1], None) & (torch.arange(s.shape[-1])[:, None] - torch.arange(s.shape[-1]) < w)),
        float("-inf")), dim=-1)), "window 0 means no window"),
    (lambda s, sink, w: torch.softmax(torch.cat([s * band(s.shape[-1], w), torch.full((s.shape[0], 1), sink)], -1),
                                      -1)[:, -1], "masked by multiplying"),
])
def test_typical_mistakes_are_explained(fn, pattern):
    result = check_sink_share(fn)
    assert not result.passed
    assert result.message.startswith("not yet: ")
    assert pattern in result.message, result.message


def test_keepdim_gets_its_own_hint():
    result = check_sink_share(lambda s, sink, w: reference_sink_share(s, sink, w)[:, None])
    assert not result.passed and "squeeze(-1)" in result.message and "weight matrix" not in result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def _allowed(T, window):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (j <= i) & ((window == 0) | (i - j < window))


def right(scores, sink, window):
    lse = torch.logsumexp(scores.masked_fill(~_allowed(scores.shape[-1], window), float("-inf")), dim=-1)
    return torch.sigmoid(sink - lse)


def test_window_zero_taken_literally_fails():
    # window 0 means full causal attention; `i - j < window` alone masks every key. Needs the window-0 case.
    def literal(scores, sink, window):
        T = scores.shape[-1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        lse = torch.logsumexp(scores.masked_fill(~((j <= i) & (i - j < window)), float("-inf")), dim=-1)
        return torch.sigmoid(sink - lse)

    r = check_sink_share(literal)
    assert not r.passed and "window 0" in r.message, r.message


def test_a_near_miss_fails():
    # A sink 0.02 off moves shares by ~1e-3: well past rounding.
    r = check_sink_share(lambda s, sink, w: right(s, sink + 0.02, w))
    assert not r.passed and "differ by up to" in r.message, r.message


def test_masking_the_scores_in_place_still_gets_the_right_diagnosis():
    # masked_fill_ on the scores is common; if the check's scores were the learner's, its mistakes
    # would be computed from the masked scores and this one named "every query see every key".
    def in_place_no_window(scores, sink, window):
        T = scores.shape[-1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        scores.masked_fill_(j > i, float("-inf"))
        return torch.sigmoid(sink - torch.logsumexp(scores, dim=-1))

    r = check_sink_share(in_place_no_window)
    assert not r.passed and "ignored the window" in r.message, r.message


def test_right_shares_from_scores_masked_in_place_fail():
    """nb01-03 refuse an answer that writes into its input; so does this one, once its shares are right."""
    def in_place(scores, sink, window):
        T = scores.shape[-1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        scores.masked_fill_((j > i) | ((i - j >= window) if window else False), float("-inf"))
        return torch.sigmoid(sink - torch.logsumexp(scores, dim=-1))

    assert check_sink_share(lambda s, sink, w: in_place(s.clone(), sink, w)).passed
    r = check_sink_share(in_place)
    assert not r.passed and "changed the scores it was given" in r.message, r.message
