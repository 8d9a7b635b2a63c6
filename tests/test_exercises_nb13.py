"""Notebook 13's exercise check (the learning-rate schedule): right answers pass, typical slips are named."""

from __future__ import annotations

import math

import pytest
import torch

from gptoss_edu.exercises.nb13 import check_lr_schedule
from gptoss_edu.train import lr_at


def right(step, cfg):
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.steps - 1 - cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / decay_steps if decay_steps else 1.0
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress)) / 2


def cosine_part(step, cfg, end=None, span=None):
    end = cfg.min_lr if end is None else end
    span = (cfg.steps - 1 - cfg.warmup_steps) if span is None else span
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return end + (cfg.lr - end) * (1 + math.cos(math.pi * progress)) / 2


def with_warmup(decay):
    return lambda step, cfg: cfg.lr * (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else decay(step, cfg)


def test_right_answers_pass():
    assert check_lr_schedule(right).passed
    assert check_lr_schedule(lr_at).passed
    assert "Right" in repr(check_lr_schedule(right))


@pytest.mark.parametrize("wrong, message", [
    (lambda s, c: cosine_part(max(s, c.warmup_steps), c), "starts at the full rate"),
    (lambda s, c: c.lr * s / c.warmup_steps if s < c.warmup_steps else cosine_part(s, c),
     "step 0 gets a rate of 0"),
    (lambda s, c: c.lr * (s + 1) / (c.warmup_steps + 1) if s < c.warmup_steps else cosine_part(s, c),
     "the warmup is off"),
    (with_warmup(lambda s, c: cosine_part(s, c, end=0.0)), "your cosine ends at 0"),
    (with_warmup(lambda s, c: cosine_part(s, c, span=c.steps - c.warmup_steps)), "should be exactly min_lr"),
    (with_warmup(lambda s, c: c.lr - (c.lr - c.min_lr) * (s - c.warmup_steps) / (c.steps - 1 - c.warmup_steps)),
     "straight line"),
    (with_warmup(lambda s, c: cosine_part(s, c) * (1.001 if s == c.warmup_steps + 5 else 1.0)), "at step"),
])
def test_typical_mistakes_are_named(wrong, message):
    result = check_lr_schedule(wrong)
    assert not result.passed
    assert message in result.message and result.message.startswith("not yet")


def test_errors_and_stubs_are_reported_not_raised():
    def stub(step, cfg):
        raise NotImplementedError("write me")

    assert "raised NotImplementedError: write me" in check_lr_schedule(stub).message
    assert check_lr_schedule(lambda s, c: None).message.endswith("result at step 0 is None: did you forget to `return` it?")
    assert "should be one number, got tuple" in check_lr_schedule(lambda s, c: (c.lr, c.min_lr)).message
    assert "is nan" in check_lr_schedule(lambda s, c: float("nan")).message
    assert "got str" in check_lr_schedule(lambda s, c: "0.001").message


def test_a_float32_answer_passes():
    def in_float32(step, cfg):
        lr, low = torch.tensor(cfg.lr), torch.tensor(cfg.min_lr)
        if step < cfg.warmup_steps:
            return lr * (step + 1) / cfg.warmup_steps
        progress = torch.tensor((step - cfg.warmup_steps) / max(1, cfg.steps - 1 - cfg.warmup_steps)
                                if step < cfg.steps - 1 else 1.0)
        return low + (lr - low) * (1 + torch.cos(math.pi * progress)) / 2

    result = check_lr_schedule(in_float32)
    assert result.passed, result.message


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def schedule(step, cfg, min_lr=None, warmup_end=None):
    min_lr = cfg.min_lr if min_lr is None else min_lr
    w = cfg.warmup_steps if warmup_end is None else warmup_end
    if step < w:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / (cfg.steps - 1 - cfg.warmup_steps)
    return min_lr + (cfg.lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_min_lr_zero_replaced_by_a_default_fails_with_the_right_reason():
    # `cfg.min_lr or 0.1 * cfg.lr` (a falsy 0 taken as "unset"): only the min_lr = 0, warmup 1
    # schedule shows it, and there step 0 is rightly the full rate: the reason is the end, not the start.
    r = check_lr_schedule(lambda s, c: schedule(s, c, min_lr=c.min_lr or 0.1 * c.lr))
    assert not r.passed and "exactly min_lr" in r.message, r.message


def test_warmup_ending_one_step_early_is_named():
    # `step < warmup_steps - 1`: only step warmup_steps - 1 is wrong.
    r = check_lr_schedule(lambda s, c: schedule(s, c, warmup_end=c.warmup_steps - 1))
    assert not r.passed and "the warmup is off" in r.message, r.message
    assert "rises from min_lr" not in r.message, r.message


def test_a_warmup_from_min_lr_is_named_at_its_first_wrong_step():
    r = check_lr_schedule(lambda s, c: c.min_lr + (c.lr - c.min_lr) * (s + 1) / c.warmup_steps
                          if s < c.warmup_steps else cosine_part(s, c))
    assert not r.passed and "at step 0 the rate should be" in r.message, r.message
    assert "rises from min_lr" in r.message


def test_the_last_step_is_checked_too():
    # Right everywhere but the last step, which keeps the previous rate.
    r = check_lr_schedule(lambda s, c: schedule(min(s, c.steps - 2), c))
    assert not r.passed and "exactly min_lr" in r.message, r.message


def unguarded(step, cfg):
    """The formula as written, with no case for a cosine of no length (warmup_steps = steps - 1)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / (cfg.steps - 1 - cfg.warmup_steps)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_a_warmup_that_ends_one_step_before_the_run_is_tried():
    """warmup_steps = steps - 1 leaves the cosine no length: the one step after the warmup is the last, at min_lr."""
    r = check_lr_schedule(unguarded)
    assert not r.passed and "ZeroDivisionError" in r.message and "its rate is min_lr" in r.message, r.message
    r = check_lr_schedule(lambda s, c: unguarded(s, c.replace(steps=c.steps + 1)) if c.steps - 1 == c.warmup_steps
                          else unguarded(s, c))  # no error, but the last step at the peak, not min_lr
    assert not r.passed and "should be exactly min_lr" in r.message, r.message


def test_a_whole_cosine_period_is_named_not_the_range():
    """cos(2 pi progress) over the right steps came back to lr, and was told its range was wrong."""
    def whole_period(step, cfg):
        span = cfg.steps - 1 - cfg.warmup_steps
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(2 * math.pi * (step - cfg.warmup_steps) / span)) / 2

    r = check_lr_schedule(with_warmup(whole_period))
    assert not r.passed and "a whole cosine period comes back where it started" in r.message, r.message
    def whole_period_from_step_0(step, cfg):  # progress counted from step 0, not from the warmup's end
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(2 * math.pi * step / (cfg.steps - 1))) / 2

    r = check_lr_schedule(with_warmup(whole_period_from_step_0))
    assert not r.passed and "a whole cosine period comes back where it started" in r.message, r.message
    r = check_lr_schedule(with_warmup(lambda step, cfg: cfg.lr))  # no decay at all: not a whole period
    assert not r.passed and "whole cosine" not in r.message, r.message


def test_a_rising_cosine_is_named_as_rising():
    """(1 - cos) / 2 runs from min_lr up to lr: it was told it used a whole cosine period."""
    def rising(step, cfg):
        span = cfg.steps - 1 - cfg.warmup_steps
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 - math.cos(math.pi * (step - cfg.warmup_steps) / span)) / 2

    r = check_lr_schedule(with_warmup(rising))
    assert not r.passed and "your cosine rises, from min_lr at step 10 to lr at the last step (99)" in r.message, r.message
