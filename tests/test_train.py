"""Training: the loss goes down, interrupted runs resume exactly, damaged checkpoints are refused."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import gptoss_edu as g
from gptoss_edu import train as T
from gptoss_edu.config import course_config
from gptoss_edu.files import DiskFull
from gptoss_edu.moe import load_balancing_loss
from gptoss_edu.tokenizer import HARMONY_VOCAB_SIZE

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "tiny-gpt-oss"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def text_data() -> T.TokenData:
    return T.prepare_data("text", 50257)


def quick(steps: int = 6, **changes) -> T.TrainConfig:
    """A run of a few small steps: enough to move the weights, fast on a CPU."""
    settings = dict(steps=steps, batch_size=2, seq_len=16, warmup_steps=1, eval_every=3, eval_batches=1,
                    checkpoint_every=100)
    settings.update(changes)
    return T.TrainConfig(**settings)


def small(step: int) -> g.ModelConfig:
    """The course's small model after notebook ``step`` (GPT-2 at 1, gpt-oss from 9 on)."""
    return course_config(step)


def mapped_under(folder: Path) -> list[str]:
    """Files under ``folder`` that this process still maps into memory (Linux's /proc/self/maps)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return sorted({line.split(None, 5)[5] for line in lines if str(folder) in line})


def same_state(a: T.TrainResult, b: T.TrainResult) -> None:
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(p, q), f"{name} differs"
    sa, sb = a.optimizer.state, b.optimizer.state
    assert len(sa) == len(sb) > 0
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        for key in sa[pa]:
            assert torch.equal(sa[pa][key], sb[pb][key]), f"optimizer {key} differs"
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_harmony_chats_answer_each_speech_with_the_next_and_stop():
    from gptoss_edu import harmony
    from gptoss_edu.corpus import Corpus, Play

    text = "".join(f"A{i}:\nSpeech number {i}.\n\n" for i in range(40))
    ids = T.harmony_ids(Corpus([Play("TEST", text, len(text) - 1)]), "train", seed=0).tolist()
    ret, end = harmony.stop_tokens()[0], 200007
    chats, start = [], 0
    for i, t in enumerate(ids):
        if t == ret:
            chats.append(ids[start: i + 1])
            start = i + 1
    assert start == len(ids) and len(chats) > 20  # the stream is whole chats, each ending in <|return|>
    for chat in chats:
        messages = harmony.parse_completion(chat, role=None)
        turns = [m for m in messages if m.role != "system"]
        assert [m.role for m in turns] in (["user", "assistant"], ["user", "assistant"] * 2)
        assert all(m.channel == "final" for m in turns if m.role == "assistant")
        for question, answer in zip(turns[::2], turns[1::2]):
            n = int(question.text.split()[-1].rstrip("."))
            assert answer.text == f"Speech number {n + 1}."
        assert chat.count(ret) == 1 and chat[-1] == ret and end in chat
    assert any(m.role == "system" for c in chats for m in harmony.parse_completion(c, role=None))


# ---- schedule and loss ----------------------------------------------------------------------

def test_lr_schedule_warms_up_then_follows_a_cosine_to_min_lr():
    cfg = T.TrainConfig(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    lrs = [T.lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warmup, peak at its end
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then never rises
    assert lrs[-1] == pytest.approx(1e-4)  # and ends exactly at min_lr
    mid = 10 + (99 - 10) / 2
    assert T.lr_at(int(mid), cfg) == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(math.pi * (int(mid) - 10) / 89)))


def test_the_last_step_gets_min_lr_even_right_after_the_warmup():
    cfg = T.TrainConfig(steps=10, lr=1e-3, min_lr=1e-4, warmup_steps=9)
    lrs = [T.lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[8] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-4)


def test_train_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="warmup_steps"):
        T.TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match=r"grad_clip must be > 0 \(math.inf: no clipping\), got 0"):
        T.TrainConfig(grad_clip=0.0)  # it would scale every gradient to nothing
    with pytest.raises(ValueError, match="eval_batches and checkpoint_every must be >= 1, got 50, 0, 100"):
        T.TrainConfig(eval_batches=0)  # it failed only after the whole run, at its evaluation
    with pytest.raises(ValueError, match="min_lr"):
        T.TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="data"):
        T.TrainConfig(data="poems")

    # Each named by itself: a string lr failed in a comparison, steps=10.5 was blamed on warmup_steps, and
    # NaN betas or a NaN aux_loss_coef were taken (the run then "diverged", and was told to lower its lr).
    for change, says in ((dict(lr="3e-3"), r"lr must be a number, got '3e-3' \(str\)"),
                         (dict(steps=10.5), r"steps must be a whole number \(an int\), got 10.5"),
                         (dict(seed=True), r"seed must be a whole number \(an int\), got True"),
                         (dict(beta2=math.nan), r"beta1 and beta2 .* must be in \[0, 1\), got 0.9, nan"),
                         (dict(beta1=1.0), r"must be in \[0, 1\), got 1.0, 0.95"),
                         (dict(aux_loss_coef=math.nan), "weight_decay and aux_loss_coef must be finite numbers >= 0"),
                         (dict(weight_decay=-0.1), "weight_decay and aux_loss_coef must be finite numbers >= 0"),
                         (dict(corpus_vocab=1), "corpus_vocab must be True or False, got 1")):
        with pytest.raises(ValueError, match=says):
            T.TrainConfig(**change)
    assert T.TrainConfig(grad_clip=math.inf, lr=1, weight_decay=0).lr == 1  # ints are numbers too
    import numpy as np

    # numpy's numbers become Python's: the saved state is JSON, which refused np.int64.
    numpy_cfg = T.TrainConfig(steps=np.int64(30), lr=np.float32(0.5))
    assert type(numpy_cfg.steps) is int and type(numpy_cfg.lr) is float
    json.dumps(T._config_dict(numpy_cfg))


@pytest.mark.parametrize("step", [1, 13])
def test_corpus_vocab_loss_equals_the_full_softmax(step, text_data):
    """With the unused rows tied to one vector, the cheap loss is the full-vocabulary loss (and gradient)."""
    cfg = small(step).replace(dropout=0.0)
    torch.manual_seed(step)
    model = g.GPT(cfg)
    vocab = T.CorpusVocab(text_data.used_ids(), cfg.vocab_size)
    with torch.no_grad():
        model.lm_head.weight[vocab.anchor] = torch.randn(cfg.d_model)  # a shared row that is not zero
    vocab.tie_unused_rows(model)
    unused = vocab.position < 0
    assert unused.sum() == vocab.rest > 30000 and bool((model.lm_head.weight[unused] == model.lm_head.weight[vocab.anchor]).all())
    x, y = text_data.batch(0, 3, 24, seed=1)
    y[0, :5] = int(unused.nonzero()[-1])  # targets the corpus never uses still count, at the shared logit
    checked = [model.blocks[0].attn.q_proj.weight, model.norm.weight]
    if not cfg.tie_embeddings:  # tied (step 1), the input side adds its own gradient to the rows of x's tokens
        checked.append(model.lm_head.weight)
    cheap = T.lm_loss(model, x, y, vocab)
    grads_cheap = torch.autograd.grad(cheap, checked)
    full = T.lm_loss(model, x, y, None)
    grads_full = torch.autograd.grad(full, checked)
    assert abs(cheap.item() - full.item()) < 1e-5  # float32 rounding of a ~11-nat loss
    want = list(grads_full)
    if not cfg.tie_embeddings:
        # The output rows: a used row's gradient is the full model's; the anchor's is the sum of every
        # unused row's (the one vector they share), and the other unused rows get none of their own.
        head_full = grads_full[-1]
        want[-1] = head_full.clone()
        want[-1][vocab.unused] = 0
        want[-1][vocab.anchor] = head_full[vocab.unused].sum(0)
        assert want[-1][vocab.anchor].abs().max() > 1e-3 and grads_cheap[-1][vocab.ids].abs().max() > 1e-3  # live
    for a, b in zip(grads_cheap, want):  # sums over ~40,000 logits in float32: 1e-4 of the largest entry
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


def test_training_leaves_the_callers_random_state_as_it_was(text_data, monkeypatch):
    """train() seeded torch and left it so: a learner's torch.rand after it drew the same numbers whatever their seed."""
    for seed in (111, 222):
        torch.manual_seed(seed)
        want = torch.rand(3)
        torch.manual_seed(seed)
        seeded_gpus = []  # torch.manual_seed seeds every GPU too, which fork_rng(devices=[]) would not put back
        monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded_gpus.append)
        T.train(small(13), quick(steps=2), text_data, progress=False)
        monkeypatch.undo()
        assert torch.equal(torch.rand(3), want), f"seed {seed}: the draw after training is not the seed's first"
        assert seeded_gpus == [], "training seeded the GPUs' generators"


def test_unused_rows_stay_tied_through_training(text_data):
    result = T.train(small(13), quick(steps=3), text_data, progress=False)
    vocab = T.CorpusVocab(text_data.used_ids(), 50257)
    w = result.model.lm_head.weight
    assert w[vocab.anchor].abs().sum() > 0  # the shared row learned something ...
    assert bool((w[vocab.position < 0] == w[vocab.anchor]).all())  # ... and every unused row is that row


def test_moe_aux_loss_is_counted_and_dense_models_have_none(text_data):
    x, _ = text_data.batch(0, 2, 16, seed=0)
    moe = g.GPT(small(13))
    moe(x)
    aux = T.aux_loss(moe)
    assert aux.item() >= 1.0 - 1e-6  # E * sum(share * prob) is 1 when balanced, more when not
    dense = g.GPT(small(6))
    dense(x)
    assert T.aux_loss(dense).item() == 0.0


# ---- the loop -------------------------------------------------------------------------------

def test_training_reduces_the_loss_on_a_fixed_seed(text_data):
    cfg = quick(steps=30, batch_size=4, seq_len=32, lr=2e-2, min_lr=2e-3, warmup_steps=3, eval_every=30,
                eval_batches=2)
    torch.manual_seed(cfg.seed)
    untrained = g.GPT(small(13))
    before = T.evaluate(untrained, text_data, cfg)
    result = T.train(small(13), cfg, text_data, progress=False)
    first = sum(h["loss"] for h in result.history[:3]) / 3
    assert before > 10.0  # about ln(50257) = 10.8 at the start
    assert result.final_loss(3) < first - 1.5  # measured: 10.9 -> 8.5 on this seed
    assert result.val_loss < before - 1.5
    assert all(h["aux_loss"] > 0 for h in result.history)  # the MoE balancing term is in the loss


@pytest.mark.parametrize("step", [1, 13])  # GPT-2 (dropout, learned positions) and gpt-oss (MoE)
def test_interrupt_and_resume_gives_the_uninterrupted_weights(step, text_data, tmp_path):
    cfg = quick(steps=6)
    whole = T.train(small(step), cfg, text_data, out=tmp_path / "whole", progress=False)

    def press_ctrl_c(result: T.TrainResult) -> None:
        if result.step == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C or a notebook's stop button sends

    first = T.train(small(step), cfg, text_data, out=tmp_path / "run", progress=False, on_step=press_ctrl_c)
    assert first.interrupted and first.step == 3  # the step in flight finished, then it stopped
    assert T.read_state_meta(tmp_path / "run" / T.STATE_DIR)["step"] == 3  # and was saved: no step lost
    second = T.train(small(step), cfg, text_data, out=tmp_path / "run", progress=False)
    assert second.resumed_from == 3 and second.step == 6 and not second.interrupted
    same_state(whole, second)
    if sys.platform == "linux":  # AdamW's moments kept the loaded state file mapped: Windows cannot replace it
        assert mapped_under(tmp_path) == []
    assert [e["step"] for e in second.evals] == [3, 6]


