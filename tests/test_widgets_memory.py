"""Notebook 12's memory-plan explorer: every control redraws, and the picture shows memory.plan's verdict."""

from __future__ import annotations

import gptoss_edu as g
from gptoss_edu import memory
from gptoss_edu.widgets.memory import memory_explorer


def test_memory_explorer_each_control_redraws():
    ex = memory_explorer()
    seen = {ex.fingerprint()}
    for change in ({"gpu": "16 GiB"}, {"context": 4096}, {"prompt_tokens": 4096}, {"model": "gpt-oss-120b"}):
        ex.set(**change)
        assert ex.fingerprint() not in seen, f"{change} did not change the picture"
        seen.add(ex.fingerprint())
    assert "PNG" not in repr(ex) and "gpu" in repr(ex)


def test_memory_explorer_shows_memory_plan_and_its_verdict():
    ex = memory_explorer(model="gpt-oss-20b", context=131072, prompt_tokens=1024, gpu="24 GiB")
    want = memory.plan(g.preset("gpt-oss-20b"), 131072, 24 * memory.GiB, prompt_tokens=1024)
    assert ex.current["plan"] == want and want.fits
    assert "fits" in ex.figure.axes[0].get_title()
    ex.set(gpu="16 GiB")
    assert not ex.current["plan"].fits and "does not fit" in ex.figure.axes[0].get_title()
    ex.set(context=1024, prompt_tokens=16384)  # a prompt longer than the context is capped at it
    assert ex.current["plan"].prompt_tokens == 1024 and "capped" in ex.figure.axes[1].get_title()
    ex.set(model="gpt-oss-120b", gpu="80 GiB", context=131072, prompt_tokens=1024)
    assert ex.current["plan"].fits and ex.current["plan"].weights == memory.checkpoint_bytes(g.preset("gpt-oss-120b"))
