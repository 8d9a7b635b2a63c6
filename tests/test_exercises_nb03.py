"""Notebook 03's exercise check (gpt-oss RMSNorm): right answers pass, each typical mistake is named."""

from __future__ import annotations

import pytest
import torch
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm

from gptoss_edu.exercises.nb03 import check_rms_norm
from gptoss_edu.norms import rms_norm


def right(x, weight, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * xf).to(x.dtype)


def via_transformers(x, weight, eps):
    norm = GptOssRMSNorm(x.shape[-1], eps=eps)
    norm.weight.data = weight.clone()
    with torch.no_grad():
        return norm(x)


def test_right_answers_pass():
    assert check_rms_norm(right).passed
    assert check_rms_norm(rms_norm).passed
    assert check_rms_norm(via_transformers).passed
    # 1/sqrt instead of rsqrt rounds differently in a few bf16 places: still right
    assert check_rms_norm(lambda x, w, e: (w.float() * (x.float() / torch.sqrt(
        x.float().pow(2).mean(-1, keepdim=True) + e))).to(x.dtype)).passed


def up(f):
    """Apply a float32 formula to a float32 upcast of x and cast back (so only the formula is wrong)."""
    return lambda x, w, e: f(x.float(), w.float(), e).to(x.dtype)


@pytest.mark.parametrize("wrong, message", [
    (up(lambda x, w, e: (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + e) * w),
     "you subtracted the mean"),
    (up(lambda x, w, e: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + e) * w), "eps goes inside the square root"),
    (up(lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w), "eps is missing"),
    (up(lambda x, w, e: x / (x.std(-1, keepdim=True) + e) * w), "standard deviation"),
    # transformers' default, and gpt-oss's value: each ignores the eps it is given
    (up(lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w), "eps = 1e-06 of your own"),
    (up(lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w), "eps = 1e-05 of your own"),
    (up(lambda x, w, e: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + e) * w), "you summed the squares"),
    (up(lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e)), "`weight` is missing"),
    (lambda x, w, e: w * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + e)).to(x.dtype),
     "before multiplying by the weight (LLaMA's order)"),
    (lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + e) * w, "you computed in bfloat16"),
    (lambda x, w, e: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + e) * w, "you computed in bfloat16"),
])
def test_typical_mistakes_are_named(wrong, message):
    r = check_rms_norm(wrong)
    assert not r.passed and r.message.startswith("not yet: ") and message in r.message, r.message


def test_other_failures():
    assert "returned None" in check_rms_norm(lambda x, w, e: None).message
    assert "has shape" in check_rms_norm(lambda x, w, e: x[..., :1]).message
    assert "cast back to x's dtype" in check_rms_norm(lambda x, w, e: right(x, w, e).float()).message
    # The weight's dtype is not x's: with a float32 weight beside bf16 x (as OpenAI's code keeps it), named.
    for follows_weight in (lambda x, w, e: right(x, w, e).to(w.dtype), lambda x, w, e: right(x, w, e).type_as(w)):
        r = check_rms_norm(follows_weight)
        assert not r.passed and "the result follows x, not the weight" in r.message, r.message
    assert "raised ValueError" in check_rms_norm(lambda x, w, e: (_ for _ in ()).throw(ValueError("x"))).message
    assert "keepdim" not in check_rms_norm(lambda x, w, e: (_ for _ in ()).throw(ValueError("x"))).message
    # the mean without keepdim=True: [.., T] against x's [.., T, d] does not broadcast
    no_keepdim = check_rms_norm(lambda x, w, e: x * torch.rsqrt(x.pow(2).mean(-1) + e) * w)
    assert not no_keepdim.passed and "keepdim=True" in no_keepdim.message, no_keepdim.message
    assert "in place" in check_rms_norm(lambda x, w, e: x.add_(1.0)).message
    # Writing into x.float() is writing into x when x is float32 already: the message says why.
    hidden = check_rms_norm(lambda x, w, e: (w.float() * x.float().mul_(
        torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + e))).to(x.dtype))
    assert not hidden.passed and "return x itself" in hidden.message, hidden.message
    generic = check_rms_norm(lambda x, w, e: right(x, w, e) * 1.01)
    assert not generic.passed and "differs by up to" in generic.message
    # right in float32, off in bfloat16 in a way that is none of the named mistakes
    odd = check_rms_norm(lambda x, w, e: right(x, w, e) + (0.01 if x.dtype == torch.bfloat16 else 0.0))
    assert not odd.passed and "on bfloat16 input" in odd.message, odd.message


def test_an_answer_that_changes_the_weight_cannot_pass():
    def zero_everything(x, weight, eps):
        weight.zero_()
        return torch.zeros_like(x)

    assert not check_rms_norm(zero_everything).passed


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_changing_the_weight_in_place_does_not_change_the_diagnosis():
    # The check's weight must stay intact, else its named mistakes are computed with a zero weight
    # and "you subtracted the mean" is named for an answer of zeros.
    def zero_everything(x, weight, eps):
        weight.zero_()
        return torch.zeros_like(x)

    r = check_rms_norm(zero_everything)
    assert not r.passed and "differs by up to" in r.message, r.message


def test_a_few_percent_of_bf16_values_off_fails():
    # The bf16 slack is for rounding noise (a few values in a thousand), not for 2% of the values.
    def nudged(x, w, e):
        out = right(x, w, e)
        if out.dtype == torch.bfloat16:
            flat = out.flatten().clone()
            flat[::50] = (flat[::50].float() * 1.02).bfloat16()  # 2% more: always another bf16 value
            out = flat.view_as(out)
        return out

    r = check_rms_norm(nudged)
    assert not r.passed and "on bfloat16 input" in r.message, r.message


def test_nan_output_is_called_nan():
    # Not "differs by up to nan (tolerance inf)": the values are not numbers at all.
    r = check_rms_norm(lambda x, w, eps: torch.full_like(x, float("nan")))
    assert not r.passed and "NaN or infinite value(s) where the expected result is finite" in r.message, r.message
