"""YaRN's frequencies and attention factor against transformers over a grid of configs.

The parity tests' small original contexts (8-32) put YaRN's whole ramp inside the first few
frequency pairs, with truncate false. Here gpt-oss's own config and others, with truncate true, false
or absent (transformers then truncates), each read back through config.json (from_hf_config, as
load_model reads it), against transformers' own YaRN initialisation.

Tolerances: the frequencies to rtol 1e-6 (float32 rounding of the same powers and blend; a ramp off
by one pair moves a frequency by far more), the attention factor to 1e-12 (a Python float both sides).
"""

from __future__ import annotations

import math

import pytest
import torch

import gptoss_edu as g
from gptoss_edu.rotary import Rotary


def _transformers_yarn(hf: dict) -> tuple[torch.Tensor, float]:
    from transformers import GptOssConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = {k: v for k, v in hf.items() if k != "quantization_config"}
    return ROPE_INIT_FUNCTIONS["yarn"](GptOssConfig(**hf), "cpu")


GRID = [  # head_dim, original context, factor, theta, beta_fast, beta_slow
    (64, 4096, 32.0, 150000.0, 32.0, 1.0),   # gpt-oss itself
    (64, 256, 16.0, 150000.0, 32.0, 1.0),
    (32, 256, 4.0, 150000.0, 32.0, 1.0),
    (48, 1024, 8.0, 10000.0, 32.0, 1.0),
    (64, 4096, 32.0, 150000.0, 16.0, 2.0),
    (128, 8192, 4.0, 500000.0, 32.0, 1.0),
    (16, 256, 4.0, 5.0, 32.0, 1.0),  # a small theta: the slow end passes the last pair, clamped at head_dim - 1
]


@pytest.mark.parametrize("truncate", [False, True, "absent"])
@pytest.mark.parametrize("head_dim,ctx,factor,theta,fast,slow", GRID)
def test_yarn_frequencies_read_from_config_json_match_transformers(head_dim, ctx, factor, theta, fast, slow, truncate):
    cfg = g.preset("gpt-oss-20b").replace(head_dim=head_dim, rope_original_context=ctx, rope_scaling_factor=factor,
                                          rope_theta=theta, rope_beta_fast=fast, rope_beta_slow=slow,
                                          rope_truncate=bool(truncate), context_length=int(ctx * factor))
    hf = cfg.to_hf_config()
    if truncate == "absent":  # transformers' default for a missing key is truncate=True
        del hf["rope_scaling"]["truncate"]
    want_freq, want_factor = _transformers_yarn(hf)
    read = g.ModelConfig.from_hf_config(hf)  # what load_model builds from that config.json
    rotary = Rotary(read)
    assert read.positions == "yarn"
    assert math.isclose(rotary.attention_factor, want_factor, rel_tol=1e-12)
    torch.testing.assert_close(rotary.inv_freq, want_freq.float(), atol=0, rtol=1e-6)
