"""sample_next draws from softmax(logits / temperature), nucleus-truncated, at temperatures other than 1.

The empirical frequencies of 40,000 seeded draws are compared with the reference distribution (a
frequency's standard error is below 0.0025; we allow 0.012), the nucleus is checked at an exactly
representable boundary and, over gpt-oss's 201,088 tokens, against a full sort, and the draws are
made on the model's device (on a GPU, there).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.generate import generate, nucleus, sample_next
from random_weights import randomize

DRAWS = 40_000


def reference(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """transformers' TemperatureLogitsWarper then TopPLogitsWarper, written out: keep the smallest prefix of
    the sorted probabilities whose mass reaches top_p, renormalised."""
    p = torch.softmax(logits.double() / temperature, dim=-1)
    sorted_p, order = p.sort(descending=True)
    keep = (sorted_p.cumsum(0) - sorted_p) < top_p
    out = torch.zeros_like(p)
    out[order[keep]] = sorted_p[keep]
    return out / out.sum()


def frequencies(logits, temperature, top_p, seed):
    gen = torch.Generator(logits.device).manual_seed(seed)
    picks = torch.tensor([sample_next(logits, temperature, top_p, gen) for _ in range(DRAWS)])
    return torch.bincount(picks, minlength=len(logits)).double() / DRAWS


# On a GPU, the draws are made there too (with a generator on the GPU), for one setting: each is a sync.
on_gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CASES = [(0.5, 1.0, "cpu"), (2.0, 1.0, "cpu"), (0.7, 0.9, "cpu"), (1.5, 0.8, "cpu"),
         (1.0, 0.97, "cpu"),  # a top_p near 1 still cuts the last token (2.2% of the mass)
         pytest.param(0.7, 0.9, "cuda", marks=on_gpu)]


@pytest.mark.parametrize("temperature,top_p,device", CASES)
def test_samples_follow_the_tempered_nucleus_distribution(temperature, top_p, device):
    logits = torch.tensor([1.0, -0.5, 2.0, 0.3, 1.5, -1.0])  # not sorted: ids are not ranks
    want = reference(logits, temperature, top_p)
    got = frequencies(logits.to(device), temperature, top_p, seed=int(temperature * 100 + top_p * 10))
    assert torch.equal(got > 0, want > 0), (got, want)  # exactly the nucleus, nothing outside it
    torch.testing.assert_close(got, want, atol=0.012, rtol=0)


# Distributions whose nucleus ends in each stretch nucleus sorts: the top 64, 1,024, 16,384, or all.
@pytest.mark.parametrize("scale,top_p,sizes", [(5.0, 0.5, (1, 64)), (5.0, 0.99, (65, 1024)), (3.0, 0.9, (1025, 16384)),
                                               (1.0, 0.9, (16385, 201088)), (0.0, 0.9, (16385, 201088))])
def test_the_nucleus_of_a_large_vocabulary_is_the_one_a_full_sort_gives(scale, top_p, sizes):
    """Against the exact nucleus: float64 probabilities, all sorted. A float32 softmax of 201,088 logits sums to
    1 + 3e-5, and measuring top_p against 1 instead of that sum cut hundreds of tokens at the edge."""
    logits = torch.randn(201088, generator=torch.Generator().manual_seed(9)) * scale
    probs = torch.softmax(logits, dim=-1)
    got = nucleus(probs, top_p)
    exact, order = torch.softmax(logits.double(), dim=-1).sort(descending=True)
    keep = exact.cumsum(0) - exact < top_p
    want = torch.zeros_like(probs).scatter_(0, order[keep], probs[order[keep]])
    size = int((want > 0).sum())
    assert sizes[0] <= size <= sizes[1] and (got > 0).sum() == size
    if scale > 0:  # all equal (scale 0): any `size` of them are the nucleus
        assert torch.equal(got > 0, want > 0)
    assert torch.equal(got[got > 0], probs[got > 0])  # the kept probabilities, untouched


@pytest.mark.parametrize("temperature,top_p", [(0.6, 0.95), (0.8, 0.999), (1.0, 0.5)])
def test_sampling_draws_from_the_exact_nucleus_of_a_large_vocabulary(temperature, top_p, monkeypatch):
    """What sample_next hands to multinomial: the float64 nucleus's tokens (6 and 152 were missing at the first two)."""
    logits = torch.randn(201088, generator=torch.Generator().manual_seed(3)) * 2
    seen = []
    monkeypatch.setattr(torch, "multinomial", lambda probs, n, generator=None: seen.append(probs) or torch.zeros(1))
    sample_next(logits, temperature, top_p)
    exact, order = torch.softmax(logits.double() / temperature, dim=-1).sort(descending=True)
    want = order[exact.cumsum(0) - exact < top_p]
    assert torch.equal(seen[0].nonzero().squeeze(1).sort().values, want.sort().values)


