"""Explorers of notebooks 00 and 01: parameters by part, and causal attention weights."""

from __future__ import annotations

import pytest
import torch

from gptoss_edu import preset
from gptoss_edu.widgets.gpt2 import attention_explorer, attention_weights, parameter_explorer, part_counts


@pytest.mark.parametrize("name", ["gpt2-124m", "gpt-oss-20b", "gpt-oss-120b"])
def test_part_counts_add_up_to_the_config(name):
    counts, pc = part_counts(name), preset(name).param_counts()
    assert sum(t for t, _ in counts.values()) == pc["total"]
    assert sum(a for _, a in counts.values()) == pc["active"]


def test_parameter_explorer_redraws_per_model():
    ex = parameter_explorer()
    first = ex.fingerprint()
    title = ex.figure.axes[0].get_title()
    assert title.startswith("gpt-oss-20b: 20.9 B total, 3.61 B active")
    ex.set(model="gpt-oss-120b")
    assert ex.fingerprint() != first and ex.figure.axes[0].get_title().startswith("gpt-oss-120b")
    before = ex.fingerprint()
    ex.set(scale="log")
    assert ex.fingerprint() != before and ex.figure.axes[0].get_xscale() == "log"
    assert repr(ex) == "Explorer('Where the parameters live'; controls: model, scale)"


def test_attention_weights_are_causal_rows_of_one():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    w = attention_weights(q, k)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5))
    assert (w.triu(1) == 0).all()
    sharp = attention_weights(q, k, sharpness=30.0)
    assert sharp.max(-1).values.mean() > w.max(-1).values.mean()  # sharper: closer to one-hot


def test_attention_explorer_moves_with_its_controls():
    torch.manual_seed(0)
    q, k = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    ex = attention_explorer(q, k, ["a", "b", "c", "d", "e", "f"])
    seen = {ex.fingerprint()}
    for change in ({"head": 2}, {"query": 1}, {"sharpness": 10.0}):
        ex.set(**change)
        seen.add(ex.fingerprint())
    assert len(seen) == 4
    assert ex.figure.axes[1].get_title() == "query 1 (b): weights sum to 1.00"
    assert ex.figure.axes[0].get_title() == "head 2: grey = masked (the future)"
    with pytest.raises(KeyError, match="no control 'layer'"):
        ex.set(layer=1)


def test_attention_explorer_names_bad_shapes():
    with pytest.raises(ValueError, match="q and k must both be"):
        attention_explorer(torch.zeros(2, 3), torch.zeros(2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="2 tokens for 3 positions"):
        attention_explorer(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), ["a", "b"])
