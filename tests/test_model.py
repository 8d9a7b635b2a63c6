"""The model on its own: presets, parameter counts, the KV cache, generation and bad input.

Tolerance: 1e-5 between a cached decode (or a chunked prefill) and one full forward pass, float32
softmax and matmul sums over differently shaped blocks.
"""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch

import gptoss_edu as g
from random_weights import randomize
from gptoss_edu.attention import attend, attention_mask
from gptoss_edu.config import yarn_correction_range
from gptoss_edu.generate import generate, sample_next, stream


def test_real_presets_come_from_the_shipped_configs():
    c20, c120 = g.preset("gpt-oss-20b"), g.preset("gpt-oss-120b")
    assert (c20.n_layers, c20.n_experts, c20.experts_per_token) == (24, 32, 4)
    assert (c120.n_layers, c120.n_experts, c120.experts_per_token) == (36, 128, 4)
    assert c20.window(0) == 128 and c20.window(1) == 0 and c20.positions == "yarn"


def test_parameter_counts_match_the_spec():
    # SPEC.md section 1 (counted from the released checkpoints).
    assert g.preset("gpt-oss-20b").param_counts()["total"] == 20_914_757_184
    assert g.preset("gpt-oss-20b").param_counts()["active"] == 3_608_307_264
    assert g.preset("gpt-oss-120b").param_counts()["total"] == 116_829_156_672
    assert g.preset("gpt-oss-120b").param_counts()["active"] == 5_132_849_472
    assert g.preset("gpt2-124m").param_counts()["total"] == 124_439_808  # GPT-2 small, tied
    assert g.preset("gpt-oss-20b").kv_cache_bytes(1) == 48 * 1024
    assert g.preset("gpt-oss-120b").kv_cache_bytes(1) == 72 * 1024
    assert g.preset("gpt-oss-20b").weight_bytes(2, mxfp4_experts=True) == 13_761_264_768


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt-oss-tiny"])
def test_param_counts_equal_the_built_model(name):
    cfg = g.preset(name).replace(vocab_size=1000, context_length=64)
    assert g.GPT(cfg).num_parameters() == cfg.param_counts()["total"]


def test_yarn_correction_range_of_gptoss():
    low, high = yarn_correction_range(g.preset("gpt-oss-20b"))
    assert math.isclose(low, 8.0928, abs_tol=1e-4) and math.isclose(high, 17.3980, abs_tol=1e-4)


def test_sliding_window_counts_the_current_key():
    m = attention_mask(torch.arange(10), torch.arange(10), window=4)
    assert m[9].nonzero().flatten().tolist() == [6, 7, 8, 9]
    assert m.sum(1).tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]