@pytest.mark.parametrize("logits,what", [([0.0, math.nan, 1.0], "1 NaN"), ([0.0, math.inf, 1.0], "1 +inf"),
                                         ([-math.inf] * 3, "only -inf")])
@pytest.mark.parametrize("temperature", [0.0, 1e-30, 1.0])
def test_logits_with_nothing_to_sample_from_are_refused_by_name(logits, what, temperature):
    """Greedy picked the NaN, a tiny temperature a random token, and 1.0 raised multinomial's riddle."""
    with pytest.raises(ValueError, match=rf"^the logits hold {re.escape(what)} of 3: there is nothing to sample from"):
        sample_next(torch.tensor(logits), temperature, 0.9)


def test_nucleus_boundary_reaching_top_p_exactly_stops_there():
    """Four equal logits: each probability is exactly 0.25, so two tokens reach top_p = 0.5 exactly."""
    gen = torch.Generator().manual_seed(0)
    picks = {sample_next(torch.zeros(4), 1.0, 0.5, gen) for _ in range(400)}
    assert len(picks) == 2


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=on_gpu)])
def test_a_seeded_generation_draws_where_the_model_is(device, monkeypatch):
    """No copy of the probabilities to the CPU at every token on a GPU; the same seed, the same reply, and
    another seed another reply (a generator seeded with a constant passed every other test)."""
    model = randomize(g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)), seed=5).to(device)
    draws = []
    multinomial = torch.multinomial

    def spy(probs, n, generator=None):
        draws.append((probs.device.type, generator.device.type))
        return multinomial(probs, n, generator=generator)

    monkeypatch.setattr(torch, "multinomial", spy)
    first = generate(model, [1, 2, 3], max_new_tokens=12, temperature=1.0, seed=7).tokens
    assert draws == [(device, device)] * 12
    assert generate(model, [1, 2, 3], max_new_tokens=12, temperature=1.0, seed=7).tokens == first
    assert generate(model, [1, 2, 3], max_new_tokens=12, temperature=1.0, seed=8).tokens != first


@pytest.mark.parametrize("temperature", [1e-30, 1e-40, 1e-45, 1e-46, 5e-324])
def test_a_temperature_too_small_for_float32_is_greedy_not_an_error(temperature):
    """logits / 1e-40 overflows float32 to inf (softmax: NaN), and 1e-46 is 0 in float32 (0 / 0 at the top
    logit); the draw must still be the top token."""
    logits = torch.randn(201088, generator=torch.Generator().manual_seed(3)) * 4
    gen = torch.Generator().manual_seed(0)
    assert [sample_next(logits, temperature, 1.0, gen) for _ in range(5)] == [int(logits.argmax())] * 5
    assert sample_next(logits, temperature, 0.5, gen) == int(logits.argmax())
    tied = torch.tensor([0.0, 3.0, 1.0, 3.0])  # two top tokens: either may be drawn, nothing else
    assert {sample_next(tied, temperature, 1.0, gen) for _ in range(40)} == {1, 3}


