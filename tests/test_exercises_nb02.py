"""Notebook 02's exercise check (half-split RoPE): right answers pass, each typical mistake is named."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu.exercises.nb02 import check_rope
from gptoss_edu.rotary import apply_rotary


def right(x, cos, sin):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


def test_right_answers_pass():
    assert check_rope(right).passed
    assert check_rope(apply_rotary).passed


def test_llama_style_rotate_half_passes_too():
    def rotate_half(x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    def llama(x, cos, sin):
        return x * torch.cat((cos, cos), -1) + rotate_half(x) * torch.cat((sin, sin), -1)

    assert check_rope(llama).passed


def interleaved(x, cos, sin):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)


def halves(x):
    return x.chunk(2, dim=-1)


@pytest.mark.parametrize("wrong, message", [
    (interleaved, "interleaved pairs (0,1), (2,3)"),
    (lambda x, c, s: torch.cat((halves(x)[0] * c + halves(x)[1] * s, halves(x)[1] * c - halves(x)[0] * s), -1),
     "the wrong way (by -angle)"),
    (lambda x, c, s: right(x, c, s).roll(x.shape[-1] // 2, dims=-1), "halves come back swapped"),
    (lambda x, c, s: torch.cat((halves(x)[0] * c - halves(x)[1] * s, halves(x)[1]), -1), "only the first half"),
    (lambda x, c, s: torch.cat((halves(x)[0] * c, halves(x)[1] * c), -1), "left out the sin terms"),
    (lambda x, c, s: x.clone(), "nothing is rotated"),
    # The starter's split fixed, its interleaving return kept: the likeliest half-way answer.
    (lambda x, c, s: torch.stack((halves(x)[0] * c - halves(x)[1] * s, halves(x)[1] * c + halves(x)[0] * s),
                                 dim=-1).flatten(-2), "paired right, but you interleaved the results"),
])
def test_typical_mistakes_are_named(wrong, message):
    r = check_rope(wrong)
    assert not r.passed and r.message.startswith("not yet: ") and message in r.message


def test_other_failures():
    assert "returned None" in check_rope(lambda x, c, s: None).message
    assert "has shape" in check_rope(lambda x, c, s: x[..., :2]).message
    bad = check_rope(lambda x, c, s: x * torch.cat((c, c, c), -1))
    assert "raised RuntimeError" in bad.message and "cos and sin are [T, d/2]" in bad.message
    assert "in place" in check_rope(lambda x, c, s: x.mul_(1.0001)).message
    generic = check_rope(lambda x, c, s: right(x, c, s) * 1.01)
    assert not generic.passed and "differs by up to" in generic.message


def test_an_answer_that_changes_cos_and_sin_cannot_pass():
    def zero_everything(x, cos, sin):
        cos.zero_(), sin.zero_()
        return torch.zeros_like(x)

    assert not check_rope(zero_everything).passed


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_a_near_miss_fails():
    # 0.1% off is no float32 rounding: the tolerance must stay at rounding level.
    r = check_rope(lambda x, c, s: right(x, c, s) * 1.001)
    assert not r.passed and "differs by up to" in r.message


def test_a_split_hard_coded_for_head_dim_16_fails():
    # Right for d = 16 only: the check must try more than one head_dim.
    def hard_coded(x, cos, sin):
        a, b = x[..., :8], x[..., 8:]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)

    assert not check_rope(hard_coded).passed


def test_flipping_sin_in_place_is_named_as_the_wrong_direction():
    # The learner's in-place edit of sin must not reach the check's own cos/sin (they get clones).
    def flips_sin(x, cos, sin):
        sin.neg_()
        return right(x, cos, sin)

    r = check_rope(flips_sin)
    assert not r.passed and "the wrong way (by -angle)" in r.message, r.message


def test_a_right_rotation_that_changes_sin_in_place_is_refused():
    """sin.neg_() with the formula flipped to match rotates q right, but the model rotates k next with the same sin:
    the check passed it."""
    def flips_sin_and_formula(x, cos, sin):
        a, b = x.chunk(2, -1)
        sin.neg_()
        return torch.cat((a * cos + b * sin, b * cos - a * sin), -1)

    r = check_rope(flips_sin_and_formula)
    assert not r.passed and "your rotation is right, but your function changed sin in place" in r.message, r.message


def test_a_right_rotation_in_another_dtype_is_refused_and_one_computed_there_and_cast_back_passes():
    """In the model the result is q and k: a float64 one would carry attention into float64 with it."""
    r = check_rope(lambda x, cos, sin: right(x.double(), cos.double(), sin.double()))
    assert not r.passed and "x is torch.float32 and your result is torch.float64" in r.message, r.message
    assert check_rope(lambda x, cos, sin: right(x.double(), cos.double(), sin.double()).to(x.dtype)).passed
