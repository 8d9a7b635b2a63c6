"""Training against its recipe, step by step: the targets are the next tokens, evaluation runs without
dropout, and train() gives the weights of a loop written from scratch.

tests/test_train.py checks what a learner sees (the loss falls, runs resume bit for bit, damaged states
are refused). Those checks pass with targets equal to the inputs, gradient clipping off, the aux loss
left out or the learning rate one step late; these tests do not.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gptoss_edu as g
from gptoss_edu import train as T
from gptoss_edu.config import course_config
from gptoss_edu.model import GPT


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def distinct_tokens(n_train: int = 3000, n_val: int = 700, vocab: int = 4000) -> T.TokenData:
    """Splits in which no token repeats, so that a window's place in its split can be found."""
    gen = torch.Generator().manual_seed(0)
    return T.TokenData(torch.randperm(vocab, generator=gen)[:n_train], torch.randperm(vocab, generator=gen)[:n_val],
                       vocab, "text")


def start_of(stream: torch.Tensor, row: torch.Tensor) -> int:
    """Where ``row`` begins in ``stream``."""
    s = int((stream == row[0]).nonzero()[0, 0])
    assert torch.equal(stream[s:s + len(row)], row), "the window is not a run of the split"
    return s


# ---- targets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size,seq_len,step,seed", [(4, 16, 0, 0), (8, 33, 5, 1), (2, 128, 17, 3)])
def test_training_targets_are_the_next_tokens(batch_size, seq_len, step, seed):
    data = distinct_tokens()
    x, y = data.batch(step, batch_size, seq_len, seed)
    assert x.shape == y.shape == (batch_size, seq_len)
    for xr, yr in zip(x, y):
        s = start_of(data.train, xr)
        assert torch.equal(yr, data.train[s + 1:s + 1 + seq_len])



def test_each_seed_and_each_step_reads_its_own_batches():
    """Runs of several seeds (notebook 13) read different windows, not only start from different weights."""
    data = distinct_tokens()
    first = data.batch(5, 4, 16, 0)[0]
    assert torch.equal(data.batch(5, 4, 16, 0)[0], first)  # a function of (seed, step) alone
    assert not torch.equal(data.batch(5, 4, 16, 1)[0], first) and not torch.equal(data.batch(6, 4, 16, 0)[0], first)
    with pytest.raises(ValueError, match=r"the train split has 16 tokens, fewer than seq_len \+ 1 \(17\)"):
        T.TokenData(data.train[:16], data.val, data.vocab_size, data.kind).batch(0, 1, 16, 0)


@pytest.mark.parametrize("batch_size,seq_len,max_batches", [(4, 16, 3), (3, 50, 2), (1, 99, 7)])
def test_validation_targets_are_the_next_tokens(batch_size, seq_len, max_batches):
    data = distinct_tokens()
    for x, y in data.val_batches(batch_size, seq_len, max_batches):
        for xr, yr in zip(x, y):
            s = start_of(data.val, xr)
            assert torch.equal(yr, data.val[s + 1:s + 1 + seq_len])


@pytest.mark.parametrize("corpus_vocab", [False, True])
def test_lm_loss_is_the_cross_entropy_of_each_position_against_the_next_token(corpus_vocab):
    cfg = g.preset("gpt2-tiny").replace(vocab_size=4000, context_length=64, dropout=0.0)
    model = g.GPT(cfg).eval()
    data = distinct_tokens()
    x, y = data.batch(0, 4, 24, 0)
    vocab = T.CorpusVocab(data.used_ids(), cfg.vocab_size) if corpus_vocab else None
    if vocab is not None:
        vocab.tie_unused_rows(model)
    with torch.no_grad():
        logits = model(x)
        per_position = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(4, 24)
        # The targets' first 23 columns are x's last 23: the loss read from the inputs alone.
        from_inputs = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        got = T.lm_loss(model, x, y, vocab)
    torch.testing.assert_close(per_position[:, :-1].mean(), from_inputs, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, per_position.mean(), atol=1e-5, rtol=1e-5)


# ---- evaluation --------------------------------------------------------------------------------