@pytest.mark.parametrize("temperature", [1e-19, 1e-10, 0.005])
def test_a_small_temperature_that_float32_can_take_still_samples(temperature):
    """Only below 1e-20 is the draw forced to the top token: just above, logits one temperature apart still share it."""
    logits = torch.tensor([0.0, temperature])  # divided by the temperature: [0, 1], probabilities 0.27 and 0.73
    gen = torch.Generator().manual_seed(0)
    draws = [sample_next(logits, temperature, 1.0, gen) for _ in range(200)]
    assert 20 < draws.count(0) < 90  # 0.27 of 200 is 54


@pytest.mark.parametrize("temperature,top_p", [(float("nan"), 1.0), (float("inf"), 1.0), (-1.0, 1.0),
                                               (1.0, float("nan")), (1.0, 0.0), (1.0, 1.5)])
def test_a_temperature_or_top_p_out_of_range_is_refused_by_name(temperature, top_p):
    with pytest.raises(ValueError, match=f"temperature must be a number >= 0 .* got {temperature} and {top_p}"):
        sample_next(torch.zeros(8), temperature, top_p)


def test_generation_refuses_bad_sampling_settings_before_any_work(monkeypatch):
    """Checked before the prefill, so a prompt of a real model's length is not processed for nothing."""
    model = randomize(g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)), seed=5)
    calls = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(a) or torch.zeros(1, 1, 300))
    with pytest.raises(ValueError, match="temperature must be"):
        generate(model, [1, 2, 3], max_new_tokens=4, temperature=float("nan"))
    assert calls == []


def test_no_new_tokens_means_no_prefill(monkeypatch):
    model = randomize(g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)), seed=5)
    calls = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(a) or torch.zeros(1, 1, 300))
    result = generate(model, [1, 2, 3], max_new_tokens=0)
    assert (result.tokens, result.stop_reason, result.prompt_tokens, calls) == ([], "max_new_tokens", 3, [])


@pytest.mark.parametrize("value", [5.0, None, True, "8"])
def test_max_new_tokens_that_is_no_whole_number_is_named(value):
    """5.0 failed inside torch.zeros, None at a comparison; True passed as 1."""
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50, context_length=16)).eval()
    with pytest.raises(ValueError, match=r"max_new_tokens must be a whole number, 0 or more \(an int\), got"):
        generate(model, [1, 2], max_new_tokens=value)


# ---- found by mutation testing: the 1e-20 threshold, near-ties at a tiny temperature, top_p = 1 ----------


@pytest.mark.parametrize("temperature", [1e-21, 1e-25])
def test_below_1e_20_a_temperature_whose_division_would_overflow_is_greedy(temperature):
    """The threshold is 1e-20, not lower: 1e18 / 1e-21 overflows float32 to inf (softmax: NaN, multinomial an
    error), and a threshold moved down to 1e-30 let such a temperature divide."""
    logits = torch.tensor([0.0, 1e18, -1e18])
    gen = torch.Generator().manual_seed(0)
    assert [sample_next(logits, temperature, 1.0, gen) for _ in range(5)] == [1] * 5


def test_a_tiny_temperature_draws_the_top_token_not_one_just_below_it():
    """Only the logits equal to the top are kept: one a millionth below it has probability 0 at 1e-30."""
    logits = torch.tensor([3.0 - 2**-20, 3.0, 2.5, 3.0 - 2**-20])
    gen = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1e-30, 1.0, gen) for _ in range(40)} == {1}


def test_top_p_of_one_hands_every_token_with_any_probability_to_the_draw(monkeypatch):
    """top_p = 1 skips the nucleus: run anyway, its float64 cumulative mass reaches the whole sum before a token of
    probability 4e-44 (a float32 denormal), and cut it. (Skipping it also spares gpt-oss a sort of 201,088 at
    every token.)"""
    seen = []
    monkeypatch.setattr(torch, "multinomial", lambda probs, n, generator=None: seen.append(probs) or torch.zeros(1))
    sample_next(torch.tensor([0.0, -100.0]), 1.0, 1.0)
    assert seen[0][1] > 0 and torch.equal(seen[0], torch.softmax(torch.tensor([0.0, -100.0]), dim=-1))