def test_sinks_only_enlarge_the_denominator():
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    no_sink = attend(q, k, v, scale=0.3)
    very_negative = attend(q, k, v, scale=0.3, sinks=torch.full((2,), -1e4))
    torch.testing.assert_close(very_negative, no_sink)
    big = attend(q, k, v, scale=0.3, sinks=torch.full((2,), 30.0))
    assert big.abs().max() < 1e-6  # all mass to the sink: the output vanishes


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_is_mha_with_each_kv_head_shared_by_its_group(n_kv_heads):
    """GQA with Hkv heads = MHA whose k and v projections repeat each KV head for its group of query heads
    (query head h reads KV head h // groups). Float32, to 1e-5. It used to compare a config with itself
    (gpt2-tiny already has n_kv_heads == n_heads), which no attention bug could fail."""
    cfg = g.preset("gpt2-tiny").replace(positions="rope", dropout=0.0)
    groups = cfg.n_heads // n_kv_heads
    gqa = randomize(g.GPT(cfg.replace(n_kv_heads=n_kv_heads)), seed=n_kv_heads).eval()
    mha = g.GPT(cfg).eval()
    sd = gqa.state_dict()
    for name, t in list(sd.items()):
        if ".attn.k_proj." in name or ".attn.v_proj." in name:  # rows [Hkv * D] -> [Hq * D], each head repeated
            sd[name] = t.unflatten(0, (n_kv_heads, cfg.head_dim)).repeat_interleave(groups, dim=0).flatten(0, 1)
    mha.load_state_dict(sd)
    ids = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(n_kv_heads))
    with torch.no_grad():
        want = mha(ids)
        assert want.std() > 0.1  # a live model
        torch.testing.assert_close(gqa(ids), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,prompt", [("gpt2-tiny", 5), ("gpt-oss-tiny", 3), ("gpt-oss-tiny", 17)])
def test_incremental_decoding_equals_full_forward(name, prompt):
    cfg = g.preset(name).replace(vocab_size=500, context_length=64, dropout=0.0)
    model = randomize(g.GPT(cfg), seed=prompt)
    ids = torch.randint(0, 500, (2, 30))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 30)
        steps = [model(ids[:, :prompt], cache)] + [model(ids[:, t:t + 1], cache) for t in range(prompt, 30)]
    assert cfg.sliding_window == 0 or 30 > cfg.sliding_window
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunks", [(30,), (3, 10, 1, 7, 9), (8, 8, 1, 13), (1,) * 30])
def test_sliding_layers_roll_and_chunked_prefill_equals_full_forward(chunks):
    """Window layers keep only the last window of positions; chunks that cross it still see what they should."""
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=500, context_length=64)
    model = randomize(g.GPT(cfg), seed=len(chunks))
    ids = torch.randint(0, 500, (2, sum(chunks)))
    with torch.no_grad():
        full = model(ids)
        cache, whole = model.new_cache(2, 40), model.new_cache(2, 40)
        starts = [sum(chunks[:i]) for i in range(len(chunks))]
        steps = [model(ids[:, s:s + n], cache) for s, n in zip(starts, chunks)]
        model(ids, whole)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    W = cfg.sliding_window
    for layer in range(cfg.n_layers):
        held = W if cfg.window(layer) else 40
        assert cache.k[layer].shape == (2, cfg.n_kv_heads, held, cfg.head_dim)
        # However the 30 positions arrived, each slot holds the same position's key and value.
        torch.testing.assert_close(cache.k[layer], whole.k[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.v[layer], whole.v[layer], atol=1e-5, rtol=1e-5)


def test_kv_cache_update_returns_what_the_step_attends_over(monkeypatch):
    """Keys whose values are their positions show which positions update() hands back, and in what order."""
    cfg = g.preset("gpt-oss-tiny").replace(context_length=64)
    W = cfg.sliding_window
    cache = g.attention.KVCache(cfg, 1, 40)
    real_index_copy = torch.Tensor.index_copy_

    def each_slot_once(self, dim, index, source):
        # Two writes to one slot in one call: the CPU keeps the last, CUDA either (its index_copy_ does not say).
        assert index.unique().numel() == index.numel(), f"slots written twice in one step: {index.tolist()}"
        return real_index_copy(self, dim, index, source)

    monkeypatch.setattr(torch.Tensor, "index_copy_", each_slot_once)

    def step(n: int) -> tuple[list[int], int]:
        pos = torch.arange(cache.length, cache.length + n, dtype=torch.float32)
        k = pos.reshape(1, 1, n, 1).expand(1, cfg.n_kv_heads, n, cfg.head_dim)
        keys, values, q_start = cache.update(0, k, k)
        full, _, q_full = cache.update(1, k, k)  # layer 1 is full attention
        assert torch.equal(keys, values) and q_full == cache.length and full.shape[2] == cache.length + n
        cache.length += n
        return keys[0, 0, :, 0].int().tolist(), q_start

    assert step(3) == ([0, 1, 2], 0)                      # not rolled yet: position = slot
    assert step(9) == (list(range(12)), 3)                # crosses the window: held 0..2 first, in order
    assert step(1) == ([8, 9, 10, 11, 12, 5, 6, 7], 7)   # one token: the buffer as it lies, all visible
    assert step(4) == (list(range(5, 17)), 8)             # held 5..12 in order (5 masked), then 13..16
    assert cache.k[0][0, 0, :, 0].int().tolist() == [16, 9, 10, 11, 12, 13, 14, 15]
    assert step(20) == (list(range(9, 37)), 8)            # longer than the window: keeps its last 8
    assert sorted(cache.k[0][0, 0, :, 0].int().tolist()) == list(range(37 - W, 37))
    with pytest.raises(ValueError, match="holds 40 positions; this step needs 41"):
        cache.update(1, torch.zeros(1, cfg.n_kv_heads, 4, cfg.head_dim), torch.zeros(1, cfg.n_kv_heads, 4, cfg.head_dim))
    with pytest.raises(ValueError, match="a cache of 65 positions exceeds the context length 64"):
        g.attention.KVCache(cfg, 1, 65)


# (8, 1): one position past the window of 8 written, where going back two is the first refusal. (6, 2): exactly
# the window written, nothing overwritten yet: every way back is exact, none refused.
@pytest.mark.parametrize("prefill, steps", [(5, 2), (22, 3), (6, 4), (8, 1), (6, 2)])
def test_rewinding_the_cache_is_exact_or_refused(prefill, steps):
    """Going back one position re-does a step exactly; further back, once a rolling buffer has wrapped,
    the keys a query would see are overwritten: that is refused, not answered with wrong logits (it was).
    Exact here means equal to the uncached forward within 1e-5, float32."""
    from random_weights import randomize

    cfg = g.preset("gpt-oss-tiny")
    W = cfg.sliding_window
    model = randomize(g.GPT(cfg), seed=prefill).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 32), generator=torch.Generator().manual_seed(steps))
    with torch.no_grad():
        full = model(ids)[0]
        # Back at once, or one position at a time: two steps of one were let through, and the query redone at
        # the second saw a key from its own future in the rolling buffer.
        for back, one_by_one in itertools.product(range(prefill + steps + 1), (False, True)):
            cache = model.new_cache(1, 32)
            model(ids[:, :prefill], cache)
            for t in range(prefill, prefill + steps):
                model(ids[:, t:t + 1], cache)
            length = cache.length
            moves = [1] * back if one_by_one else [back]
            refused = length - 2 if one_by_one else length - back  # the first move the cache may refuse
            if back >= 2 and refused > 0 and length > W:
                with pytest.raises(ValueError, match=f"cannot go back to {refused} positions, {length} having been "
                                                     f"written: its sliding-window layers keep only their last {W}"):
                    for move in moves:
                        cache.length -= move
                assert cache.length == refused + 1 if one_by_one else cache.length == length
                continue
            for move in moves:
                cache.length -= move
            at = cache.length
            logits = model(ids[:, at:at + 3], cache)[0]
            torch.testing.assert_close(logits, full[at:at + 3], atol=1e-5, rtol=1e-5)
    cache = model.new_cache(1, 8)
    for bad in (-1, 9):
        with pytest.raises(ValueError, match=f"a cache of 8 positions cannot hold {bad}"):
            cache.length = bad