class _GoneTerminal(io.TextIOBase):
    """stderr after its terminal was closed: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no hang-up signal on Windows")
def test_a_hang_up_stops_after_the_step_and_saves_it(text_data, tmp_path, monkeypatch):
    """Closing the terminal sends SIGHUP, which killed the run with every step since the last checkpoint."""
    cfg = quick(steps=6)
    # The terminal's default, whatever the tests were started with (under nohup the run rightly trains through it)
    started_with = signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def close_the_terminal(result: T.TrainResult) -> None:
        if result.step == 3:
            monkeypatch.setattr(sys, "stderr", _GoneTerminal())  # nothing can be said any more
            signal.raise_signal(signal.SIGHUP)

    try:
        first = T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False, on_step=close_the_terminal)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # put back after the run
    finally:
        signal.signal(signal.SIGHUP, started_with)
    monkeypatch.undo()
    assert first.interrupted and first.step == 3
    assert T.read_state_meta(tmp_path / "run" / T.STATE_DIR)["step"] == 3


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no hang-up signal on Windows")
def test_a_run_started_with_nohup_trains_through_a_hang_up(text_data, tmp_path):
    """nohup ignores SIGHUP so that the run outlives its terminal: the stop request must not take that over."""
    def close_the_terminal(result: T.TrainResult) -> None:
        if result.step == 2:
            signal.raise_signal(signal.SIGHUP)

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it
    try:
        result = T.train(small(13), quick(steps=4), text_data, out=tmp_path / "run", progress=False,
                         on_step=close_the_terminal)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not result.interrupted and result.step == 4


def train_doing_after_step(step: int, action: Callable[[], None]) -> Callable[..., T.TrainResult]:
    """T.train that calls ``action()`` after step ``step``: for a run the command line starts."""
    real_train = T.train

    def doing(*args, **kwargs):
        def after(result: T.TrainResult) -> None:
            if result.step == step:
                action()
        return real_train(*args, **kwargs, on_step=after)
    return doing


def test_running_out_of_memory_is_a_message_and_the_steps_done_are_kept(tmp_path, capsys, monkeypatch):
    """The CPU allocator's RuntimeError escaped as a traceback with exit status 1 (a larger --batch-size)."""
    tiny = ["--steps", "4", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    real_train = T.train

    def allocate() -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 536870912 bytes. Error code 12")

    monkeypatch.setattr(T, "train", train_doing_after_step(2, allocate))
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), *tiny]) == 2
    err = capsys.readouterr().err
    assert "train: out of memory at 2 x 16 tokens a step ([enforce fail at alloc_cpu.cpp:127]" in err
    assert err.rstrip().endswith("run again with a smaller --batch-size or --seq-len, and --fresh (a run resumes "
                                 "only with the settings it began with)") and "Traceback" not in err
    assert T.read_state_meta(tmp_path / "run" / T.STATE_DIR)["step"] == 2  # the steps done are on disk

    # Out of memory while exporting (it loads the written checkpoint back beside the trained model): the run is
    # done, so the advice is the same command, not --fresh with a smaller batch.
    monkeypatch.setattr(T, "train", real_train)
    real_export = T.export

    def export_out_of_memory(result, path, *args, **kwargs):
        if Path(path) == tmp_path / "exp":  # not the run's own model/, which train writes at each checkpoint
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6291456 bytes.")
        return real_export(result, path, *args, **kwargs)

    monkeypatch.setattr(T, "export", export_out_of_memory)
    exported = ["course-step-13", "--out", str(tmp_path / "done"), "--export", str(tmp_path / "exp"), *tiny]
    assert T.main(exported) == 2
    err = capsys.readouterr().err
    assert f"train: out of memory while exporting to {tmp_path / 'exp'} (DefaultCPUAllocator" in err
    assert err.rstrip().endswith(f"the run is saved in {tmp_path / 'done'}: free some memory (close other programs "
                                 "and notebooks), then the same command exports it without training again"), err
    assert "--fresh" not in err
    monkeypatch.setattr(T, "export", real_export)
    assert T.main(exported) == 0 and (tmp_path / "exp" / "config.json").is_file()
    assert "has finished its 4 steps; exporting it" in capsys.readouterr().err

    def a_bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(T, "train", a_bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # not an allocation: not disguised
        T.main(["course-step-13", "--out", str(tmp_path / "other"), *tiny])


def test_a_model_save_that_failed_is_made_again_on_resume(text_data, tmp_path, monkeypatch, capsys):
    """The state was saved before the model: a full disk at the last export left out/model at an earlier
    step for good, since a resumed run with no step left to run saved nothing."""
    cfg = quick(steps=4, checkpoint_every=2)
    real_export = T.export

    def disk_full_at_step_4(result, path, *args, **kwargs):
        if result.step == 4:
            raise DiskFull(Path(path), 10**9)
        return real_export(result, path, *args, **kwargs)

    monkeypatch.setattr(T, "export", disk_full_at_step_4)
    with pytest.raises(DiskFull):
        T.train(small(13), cfg, text_data, out=tmp_path, progress=False)
    monkeypatch.setattr(T, "export", real_export)
    assert T._exported_step(tmp_path / T.MODEL_DIR) == 2
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2  # the state waits for its model
    again = T.train(small(13), cfg, text_data, out=tmp_path, progress=False)
    assert again.resumed_from == 2 and T._exported_step(tmp_path / T.MODEL_DIR) == 4
    # A model folder deleted (or lost) after a complete run is written again from the state, and said.
    shutil.rmtree(tmp_path / T.MODEL_DIR)
    capsys.readouterr()
    done = T.train(small(13), cfg, text_data, out=tmp_path, progress=False)
    assert done.resumed_from == 4 and T._exported_step(tmp_path / T.MODEL_DIR) == 4
    assert "model is missing, the state from step 4: the model is written again" in capsys.readouterr().err
    same = g.load_model(tmp_path / T.MODEL_DIR)
    assert torch.equal(same.embed.weight, done.model.embed.weight.to(torch.bfloat16).float())


def test_a_learners_file_in_out_model_is_refused_before_the_first_step(text_data, tmp_path):
    """The model is saved before the state: export refusing the folder at a checkpoint left the state behind
    for good, and every resume stopped at the same step."""
    cfg = quick(steps=4, checkpoint_every=2)

    def press_ctrl_c(result: T.TrainResult) -> None:
        if result.step == 2:
            signal.raise_signal(signal.SIGINT)

    assert T.train(small(13), cfg, text_data, out=tmp_path, progress=False, on_step=press_ctrl_c).interrupted
    (tmp_path / T.MODEL_DIR / "tokenizer.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"model holds more than a checkpoint \(tokenizer.json\).*move them out"):
        T.train(small(13), cfg, text_data, out=tmp_path, progress=False)
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2  # nothing ran, nothing was lost
    (tmp_path / T.MODEL_DIR / "tokenizer.json").unlink()
    assert T.train(small(13), cfg, text_data, out=tmp_path, progress=False).step == 4


def test_a_stop_during_the_last_step_completes_the_run(text_data, tmp_path):
    def press_ctrl_c(result: T.TrainResult) -> None:
        if result.step == 2:
            signal.raise_signal(signal.SIGINT)

    done = T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False, on_step=press_ctrl_c)
    assert done.step == 2 and not done.interrupted
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2


def test_a_run_killed_between_checkpoints_repeats_only_the_unsaved_steps(text_data, tmp_path):
    cfg = quick(steps=6, checkpoint_every=2)
    whole = T.train(small(13), cfg, text_data, progress=False)

    def snapshot(result: T.TrainResult) -> None:  # the disk as a kill -9 after step 5 would leave it
        if result.step == 4:
            shutil.copytree(tmp_path / "run", tmp_path / "killed")

    T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False, on_step=snapshot)
    resumed = T.train(small(13), cfg, text_data, out=tmp_path / "killed", progress=False)
    assert resumed.resumed_from == 4
    same_state(whole, resumed)


def test_an_error_mid_run_keeps_the_finished_steps(text_data, tmp_path):
    def boom(result: T.TrainResult) -> None:
        if result.step == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        T.train(small(13), quick(), text_data, out=tmp_path, progress=False, on_step=boom)
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2


def test_a_diverged_run_stops_and_keeps_its_last_finite_step(text_data, tmp_path, monkeypatch):
    real = T.lm_loss
    calls = []

    def overflowing(*args, **kwargs):  # the third step's loss overflows
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("inf") if len(calls) == 3 else loss

    monkeypatch.setattr(T, "lm_loss", overflowing)
    with pytest.raises(FloatingPointError, match="step 3 gave loss inf.*the run diverged"):
        T.train(small(13), quick(), text_data, out=tmp_path / "a", progress=False)
    assert T.read_state_meta(tmp_path / "a" / T.STATE_DIR)["step"] == 2  # saved, and finite
    monkeypatch.setattr(T, "lm_loss", real)

    def poison(result: T.TrainResult) -> None:  # weights already broken: nothing is saved over the disk
        if result.step == 2:
            with torch.no_grad():
                result.model.norm.weight.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="step 3 gave loss nan"):
        T.train(small(13), quick(), text_data, out=tmp_path / "b", progress=False, on_step=poison)
    assert not (tmp_path / "b" / T.STATE_DIR).exists()


def test_resume_refuses_other_settings_and_an_existing_run_without_resume(text_data, tmp_path):
    T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    with pytest.raises(g.CheckpointError, match=r"lr=0.003 \(now lr=0.001\)"):
        T.train(small(13), quick(steps=2, lr=1e-3), text_data, out=tmp_path, progress=False)
    with pytest.raises(g.CheckpointError, match=r"another model config \(differs in [^)]*n_kv_heads[^)]*\).*--fresh"):
        T.train(small(12).replace(n_kv_heads=4), quick(steps=2), text_data, out=tmp_path, progress=False)
    # A state saved by a course version before a config field existed: the field is named, not left out.
    meta_file = tmp_path / T.STATE_DIR / T.STATE_JSON
    meta = json.loads(meta_file.read_text())
    field = sorted(meta["model_config"])[0]
    del meta["model_config"][field]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(g.CheckpointError, match=rf"differs in {field}, which the course version that saved it "
                                                 r"did not have\)"):
        T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    shutil.rmtree(tmp_path / T.STATE_DIR)
    T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        T.train(small(13), quick(steps=2), text_data, out=tmp_path, resume=False, progress=False)
    # Settings that change no weight may differ.
    T.train(small(13), quick(steps=2, eval_every=1, checkpoint_every=1), text_data, out=tmp_path, progress=False)


