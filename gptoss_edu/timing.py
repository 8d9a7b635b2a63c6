"""Timing on a shared machine: the fastest of several runs, the candidates taking turns.

A busy machine only ever makes a run slower, so the fastest run is the one with the least of
the machine's other work in it: the closest to what the code itself costs. Timed one after
another, two candidates can meet different spells of load (one measured while something else
ran, the other after), so here they take turns, a run of each per round.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, TypeVar

import torch

K = TypeVar("K")  # what names a candidate: its label, or a setting


def best_times(candidates: Mapping[K, Callable[[], object]], repeat: int = 7, warmup: int = 1) -> dict[K, float]:
    """Seconds of each candidate's fastest run over ``repeat`` rounds, after ``warmup`` untimed ones.

    On a machine with a GPU each run is timed between two synchronizations, so that the clock
    covers the GPU's work and not only its launch.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"repeat must be at least 1 and warmup at least 0, got {repeat} and {warmup}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    best = {name: float("inf") for name in candidates}
    for round_ in range(warmup + repeat):  # the first rounds pay for allocation, caches, compilation
        for name, fn in candidates.items():
            sync()  # nothing earlier still running on the clock
            start = time.perf_counter()
            fn()
            sync()
            if round_ >= warmup:
                best[name] = min(best[name], time.perf_counter() - start)
    return best