def test_a_cache_made_for_another_window_is_refused():
    """A rolling buffer only works at the window it was made for: another model's cache is an error, not noise."""
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=100, context_length=64)
    model = g.GPT(cfg)
    ids = torch.randint(0, 100, (1, 3))
    for other in (cfg.replace(sliding_window=4), cfg.replace(layer_types=())):
        with pytest.raises(ValueError, match="layer 0's cache holds .* positions but its window of 8 needs 8"):
            model(ids, g.GPT(other).new_cache(1, 20))
    assert model(ids, model.new_cache(1, 20)).shape == (1, 3, 100)


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt-oss-tiny"])
def test_last_only_gives_the_last_positions_logits(name):
    model = randomize(g.GPT(g.preset(name).replace(vocab_size=300)), seed=3).eval()
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        last = model(ids, last_only=True)
        cache = model.new_cache(2, 16)
        model(ids[:, :4], cache, last_only=True)
        cached = model(ids[:, 4:], cache, last_only=True)
    assert last.shape == (2, 1, 300)
    # float32: a matmul over fewer rows may block (and round) its sums differently
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached, full[:, -1:], rtol=1e-5, atol=1e-5)


def test_greedy_generation_is_the_argmax_of_the_full_forward():
    model = randomize(g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=300)), seed=4)
    out = generate(model, [5, 6, 7], max_new_tokens=12, temperature=0)
    with torch.no_grad():
        logits = model(torch.tensor([[5, 6, 7] + out.tokens]))
    assert logits[0, 2:-1].argmax(-1).tolist() == out.tokens
    assert out.stop_reason == "max_new_tokens" and len(out.tokens) == 12