def test_resume_refuses_other_data_and_accepts_a_state_saved_without_a_fingerprint(text_data, tmp_path, capsys):
    T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    other = T.TokenData(text_data.train[1:].clone(), text_data.val, text_data.vocab_size, text_data.kind)
    assert other.fingerprint() != text_data.fingerprint()
    other_val = T.TokenData(text_data.train, text_data.val[1:].clone(), text_data.vocab_size, text_data.kind)
    assert other_val.fingerprint() != text_data.fingerprint()  # evaluations on two validation sets, mixed
    with pytest.raises(g.CheckpointError, match="other token data than this corpus and tokenizer give now.*"
                                                 "start over with --fresh"):
        T.train(small(13), quick(steps=2), other, out=tmp_path, progress=False)
    # A state written before fingerprints existed still resumes, and says what cannot be checked.
    meta_file = tmp_path / T.STATE_DIR / T.STATE_JSON
    meta = json.loads(meta_file.read_text())
    assert meta["data"] == text_data.fingerprint()
    del meta["data"]
    meta_file.write_text(json.dumps(meta))
    capsys.readouterr()
    assert T.train(small(13), quick(steps=2), other, out=tmp_path, progress=False).resumed_from == 2
    assert capsys.readouterr().err.count("saved before training states recorded their data") == 1


def stop_after(step: int):
    """An on_step callback that presses Ctrl-C after ``step``."""
    def press_ctrl_c(result: T.TrainResult) -> None:
        if result.step == step:
            signal.raise_signal(signal.SIGINT)
    return press_ctrl_c


def test_a_run_resumed_on_another_thread_count_says_it_is_not_exact(text_data, tmp_path, capsys):
    """Resumed on 2 threads after 1, the weights were 7e-8 off an uninterrupted run's, and nothing said so."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        T.train(small(13), quick(steps=4), text_data, out=tmp_path, progress=False, on_step=stop_after(1))
        assert T.read_state_meta(tmp_path / T.STATE_DIR)["threads"] == 1
        capsys.readouterr()
        T.train(small(13), quick(steps=4), text_data, out=tmp_path, progress=False, on_step=stop_after(2))
        assert "thread" not in capsys.readouterr().err  # the same count: exact, nothing to say
        torch.set_num_threads(2)
        T.train(small(13), quick(steps=4), text_data, out=tmp_path, progress=False)
        assert "was trained on 1 thread(s) and resumes on 2: the sums run in another order" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_a_record_before_any_evaluation_is_strict_json(text_data, tmp_path):
    """training.json held "val_loss": NaN before the first evaluation, which JSON readers other than Python's refuse."""
    result = T.train(small(13), quick(steps=4), text_data, out=tmp_path, progress=False, on_step=stop_after(1))
    assert result.evals == [] and result.step == 1
    record = json.loads(json.dumps(T.training_record(result), allow_nan=False))
    assert record["val_loss"] is None and isinstance(record["final_train_loss"], float)
    with pytest.raises(ValueError, match="last is a number of steps, a whole number >= 1, got 0"):
        result.final_loss(0)  # history[-0:] is the whole history: it gave the mean of every step


def test_a_course_step_is_named_with_ascii_digits():
    with pytest.raises(ValueError, match="the course steps are course-step-01"):
        T.recipe("course-step-\u0661\u0663")  # Arabic-Indic 13: isdigit() says yes


def test_without_a_run_folder_ctrl_c_stops_the_whole_cell(text_data):
    """Nothing would be saved, so there is no 'stop after this step': Ctrl-C interrupts as usual."""
    def press_ctrl_c(result: T.TrainResult) -> None:
        if result.step == 2:
            signal.raise_signal(signal.SIGINT)

    # Python's own handler, as in a terminal: a shell's background job (make test &) starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            T.train(small(13), quick(steps=4), text_data, progress=False, on_step=press_ctrl_c)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_a_saved_run_is_on_the_disk_before_it_is_renamed_into_place(text_data, tmp_path, disk_log):
    T.train(small(13), quick(steps=2, checkpoint_every=1), text_data, out=tmp_path, progress=False)
    for folder in (T.STATE_DIR, T.MODEL_DIR):  # each replaced at least once: the first save, then the next
        assert sum(e[0] == "replace" and e[2] == str(tmp_path / folder) for e in disk_log.events) >= 2
        disk_log.assert_synced_before_renamed(tmp_path / folder)


def test_a_crash_between_the_renames_of_a_checkpoint_is_recovered(text_data, tmp_path):
    """The state is replaced by two renames; cut between them, the previous state is put back and resumed."""
    cfg = quick(steps=4)
    whole = T.train(small(13), cfg, text_data, progress=False)
    def power_cut(result: T.TrainResult) -> None:
        if result.step == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):  # the state of step 2 is saved
        T.train(small(13), cfg, text_data, out=tmp_path, progress=False, on_step=power_cut)
    os.replace(tmp_path / T.STATE_DIR, tmp_path / f".{T.STATE_DIR}.old-0123abcd")  # as the first rename leaves it
    resumed = T.train(small(13), cfg, text_data, out=tmp_path, progress=False)
    assert resumed.resumed_from == 2
    same_state(whole, resumed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([T.STATE_DIR, T.MODEL_DIR])


def test_biases_norms_and_sinks_do_not_decay():
    model = g.GPT(small(13))
    optimizer = T.make_optimizer(model, quick())
    names = {p: n for n, p in model.named_parameters()}
    decay, no_decay = ({names[p] for p in group["params"]} for group in optimizer.param_groups)
    assert optimizer.param_groups[0]["weight_decay"] > 0 == optimizer.param_groups[1]["weight_decay"]
    assert "blocks.0.mlp.experts.gate_up_proj_bias" in no_decay and "blocks.0.attn.sinks" in no_decay
    assert "blocks.0.mlp.experts.gate_up_proj" in decay and "embed.weight" in decay
    assert all(n.endswith(("bias", "sinks")) or "norm" in n for n in no_decay)
    assert decay | no_decay == set(names.values())
    # Nothing of those kinds decays: every norm weight, bias and sink is in the no-decay group.
    assert not [n for n in decay if "norm" in n or n.endswith(("bias", "sinks"))]


def test_validation_windows_cover_the_whole_split(text_data):
    windows = (len(text_data.val) - 1) // 16
    rows = torch.cat([x for x, _ in text_data.val_batches(2, 16, 4)])
    assert len(rows) == 8 < windows
    assert torch.equal(rows[0], text_data.val[:16])  # the first window and the last one
    assert torch.equal(rows[-1], text_data.val[(windows - 1) * 16: windows * 16])
    # And evenly between: window i starts at round(i * (windows - 1) / 7) (the first 7 and the last passed).
    for i, row in enumerate(rows):
        start = round(i * (windows - 1) / 7) * 16
        assert torch.equal(row, text_data.val[start: start + 16]), i


# ---- damaged checkpoints ---------------------------------------------------------------------

@pytest.fixture()
def saved_run(text_data, tmp_path) -> Path:
    T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    return tmp_path


def resume(run: Path, text_data) -> T.TrainResult:
    return T.train(small(13), quick(steps=2), text_data, out=run, progress=False)


def test_truncated_state_is_refused(saved_run, text_data):
    f = saved_run / T.STATE_DIR / T.STATE_TENSORS
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(g.CheckpointError, match="damaged or truncated.*delete"):
        resume(saved_run, text_data)


def test_bad_state_json_is_refused(saved_run, text_data):
    f = saved_run / T.STATE_DIR / T.STATE_JSON
    f.write_text(f.read_text()[:-40])
    with pytest.raises(g.CheckpointError, match="not valid JSON"):
        resume(saved_run, text_data)


def test_missing_tensor_is_refused_by_name(saved_run, text_data):
    from safetensors.torch import load_file, save_file

    state = saved_run / T.STATE_DIR
    tensors = load_file(str(state / T.STATE_TENSORS))
    del tensors["model.blocks.0.attn.sinks"]
    save_file(tensors, str(state / T.STATE_TENSORS))
    meta = json.loads((state / T.STATE_JSON).read_text())
    meta["sha256"] = T._sha256(state / T.STATE_TENSORS)  # a consistent but incomplete state
    meta["tensors"].remove("model.blocks.0.attn.sinks")
    (state / T.STATE_JSON).write_text(json.dumps(meta))
    with pytest.raises(g.CheckpointError, match="missing tensor 'model.blocks.0.attn.sinks'"):
        resume(saved_run, text_data)


@pytest.mark.parametrize("key, value", [("model_config", [1, 2]), ("train_config", []), ("sha256", 5), ("step", "1"),
                                        ("step", True), ("history", {})])
def test_a_state_json_edited_by_hand_is_refused_by_key(saved_run, text_data, key, value):
    """Each raised a TypeError, AttributeError or IndexError from deep inside the resumption."""
    f = saved_run / T.STATE_DIR / T.STATE_JSON
    meta = json.loads(f.read_text())
    meta[key] = value
    f.write_text(json.dumps(meta))
    with pytest.raises(g.CheckpointError, match=re.escape(f"has {key} {value!r}, not ") + ".*damaged"):
        resume(saved_run, text_data)


@pytest.mark.parametrize("name, tensor", [("optim.blocks.0.attn.sinks.exp_avg", torch.zeros(3)),
                                          ("rng.torch", torch.zeros(5)), ("rng.torch", torch.zeros(5, dtype=torch.uint8))])
def test_a_tensor_of_the_wrong_shape_or_kind_in_the_state_is_refused_by_name(saved_run, text_data, name, tensor):
    """An AdamW moment of the wrong shape loaded, then failed in the first step; a float RNG state, in torch."""
    from safetensors.torch import load_file, save_file

    state = saved_run / T.STATE_DIR
    tensors = load_file(str(state / T.STATE_TENSORS))
    assert name in tensors
    tensors[name] = tensor
    save_file(tensors, str(state / T.STATE_TENSORS))
    meta = json.loads((state / T.STATE_JSON).read_text())
    meta["sha256"] = T._sha256(state / T.STATE_TENSORS)
    (state / T.STATE_JSON).write_text(json.dumps(meta))
    with pytest.raises(g.CheckpointError, match=f"tensor {name!r} in .* is {tensor.dtype} \\(\\d+,\\)"):
        resume(saved_run, text_data)


def test_missing_state_file_is_refused(saved_run, text_data):
    (saved_run / T.STATE_DIR / T.STATE_TENSORS).unlink()
    with pytest.raises(g.CheckpointError, match="incomplete"):
        resume(saved_run, text_data)


def test_checkpoints_export_the_real_layout_with_mxfp4_experts(saved_run):
    from safetensors import safe_open

    model_dir = saved_run / T.MODEL_DIR
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "gpt_oss" and cfg["quantization_config"]["quant_method"] == "mxfp4"
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.experts.gate_up_proj_blocks").dtype == torch.uint8
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch.bfloat16
    assert json.loads((model_dir / "training.json").read_text())["steps"] == 2
    assert g.load_model(model_dir).config.n_experts == 8
    f = model_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(g.CheckpointError, match="not a readable safetensors file|cannot be read"):
        g.load_model(model_dir)


def test_cli_runs_and_refuses_unknown_recipes(tmp_path, capsys):
    assert T.main(["course-step-99"]) == 2
    assert "course-step-01" in capsys.readouterr().err
    code = T.main(["course-step-13", "--out", str(tmp_path), "--steps", "2", "--batch-size", "2", "--seq-len", "16",
                   "--warmup-steps", "1", "--no-progress"])
    assert code == 0 and T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2


def test_help_says_what_each_override_replaces_in_each_recipe():
    """Every setting flag names the recipes' values, so a learner knows what --steps 50 shortens."""
    import argparse

    ap = argparse.ArgumentParser()
    T.add_arguments(ap)
    helps = {a.dest: a.help for a in ap._actions}
    chat, step = T.recipe("tiny-gpt-oss-chat").train, T.recipe(f"course-step-{T.LAST_STEP:02d}").train
    for name in ("steps", "batch_size", "seq_len", "warmup_steps", "seed", "eval_every", "checkpoint_every", "lr",
                 "min_lr"):
        assert f"{getattr(chat, name):g} for tiny-gpt-oss-chat, {getattr(step, name):g} for course steps" in helps[name]
    assert helps["steps"].startswith("training steps (recipes: 2000 for tiny-gpt-oss-chat, 300 for course steps)")
    # The course steps share their settings, which is what lets the help give one value for all of them.
    assert {T.recipe(f"course-step-{n:02d}").train for n in range(1, T.LAST_STEP + 1)} == {step}


def test_a_full_disk_is_a_message_naming_the_folder_and_the_space(tmp_path, capsys, monkeypatch):
    """safetensors reports a full disk as its own SafetensorError, which went past the OSError the command
    handles as two tracebacks (the loop's last-chance save failed the same way a second time)."""
    import safetensors.torch
    from safetensors import SafetensorError

    writes = []
    real = safetensors.torch.save_file

    def full(tensors, filename, metadata=None):
        writes.append(filename)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    tiny = ["--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1", "--no-progress"]
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--steps", "2", *tiny]) == 2
    err = capsys.readouterr().err
    # The model is saved first (a saved state says its model is saved too): it is what the disk refused.
    assert re.search(f"train: \\[Errno 28\\] could not write {re.escape(str(tmp_path / 'run' / T.MODEL_DIR))} \\(the "
                     "disk is full\\): nothing there was changed. It needs [0-9.]+ MiB, and .* free on that disk: free "
                     "some space, then run again", err), err
    assert "Traceback" not in err and len(writes) == 1  # not tried again on the way out
    assert not (tmp_path / "run").exists()  # no temporary folder left behind, nor the empty --out the command made
    # write_checkpoint too (a notebook's export): the folder it was writing, and what the whole needs.
    model = g.GPT(g.preset("gpt2-tiny"))
    whole = sum(t.numel() * t.element_size() for _, t in g.checkpoint.hf_state_dict(model, False, torch.float32))
    with pytest.raises(OSError, match=f"could not write {re.escape(str(tmp_path / 'ck'))} .*It needs "
                                      f"{re.escape(g.memory.format_bytes(whole))}, and .* free some space"):
        g.write_checkpoint(model, tmp_path / "ck", dtype=torch.float32)
    # Sharded, the disk filling at the second shard: the whole size, measured before the write, not one shard's.
    calls = []

    def full_at_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_at_second)
    with pytest.raises(OSError, match=f"the disk is full.*It needs {re.escape(g.memory.format_bytes(whole))}, and "):
        g.write_checkpoint(model, tmp_path / "ck", dtype=torch.float32, max_shard_bytes=1)  # a shard a tensor
    assert list(tmp_path.iterdir()) == []
    # A run's model export names the run's folder, not the temporary one it was written in.
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = T.train(small(13), quick(steps=1, warmup_steps=0), T.prepare_data("text", 50257), progress=False)
    with pytest.raises(OSError, match=f"could not write {re.escape(str(tmp_path / 'exported'))} \\(the disk"):
        T.export(result, tmp_path / "exported")
    assert list(tmp_path.iterdir()) == []
    # Measured not to fit before anything is written: said so, under the export's own name.
    monkeypatch.setattr(g.checkpoint, "disk_free", lambda path: 0)
    with pytest.raises(OSError, match=f"not enough room on the disk to write {re.escape(str(tmp_path / 'exported'))}"
                                      ": nothing was written"):
        T.export(result, tmp_path / "exported")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(g.checkpoint, "disk_free", g.memory.disk_free)
    # A full quota (a shared JupyterHub's limit, Errno 122) is said as such, for the state as for a checkpoint.
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(
        SafetensorError("Error while serializing: I/O error: Disk quota exceeded (os error 122)")))
    with pytest.raises(OSError, match=f"could not write {re.escape(str(tmp_path / 'state'))} \\(this account's disk "
                                      "quota is used up\\): nothing there was changed"):
        T.save_state(tmp_path / "state", result)
    with pytest.raises(OSError, match=f"could not write {re.escape(str(tmp_path / 'exported'))} \\(this account's "
                                      "disk quota is used up\\)"):
        T.export(result, tmp_path / "exported")  # the run's model, written first at each checkpoint
    assert list(tmp_path.iterdir()) == []
    # Any other error of safetensors' is left as it is.
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(
        SafetensorError("invalid tensor")))
    with pytest.raises(SafetensorError, match="invalid tensor"):
        g.write_checkpoint(g.GPT(g.preset("gpt2-tiny")), tmp_path / "ck")


