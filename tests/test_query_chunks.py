"""Attention over more queries than QUERY_CHUNK (1024).

Tolerance: 1e-5: float32 rounding, against the reference (computed in float64) and between a model
with small chunks and one with the real chunk size (sums over differently shaped blocks).

attend() splits the queries into chunks of at most QUERY_CHUNK, fewer where their scores would pass
SCORE_CHUNK (attention.query_chunk), so past the first chunk the next one's positions (causal mask,
window) must be right too. Compared here with a from-scratch softmax attention (one score matrix,
sinks as an extra column), at the real chunk size and with the chunk made small, by either limit,
so a whole model crosses several chunk boundaries.
"""

from __future__ import annotations

import pytest
import torch

import gptoss_edu as g
from gptoss_edu import attention
from random_weights import randomize


def reference_attention(q, k, v, scale, q_start, window, sinks):
    """q [B, Hq, Tq, D] over k, v [B, Hkv, Tk, D]; query i at position q_start + i; head h reads kv head h // G."""
    B, Hq, Tq, D = q.shape
    G = Hq // k.shape[1]
    k, v = k.repeat_interleave(G, dim=1).double(), v.repeat_interleave(G, dim=1).double()
    scores = q.double() @ k.transpose(-1, -2) * scale
    qp = torch.arange(q_start, q_start + Tq)[:, None]
    kp = torch.arange(k.shape[2])[None, :]
    ok = (kp <= qp) & ((qp - kp < window) if window else True)
    scores = scores.masked_fill(~ok, float("-inf"))
    if sinks is not None:
        scores = torch.cat((scores, sinks.double().view(1, Hq, 1, 1).expand(B, Hq, Tq, 1)), dim=-1)
    return torch.softmax(scores, dim=-1)[..., :k.shape[2]] @ v


@pytest.mark.parametrize("Tq,Tk,window", [(1100, 1100, 0), (1100, 1100, 128), (1030, 1500, 64)])
def test_attend_past_one_query_chunk_matches_the_reference(Tq, Tk, window):
    gen = torch.Generator().manual_seed(Tq + window)
    q = torch.randn(1, 4, Tq, 8, generator=gen)
    k, v = torch.randn(1, 2, Tk, 8, generator=gen), torch.randn(1, 2, Tk, 8, generator=gen)
    sinks = torch.randn(4, generator=gen)
    q_start = Tk - Tq
    got = attention.attend(q, k, v, scale=8 ** -0.5, q_start=q_start, window=window, sinks=sinks)
    want = reference_attention(q, k, v, 8 ** -0.5, q_start, window, sinks)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


# Several boundaries and a ragged last chunk, the chunk set by QUERY_CHUNK (5), or by SCORE_CHUNK: 2 sequences x
# 4 heads x 80 scores, so 2 queries at a time over the 40 keys of the whole prompt and over the 39 or 40 of the
# second prefill (8 kept by a window layer, or 9, and its 31 new), 8 over the first prefill's 9.
CHUNKS = {5: {"whole": {(5, 40)}, "first": {(5, 9), (4, 9)}, "second": {(5, 39), (1, 39), (5, 40), (1, 40)}},
          1024: {"whole": {(2, 40)}, "first": {(8, 9), (1, 9)}, "second": {(2, 39), (1, 39), (2, 40), (1, 40)}}}


@pytest.mark.parametrize("chunk,scores", [(5, 1 << 27), (1024, 2 * 4 * 80)])
def test_model_output_does_not_depend_on_the_query_chunk(chunk, scores, monkeypatch):
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)
    model = randomize(g.GPT(cfg), seed=chunk)
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(chunk))
    with torch.no_grad():
        want = model(ids)
        cache = model.new_cache(2, 40)
        model(ids[:, :9], cache)
        want_tail = model(ids[:, 9:], cache)
        monkeypatch.setattr(attention, "QUERY_CHUNK", chunk)
        monkeypatch.setattr(attention, "SCORE_CHUNK", scores)
        calls: list[tuple[int, int]] = []  # (queries, keys) of each chunk attended
        masked = attention.attend_masked
        monkeypatch.setattr(attention, "attend_masked",
                            lambda q, k, *a, **kw: calls.append((q.shape[2], k.shape[2])) or masked(q, k, *a, **kw))
        got = model(ids)
        seen = {"whole": set(calls)}
        calls.clear()
        cache = model.new_cache(2, 40)
        model(ids[:, :9], cache)
        seen["first"] = set(calls)
        calls.clear()
        got_tail = model(ids[:, 9:], cache)  # a second prefill chunk: q_start > 0 as well
        seen["second"] = set(calls)
    assert seen == CHUNKS[chunk]  # the chunks the comment above says, the ragged ones included
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_tail, want_tail, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_tail, want[:, 9:], atol=1e-5, rtol=1e-5)
