"""Notebook 13's exercise: the learning-rate schedule (linear warmup, then a cosine down to min_lr)."""

from __future__ import annotations

import math
from typing import Callable

from ..train import TrainConfig, lr_at
from . import CheckResult, as_number, failed, not_a_function, passed

# Schedules the check tries: a short and a long warmup, min_lr zero and not, odd step counts, and a
# warmup that ends one step before the run does (a cosine of no length).
CONFIGS = (
    TrainConfig(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10),
    TrainConfig(steps=37, lr=3e-3, min_lr=0.0, warmup_steps=1),
    TrainConfig(steps=500, lr=6e-4, min_lr=6e-5, warmup_steps=123),
    TrainConfig(steps=12, lr=2e-3, min_lr=2e-4, warmup_steps=11),
)
RTOL = 1e-6  # the same formula in float32 or float64: rounding only


def _close(a: float, b: float, lr: float) -> bool:
    # Absolute slack too: near the cosine's end a float32 1 + cos(...) loses digits of a tiny rate.
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=RTOL * lr)


class _NotANumber(Exception):
    """The learner's function returned something that is not one number."""


def _number(value: object, step: int) -> float:
    number, problem = as_number(value, f"your function's result at step {step}")
    if problem is not None:
        raise _NotANumber(problem if value is None else problem + ": return the learning rate, one float")
    return float(number)


def _diagnose(fn: Callable[[int, TrainConfig], float], cfg: TrainConfig) -> str | None:
    """What is wrong with ``fn`` on ``cfg``, or None if it agrees with gptoss_edu.train.lr_at everywhere."""
    def close(a: float, b: float) -> bool:
        return _close(a, b, cfg.lr)

    got = [_number(fn(s, cfg), s) for s in range(cfg.steps)]
    want = [lr_at(s, cfg) for s in range(cfg.steps)]
    if all(close(a, b) for a, b in zip(got, want)):
        return None
    w, last = cfg.warmup_steps, cfg.steps - 1
    if close(got[0], cfg.lr) and w > 1:
        return (f"your schedule starts at the full rate {cfg.lr:g}: warm up first, linearly from lr/warmup_steps at "
                f"step 0 to lr at step warmup_steps - 1 ({w - 1})")
    if got[0] == 0:
        return ("step 0 gets a rate of 0, so the first optimizer step does nothing: use (step + 1) / warmup_steps "
                "during the warmup")
    if not all(close(a, b) for a, b in zip(got[:w], want[:w])):
        bad = next(s for s in range(w) if not close(got[s], want[s]))
        from_min = cfg.min_lr + (cfg.lr - cfg.min_lr) * (bad + 1) / w
        why = (" (yours rises from min_lr; the warmup rises from 0)" if close(got[bad], from_min) and cfg.min_lr > 0
               else "")
        return (f"the warmup is off: at step {bad} the rate should be {want[bad]:.4g}, got {got[bad]:.4g}{why}; "
                f"it rises linearly as lr * (step + 1) / warmup_steps, to lr = {cfg.lr:g} at step {w - 1}")
    if cfg.min_lr > 0 and abs(got[last]) < 1e-12:
        return f"your cosine ends at 0; it should end at min_lr = {cfg.min_lr:g} on the last step"
    dips = min(got[w:]) - cfg.min_lr < 0.05 * (cfg.lr - cfg.min_lr)  # down near min_lr on the way
    if close(got[last], cfg.lr) and not close(got[w], cfg.min_lr) and not close(cfg.lr, cfg.min_lr) and dips:
        return (f"at the last step ({last}) your rate is back at lr = {cfg.lr:g}: a whole cosine period comes back "
                "where it started; use half a cosine, cos(pi * progress), which ends at min_lr")
    if close(got[last], cfg.lr) and close(got[w], cfg.min_lr) and not close(cfg.lr, cfg.min_lr):
        return (f"your cosine rises, from min_lr at step {w} to lr at the last step ({last}): it should fall from lr "
                "to min_lr, min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2")
    if not close(got[last], cfg.min_lr):
        return (f"at the last step ({last}) the rate should be exactly min_lr = {cfg.min_lr:g}, got {got[last]:.4g}: "
                "the cosine runs from step warmup_steps to step steps - 1")
    quarter = w + (last - w) // 4
    linear = cfg.lr - (cfg.lr - cfg.min_lr) * (quarter - w) / max(1, last - w)
    if close(got[quarter], linear):
        return ("your rate falls in a straight line: use half a cosine, "
                "min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2")
    bad = next(s for s, (a, b) in enumerate(zip(got, want)) if not close(a, b))
    return f"at step {bad} the rate should be {want[bad]:.6g}, got {got[bad]:.6g}"


def check_lr_schedule(fn: Callable[[int, TrainConfig], float]) -> CheckResult:
    """Try ``fn(step, cfg)`` on every step of a few schedules against gptoss_edu.train.lr_at."""
    if (wrong := not_a_function(fn)) is not None:
        return wrong
    for cfg in CONFIGS:
        try:
            problem = _diagnose(fn, cfg)
        except _NotANumber as e:
            return failed(f"not yet: {e}" + ("" if str(e).endswith("?") else "."))
        except ZeroDivisionError as e:
            if cfg.steps - 1 - cfg.warmup_steps == 0:
                return failed(f"not yet: with steps={cfg.steps} and warmup_steps={cfg.warmup_steps} your function "
                              f"raised ZeroDivisionError ({e}): the cosine runs over steps - 1 - warmup_steps = 0 "
                              "steps, so the one step after the warmup is the last, and its rate is min_lr")
            return failed(f"not yet: your function raised ZeroDivisionError: {e}")
        except Exception as e:  # the learner's code: report, don't crash the notebook
            return failed(f"not yet: your function raised {type(e).__name__}: {e}")
        if problem is not None:
            setting = f"steps={cfg.steps}, warmup_steps={cfg.warmup_steps}, lr={cfg.lr:g}, min_lr={cfg.min_lr:g}"
            return failed(f"not yet ({setting}): {problem}.")
    return passed("Right: a linear warmup to lr, then half a cosine that lands exactly on min_lr at the last step.")