def test_an_export_clears_what_killed_exports_left_beside_it(tmp_path, capsys):
    """A killed --export left its hidden temporary folder (6 MB for the tiny model) beside the target, unreported."""
    killed = tmp_path / ".exported.tmp-k1ll3d00"
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / ".exported.notours").mkdir()  # not the course's temporary name: not a killed export's
    (tmp_path / ".exported.k1ll3d00").mkdir()  # eight characters, as tempfile's are: a person's, and kept
    tiny = ["--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1", "--no-progress"]
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--steps", "2", "--export",
                   str(tmp_path / "exported"), *tiny]) == 0
    assert f"removed {killed}, what a killed export left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exported.k1ll3d00", ".exported.notours", "exported", "run"]


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    tiny = ["--batch-size", "2", "--seq-len", "16", "--no-progress"]
    # Only --steps: the recipe's warmup shrinks with the run instead of being refused.
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--steps", "2", *tiny]) == 0
    assert T.read_state_meta(tmp_path / "run" / T.STATE_DIR)["train_config"]["warmup_steps"] == 0
    capsys.readouterr()
    # Resuming with other settings.
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--steps", "2", "--lr", "0.1", *tiny]) == 2
    err = capsys.readouterr().err
    # Refused before anything is announced: no "resuming the run" first, no corpus read.
    assert err.startswith("train: ") and "(now lr=0.1)" in err and "resuming the run" not in err and "Traceback" not in err
    # Bad settings.
    assert T.main(["course-step-13", "--out", str(tmp_path / "b"), "--steps", "2", "--warmup-steps", "5", *tiny]) == 2
    assert "train: warmup_steps must be in 0..steps-1 (1), got 5" in capsys.readouterr().err
    # A course step between GPT-2 and gpt-oss cannot be exported: said before any training.
    assert T.main(["course-step-05", "--out", str(tmp_path / "c"), "--export", str(tmp_path / "e"), *tiny]) == 2
    assert "no HF layout to export" in capsys.readouterr().err and not (tmp_path / "c").exists()
    for bad, message in ((["--lr", "0"], "lr must be a positive number, got 0.0"),
                         (["--seq-len", "100000"], "--seq-len 100000 is longer than the model's context"),
                         (["--threads", "0"], "--threads must be in 1 .. "),
                         (["--threads", "100000"], "--threads must be in 1 .. "),  # thousands crashed torch
                         # torch's seeds: a bigger one failed after the corpus was read, leaving an empty --out
                         (["--seed", str(2**63)], f"seed must be in 0 .. 2**63 - 1, got {2**63}"),
                         (["--seed", "-1"], "seed must be in 0 .. 2**63 - 1, got -1")):
        assert T.main(["course-step-13", "--out", str(tmp_path / "d"), "--steps", "2", "--no-progress", *bad]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "d").exists()
    for name in ("course-step-1", "course-step-001", "course-step-+3", "course-step-00"):
        assert T.main([name, "--out", str(tmp_path / "e")]) == 2
        assert "course-step-01 .. course-step-13 (two digits)" in capsys.readouterr().err