def test_evaluate_runs_without_dropout_and_restores_training_mode():
    model = g.GPT(g.preset("gpt2-tiny").replace(vocab_size=4000, context_length=64, dropout=0.5)).train()
    data, tc = distinct_tokens(), T.TrainConfig(batch_size=2, seq_len=24, eval_batches=3)
    x = next(iter(data.val_batches(tc.batch_size, tc.seq_len, 1)))[0]
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # the dropout is live in training mode: this test could fail
    losses = []
    for seed in (0, 1):  # dropout would draw other masks under another seed
        torch.manual_seed(seed)
        losses.append(T.evaluate(model, data, tc))
        assert model.training
    model.eval()
    with torch.no_grad():
        pairs = list(data.val_batches(tc.batch_size, tc.seq_len, tc.eval_batches))
        want = torch.cat([nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none")
                          for x, y in pairs]).mean()
    assert losses[0] == losses[1] == pytest.approx(float(want), rel=1e-6)


# ---- one run against a loop written from the recipe --------------------------------------------

def recipe_lr(step: int, tc: T.TrainConfig) -> float:
    """Linear warmup to lr over warmup_steps, then half a cosine that reaches min_lr at the last step."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    t = (step - tc.warmup_steps) / max(1, tc.steps - 1 - tc.warmup_steps)
    return tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def switch_loss(logits: torch.Tensor, k: int) -> torch.Tensor:
    """E * sum over experts of (share of the N*k choices it gets) * (its mean router probability)."""
    E = logits.shape[-1]
    chosen = logits.detach().topk(k, dim=-1).indices
    share = torch.bincount(chosen.flatten(), minlength=E).float() / chosen.numel()
    return E * (share * torch.softmax(logits.float(), dim=-1).mean(0)).sum()


def recipe_run(model_cfg: g.ModelConfig, tc: T.TrainConfig, data: T.TokenData) -> tuple[GPT, list[float]]:
    """Next-token cross-entropy + coef * the Switch loss averaged over MoE layers; clip the global
    gradient norm; AdamW, decaying matrices only; the lr of ``recipe_lr``. Returns the model and the
    gradient norm before clipping at each step."""
    torch.manual_seed(tc.seed)
    model = GPT(model_cfg).train()
    named = list(model.named_parameters())
    decays = [p.dim() >= 2 and not n.endswith("bias") for n, p in named]
    optimizer = torch.optim.AdamW([{"params": [p for (_, p), d in zip(named, decays) if d],
                                    "weight_decay": tc.weight_decay},
                                   {"params": [p for (_, p), d in zip(named, decays) if not d], "weight_decay": 0.0}],
                                  lr=tc.lr, betas=(tc.beta1, tc.beta2), eps=1e-8,
                                  fused=True)  # as train.py: the for-loop kernel rounds differently (7e-6 in 5 steps)
    router_logits: list[torch.Tensor] = []
    for block in model.blocks:
        if hasattr(block.mlp, "router"):
            block.mlp.router.register_forward_hook(lambda module, args, out: router_logits.append(out[0]))
    norms = []
    for step in range(tc.steps):
        for group in optimizer.param_groups:
            group["lr"] = recipe_lr(step, tc)
        x, y = data.batch(step, tc.batch_size, tc.seq_len, tc.seed)
        router_logits.clear()
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())
        if router_logits:
            aux = torch.stack([switch_loss(r, model_cfg.experts_per_token) for r in router_logits]).mean()
            loss = loss + tc.aux_loss_coef * aux
        loss.backward()
        norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)))
        optimizer.step()
        optimizer.zero_grad()
    return model, norms


@pytest.mark.parametrize("step,changes", [
    (13, {}),                                          # gpt-oss: experts and their aux loss, sinks, windows
    (13, {"grad_clip": 0.05, "aux_loss_coef": 0.2}),   # clipping surely at work, a larger aux weight
    (6, {"grad_clip": 0.1, "warmup_steps": 2}),        # dense: RoPE, GQA, windows
])
def test_train_gives_the_weights_of_a_loop_written_from_the_recipe(step, changes):
    model_cfg = course_config(step).replace(vocab_size=500)
    assert model_cfg.dropout == 0.0  # no dropout masks to line up
    tc = T.TrainConfig(steps=5, batch_size=2, seq_len=24, warmup_steps=1, lr=1e-2, min_lr=1e-3, eval_every=100,
                       eval_batches=1, checkpoint_every=100, corpus_vocab=False).replace(**changes)
    gen = torch.Generator().manual_seed(1)
    data = T.TokenData(torch.randint(0, 500, (4000,), generator=gen), torch.randint(0, 500, (600,), generator=gen),
                       500, "text")
    got = T.train(model_cfg, tc, data, progress=False)
    want, norms = recipe_run(model_cfg, tc, data)
    assert max(norms) > tc.grad_clip  # the clip is at work
    assert [h["lr"] for h in got.history] == pytest.approx([recipe_lr(s, tc) for s in range(tc.steps)], rel=1e-12)
    assert [h["grad_norm"] for h in got.history] == pytest.approx(norms, rel=1e-4)
    # Tolerance: the same sums in the same order on one thread; what is left is the loss's float32
    # accumulation order, well under AdamW's step of lr (1e-2) per weight.
    for (name, p), (_, q) in zip(got.model.named_parameters(), want.named_parameters()):
        torch.testing.assert_close(p, q, atol=2e-6, rtol=1e-5, msg=lambda m: f"{name}: {m}")


# ---- found in review: settings the data or the model cannot serve, a corpus using every id ------

def test_settings_the_data_or_the_model_cannot_serve_are_refused_before_step_0(tmp_path):
    model_cfg = g.preset("gpt2-tiny").replace(vocab_size=4000, context_length=64)
    data = distinct_tokens(n_val=40)
    steps_run = []
    on_step = steps_run.append
    with pytest.raises(ValueError, match="the settings say data='harmony', and the data given is 'text'"):
        T.train(model_cfg, T.TrainConfig(steps=2, warmup_steps=0, data="harmony"), data, progress=False, on_step=on_step)
    with pytest.raises(ValueError, match="seq_len 65 is longer than the model's context of 64"):
        T.train(model_cfg, T.TrainConfig(steps=2, warmup_steps=0, seq_len=65), data, progress=False, on_step=on_step)
    with pytest.raises(ValueError, match=r"the val split has 40 tokens, fewer than seq_len \+ 1 \(49\)"):
        T.train(model_cfg, T.TrainConfig(steps=2, warmup_steps=0, seq_len=48), data, progress=False, on_step=on_step)
    assert steps_run == []


def test_a_corpus_that_uses_every_id_leaves_every_output_row_alone():
    """With no unused token there is no anchor row: index -1 once zeroed the last, real, token's row."""
    gen = torch.Generator().manual_seed(2)
    vocab = 64
    data = T.TokenData(torch.cat([torch.arange(vocab), torch.randint(0, vocab, (600,), generator=gen)]),
                       torch.randint(0, vocab, (200,), generator=gen), vocab, "text")
    model_cfg = g.preset("gpt2-tiny").replace(vocab_size=vocab, context_length=32, tie_embeddings=False)
    cfg = T.TrainConfig(steps=1, batch_size=2, seq_len=16, warmup_steps=0, lr=1e-12, min_lr=1e-12)
    assert T.CorpusVocab(data.used_ids(), vocab).rest == 0
    trained = T.train(model_cfg, cfg, data, progress=False).model
    torch.manual_seed(cfg.seed)
    fresh = GPT(model_cfg)
    torch.testing.assert_close(trained.lm_head.weight, fresh.lm_head.weight)  # lr 1e-12: nothing moved


def test_the_harmony_val_chats_are_the_same_for_every_seed():
    """Runs of several seeds are compared on their val loss: it must be measured on the same chats."""
    a, b = T.prepare_data("harmony", 201_088, seed=0), T.prepare_data("harmony", 201_088, seed=1)
    assert torch.equal(a.val, b.val) and not torch.equal(a.train, b.train)