def test_generation_stops_on_a_stop_token_and_is_seeded():
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)), seed=5, std=0.02)
    a = generate(model, [1], max_new_tokens=40, temperature=1.0, seed=11)
    b = generate(model, [1], max_new_tokens=40, temperature=1.0, seed=11)
    assert a.tokens == b.tokens
    stop = a.tokens[5]
    c = generate(model, [1], max_new_tokens=40, temperature=1.0, seed=11, stop_tokens=[stop])
    assert c.stop_reason == "stop_token" and c.tokens[-1] == stop and stop not in c.tokens[:-1]


def test_stop_tokens_may_be_one_id_a_tensor_or_numpy_ints():
    import numpy as np

    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)), seed=5, std=0.02)
    tokens = generate(model, [1], max_new_tokens=40, temperature=1.0, seed=11).tokens
    stop = tokens[5]
    want = tokens[:tokens.index(stop) + 1]
    unseen = next(t for t in range(50) if t not in want)  # a second stop id the reply never reaches
    # A tensor hashes by identity: a set of them never held the sampled int, and the reply ran on.
    # Tensors of several ids, in any shape: every id in them stops (not only the first).
    for given in (stop, [stop], torch.tensor([stop]), torch.tensor(stop), [torch.tensor(stop)], [np.int64(stop)],
                  (stop, unseen), torch.tensor([unseen, stop]), torch.tensor([[unseen], [stop]])):
        got = generate(model, [1], max_new_tokens=40, temperature=1.0, seed=11, stop_tokens=given)
        assert (got.tokens, got.stop_reason) == (want, "stop_token"), given
    assert generate(model, [1], max_new_tokens=3, seed=11, stop_tokens=None).stop_reason == "max_new_tokens"
    for bad in (torch.tensor([1.0]), [1.5], ["<|return|>"], [True]):
        with pytest.raises(ValueError, match="stop_tokens must be token ids"):
            generate(model, [1], max_new_tokens=3, stop_tokens=bad)


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    gen = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, 1.0, 0.7, gen) for _ in range(200)}
    assert picks == {0, 1}


def test_generation_stops_where_the_context_is_full_and_says_so():
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50, context_length=16)), seed=6)
    out = generate(model, list(range(14)), max_new_tokens=5, temperature=0)
    assert out.stop_reason == "context_full" and len(out.tokens) == 2  # 14 + 2 = 16 positions
    assert generate(model, list(range(14)), max_new_tokens=2, temperature=0).stop_reason == "max_new_tokens"


def test_context_overflow_is_a_clear_error():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50, context_length=16)).eval()
    with pytest.raises(ValueError, match="exceed the context length of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="the context holds 16"):
        generate(model, list(range(16)), max_new_tokens=3)
    for ids in (torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.int16)):  # int16 was called "not an integer"
        with pytest.raises(ValueError, match=r"input_ids must be an int64 or int32 tensor of token ids \(ids.long\(\) converts"):
            model(ids)
    for max_len in (0, -5, 2.5, True):  # 0 used to mean the whole context
        with pytest.raises(ValueError, match=f"max_len is the positions the cache holds.*got {max_len!r}"):
            model.new_cache(1, max_len)
    assert model.new_cache(1).max_len == 16 and model.new_cache(1, 5).max_len == 5
    with pytest.raises(ValueError, match=r"max_new_tokens must be a whole number, 0 or more \(an int\), got -3"):
        generate(model, [1, 2], max_new_tokens=-3)
    assert generate(model, [1, 2], max_new_tokens=0).tokens == []