def test_a_run_refused_or_stopped_before_its_first_checkpoint_leaves_no_empty_out(tmp_path, capsys, monkeypatch):
    # The folders the command made go again; one that held something before, or got a checkpoint, stays.
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]

    def no_corpus(*a, **k):
        raise FileNotFoundError(2, "No such file or directory", "data/corpus/shakespeare.txt")
    monkeypatch.setattr(T, "prepare_data", no_corpus)
    out = tmp_path / "new" / "run"
    assert T.main(["course-step-13", "--out", str(out), *tiny]) == 2
    assert "shakespeare.txt" in capsys.readouterr().err and not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert T.main(["course-step-13", "--out", str(tmp_path / "mine"), *tiny]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    monkeypatch.undo()

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(T, "train", ctrl_c)
    assert T.main(["course-step-13", "--out", str(out), *tiny]) == 130  # Ctrl-C before the first step
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert T.main(["course-step-13", "--out", str(out), *tiny]) == 0  # a run that wrote its checkpoints keeps them
    assert (out / T.STATE_DIR).is_dir()


def test_cli_reports_a_diverged_run_without_a_traceback(tmp_path, capsys):
    code = T.main(["course-step-13", "--out", str(tmp_path / "run"), "--steps", "3", "--lr", "1e30", "--batch-size", "2",
                   "--seq-len", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the run diverged" in err and "Traceback" not in err


def test_a_fresh_run_interrupted_resumes_without_fresh_and_records_no_fresh(tmp_path, capsys, monkeypatch):
    tiny = ["--steps", "4", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    real_train = T.train
    monkeypatch.setattr(T, "train", train_doing_after_step(2, lambda: signal.raise_signal(signal.SIGINT)))
    run = ["course-step-13", "--out", str(tmp_path / "run"), "--fresh", "--export", str(tmp_path / "exp"), *tiny]
    assert T.main(run) == 130
    assert "interrupted after step 2: run the same command without --fresh again to resume" in capsys.readouterr().err
    monkeypatch.setattr(T, "train", real_train)
    assert T.main([a for a in run if a != "--fresh"]) == 0
    assert "resuming the run" in capsys.readouterr().err
    record = json.loads((tmp_path / "exp" / "training.json").read_text())
    assert "--fresh" not in record["command"] and "--export" in record["command"]


@pytest.mark.parametrize("fresh", ["--f", "--fre", "--fres"])
def test_a_shortened_fresh_is_left_out_of_the_recorded_command_too(tmp_path, fresh):
    """argparse takes --fre for --fresh: kept in TRAINING.md's command, running that again started the run over."""
    run = ["course-step-13", "--out", str(tmp_path / "run"), fresh, "--export", str(tmp_path / "exp"),
           "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--eval-every", "1", "--no-progress"]
    assert T.main(run) == 0
    record = json.loads((tmp_path / "exp" / "training.json").read_text())
    assert f" {fresh} " not in record["command"] and "--steps 2" in record["command"], record["command"]


def test_an_empty_out_or_export_is_refused_and_a_tilde_after_equals_is_home(tmp_path, capsys, monkeypatch):
    """--out "$UNSET" --fresh wiped the default run; --out=~/x (no expansion by the shell after =) made a folder ~."""
    monkeypatch.setattr(T, "prepare_data", lambda *a, **k: pytest.fail("the corpus was read: the refusal came late"))
    tiny = ["--steps", "1", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    for flag, says in (("--out", "runs/<recipe>"), ("--export", "no export")):
        assert T.main(["course-step-13", flag, "", "--fresh", *tiny]) == 2
        assert f"{flag} is empty: give it a folder (leave {flag} out for {says})" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert T.main(["course-step-13", "--out=~/run", "--export=~/exp", *tiny]) == 0
    assert (tmp_path / "home" / "run" / T.STATE_DIR).is_dir() and (tmp_path / "home" / "exp" / "config.json").is_file()
    assert not (tmp_path / "~").exists()


def test_an_export_to_the_current_folder_is_refused_before_the_training(tmp_path, capsys, monkeypatch):
    """`--export .` in an empty folder trained to the end, then failed to export: "PosixPath('.') has an empty
    name"; the run folder may be the current one (its model/ and state/ are replaced, not the folder)."""
    monkeypatch.setattr(T, "prepare_data", lambda *a, **k: pytest.fail("the corpus was read: the refusal came late"))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    tiny = ["--steps", "1", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    for export in (".", "..", "sub/.."):
        assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--export", export, *tiny]) == 2
        assert "is the folder you are in (or holds it)" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["here"] and os.listdir(tmp_path / "here") == []
    with pytest.raises(ValueError, match="export to .* is the folder you are in .*'my-export'"):
        T.export(SimpleNamespace(), ".")  # the Python function refuses it before it looks at the result


def test_a_lower_lr_alone_lowers_the_last_steps_rate_with_it(tmp_path, monkeypatch):
    """--lr 1e-4 was refused: "min_lr must be in 0..lr (0.0001), got 0.0003", a setting the learner never gave."""
    settings = []
    monkeypatch.setattr(T, "_run_in", lambda args, rec, tc, out, argv: settings.append(tc) or 0)
    rec = T.recipe("course-step-13").train
    run = ["course-step-13", "--out", str(tmp_path / "r"), "--lr", "1e-4", "--no-progress"]
    assert T.main(run) == 0
    assert settings[-1].lr == 1e-4 and settings[-1].min_lr == pytest.approx(rec.min_lr * 1e-4 / rec.lr)
    assert T.main([*run, "--min-lr", "5e-5"]) == 0
    assert settings[-1].min_lr == 5e-5  # given: as given
    assert T.main(["course-step-13", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert (settings[-1].lr, settings[-1].min_lr) == (rec.lr, rec.min_lr)  # neither given: the recipe's


def test_out_and_export_that_overlap_or_an_out_that_is_a_file_are_refused_before_training(tmp_path, capsys):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    for out, export in [("run", "run"), ("run", "run/exp"), ("both/run", "both")]:
        assert T.main(["course-step-13", "--out", str(tmp_path / out), "--export", str(tmp_path / export), *tiny]) == 2
        assert "overlap" in capsys.readouterr().err
    (tmp_path / "afile").write_text("not a folder")
    assert T.main(["course-step-13", "--out", str(tmp_path / "afile"), *tiny]) == 2
    assert "is a file: give a folder for the run's checkpoints" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing was trained or written


def test_an_out_or_export_folder_that_cannot_be_made_is_said_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(T, "prepare_data", lambda *a, **k: pytest.fail("the corpus was read: the refusal came late"))
    (tmp_path / "afile").write_text("not a folder")
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    assert T.main(["course-step-13", "--out", str(tmp_path / "afile" / "run"), *tiny]) == 2
    assert f"--out: cannot make the folder {tmp_path / 'afile' / 'run'} (Not a directory)" in capsys.readouterr().err
    assert T.main(["tiny-gpt-oss-chat", "--out", str(tmp_path / "runs" / "run"), "--export",
                   str(tmp_path / "afile" / "x" / "exp"), *tiny]) == 2
    assert f"--export: cannot make the folder {tmp_path / 'afile' / 'x'} (Not a directory)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the --out it made for the run is gone again
    # --fresh deletes a saved run only once the folders are known to be writable.
    (tmp_path / "old" / "state").mkdir(parents=True)
    (tmp_path / "old" / "state" / "saved").write_text("a run's state")
    assert T.main(["tiny-gpt-oss-chat", "--out", str(tmp_path / "old"), "--fresh", "--export",
                   str(tmp_path / "afile" / "exp"), *tiny]) == 2
    assert (tmp_path / "old" / "state" / "saved").read_text() == "a run's state"


def test_a_shortened_run_is_not_exported_over_the_course_checkpoint(tmp_path, capsys, monkeypatch):
    """TRAINING.md's command with --steps 1 tacked on would have replaced the model notebooks 11 and 12 chat with."""
    shipped = {p.name: p.read_bytes() for p in T.COURSE_CHECKPOINT.iterdir() if p.is_file()}
    monkeypatch.setattr(T, "prepare_data", lambda *a, **k: pytest.fail("the corpus was read: the refusal came late"))
    monkeypatch.chdir(T.REPO)  # the path as TRAINING.md writes it, relative to the course's folder
    for export in ("data/tiny-gpt-oss", str(T.COURSE_CHECKPOINT), "data/../data/tiny-gpt-oss"):
        assert T.main(["tiny-gpt-oss-chat", "--out", str(tmp_path / "run"), "--export", export, "--steps", "1"]) == 2
        err = capsys.readouterr().err
        assert "is the course's own checkpoint" in err and "--export runs/tiny-gpt-oss-chat-export" in err, err
    assert T.main(["tiny-gpt-oss-chat", "--out", str(tmp_path / "run"), "--export", "data/tiny-gpt-oss",
                   "--lr", "0.5"]) == 2  # same length, other settings: another model too
    assert "is the course's own checkpoint" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in T.COURSE_CHECKPOINT.iterdir() if p.is_file()} == shipped
    assert not (tmp_path / "run").exists()
    # The full recipe, as training.json records it, is how the checkpoint is made again: not refused.
    rec = T.recipe("tiny-gpt-oss-chat")
    T.check_not_the_course_checkpoint(Path("data/tiny-gpt-oss"), rec, rec.train)


def test_cli_fresh_and_export_delete_only_what_a_run_wrote(tmp_path, capsys):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), *tiny]) == 0
    # A save cut short between its renames leaves the state set aside; --fresh must not resume from it.
    os.replace(tmp_path / "run" / T.STATE_DIR, tmp_path / "run" / f".{T.STATE_DIR}.old-0123abcd")
    capsys.readouterr()
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--fresh", *tiny]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([T.MODEL_DIR, T.STATE_DIR, "notes.txt"])
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    # Inside model/ or state/ too: a learner's file there is named, and --fresh deletes nothing.
    for name in (T.MODEL_DIR, T.STATE_DIR):
        (tmp_path / "run" / name / "my_notes.md").write_text("mine")
        capsys.readouterr()
        assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--fresh", *tiny]) == 2
        assert f"{name} holds more than " in capsys.readouterr().err
        assert (tmp_path / "run" / name / "my_notes.md").read_text() == "mine"
        assert (tmp_path / "run" / T.STATE_DIR / T.STATE_JSON).exists()
        (tmp_path / "run" / name / "my_notes.md").unlink()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "o200k_base.tiktoken").write_text("not a checkpoint")
    capsys.readouterr()
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "precious"), *tiny]) == 2
    assert "holds more than a checkpoint (o200k_base.tiktoken)" in capsys.readouterr().err
    assert (tmp_path / "precious" / "o200k_base.tiktoken").exists()
    # An earlier export is replaced (with what a file browser or Jupyter leaves beside it).
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "exp"), *tiny]) == 0
    (tmp_path / "exp" / ".ipynb_checkpoints").mkdir()
    assert T.main(["course-step-13", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "exp"), *tiny]) == 0
    assert (tmp_path / "exp" / "config.json").exists()


# ---- the shipped checkpoint -------------------------------------------------------------------

def test_shipped_checkpoint_is_small_real_and_recorded():
    record = json.loads((SHIPPED / "training.json").read_text())
    size = sum(f.stat().st_size for f in SHIPPED.glob("*.safetensors"))
    assert size < 15 * 2**20
    model = g.load_model(SHIPPED)
    assert model.config.vocab_size == 201088 and model.config.tie_embeddings
    notes = (SHIPPED / "TRAINING.md").read_text()
    assert record["command"] in notes and f"{record['exported_val_loss']:.3f}" in notes
    assert record["command"].startswith("python -m gptoss_edu.train tiny-gpt-oss-chat")


def test_the_chat_recipe_counts_the_tokens_its_data_uses():
    """The note in the recipe and the shipped TRAINING.md give the number of tokens of today's chats."""
    n = len(T.prepare_data("harmony", 201088).used_ids())
    for notes in (T.CHAT_ABOUT, (SHIPPED / "TRAINING.md").read_text()):
        assert f"({n:,} of 201,088)" in notes
        assert f"{201088 / (n + 1):.1f} times narrower" in notes  # the used tokens and the one shared column


def test_shipped_checkpoint_answers_in_the_final_channel_and_stops():
    from gptoss_edu import harmony
    from gptoss_edu.generate import generate
    from gptoss_edu.corpus import load_corpus

    model = g.load_model(SHIPPED)
    prompt = harmony.render_conversation([harmony.system(reasoning="low"), harmony.user("Who is there?")])
    out = generate(model, prompt, max_new_tokens=120, temperature=0.0, stop_tokens=harmony.stop_tokens())
    assert out.stop_reason == "stop_token"
    messages = harmony.parse_completion(out.tokens)
    assert messages[-1].channel == "final"
    words = re.findall(r"[a-z']+", messages[-1].text.lower())
    assert len(words) >= 3
    vocabulary = set(re.findall(r"[a-z']+", load_corpus().text("all").lower()))
    known = sum(w in vocabulary for w in words)
    assert known >= 0.8 * len(words), messages[-1].text  # readable: the corpus's own words


def test_shipped_checkpoint_matches_transformers_with_tied_embeddings():
    """transformers reads the tied, MXFP4 checkpoint to the same logits as the course's loader."""
    from random_weights import transformers_gptoss

    ours = g.load_model(SHIPPED)
    theirs = transformers_gptoss(SHIPPED)
    assert theirs.lm_head.weight.data_ptr() == theirs.model.embed_tokens.weight.data_ptr()  # tied there too
    ids = torch.tensor([[200006, 1428, 200008, 14999, 382, 1354, 30, 200007, 200006, 173781] * 4])
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # float32 both; measured 8e-6 on logits up to 23


# ---- the load-balancing loss

@pytest.mark.parametrize("tokens,n_experts,k", [(64, 8, 2), (200, 32, 4), (37, 4, 1)])
def test_aux_loss_value_and_gradient_match_transformers(tokens, n_experts, k):
    # transformers' load_balancing_loss_func shares each token's top_k assignments out per token, not per
    # assignment, so its value is top_k times ours (ours is 1 when the routing is even). The gradient must
    # reach the router's logits: a loss built on a detached softmax would keep the value and train nothing.
    from transformers.models.gpt_oss.modeling_gpt_oss import load_balancing_loss_func

    gen = torch.Generator().manual_seed(tokens)
    base = torch.randn(tokens, n_experts, generator=gen) * 2
    ours_in, ref_in = base.clone().requires_grad_(), base.clone().requires_grad_()
    indices = ours_in.detach().topk(k, dim=-1).indices
    ours = load_balancing_loss(ours_in, indices, n_experts)
    ref = load_balancing_loss_func((ref_in,), n_experts, k) / k
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    ours.backward()
    ref.backward()
    assert ours_in.grad is not None and ours_in.grad.abs().max() > 1e-4  # the loss reaches the router
    torch.testing.assert_close(ours_in.grad, ref_in.grad, atol=1e-7, rtol=1e-5)


