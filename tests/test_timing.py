"""gptoss_edu.timing.best_times: each candidate's fastest run, the candidates taking turns."""

from __future__ import annotations

import pytest

from gptoss_edu import timing


def test_each_candidate_gets_its_fastest_run_and_they_take_turns(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    order = []
    durations = {"a": iter([50, 5, 7, 3]), "b": iter([60, 2, 9, 4])}  # one warm-up round, then three

    def run(name):
        def fn():
            order.append(name)
            for _ in range(next(durations[name]) - 1):  # the clock moves one a reading: burn readings
                next(clock)
        return fn

    got = timing.best_times({"a": run("a"), "b": run("b")}, repeat=3, warmup=1)
    assert order == ["a", "b"] * 4  # round by round, not all of a then all of b
    assert got == {"a": 3, "b": 2}  # the warm-up's 50 and 60 not counted


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        timing.best_times({"a": lambda: None}, repeat=0)
    with pytest.raises(ValueError, match="warmup at least 0"):
        timing.best_times({"a": lambda: None}, warmup=-1)