def test_what_a_learner_passes_by_mistake_is_named_with_the_fix():
    """Each of these reached torch and came back as an error naming neither the argument nor the fix."""
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50, context_length=16)).eval()
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, tokens\], got 1-D \(3,\) \(ids\[None\] adds"):
        model(torch.tensor([1, 2, 3]))  # ids.long() was offered, and changed nothing
    with pytest.raises(TypeError, match=r"got a list: torch.tensor\(\[ids\]\) makes one"):
        model([1, 2, 3])
    with pytest.raises(TypeError, match=r"GPT takes a ModelConfig, got a str: preset\('gpt2-tiny'\) gives that config"):
        g.GPT("gpt2-tiny")
    for batch in (0, -1, 2.0):
        with pytest.raises(ValueError, match=f"batch_size is the sequences the cache holds.*got {batch!r}"):
            model.new_cache(batch)
    with pytest.raises(ValueError, match=r"the prompt is text \('Hello'\): generate takes token ids, so encode it"):
        generate(model, "Hello")
    with pytest.raises(ValueError, match="the context holds 16 with the reply: a prompt of at most 15 leaves room"):
        generate(model, list(range(16)), max_new_tokens=3)
    with pytest.raises(ValueError, match=r"seed must be a whole number .*got 1.5"):
        generate(model, [1], max_new_tokens=2, seed=1.5)
    for seed in (2**64, -2**63 - 1):  # torch's message was "Overflow when unpacking long long", at the first token
        with pytest.raises(ValueError, match=rf"seed must be in -2\*\*63 .. 2\*\*64 - 1 \(torch's range\), "
                                             rf"got {seed}"):
            generate(model, [1], max_new_tokens=2, seed=seed)
    for seed in (-1, 2**64 - 1):  # hash() and getrandbits(64) give these, and torch takes them
        assert len(generate(model, [1], max_new_tokens=2, seed=seed).tokens) == 2
    import numpy as np

    # What a widget or numpy hands over is a number too.
    assert generate(model, [1], max_new_tokens=3, seed=np.int64(3)).tokens == generate(
        model, [1], max_new_tokens=3, seed=3).tokens
    assert len(generate(model, [1], max_new_tokens=2, temperature=torch.tensor(0.7), top_p=np.float32(0.9)).tokens) == 2
    for name, value in (("temperature", "0.7"), ("top_p", None)):
        with pytest.raises(ValueError, match=f"{name} must be a number, got {value!r}"):
            generate(model, [1], max_new_tokens=2, **{name: value})


def test_bad_ids_and_caches_are_named_before_they_reach_the_embedding():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50, context_length=16)).eval()
    for ids in ([[50]], [[3, -1]]):
        with pytest.raises(ValueError, match=r"token id (50|-1) is outside the vocabulary \(0..49\)"):
            model(torch.tensor(ids))
    for n in (2, 0):  # 0: no forward pass, whose own check a GPU skips, to catch it
        with pytest.raises(ValueError, match=r"token id 50 is outside the vocabulary"):
            generate(model, [1, 50], max_new_tokens=n)
    with pytest.raises(ValueError, match=r"\(1, 0\) holds no tokens"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"made for batch 2, torch.float32.*this step is batch 1"):
        model(torch.tensor([[1]]), model.new_cache(2))
    with pytest.raises(ValueError, match=r"made for batch 1, torch.bfloat16"):
        model(torch.tensor([[1]]), g.GPT(model.config).to(torch.bfloat16).new_cache(1))