def test_aux_loss_refuses_logits_not_flattened_and_experts_out_of_range():
    """[B, T, E] logits gave 5.71 where the same data flattened gives 1.43: a wrong number, no error."""
    logits = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    indices = logits.topk(2, dim=-1).indices
    with pytest.raises(ValueError, match=r"logits must be \[N, E=8\] and indices \[N, k\], got \(2, 5, 8\) .*reshape"):
        load_balancing_loss(logits, indices, 8)
    flat = load_balancing_loss(logits.reshape(-1, 8), indices.reshape(-1, 2), 8)
    assert 1 <= flat.item() < 8
    for wrong in (8, -1):
        bad = indices.reshape(-1, 2).clone()
        bad[0, 0] = wrong
        with pytest.raises(ValueError, match=r"indices must be experts 0..7"):
            load_balancing_loss(logits.reshape(-1, 8), bad, 8)


def test_aux_loss_gradient_reaches_the_router_weights_through_the_model():
    cfg = g.preset("gpt-oss-tiny").replace(vocab_size=100, context_length=64)
    model = g.GPT(cfg).train()
    model(torch.randint(0, 100, (2, 16)))
    T.aux_loss(model).backward()
    for block in model.blocks:
        grad = block.mlp.router.weight.grad
        assert grad is not None and grad.abs().max() > 0, "the balancing loss must train the router"


def test_resume_refuses_each_setting_that_changes_the_weights(text_data, tmp_path):
    # Found by mutation testing: only lr was tried, so any such setting could slip into RESUMABLE_CHANGES.
    T.train(small(13), quick(steps=2), text_data, out=tmp_path, progress=False)
    # steps too: the cosine's length, so a longer resumed run would take other learning rates from then on.
    for change in (dict(seed=1), dict(batch_size=3), dict(seq_len=8), dict(warmup_steps=0), dict(min_lr=1e-4),
                   dict(weight_decay=0.0), dict(grad_clip=0.5), dict(aux_loss_coef=0.0), dict(steps=3),
                   dict(beta1=0.8), dict(beta2=0.9)):
        (key, value), = change.items()
        with pytest.raises(g.CheckpointError, match=rf"{key}=.*\(now {key}={value!r}\)"):
            T.train(small(13), quick(**({"steps": 2} | change)), text_data, out=tmp_path, progress=False)


def test_the_last_step_is_evaluated_whatever_eval_every(text_data):
    # result.val_loss, the training record and the progress bar read the last evaluation: the run's end, not step 4.
    result = T.train(small(1), quick(steps=5, eval_every=2), text_data, progress=False)
    assert [e["step"] for e in result.evals] == [2, 4, 5]


def test_evaluate_weighs_every_validation_window_alike_and_keeps_the_models_mode():
    # Five windows in batches of 2, 2 and 1: a mean of the batches' means would count the last window double.
    gen = torch.Generator().manual_seed(0)
    data = T.TokenData(torch.randint(0, 300, (400,), generator=gen), torch.randint(0, 300, (5 * 16 + 1,), generator=gen),
                       50257, "text")
    cfg = T.TrainConfig(steps=2, batch_size=2, seq_len=16, warmup_steps=0, eval_batches=10)
    torch.manual_seed(0)
    model = g.GPT(small(1)).eval()
    per_window = [T.lm_loss(model, x[i:i + 1], y[i:i + 1], None).item()
                  for x, y in data.val_batches(1, 16, 10) for i in range(len(x))]
    assert len(per_window) == 5
    assert T.evaluate(model, data, cfg) == pytest.approx(sum(per_window) / 5, rel=1e-5)
    for mode in (True, False):  # generate refuses a model left in training mode (its dropout)
        T.evaluate(model.train(mode), data, cfg)
        assert model.training is mode


def test_mean_loss_scores_any_batches_restores_the_mode_on_error_and_refuses_none():
    # Notebook 13 scores the windows a run trained on with it; evaluate is mean_loss over the val windows.
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = g.GPT(small(1))
    x = torch.randint(0, 300, (3, 12), generator=gen)
    y = torch.randint(0, 300, (3, 12), generator=gen)
    model.eval()
    one = [T.lm_loss(model, x[i:i + 1], y[i:i + 1], None).item() for i in range(3)]
    model.train()
    batches = [(x[:2], y[:2]), (x[2:], y[2:])]  # 2 windows, then 1: weighted by tokens, not by batches
    assert T.mean_loss(model, batches) == pytest.approx(sum(one) / 3, rel=1e-5)
    assert model.training  # dropout off while scoring, back on after
    vocab = T.CorpusVocab(torch.unique(torch.cat([x.flatten(), y.flatten()])), 50257)
    model.eval()
    expected = T.lm_loss(model, x, y, vocab).item()
    assert T.mean_loss(model, [(x, y)], vocab) == pytest.approx(expected, rel=1e-6)

    def broken():
        yield x, y
        raise RuntimeError("a batch that cannot be read")
    model.train()
    with pytest.raises(RuntimeError, match="cannot be read"):
        T.mean_loss(model, broken())
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        T.mean_loss(model, [])


def test_every_window_of_the_train_split_can_be_drawn():
    # Two windows (starting at 0 and 1): an off-by-one in the draw would never give the last one.
    gen = torch.Generator().manual_seed(0)
    data = T.TokenData(torch.randint(0, 300, (16 + 2,), generator=gen), torch.randint(0, 300, (40,), generator=gen),
                       50257, "text")
    starts = set()
    for step in range(50):
        x, _ = data.batch(step, 4, 16, seed=0)
        starts |= {s for row in x for s in (0, 1) if torch.equal(row, data.train[s:s + 16])}
    assert starts == {0, 1}


# ---- what killed saves and interrupted exports leave, and what the user is told -----------------------------

def test_a_run_removes_what_saves_killed_mid_way_left_in_its_folder(tmp_path, capsys):
    """kill -9 or a closed terminal during a save leaves its temporary folder: the next run removes it."""
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    run = tmp_path / "run"
    assert T.main(["course-step-13", "--out", str(run), *tiny]) == 0
    killed = [run / f".{T.STATE_DIR}.tmp-hrlqefjb", run / f".{T.STATE_DIR}.tmp-w8sssroe",
              run / f".{T.MODEL_DIR}.tmp-a1b2c3_d", run / f".{T.STATE_DIR}.old-3ff9ab5e"]
    for folder in killed:
        shutil.copytree(run / T.STATE_DIR, folder)
    mine = [run / f".{T.STATE_DIR}.notes", run / f".{T.STATE_DIR}.keep-this-one", run / "notes.txt",
            run / f".{T.STATE_DIR}.original"]  # eight letters, as tempfile's names were: a person's backup
    for f in mine:
        f.write_text("mine")
    capsys.readouterr()
    assert T.main(["course-step-13", "--out", str(run), *tiny]) == 0
    assert f"the run in {run} has finished its 2 steps" in capsys.readouterr().err
    assert not any(f.exists() for f in killed)
    assert all(f.read_text() == "mine" for f in mine)
    assert T.read_state_meta(run / T.STATE_DIR)["step"] == 2


def test_ctrl_c_during_the_export_says_the_export_is_untouched_and_how_to_finish(tmp_path, capsys, monkeypatch):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
    run = ["course-step-13", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "exp"), *tiny]
    assert T.main(run) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "exp").iterdir()}
    real_export = T.export

    def ctrl_c(result, path, *args, **kwargs):  # the run's own out/model is exported too: only --export is cut
        if Path(path) == tmp_path / "exp":
            raise KeyboardInterrupt
        return real_export(result, path, *args, **kwargs)

    monkeypatch.setattr(T, "export", ctrl_c)
    capsys.readouterr()
    assert T.main(run + ["--fresh"]) == 130
    err = capsys.readouterr().err
    assert "interrupted while exporting" in err and "is as it was before" in err
    assert "the same command without --fresh exports it without training again" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "exp").iterdir()} == before
    monkeypatch.setattr(T, "export", real_export)
    assert T.main(run) == 0
    assert f"has finished its 2 steps; exporting it to {tmp_path / 'exp'}" in capsys.readouterr().err


