"""Notebook 00's exercise check: a right count passes; each typical mistake gets its own explanation."""

from __future__ import annotations

from gptoss_edu import preset
from gptoss_edu.exercises.nb00 import block_params, check_block_params
from gptoss_edu.model import Block


def right(cfg):
    d, f = cfg.d_model, cfg.d_ff
    return (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d


def test_block_params_counts_real_tensors():
    cfg = preset("gpt2-tiny")
    assert block_params(cfg) == sum(p.numel() for p in Block(cfg, 0).parameters())
    assert block_params(preset("gpt2-124m")) == 12 * 768**2 + 13 * 768


def test_right_answer_passes():
    r = check_block_params(right)
    assert r.passed and "7,087,872" in r.message


def test_no_biases():
    r = check_block_params(lambda c: right(c) - (4 * c.d_model + c.d_ff + c.d_model))
    assert not r.passed and "left out the biases" in r.message


def test_missing_vectors_are_counted_in_d_model():
    # One bias missed (the output projection's): the difference read as whole vectors points at it.
    r = check_block_params(lambda c: right(c) - c.d_model)
    assert not r.passed and "off by -768 = -1 x d_model: whole vectors missing" in r.message, r.message
    r = check_block_params(lambda c: right(c) + 2 * c.d_model)
    assert not r.passed and "+2 x d_model: whole vectors too many" in r.message, r.message
    r = check_block_params(lambda c: right(c) + 7)
    assert not r.passed and "off by +7)" in r.message, r.message


def test_the_mlps_biases_left_out_or_sized_d_model_are_named():
    """Read as whole vectors of d_model, these slips pointed at the norms (-5 x d_model, -3 x d_model)."""
    r = check_block_params(lambda c: right(c) - (c.d_ff + c.d_model))
    assert not r.passed and "left out the MLP's two biases" in r.message, r.message
    r = check_block_params(lambda c: right(c) - c.d_ff + c.d_model)
    assert not r.passed and "the first MLP layer's bias has d_ff values" in r.message, r.message


def test_no_layernorms():
    r = check_block_params(lambda c: right(c) - 4 * c.d_model)
    assert not r.passed and "left out the two LayerNorms" in r.message


def test_layernorm_without_shift():
    r = check_block_params(lambda c: right(c) - 2 * c.d_model)
    assert not r.passed and "only its scale" in r.message


def test_no_output_projection():
    r = check_block_params(lambda c: right(c) - (c.d_model**2 + c.d_model))
    assert not r.passed and "output projection" in r.message


def test_four_d_instead_of_d_ff():
    r = check_block_params(lambda c: right(c.replace(d_ff=4 * c.d_model)))
    assert not r.passed and "use cfg.d_ff" in r.message


def test_other_wrong_answers_get_the_difference():
    r = check_block_params(lambda c: right(c) + 1)
    assert not r.passed and "off by +1" in r.message
    assert "returned None" in check_block_params(lambda c: None).message
    assert "raised ZeroDivisionError" in check_block_params(lambda c: 1 // 0).message
    assert all(check_block_params(f).message.startswith('not yet: ') for f in (lambda c: 0, lambda c: None))


def test_the_parts_returned_instead_of_their_sum_are_named():
    r = check_block_params(lambda c: (right(c) - 10, 6, 4))
    assert not r.passed and "should be one number, got tuple" in r.message
    assert "got str" in check_block_params(lambda c: str(right(c))).message
    assert check_block_params(lambda c: float(right(c))).passed


# ---- found by mutation testing: near misses, in-place changes, odd types, every case the check must cover ----

def test_any_exception_is_reported_not_raised():
    # Hugging Face's GPT-2 config calls d_model `n_embd`; the learner's AttributeError must become a verdict.
    # Kills: `except Exception` narrowed (the suite only tries ZeroDivisionError).
    r = check_block_params(lambda c: 12 * c.n_embd ** 2)
    assert not r.passed and "raised AttributeError" in r.message


def test_a_function_that_writes_to_cfg_is_checked_against_the_real_config():
    """cfg.d_ff = 4 * d (a local meant, the config's field written) moved the expected count with it, and passed."""
    def writes_cfg(cfg):
        d = cfg.d_model
        cfg.d_ff = 4 * d
        return right(cfg)

    r = check_block_params(writes_cfg)
    assert not r.passed and "use cfg.d_ff" in r.message, r.message


def test_counts_two_mistakes_share_are_both_named():
    """4 d short is the LayerNorms or attention's four biases; 2 d short, a shift per norm or one norm: the message
    named one reading, and a learner whose norms were right added 4 d more of them."""
    r = check_block_params(lambda c: right(c) - 4 * c.d_model)
    assert "left out the two LayerNorms" in r.message and " - or - you left out the attention's biases" in r.message
    r = check_block_params(lambda c: right(c) - 2 * c.d_model)
    assert "only its scale" in r.message and " - or - you counted one LayerNorm" in r.message