def test_generate_takes_one_sequence_in_any_usual_form():
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)), seed=6).eval()
    want = generate(model, [1, 2, 3], max_new_tokens=4, temperature=0).tokens
    for prompt in (torch.tensor([1, 2, 3]), torch.tensor([[1, 2, 3]], dtype=torch.int32), (1, 2, 3),
                   [torch.tensor(1), 2, 3]):
        assert generate(model, prompt, max_new_tokens=4, temperature=0).tokens == want
    for bad in (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3), [1, 2.0], [True]):
        with pytest.raises(ValueError, match="generate takes one sequence"):
            generate(model, bad, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"logits of one position, \[vocab\]; got shape \(2, 50\)"):
        sample_next(torch.zeros(2, 50), temperature=0)


def test_generate_refuses_a_model_left_in_training_mode():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50))  # a new module trains: dropout on
    with pytest.raises(ValueError, match=r"training mode, so dropout \(0.1\).*model.eval\(\)"):
        generate(model, [1, 2], max_new_tokens=2)
    assert len(generate(model.eval(), [1, 2], max_new_tokens=2).tokens) == 2


def test_decode_speed_counts_only_the_time_spent_generating():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)).eval()
    stats = g.generate.Generation()
    for _ in stream(model, [1, 2], max_new_tokens=5, temperature=0, stats=stats):
        time.sleep(0.1)  # a slow reader: printing, a widget redrawing
    assert len(stats.tokens) == 5 and stats.decode_seconds < 0.2


def test_bad_configs_name_the_problem():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        g.preset("gpt-oss-tiny").replace(n_kv_heads=3)
    with pytest.raises(ValueError, match="experts_per_token"):
        g.preset("gpt-oss-tiny").replace(experts_per_token=9)
    with pytest.raises(KeyError, match="'num_key_value_heads'"):
        cfg = g.preset("gpt-oss-tiny").to_hf_config()
        del cfg["num_key_value_heads"]
        g.ModelConfig.from_hf_config(cfg)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        g.ModelConfig.from_hf_config({"model_type": "llama"})
    gpt2 = g.preset("gpt2-124m").to_hf_config()
    for key, value in (("scale_attn_weights", False), ("scale_attn_by_inverse_layer_idx", True)):
        with pytest.raises(ValueError, match=f"{key} {str(value).lower()}"):
            g.ModelConfig.from_hf_config({**gpt2, key: value})
    assert g.ModelConfig.from_hf_config({**gpt2, "scale_attn_weights": True, "reorder_and_upcast_attn": True})
    # The string "false" was read as true: scale_attn_weights loaded as if set, the other misquoted as true.
    for key in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
        with pytest.raises(ValueError, match=f"config.json's '{key}' must be true or false, got 'false'"):
            g.ModelConfig.from_hf_config({**gpt2, key: "false"})


@pytest.mark.parametrize("name", ["gpt2-124m", "gpt-oss-20b", "gpt-oss-120b"])
def test_hf_config_round_trip(name):
    cfg = g.preset(name)
    assert g.ModelConfig.from_hf_config(cfg.to_hf_config(), name=name) == cfg


def test_rope_frequencies_stay_float32_when_the_model_is_cast():
    model = g.GPT(g.preset("gpt-oss-tiny"))
    want = model.rotary.inv_freq.clone()
    model.to(torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.rotary.inv_freq.dtype == torch.float32 and torch.equal(model.rotary.inv_freq, want)
    model.float()
    assert torch.equal(model.rotary.inv_freq, want)


# ---- found by mutation testing: top_p 0, seed 0, bool prompts, one step a token, tokens/s -----------


def test_top_p_zero_is_refused_by_name():
    with pytest.raises(ValueError, match="top_p in"):
        sample_next(torch.zeros(5), temperature=1.0, top_p=0.0)


def test_seed_zero_is_a_seed():
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)), seed=5, std=0.02).eval()
    torch.manual_seed(1)
    a = generate(model, [1], max_new_tokens=20, temperature=1.0, seed=0).tokens
    torch.manual_seed(2)  # the global generator must not matter
    b = generate(model, [1], max_new_tokens=20, temperature=1.0, seed=0).tokens
    assert a == b