def test_a_reader_that_stops_early_ends_train_quietly(tmp_path):
    """`python -m gptoss_edu train ... | head -1`: no 'train: [Errno 32] Broken pipe', the usual status 141."""
    import subprocess
    import sys

    code = ("import sys\nfrom gptoss_edu import train as T\n"
            "def gone(*a, **k):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "T._run = gone\nfrom gptoss_edu.__main__ import main\nsys.exit(main(['train', 'course-step-13']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 141 and "Broken pipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("step,label", [(1, "(bf16)"), (13, "(bf16, MXFP4 experts)")])
def test_training_md_says_mxfp4_only_for_a_model_with_experts(text_data, step, label):
    """A GPT-2 export has no experts to store in MXFP4: TRAINING.md must not say it has."""
    result = T.train(small(step), quick(steps=2), text_data, progress=False)
    md = T.training_markdown(result, "about", "python -m gptoss_edu.train x", exported_val_loss=9.0)
    assert f"| validation loss of this checkpoint {label} | 9.000 nats/token |" in md, md


def test_progress_into_a_log_file_is_lines_not_a_redrawn_bar(text_data, monkeypatch):
    """`train ... 2> log`: tqdm redrew its bar with \r a few times a second, a log of one endless line."""
    log = io.StringIO()  # not a terminal, as a redirected stderr
    monkeypatch.setattr(sys, "stderr", log)
    result = T.train(small(1), quick(steps=25, eval_every=10), text_data, progress=True)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and result.step == 25
    # every 3 steps (a tenth of 25, rounded up), and the last
    assert [line.split(",")[0] for line in lines] == [f"training: step {n}/25 ({100 * n // 25}%)"
                                                      for n in (3, 6, 9, 12, 15, 18, 21, 24, 25)]
    assert "loss" in lines[-1] and "tok/s" in lines[-1] and "val" in lines[-1]


def test_a_terminal_and_jupyter_keep_the_bar(monkeypatch):
    from tqdm import tqdm

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    OutStream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})  # Jupyter's stderr
    for stderr, kind in ((Terminal(), tqdm), (OutStream(), tqdm), (io.StringIO(), T.LineProgress)):
        monkeypatch.setattr(sys, "stderr", stderr)
        bar = T._progress_bar(10, 0, True)
        assert isinstance(bar, kind), type(stderr)
        bar.close()
    assert T._progress_bar(10, 0, False) is None


def test_a_harmony_vocabulary_model_exports_gpt_oss_generation_config(text_data, tmp_path):
    """A model over the harmony vocabulary gets the Hub's generation_config.json (SPEC.md section 1)."""
    cfg = small(13).replace(vocab_size=HARMONY_VOCAB_SIZE)
    result = T.train(cfg, quick(steps=1, warmup_steps=0), T.prepare_data("text", HARMONY_VOCAB_SIZE), progress=False)
    gen = json.loads((T.export(result, tmp_path / "model") / "generation_config.json").read_text())
    assert gen == {"bos_token_id": 199998, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999,
                   "do_sample": True, "temperature": 1.0, "top_p": 1.0}
    assert not (T.export(T.train(small(13), quick(steps=1, warmup_steps=0), text_data, progress=False), tmp_path / "small")
                / "generation_config.json").exists()  # a vocabulary of 50,257 has no harmony ids


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_goes_on(tmp_path, capsys, text_data):
    """Two runs on one --out (two terminals, a group folder) resumed each other's half-saved state and one died
    on a file the other had removed. The lock is the OS's: a killed run lets go of it."""
    import subprocess
    import textwrap

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from gptoss_edu.files import hold
        with hold(Path({str(out)!r}), "training run"):
            print("holding", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        tiny = ["--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1", "--no-progress"]
        assert T.main(["course-step-13", "--out", str(out), "--steps", "2", "--fresh", *tiny]) == 2
        assert f"train: [Errno 16] {out.resolve()} is in use by another training run, still going: wait for it to end, " \
               "or choose another folder" in capsys.readouterr().err
        with pytest.raises(FileExistsError, match="in use by another training run"):
            T.train(small(13), quick(steps=2), text_data, out=out, progress=False)
        assert list(out.iterdir()) == []  # nothing written, nothing deleted
    finally:
        holder.kill()
        holder.wait()
    assert T.main(["course-step-13", "--out", str(out), "--steps", "2", *tiny]) == 0  # the lock died with its process
    assert sorted(p.name for p in out.iterdir()) == sorted([T.STATE_DIR, T.MODEL_DIR])  # and left no file behind


@pytest.mark.parametrize("flag", ["--out", "--export"])
def test_a_run_folder_whose_name_is_not_utf8_is_refused_before_training(tmp_path, capsys, monkeypatch, flag):
    import os

    from gptoss_edu.__main__ import main

    monkeypatch.chdir(tmp_path)
    folder = os.fsdecode(b"runs/caf\xe9")  # safetensors would write its checkpoints there, and not open them again
    argv = ["train", "tiny-gpt-oss-chat", "--steps", "2", flag, folder]
    if flag == "--export":
        argv += ["--out", "runs/ok"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"train: {flag} runs/caf\\xe9: safetensors can only open paths that are UTF-8 text" in err, err
    assert not (tmp_path / "runs").exists()


def test_the_recorded_command_ends_as_the_course_s_command_line_does(tmp_path):
    """`python -m gptoss_edu.train ...` (what TRAINING.md records) had its own parser: a reader gone (`| head`)
    gave a BrokenPipeError traceback and status 1, and the export, written after the summary line, never came."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already stopped
    argv = ["course-step-13", "--out", "run", "--steps", "2", "--export", "exported", "--batch-size", "2",
            "--seq-len", "16", "--warmup-steps", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        done = subprocess.run([sys.executable, "-m", "gptoss_edu.train", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=600, cwd=tmp_path, env=env)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
    assert g.load_model(tmp_path / "exported") is not None
    training = (tmp_path / "exported" / "TRAINING.md").read_text()
    assert "From the folder it was started in, on a CPU:" in training  # not "the repository root": it was not
    assert "python -m gptoss_edu.train course-step-13 --out run --steps 2 --export exported" in training


def test_a_course_step_between_gpt2_and_gpt_oss_trains_into_a_folder_and_resumes(tmp_path, capsys):
    """Steps 02..12 have no Hugging Face layout: a run keeps its state/ only, and resumes from it."""
    tiny = ["--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1", "--no-progress", "--eval-every", "1"]
    assert T.main(["course-step-05", "--out", str(tmp_path), "--steps", "3", "--checkpoint-every", "2", *tiny]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [T.STATE_DIR]  # no model/: nothing to export it as
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 3
    capsys.readouterr()
    assert T.main(["course-step-05", "--out", str(tmp_path), "--steps", "3", "--checkpoint-every", "2", *tiny]) == 0
    err = capsys.readouterr().err
    assert f"the run in {tmp_path} has finished its 3 steps (--fresh starts it over)" in err
    assert "resuming" not in err
    assert T.main(["course-step-05", "--out", str(tmp_path), "--steps", "4", "--checkpoint-every", "2", *tiny]) == 2
    assert "steps=3 (now steps=4)" in capsys.readouterr().err
    # Other token data (a course update changed the corpus): refused before the run is announced.
    meta_file = tmp_path / T.STATE_DIR / T.STATE_JSON
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "data": "0" * 16}))
    assert T.main(["course-step-05", "--out", str(tmp_path), "--steps", "3", "--checkpoint-every", "2", *tiny]) == 2
    err = capsys.readouterr().err
    assert "other token data" in err and "--fresh" in err and "TokenData(" not in err
    assert "resuming the run" not in err and "has finished" not in err


def test_notebook_13_states_the_command_lines_own_recipe():
    """Notebook 13 said the command line "does the same" as its cells, whose settings differ from the recipe's."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "13_train_tiny.ipynb", as_version=4)
    (text,) = [c.source for c in nb.cells if "train course-step-13" in c.source and c.cell_type == "markdown"]
    tc = T.recipe("course-step-13").train
    said = " ".join(text.split())
    def e(x: float) -> str:  # 3e-3, as the notebook writes it
        return f"{x:.0e}".replace("e-0", "e-")

    assert (f"({tc.steps} steps, learning rate {e(tc.lr)} down to {e(tc.min_lr)} after {tc.warmup_steps} steps of "
            "warmup)" in said)


def test_the_chat_recipes_note_says_what_its_losses_measure():
    """The shipped model's note left out that its chats are read about 8 times and that its validation loss
    bottoms out before the last step: both checked here against its recipe, data and training.json."""
    tc = T.recipe("tiny-gpt-oss-chat").train
    data = T.prepare_data("harmony", 201088)
    passes = tc.steps * tc.batch_size * tc.seq_len / len(data.train)
    evals = json.loads((SHIPPED / "training.json").read_text())["evals"]
    best = min(evals, key=lambda e: e["val_loss"])["step"]
    for notes in (T.CHAT_ABOUT, (SHIPPED / "TRAINING.md").read_text()):
        said = " ".join(notes.split())
        assert f"the {tc.steps:,} steps read the training chats about {round(passes)} times over" in said
        assert "the validation loss was lowest a few hundred steps before the end" in said
        assert 100 <= evals[-1]["step"] - best <= 900


def test_a_failure_after_an_update_and_before_its_record_saves_no_mislabelled_step(text_data, tmp_path, monkeypatch):
    """Memory running out after step 3's update, before the step was recorded: saved as step 2, the weights after
    three updates made the resume apply step 3 twice."""
    cfg = quick(steps=5)
    real, calls = T.CorpusVocab.tie_unused_rows, []

    def failing(self, model):
        calls.append(len(calls))
        if len(calls) == 4:  # the first call ties the fresh model's rows; the fourth follows step 3's update
            raise MemoryError("simulated")
        return real(self, model)

    monkeypatch.setattr(T.CorpusVocab, "tie_unused_rows", failing)
    with pytest.raises(MemoryError):
        T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    resumed = T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False)
    whole = T.train(small(13), cfg, text_data, progress=False)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_the_tokens_the_corpus_never_uses_start_at_logit_0(text_data, monkeypatch):
    """Their shared output row starts at zero (the loss then starts near log(vocab)), not at a random row."""
    seen = []
    real = T.make_optimizer

    def first_look(model, cfg):
        vocab = T.CorpusVocab(text_data.used_ids(), model.config.vocab_size)
        seen.append(model.lm_head.weight.detach()[vocab.position < 0].clone())
        return real(model, cfg)

    monkeypatch.setattr(T, "make_optimizer", first_look)
    T.train(small(13), quick(steps=1, warmup_steps=0), text_data, progress=False)
    assert seen[0].shape[0] > 30000 and not seen[0].any()


def test_the_exported_loss_is_measured_on_the_windows_training_measured(text_data, tmp_path, monkeypatch):
    """One window at a time, as many as the run's evaluations score: on 2 of 8 the bf16/MXFP4 cost was off."""
    cfg = quick(steps=2, batch_size=4, eval_batches=2)
    result = T.train(small(13), cfg, text_data, progress=False)
    scored, real = [], T.evaluate

    def counting(model, data, tc, vocab):
        scored.append(sum(len(x) for x, _ in data.val_batches(tc.batch_size, tc.seq_len, tc.eval_batches)))
        return real(model, data, tc, vocab)

    monkeypatch.setattr(T, "evaluate", counting)
    T.export(result, tmp_path / "exported", data=text_data)
    assert scored == [sum(len(x) for x, _ in text_data.val_batches(4, cfg.seq_len, 2))] == [8]


# ---- found by mutation testing of train.py: boundaries and guards no test above reached ----------------------

def test_each_settings_boundary_is_where_its_message_says():
    """Each limit of TrainConfig at its edge: the value on the allowed side is taken, the other refused by name."""
    for change, says in ((dict(steps=0, warmup_steps=0), r"steps, batch_size must be >= 1 and seq_len >= 2, got 0, "),
                         (dict(batch_size=0), r"steps, batch_size must be >= 1 and seq_len >= 2, got 300, 0, "),
                         (dict(seq_len=1), r"seq_len >= 2, got 300, 8, 1"),
                         (dict(eval_every=0), r"must be >= 1, got 0, 8, 100"),  # it failed later: done % 0
                         (dict(checkpoint_every=0), r"must be >= 1, got 50, 8, 0"),
                         (dict(lr=1e-3, min_lr=-1e-9), "min_lr must be in 0..lr")):
        with pytest.raises(ValueError, match=says):
            T.TrainConfig(**change)
    # The allowed edges: a constant rate (min_lr == lr), a cosine down to 0, the shortest windows.
    assert T.TrainConfig(lr=1e-3, min_lr=1e-3).min_lr == 1e-3
    assert T.TrainConfig(min_lr=0.0).min_lr == 0.0
    assert T.TrainConfig(seq_len=2, steps=1, warmup_steps=0, eval_every=1, checkpoint_every=1).seq_len == 2


def test_token_ids_outside_the_vocabulary_are_refused_at_the_edge():
    ok = torch.arange(10)
    assert T.TokenData(ok, ok, 10, "text").vocab_size == 10  # 9 is the last id of a vocabulary of 10
    with pytest.raises(ValueError, match=r"train ids must lie in 0..9"):
        T.TokenData(torch.arange(11), ok, 10, "text")  # id 10 is one past it
    with pytest.raises(ValueError, match=r"val ids must lie in 0..9"):
        T.TokenData(ok, torch.tensor([0, -1]), 10, "text")


def test_the_data_fingerprint_sees_tokens_moved_between_the_splits():
    """A corpus update that moves the split (data/corpus/split.json) keeps the same ids one after another:
    resuming on it would mix two validation sets."""
    ids = torch.arange(100)
    a = T.TokenData(ids[:80].clone(), ids[80:].clone(), 100, "text")
    b = T.TokenData(ids[:81].clone(), ids[81:].clone(), 100, "text")
    assert a.fingerprint() != b.fingerprint()


def test_validation_windows_are_spread_by_rounding_and_a_short_split_is_refused():
    # 5 windows, 4 taken: linspace(0, 4, 4) = 0, 1.33, 2.67, 4 rounds to windows 0, 1, 3, 4 (not 0, 1, 2, 4).
    data = T.TokenData(torch.arange(200), torch.arange(5 * 10 + 1), 200, "text")
    rows = torch.cat([x for x, _ in data.val_batches(2, 10, 2)])
    assert [int(r[0]) // 10 for r in rows] == [0, 1, 3, 4]
    short = T.TokenData(torch.arange(200), torch.arange(10), 200, "text")  # 10 tokens: no window of 10 + 1
    with pytest.raises(ValueError, match=r"the val split has 10 tokens, fewer than seq_len \+ 1 \(11\)"):
        list(short.val_batches(2, 10, 1))


def test_two_turn_chats_train_no_pair_of_speeches_twice():
    from gptoss_edu import harmony
    from gptoss_edu.corpus import Corpus, Play

    text = "".join(f"A{i}:\nSpeech number {i}.\n\n" for i in range(200))
    ids = T.harmony_ids(Corpus([Play("TEST", text, len(text) - 1)]), "train", seed=0).tolist()
    ret = harmony.stop_tokens()[0]
    pairs, start, two_turns = [], 0, 0
    for i, t in enumerate(ids):
        if t == ret:
            turns = [m for m in harmony.parse_completion(ids[start: i + 1], role=None) if m.role != "system"]
            two_turns += len(turns) == 4
            pairs += [(q.text, a.text) for q, a in zip(turns[::2], turns[1::2])]
            start = i + 1
    assert two_turns > 5 and len(pairs) == len(set(pairs))  # each (speech, answer) is read once


def test_a_sequence_as_long_as_the_context_trains_and_a_val_split_of_seq_len_tokens_is_refused(text_data):
    model_cfg = small(1).replace(context_length=16)
    done = T.train(model_cfg, quick(steps=1, warmup_steps=0, seq_len=16), text_data, progress=False)
    assert done.step == 1
    short_val = T.TokenData(text_data.train, text_data.val[:16].clone(), text_data.vocab_size, "text")
    steps_run = []
    with pytest.raises(ValueError, match=r"the val split has 16 tokens, fewer than seq_len \+ 1 \(17\)"):
        T.train(small(1), quick(steps=2, seq_len=16), short_val, progress=False, on_step=steps_run.append)
    assert steps_run == []  # refused before step 0, not at the first evaluation


def test_a_non_finite_gradient_norm_or_aux_loss_stops_the_run_before_its_update(text_data, tmp_path, monkeypatch):
    real_clip, real_aux = torch.nn.utils.clip_grad_norm_, T.aux_loss
    calls = []

    def inf_norm_at_step_2(params, max_norm):
        calls.append(1)
        norm = real_clip(params, max_norm)
        return norm * math.inf if len(calls) == 2 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", inf_norm_at_step_2)
    with pytest.raises(FloatingPointError, match="step 2 gave loss .*gradient norm inf.*diverged"):
        T.train(small(13), quick(steps=3), text_data, out=tmp_path / "a", progress=False)
    assert T.read_state_meta(tmp_path / "a" / T.STATE_DIR)["step"] == 1
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    calls.clear()

    def inf_aux_at_step_2(model):
        calls.append(1)
        aux = real_aux(model)
        return torch.tensor(math.inf) if len(calls) == 2 else aux  # no gradient: only the check can see it

    monkeypatch.setattr(T, "aux_loss", inf_aux_at_step_2)
    with pytest.raises(FloatingPointError, match="step 2 gave loss"):
        T.train(small(13), quick(steps=3), text_data, out=tmp_path / "b", progress=False)
    assert T.read_state_meta(tmp_path / "b" / T.STATE_DIR)["step"] == 1


def test_a_failure_mid_step_resumes_exactly_with_dropout_too(text_data, tmp_path, monkeypatch):
    """Out of memory in step 3, after its forward pass drew its dropout masks: the state of step 2 is kept, and
    the resumed run draws step 3's masks again, as the uninterrupted run did (each step reseeds its dropout)."""
    cfg = quick(steps=4)
    assert small(1).dropout > 0
    real, calls = T.lm_loss, []

    def out_of_memory_in_step_3(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        if len(calls) == 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return loss

    monkeypatch.setattr(T, "lm_loss", out_of_memory_in_step_3)
    with pytest.raises(RuntimeError, match="allocate"):
        T.train(small(1), cfg, text_data, out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert T.read_state_meta(tmp_path / "run" / T.STATE_DIR)["step"] == 2
    resumed = T.train(small(1), cfg, text_data, out=tmp_path / "run", progress=False)
    whole = T.train(small(1), cfg, text_data, progress=False)
    assert resumed.resumed_from == 2
    same_state(whole, resumed)


def test_a_finished_run_is_saved_once_and_a_second_ctrl_c_saves_nothing(text_data, tmp_path, monkeypatch):
    saves, real_save = [], T.save_run
    monkeypatch.setattr(T, "save_run", lambda out, result: saves.append(result.step) or real_save(out, result))
    T.train(small(13), quick(steps=2), text_data, out=tmp_path / "run", progress=False)
    assert saves == [2]  # at the end, not again on the way out
    T.train(small(13), quick(steps=2), text_data, out=tmp_path / "run", progress=False)
    assert saves == [2]  # resumed with nothing left to run: nothing to write

    def abort(result: T.TrainResult) -> None:  # the second Ctrl-C: "abort now", keeping only what is on disk
        if result.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train(small(13), quick(steps=4), text_data, out=tmp_path / "aborted", progress=False, on_step=abort)
    assert saves == [2] and not (tmp_path / "aborted" / T.STATE_DIR).exists()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_a_run_started_with_ctrl_c_ignored_still_stops_on_sigint_and_saves(text_data, tmp_path):
    """A shell's background job (`make train &`) starts with SIGINT ignored: kill -INT still stops it after the step."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = T.train(small(13), quick(steps=4), text_data, out=tmp_path, progress=False, on_step=stop_after(2))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # put back after the run
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.interrupted and result.step == 2
    assert T.read_state_meta(tmp_path / T.STATE_DIR)["step"] == 2


def test_a_model_folder_older_than_the_state_is_written_again(text_data, tmp_path, capsys):
    cfg = quick(steps=4, checkpoint_every=2)

    def keep_step_2(result: T.TrainResult) -> None:
        if result.step == 2:
            shutil.copytree(tmp_path / "run" / T.MODEL_DIR, tmp_path / "model-at-2")

    T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False, on_step=keep_step_2)
    shutil.rmtree(tmp_path / "run" / T.MODEL_DIR)
    shutil.copytree(tmp_path / "model-at-2", tmp_path / "run" / T.MODEL_DIR)  # an older copy put back
    capsys.readouterr()
    T.train(small(13), cfg, text_data, out=tmp_path / "run", progress=False)
    assert "model is from step 2, the state from step 4: the model is written again" in capsys.readouterr().err
    assert T._exported_step(tmp_path / "run" / T.MODEL_DIR) == 4


def test_a_course_step_without_hf_layout_resumed_finished_writes_nothing_and_says_no_model(tmp_path, capsys):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "0", "--no-progress"]
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    before = (tmp_path / T.STATE_DIR / T.STATE_JSON).stat().st_mtime_ns
    capsys.readouterr()
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    err = capsys.readouterr().err
    assert "written again" not in err and "is missing" not in err  # it has no model/ to be missing
    assert (tmp_path / T.STATE_DIR / T.STATE_JSON).stat().st_mtime_ns == before


def test_the_cli_says_once_that_an_old_state_s_data_cannot_be_checked(tmp_path, capsys):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "0", "--no-progress"]
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    meta_file = tmp_path / T.STATE_DIR / T.STATE_JSON
    meta = json.loads(meta_file.read_text())
    del meta["data"]
    meta_file.write_text(json.dumps(meta))
    capsys.readouterr()
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    assert capsys.readouterr().err.count("saved before training states recorded their data") == 1


def test_the_cli_resumes_a_state_a_crash_left_set_aside_and_says_so(tmp_path, capsys):
    tiny = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "0", "--no-progress"]
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    os.replace(tmp_path / T.STATE_DIR, tmp_path / f".{T.STATE_DIR}.old-0123abcd")  # cut between the two renames
    capsys.readouterr()
    assert T.main(["course-step-05", "--out", str(tmp_path), *tiny]) == 0
    assert f"the run in {tmp_path} has finished its 2 steps" in capsys.readouterr().err


def test_the_cli_takes_a_seq_len_of_the_whole_context_and_up_to_256_threads(tmp_path, capsys, monkeypatch):
    settings = []
    monkeypatch.setattr(T, "_run_in", lambda args, rec, tc, out, argv: settings.append(tc) or 0)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: settings.append(("threads", n)))
    context = T.recipe("course-step-13").model.context_length
    assert T.main(["course-step-13", "--out", str(tmp_path / "r"), "--seq-len", str(context)]) == 0
    assert settings[-1].seq_len == context
    assert T.main(["course-step-13", "--out", str(tmp_path / "r"), "--threads", "256"]) == 0
    assert ("threads", 256) in settings  # a run begun on a 256-core machine resumes on its thread count anywhere
    for flag in ("--out", "--export"):
        assert T.main(["course-step-13", flag, "  "]) == 2
        assert f"{flag} is empty" in capsys.readouterr().err


def test_an_export_scores_one_window_at_a_time(text_data, tmp_path, monkeypatch):
    """Full-vocabulary logits of a whole batch would take gigabytes for the chat model (8 x 256 x 201,088 floats)."""
    result = T.train(small(13), quick(steps=1, warmup_steps=0, batch_size=4, eval_batches=2), text_data, progress=False)
    sizes, real = [], T.mean_loss

    def recording(model, batches, vocab=None):
        batches = list(batches)
        sizes.extend(len(x) for x, _ in batches)
        return real(model, batches, vocab)

    monkeypatch.setattr(T, "mean_loss", recording)
    T.export(result, tmp_path / "exported", data=text_data)
    assert sizes == [1] * 8


def test_generation_config_names_call_only_when_the_vocabulary_holds_it(tmp_path):
    call = T.HARMONY_SPECIAL_TOKENS["<|call|>"]
    for vocab_size, written in ((call, False), (call + 1, True)):
        cfg = small(13).replace(vocab_size=vocab_size)
        result = T.TrainResult(g.GPT(cfg), cfg, quick())
        folder = T.export(result, tmp_path / f"v{vocab_size}")
        assert (folder / "generation_config.json").exists() is written, vocab_size


def test_training_md_names_the_lowest_validation_loss():
    result = T.TrainResult(g.GPT(small(1)), small(1), quick())
    result.history = [{"step": s, "loss": 5.0, "seconds": 1.0} for s in (1, 2, 3)]
    result.evals = [{"step": 1, "val_loss": 6.0}, {"step": 2, "val_loss": 4.5}, {"step": 3, "val_loss": 5.0}]
    md = T.training_markdown(result, "about", "cmd", None)
    assert "| lowest validation loss during the run | 4.500 at step 2 |" in md


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_runs_checkpoints_are_readable_by_others_under_the_usual_umask(text_data, tmp_path):
    """Temporary folders start private (0700, files 0600): a class could not read a teacher's run or export."""
    import stat

    old = os.umask(0o022)
    try:
        T.train(small(13), quick(steps=1, warmup_steps=0), text_data, out=tmp_path / "run", progress=False)
    finally:
        os.umask(old)
    for folder in (tmp_path / "run" / T.STATE_DIR, tmp_path / "run" / T.MODEL_DIR):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
        assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o644}, folder


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_private_umask_keeps_a_runs_checkpoints_and_export_private(text_data, tmp_path):
    import stat

    old = os.umask(0o077)
    try:
        result = T.train(small(13), quick(steps=1, warmup_steps=0), text_data, out=tmp_path / "run", progress=False)
        T.export(result, tmp_path / "exp")
    finally:
        os.umask(old)
    for folder in (tmp_path / "run" / T.STATE_DIR, tmp_path / "run" / T.MODEL_DIR, tmp_path / "exp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o600}, folder