def test_a_bool_tensor_is_not_a_prompt():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)).eval()
    with pytest.raises(ValueError, match="generate takes one sequence"):
        generate(model, torch.tensor([True, False, True]), max_new_tokens=2)


def test_each_token_after_the_first_costs_one_decode_step_and_none_follows_the_last():
    from gptoss_edu.generate import cached_step

    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)).eval()
    calls = []

    def counting(model, cache):
        step = cached_step(model, cache)

        def run(token):
            calls.append(token)
            return step(token)
        return run

    out = generate(model, [1, 2], max_new_tokens=5, temperature=0, decoder=counting)
    assert len(out.tokens) == 5 and calls == out.tokens[:-1]


def test_tokens_per_second_counts_the_tokens_decoded_after_the_prefill():
    from gptoss_edu.generate import Generation

    assert Generation(tokens=[7, 8, 9], decode_seconds=0.5).tokens_per_second == 4.0  # 2 tokens in 0.5 s
    assert Generation(tokens=[7], decode_seconds=0.5).tokens_per_second == 0.0


def test_a_reply_is_cut_short_only_when_something_outside_the_model_ended_it():
    # Both chats excuse an unfinished harmony header on this alone (a stop token at the context's last place is
    # the model's own end, not a full context).
    from gptoss_edu.generate import Generation

    outside = {"max_new_tokens", "context_full", "interrupted"}
    for reason in sorted(outside | {"stop_token", "other_role", "format_problem"}):
        assert Generation(stop_reason=reason).cut_short is (reason in outside), reason


def test_a_step_that_stops_part_way_cannot_be_retried_on_overwritten_keys(monkeypatch):
    """A multi-token step that ran out of memory in layer 0's attention had already rolled that layer's window
    buffer: retried in smaller chunks, it read overwritten keys and gave logits 1.5 off, without an error."""
    import gptoss_edu.attention as A

    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=97, context_length=64)
    window = cfg.sliding_window
    model = randomize(g.GPT(cfg), seed=1).eval()
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 30)
        model(ids[:, :12], cache)
        real = A.attend

        def out_of_memory(*args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        monkeypatch.setattr(A, "attend", out_of_memory)
        with pytest.raises(torch.OutOfMemoryError):
            model(ids[:, 12:24], cache)
        monkeypatch.setattr(A, "attend", real)
        assert cache.length == 12 and 12 > window
        with pytest.raises(RuntimeError, match=r"layer 0's sliding-window buffer already holds positions up to 23, "
                                               r"written by a step that stopped part-way.*cache.length = 0"):
            model(ids[:, 12:16], cache)
        with pytest.raises(ValueError, match="cannot go back to 11 positions, 24 having been written") as e:
            cache.length = 11
        # Not "go back to 23": the layers after layer 0 never wrote 12..22, and their logits would be 1.35 off.
        assert "Go back to 23" not in str(e.value) and str(e.value).endswith("Go back to 0 (start over)")
        from gptoss_edu.static_decode import CUDAGraphDecoder  # the chats' decode step refuses it as the eager one
        with pytest.raises(RuntimeError, match=r"layer 0's sliding-window buffer already holds positions up to 23"):
            CUDAGraphDecoder(model, cache, False)(int(ids[0, 12]))
        assert cache.length == 12  # refused before the step wrote anything
        cache.length = 0  # starting over is always right
        torch.testing.assert_close(torch.cat([model(ids[:, s:s + 6], cache) for s in range(0, 30, 6)], 1), full,
                                   rtol=1e-5, atol=1e-5)
        # A failed one-token step overwrote only the position leaving the window: retrying it is fine.
        cache.length = 0
        model(ids[:, :20], cache)
        monkeypatch.setattr(A, "attend", out_of_memory)
        with pytest.raises(torch.OutOfMemoryError):
            model(ids[:, 20:21], cache)
        monkeypatch.setattr(A, "attend", real)
        torch.testing.assert_close(model(ids[:, 20:21], cache), full[:, 20:21], rtol=1e-5, atol=1e-5)
        # Each size of failed step, retried one or two tokens at a time: refused, or the uncached logits.
        refusals = 0
        for failed, retry in itertools.product((1, 2, 3), (1, 2)):
            cache.length = 0
            model(ids[:, :20], cache)
            monkeypatch.setattr(A, "attend", out_of_memory)
            with pytest.raises(torch.OutOfMemoryError):
                model(ids[:, 20:20 + failed], cache)
            monkeypatch.setattr(A, "attend", real)
            try:
                logits = model(ids[:, 20:20 + retry], cache)
            except RuntimeError as e:
                assert "written by a step that stopped part-way" in str(e)
                refusals += 1
                continue
            torch.testing.assert_close(logits, full[:, 20:20 + retry], rtol=1e-5, atol=1e-5)
        assert refusals >= 3  # a failed step of 2 or 3 tokens overwrote keys a retry of 2 reads


def test_attend_refuses_queries_past_the_last_key():
    """q_start + Tq > Tk left queries with no key of their own: NaN without sinks, zeros with them."""
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 1, 3, 16)
    with pytest.raises(ValueError, match=r"positions q_start..q_start\+Tq-1 = 5..5, which must be keys too \(Tk = 3\)"):
        attend(q, k, k, scale=0.25, q_start=5, window=2)
    assert attend(q, k, k, scale=0.25, q_start=2, window=2).isfinite().all()


def test_a_cache_made_in_inference_mode_and_stepped_outside_it_says_what_to_do():
    """PyTorch's "Inplace update to inference tensor outside InferenceMode" named neither the cache nor the cure."""
    model = randomize(g.GPT(g.preset("gpt-oss-tiny").replace(vocab_size=97, context_length=64)), seed=2).eval()
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache = model.new_cache(1, 16)
        model(ids, cache)
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"made inside torch.inference_mode\(\).*step it under "
                                                            "inference_mode too"):
        model(ids[:, :1], cache)
    assert cache.length == 6
    with torch.inference_mode():
        model(ids[:, :1], cache)  # in its own mode it goes on
    assert cache.length == 7


# ---- found by mutation testing: a stop token drawn first, prefill against decode time ----------------------


def test_a_stop_token_drawn_as_the_first_token_ends_the_reply_there():
    """The first token comes from the prefill's logits, not a decode step: a check skipped there let a reply whose
    first token is the end (an empty answer) run on past it."""
    model = randomize(g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)), seed=5, std=0.02)
    first = generate(model, [1, 2], max_new_tokens=1, temperature=0).tokens[0]
    out = generate(model, [1, 2], max_new_tokens=10, temperature=0, stop_tokens=[first])
    assert (out.tokens, out.stop_reason) == ([first], "stop_token")


def test_the_prefill_is_timed_apart_from_the_decode_steps(monkeypatch):
    """On a clock that the prefill moves by 10 s and each decode step by 1 s: the first token's time is the
    prefill's, and tokens/s counts only the steps after it."""
    import types

    clock = [0.0]
    monkeypatch.setattr(g.generate, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=50)).eval()
    forward = model.forward

    def timed(ids, cache=None, last_only=False):
        clock[0] += 10.0 if last_only else 1.0  # generation's prefill asks for the last logits only
        return forward(ids, cache, last_only=last_only)

    monkeypatch.setattr(model, "forward", timed)
    out = generate(model, [1, 2], max_new_tokens=5, temperature=0)
    assert (out.prefill_seconds, out.decode_seconds, out.tokens_per_second) == (10.0, 4.0, 1.0)
