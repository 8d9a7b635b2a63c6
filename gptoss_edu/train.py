"""Train a small model of the course on the shipped corpus, on a CPU.

AdamW with a warmup-then-cosine learning rate, gradient clipping, the MoE load-balancing loss,
a progress bar with loss and tokens/s (into a log file, a line a tenth of the run), and
checkpoints every N steps: the exact fp32 training state (model, optimizer, step, history) in
safetensors for resuming, and the model in the real Hugging Face layout with MXFP4 experts.
Interrupting (Ctrl-C, a notebook's stop button, SIGTERM) finishes the current step, saves it
and stops, so no step is lost; running the same command again resumes, and the result is bit
for bit the run that was never interrupted (on as many threads: another count sums in another order).

    python -m gptoss_edu.train tiny-gpt-oss-chat --out runs/tiny-gpt-oss --export data/tiny-gpt-oss
    python -m gptoss_edu.train course-step-01 --steps 300      # GPT-2 at the course's small size
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import math
import numbers
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from . import harmony
from .checkpoint import CheckpointError, check_replaceable, write_checkpoint
from .env import REPO
from .files import (DiskFull, away_from_here, hold, is_no_room, remove_leftovers, replace_folder, restore_folder,
                    safetensors_path, save_tensors, set_aside, share, temporary_folder)
from .config import LAST_STEP, ModelConfig, course_config, preset
from .corpus import Corpus, load_corpus
from .memory import is_out_of_memory
from .model import GPT
from .moe import MoE, load_balancing_loss
from .tokenizer import HARMONY_SPECIAL_TOKENS, encoding_for_vocab

STATE_DIR, MODEL_DIR = "state", "model"
STATE_TENSORS, STATE_JSON = "train_state.safetensors", "train_state.json"
STATE_FORMAT = "gptoss-edu-train-state/1"
# Fields that may change between an interrupted run and its resumption (they change no weight).
RESUMABLE_CHANGES = ("eval_every", "checkpoint_every")


# ---- settings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """Everything about a run except the model: optimizer, schedule, batches, data, seed."""

    steps: int = 300
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 3e-3
    min_lr: float = 3e-4  # where the cosine ends
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    aux_loss_coef: float = 0.01  # weight of the MoE load-balancing loss
    data: str = "text"  # "text": the plays as they are; "harmony": speeches as harmony chats
    corpus_vocab: bool = True  # full softmax, the tokens the corpus never uses sharing one row (CorpusVocab)
    seed: int = 0
    eval_every: int = 50
    eval_batches: int = 8
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        # Types first: "3e-3" or 10.5 failed in a comparison below, or named another field.
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            if kind is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ValueError(f"{f.name} must be a whole number (an int), got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ValueError(f"{f.name} must be a number, got {value!r} ({type(value).__name__})")
            if kind in (int, float):  # numpy's numbers as Python's: the saved state is JSON
                object.__setattr__(self, f.name, kind(value))
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:  # NaN fails too
            raise ValueError(f"beta1 and beta2 (AdamW's moment decays) must be in [0, 1), got {self.beta1}, {self.beta2}")
        if not 0 <= self.weight_decay < math.inf or not 0 <= self.aux_loss_coef < math.inf:
            raise ValueError(f"weight_decay and aux_loss_coef must be finite numbers >= 0, got {self.weight_decay}, "
                             f"{self.aux_loss_coef}")
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 2:
            raise ValueError(f"steps, batch_size must be >= 1 and seq_len >= 2, got {self.steps}, "
                             f"{self.batch_size}, {self.seq_len}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in 0..steps-1 ({self.steps - 1}), got {self.warmup_steps}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in 0..lr ({self.lr}), got {self.min_lr}")
        if self.data not in ("text", "harmony"):
            raise ValueError(f"data must be 'text' or 'harmony', got {self.data!r}")
        if self.eval_every < 1 or self.checkpoint_every < 1 or self.eval_batches < 1:
            raise ValueError(f"eval_every, eval_batches and checkpoint_every must be >= 1, got {self.eval_every}, "
                             f"{self.eval_batches}, {self.checkpoint_every}")
        if not 0 <= self.seed < 2**63:  # torch.manual_seed's range; a bigger one failed after the corpus was read
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {self.seed}")
        if not self.grad_clip > 0:  # 0 would scale every gradient to nothing: only the weight decay would act
            raise ValueError(f"grad_clip must be > 0 (math.inf: no clipping), got {self.grad_clip}")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.steps - 1 - cfg.warmup_steps
    # One step after the warmup is both the cosine's first and its last: it lands on min_lr, as the last step must.
    progress = (step - cfg.warmup_steps) / decay_steps if decay_steps > 0 else 1.0
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


# ---- data ---------------------------------------------------------------------------------

@dataclass
class TokenData:
    """The token ids of the train and val splits, as one long stream each."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    kind: str

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            t = getattr(self, name)
            if t.dim() != 1 or t.dtype != torch.int64:
                raise ValueError(f"{name} ids must be a 1-D int64 tensor, got {t.dtype} {tuple(t.shape)}")
            if len(t) and (int(t.max()) >= self.vocab_size or int(t.min()) < 0):
                raise ValueError(f"{name} ids must lie in 0..{self.vocab_size - 1}")

    def fingerprint(self) -> str:
        """A short hash of both splits' ids: a saved run resumes only on the data it was trained on."""
        h = hashlib.sha256(f"{self.kind}:{self.vocab_size}:{len(self.train)}:".encode())
        for t in (self.train, self.val):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def used_ids(self) -> torch.Tensor:
        """The distinct ids of the train split, sorted: the tokens the model ever has to predict."""
        return torch.unique(self.train)

    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch number ``step``: random windows, a function of (seed, step) alone.

        So a resumed run reads exactly the batches the uninterrupted one would have read.
        """
        if len(self.train) <= seq_len:
            raise ValueError(f"the train split has {len(self.train)} tokens, fewer than seq_len + 1 ({seq_len + 1})")
        gen = torch.Generator().manual_seed(step_seed(seed, step))
        starts = torch.randint(0, len(self.train) - seq_len, (batch_size,), generator=gen)
        rows = torch.stack([self.train[s: s + seq_len + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]

    def val_batches(self, batch_size: int, seq_len: int, max_batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows spread evenly over the val split (always the same ones), so every play counts."""
        windows = (len(self.val) - 1) // seq_len
        n = min(windows, batch_size * max_batches)
        if n < 1:
            raise ValueError(f"the val split has {len(self.val)} tokens, fewer than seq_len + 1 ({seq_len + 1})")
        # The split holds the plays one after another: windows from its start alone would be its first plays.
        starts = torch.linspace(0, windows - 1, n, dtype=torch.float64).round().long().tolist()
        rows = torch.stack([self.val[i * seq_len: i * seq_len + seq_len + 1] for i in starts])
        for i in range(0, n, batch_size):
            yield rows[i: i + batch_size, :-1], rows[i: i + batch_size, 1:]

    def __repr__(self) -> str:
        return (f"TokenData({self.kind}: {len(self.train):,} train + {len(self.val):,} val tokens, "
                f"vocab {self.vocab_size:,}, {len(self.used_ids()):,} distinct ids in train)")


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s randomness (its batch, its dropout): the same on every run."""
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**63 - 1)


def text_ids(corpus: Corpus, split: str, vocab_size: int) -> torch.Tensor:
    """The plays of ``split`` as plain text, tokenized with the model's tokenizer."""
    enc = encoding_for_vocab(vocab_size)
    return torch.tensor(enc.encode_ordinary(corpus.text(split)), dtype=torch.int64)


def harmony_ids(corpus: Corpus, split: str, seed: int = 0) -> torch.Tensor:
    """Speeches as harmony chats: the user says one speech, the assistant answers with the next.

    Each speech answers the one before it, except where a two-turn chat's second user speech follows its
    first answer (that pair is not trained as question and answer). A quarter of the chats start with a system
    message (reasoning effort and sometimes a date drawn at random), a fifth have two turns;
    the last answer ends with <|return|>, so a model trained on them learns to stop.
    """
    rng = random.Random(f"{seed}-{split}")
    ret = harmony.stop_tokens()[0]
    ids: list[int] = []
    for speeches in corpus.speeches(split):
        i = 0
        while i + 1 < len(speeches):
            turns = 2 if rng.random() < 0.2 and i + 3 < len(speeches) else 1
            messages = []
            if rng.random() < 0.25:
                date = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" if rng.random() < 0.5 else None
                messages.append(harmony.system(reasoning=rng.choice(harmony.REASONING_EFFORTS), date=date))
            for t in range(turns):
                messages += [harmony.user(speeches[i + 2 * t].text), harmony.assistant(speeches[i + 2 * t + 1].text)]
            chat = harmony.render_conversation(messages, next_role=None)
            ids += chat[:-1] + [ret]  # the last answer is the one being produced: it ends the turn
            i += 1 if turns == 1 else 3
    return torch.tensor(ids, dtype=torch.int64)


def prepare_data(kind: str, vocab_size: int, corpus: Corpus | None = None, seed: int = 0) -> TokenData:
    """Token streams of the shipped corpus for a model with ``vocab_size`` ("text" or "harmony")."""
    corpus = corpus or load_corpus()
    if kind == "text":
        return TokenData(text_ids(corpus, "train", vocab_size), text_ids(corpus, "val", vocab_size), vocab_size, kind)
    if kind == "harmony":
        enc = encoding_for_vocab(vocab_size)
        if enc.name != "o200k_harmony":
            raise ValueError(f"harmony chats need the o200k_harmony vocabulary (201,088 ids); the model has {vocab_size:,}")
        # The val chats are drawn with seed 0 whatever the run's seed: runs of several seeds are compared on them.
        return TokenData(harmony_ids(corpus, "train", seed), harmony_ids(corpus, "val", 0), vocab_size, kind)
    raise ValueError(f"data kind must be 'text' or 'harmony', got {kind!r}")


# ---- loss ---------------------------------------------------------------------------------

class CorpusVocab:
    """A softmax over the whole vocabulary in which all tokens the corpus never uses share one output row.

    The train split uses 11,462 of GPT-2's 50,257 tokens, and 12,158 (chats) or 12,407 (text) of o200k's 201,088. Tie the output
    rows of all the others to one vector c (kept in the first unused row, the anchor): their
    logits are then all h . c, and together they add ``rest * e^(h . c)`` to the softmax's
    denominator, so one column, log(rest) + h . c, stands for them. The loss, and its gradient
    with respect to c and every other weight, are exactly those of the full-vocabulary softmax of
    that model, at a fraction of the cost; the model can still push every unused token down at
    once by learning c. (Training treats c as one tensor, as a model with those rows tied would:
    gradient clipping and AdamW see its summed gradient, not one gradient per unused row.)
    """

    def __init__(self, ids: torch.Tensor, vocab_size: int) -> None:
        self.ids = ids.sort().values
        self.vocab_size = vocab_size
        self.position = torch.full((vocab_size,), -1, dtype=torch.int64)
        self.position[self.ids] = torch.arange(len(self.ids))
        self.unused = (self.position < 0).nonzero().squeeze(1)
        self.rest = len(self.unused)
        self.anchor = int(self.unused[0]) if self.rest else -1

    @torch.no_grad()
    def tie_unused_rows(self, model: GPT) -> None:
        """Copy the anchor row into every unused token's output row (their embeddings too, when tied).

        Called after every optimizer step, so the model is always the full model the loss describes.
        """
        if self.rest:
            w = model.lm_head.weight
            w[self.unused] = w[self.anchor].clone()

    def loss(self, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``targets`` given final hidden states and the unembedding ``weight``."""
        hidden = hidden.float()
        logits = hidden @ weight[self.ids].float().T
        if self.rest:
            shared = hidden @ weight[self.anchor].float()  # the logit of every unused token
            logits = torch.cat([logits, (math.log(self.rest) + shared).unsqueeze(-1)], dim=-1)
        pos = self.position[targets]
        if bool((pos >= 0).all()):  # the usual case, in one fused softmax + pick
            return nn.functional.cross_entropy(logits.flatten(0, -2), pos.flatten())
        # A target the corpus never used: its logit is the shared one, not the rest column's.
        lse = torch.logsumexp(logits, dim=-1)
        target_logit = logits.gather(-1, pos.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        target_logit = torch.where(pos >= 0, target_logit, shared)
        return (lse - target_logit).mean()


@contextmanager
def _hidden_states(model: GPT) -> Iterator[nn.Module]:
    """While inside, ``model(ids)`` returns the final hidden states: the unembedding is set aside."""
    head = model.lm_head
    model.lm_head = nn.Identity()
    try:
        yield head
    finally:
        model.lm_head = head


def aux_loss(model: GPT) -> torch.Tensor:
    """The MoE load-balancing loss of the last forward pass, averaged over the MoE layers (0 if none)."""
    losses = [load_balancing_loss(m.last_logits, m.last_indices, m.experts.n_experts)
              for m in model.modules() if isinstance(m, MoE) and m.last_logits is not None]
    return torch.stack(losses).mean() if losses else torch.zeros(())


def lm_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, vocab: CorpusVocab | None) -> torch.Tensor:
    """Next-token cross-entropy: through the corpus vocabulary, or the plain full softmax."""
    if vocab is None:
        logits = model(x)
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    with _hidden_states(model) as head:
        hidden = model(x)
    return vocab.loss(hidden, head.weight, y)


@torch.no_grad()
def mean_loss(model: GPT, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              vocab: CorpusVocab | None = None) -> float:
    """Mean next-token loss (nats) per target token over ``batches`` of (inputs, targets), with dropout off."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            # Weighted by tokens: a short last batch must not count its windows more than the others'.
            total += lm_loss(model, x, y, vocab).item() * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)  # generate refuses a model left in training mode (its dropout)
    if count == 0:
        raise ValueError("mean_loss was given no batches (or only empty ones): there is no loss to average")
    return total / count


def evaluate(model: GPT, data: TokenData, cfg: TrainConfig, vocab: CorpusVocab | None = None) -> float:
    """Mean next-token loss (nats) over the fixed val windows, with dropout off."""
    return mean_loss(model, data.val_batches(cfg.batch_size, cfg.seq_len, cfg.eval_batches), vocab)


# ---- the loop -----------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What a run did: the model, the loss per step and per evaluation, and how it ended."""

    model: GPT
    model_config: ModelConfig
    train_config: TrainConfig
    # One entry per optimizer step; its "step" counts the steps done (1-based), so its lr is lr_at(step - 1).
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # {"step": steps done, "val_loss"}
    resumed_from: int = 0
    interrupted: bool = False
    out: Path | None = None
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    data_fingerprint: str | None = None  # TokenData.fingerprint() of the data it trains on

    @property
    def step(self) -> int:
        """Optimizer steps done so far."""
        return self.history[-1]["step"] if self.history else 0

    @property
    def tokens_seen(self) -> int:
        """Training tokens read so far: steps x batch size x sequence length."""
        return self.step * self.train_config.batch_size * self.train_config.seq_len

    def final_loss(self, last: int = 20) -> float:
        """Mean training loss of the last ``last`` steps (one step alone is noisy)."""
        if isinstance(last, bool) or not isinstance(last, int) or last < 1:  # history[-0:] is all of it
            raise ValueError(f"last is a number of steps, a whole number >= 1, got {last!r}")
        tail = self.history[-last:]
        return sum(h["loss"] for h in tail) / len(tail) if tail else float("nan")

    @property
    def val_loss(self) -> float:
        """The last evaluation's validation loss (NaN before the first)."""
        return self.evals[-1]["val_loss"] if self.evals else float("nan")

    def tokens_per_second(self) -> float:
        """Mean training speed over the recorded steps (evaluations and checkpoints not counted)."""
        timed = [h for h in self.history if h.get("seconds")]
        secs = sum(h["seconds"] for h in timed)
        return len(timed) * self.train_config.batch_size * self.train_config.seq_len / secs if secs else 0.0


class _StopRequest:
    """Turn SIGINT/SIGTERM/SIGHUP into 'stop after this step' (which is then saved); a second Ctrl-C aborts at once."""

    # Only a run that saves its state installs it: without a folder, stopping early would save
    # nothing, and a notebook cell training several models must stop as a whole, as Ctrl-C does.
    def __init__(self, enabled: bool = True) -> None:
        self.requested = False
        self.enabled = enabled
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        try:
            print("\nstopping after this step (its state is saved; press Ctrl-C again to abort now)", file=sys.stderr)
        except OSError:  # the terminal has gone (the hang-up this is): the save matters, not the words
            pass

    def __enter__(self) -> "_StopRequest":
        if self.enabled and threading.current_thread() is threading.main_thread():
            # SIGHUP: the terminal the run was started in was closed, which killed it with every step since
            # the last checkpoint unsaved.
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                # A hang-up (or TERM) that is ignored (nohup) is one the run was started to survive.
                if sig is None or (sig != signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN):
                    continue
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; matrices (and expert stacks, embeddings) decay, biases, norms and sinks do not."""
    def decays(name: str, p: nn.Parameter) -> bool:
        # Norms and sinks are vectors; biases too, except the experts' [E, width]: one vector per expert.
        return p.dim() >= 2 and not name.endswith("bias")

    params = list(model.named_parameters())
    decay = [p for n, p in params if decays(n, p)]
    no_decay = [p for n, p in params if not decays(n, p)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one pass over each parameter for the whole update (on a CPU too): 4x faster than foreach for
    # notebook 13's models, whose step it is a third of.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, fused=True)


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: TokenData | None = None, *, out: str | Path | None = None,
          resume: bool = True, progress: bool = True, on_step: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train a fresh ``model_cfg`` model for ``cfg.steps`` steps, or resume the run saved in ``out``.

    With ``out``, the training state is saved every ``cfg.checkpoint_every`` steps, at the end,
    and when the run is interrupted; HF-layout models go to ``out/model`` at the same times. One
    run at a time writes into ``out``: another that is still going there is refused.
    ``on_step(result)`` is called after every step (a test can stop or break the run there).
    """
    # The run seeds the CPU's generator with its own seeds (each step's a function of cfg.seed; training
    # runs on the CPU): the caller's state is put back after, so a notebook's later cells draw what they
    # drew before. A GPU's generator is never touched.
    with torch.random.fork_rng(devices=[]):
        if out is None:
            return _train(model_cfg, cfg, data, out=None, resume=resume, progress=progress, on_step=on_step)
        with hold(Path(out), "training run"):
            return _train(model_cfg, cfg, data, out=out, resume=resume, progress=progress, on_step=on_step)


def _train(model_cfg: ModelConfig, cfg: TrainConfig, data: TokenData | None, *, out: str | Path | None,
           resume: bool, progress: bool, on_step: Callable[[TrainResult], None] | None) -> TrainResult:
    if data is None:
        data = prepare_data(cfg.data, model_cfg.vocab_size, seed=cfg.seed)
    if data.vocab_size != model_cfg.vocab_size:
        raise ValueError(f"the data was tokenized for a vocabulary of {data.vocab_size:,} ids; "
                         f"the model has {model_cfg.vocab_size:,}: prepare_data with the model's vocab_size")
    if data.kind != cfg.data:
        raise ValueError(f"the settings say data={cfg.data!r}, and the data given is {data.kind!r}: "
                         f"prepare_data({cfg.data!r}, ...), or set data={data.kind!r}")
    # Said before step 0, not after eval_every steps of training (or inside the model).
    if cfg.seq_len > model_cfg.context_length:
        raise ValueError(f"seq_len {cfg.seq_len} is longer than the model's context of {model_cfg.context_length}")
    if len(data.val) <= cfg.seq_len:
        raise ValueError(f"the val split has {len(data.val)} tokens, fewer than seq_len + 1 ({cfg.seq_len + 1})")
    torch.default_generator.manual_seed(cfg.seed)
    model = GPT(model_cfg)
    vocab = CorpusVocab(data.used_ids(), model_cfg.vocab_size) if cfg.corpus_vocab else None
    if vocab is not None and vocab.rest:  # with every id used there is no anchor (-1 would be a real token)
        with torch.no_grad():
            model.lm_head.weight[vocab.anchor] = 0.0  # unused tokens start at logit 0
        vocab.tie_unused_rows(model)
    optimizer = make_optimizer(model, cfg)
    result = TrainResult(model, model_cfg, cfg, out=Path(out) if out is not None else None, optimizer=optimizer,
                         data_fingerprint=data.fingerprint())
    if out is not None:
        for name in (STATE_DIR, MODEL_DIR):  # what saves killed mid-way left (kill -9, a closed terminal)
            restore_folder(Path(out) / name)
            remove_leftovers(Path(out) / name)
        if _has_hf_layout(model_cfg):  # refused now, not at the first save: the model is saved before the state
            check_replaceable(Path(out) / MODEL_DIR, "move them out of it: the run writes its model there at each "
                                                     "checkpoint, replacing the folder")
    model_behind = False  # out/model older than the state: exported again below, even with no step left to run
    if out is not None and resume and (Path(out) / STATE_DIR).exists():
        saved = load_state(Path(out) / STATE_DIR, model, optimizer, model_cfg, cfg, result.data_fingerprint)
        result.history, result.evals = saved["history"], saved["evals"]
        result.resumed_from = saved["step"]
        exported = _exported_step(Path(out) / MODEL_DIR)
        if _has_hf_layout(model_cfg) and exported != saved["step"]:
            model_behind = True
            print(f"{Path(out) / MODEL_DIR} " + ("is missing" if exported is None else f"is from step {exported}")
                  + f", the state from step {saved['step']}: the model is written again", file=sys.stderr)
    elif out is not None and (Path(out) / STATE_DIR).exists():
        raise FileExistsError(f"{out} already holds a run: resume it, or choose another folder (or delete it)")
    model.train()
    start = result.step
    bar = _progress_bar(cfg.steps, start, progress)
    tokens = cfg.batch_size * cfg.seq_len
    saved_at, aborted = start, False
    with _StopRequest(enabled=out is not None) as stop:
        try:
            for step in range(start, cfg.steps):  # 0-based; the step itself is notebook 13's train_steps
                t0 = time.perf_counter()
                torch.default_generator.manual_seed(step_seed(cfg.seed, step))  # dropout's randomness, also a function of the step
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = data.batch(step, cfg.batch_size, cfg.seq_len, cfg.seed)
                loss = lm_loss(model, x, y, vocab)
                aux = aux_loss(model)
                (loss + cfg.aux_loss_coef * aux).backward()
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                if not (torch.isfinite(loss) and torch.isfinite(aux) and torch.isfinite(grad_norm)):
                    # Before the optimizer step: the weights (and what is saved of them) stay finite.
                    raise FloatingPointError(
                        f"step {step + 1} gave loss {loss.item()}, gradient norm {grad_norm.item()}: the run diverged. "
                        "Its last finite step is kept; start again (in a fresh folder) with a lower lr or a "
                        "longer warmup")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if vocab is not None:
                    vocab.tie_unused_rows(model)
                seconds = time.perf_counter() - t0
                result.history.append({"step": step + 1, "loss": loss.item(), "aux_loss": aux.item(), "lr": lr,
                                       "grad_norm": grad_norm.item(), "seconds": seconds})
                done = step + 1
                if done % cfg.eval_every == 0 or done == cfg.steps:
                    result.evals.append({"step": done, "val_loss": evaluate(model, data, cfg, vocab)})
                if bar is not None:
                    bar.update(1)
                    shown = {"loss": f"{loss.item():.3f}", "tok/s": f"{tokens / seconds:,.0f}"}
                    if result.evals:
                        shown["val"] = f"{result.val_loss:.3f}"
                    bar.set_postfix(shown)
                if out is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                    try:
                        save_run(out, result)
                    except BaseException:
                        aborted = True  # a save that failed (a full disk) would only fail again below
                        raise
                    saved_at, model_behind = done, False
                if on_step is not None:
                    on_step(result)
                if stop.requested and done < cfg.steps:  # a stop during the last step: the run is complete
                    result.interrupted = True
                    break
        except KeyboardInterrupt:
            aborted = True  # a second Ctrl-C: stop at once, keeping what is already on disk
            raise
        finally:
            if bar is not None:
                try:
                    bar.close()
                except OSError:  # it writes to a terminal that may have gone (a hang-up): the save below matters
                    pass
            # Whatever else stopped the loop, the last finished step is kept, unless it is already on disk.
            if (out is not None and not aborted and (result.step > saved_at or model_behind)
                    and _consistent(result, optimizer)
                    and all(torch.isfinite(p).all() for p in model.parameters())):
                save_run(out, result)
    model.eval()
    return result


def _consistent(result: TrainResult, optimizer: torch.optim.Optimizer) -> bool:
    """True when the model and optimizer hold exactly the state after the last recorded step."""
    steps = {float(s["step"]) for s in optimizer.state.values() if "step" in s}
    return steps == {float(result.step)}


def _progress_bar(total: int, start: int, enabled: bool):
    if not enabled:
        return None
    # Jupyter's stderr is no terminal either, but draws a redrawn bar as one.
    if not sys.stderr.isatty() and not type(sys.stderr).__module__.startswith("ipykernel"):
        return LineProgress(total, start)
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="step", dynamic_ncols=True)


class LineProgress:
    """Progress for a log file (stderr redirected): a line every tenth of the run, not a bar redrawn with \r."""

    def __init__(self, total: int, start: int, out: Any = None) -> None:
        self.total, self.step, self.out = total, start, out if out is not None else sys.stderr
        self.every = max(1, math.ceil(total / 10))
        self.postfix: dict[str, str] = {}
        self.t0, self.written = time.perf_counter(), start

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        self.step += n

    def set_postfix(self, shown: dict[str, str]) -> None:
        """Show ``shown`` after the count; writes the line when a tenth of the run is done."""
        self.postfix = shown
        if self.step % self.every == 0 or self.step == self.total:
            self._line()

    def close(self) -> None:
        """Write the last line, if steps were done since the one before."""
        if self.step != self.written:
            self._line()

    def _line(self) -> None:
        shown = "".join(f", {k} {v}" for k, v in self.postfix.items())
        elapsed = time.perf_counter() - self.t0
        print(f"training: step {self.step}/{self.total} ({100 * self.step // self.total}%){shown}, {elapsed:.0f} s",
              file=self.out, flush=True)
        self.written = self.step


# ---- saving and resuming ------------------------------------------------------------------

def _config_dict(cfg: Any) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``; a replacement cut short earlier is undone first."""
    restore_folder(path)
    replace_folder(tmp, path)


def save_state(path: str | Path, result: TrainResult, optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write the exact training state (fp32 weights, AdamW moments, step, history) to folder ``path``."""
    path = Path(path)
    model = result.model
    optimizer = optimizer or result.optimizer
    if optimizer is None:
        raise ValueError("save_state needs the run's optimizer (TrainResult.optimizer is None)")
    names = {p: n for n, p in model.named_parameters()}
    tensors: dict[str, torch.Tensor] = {f"model.{n}": p.detach().contiguous() for n, p in model.named_parameters()}
    persistent = model.state_dict().keys()  # computed buffers (RoPE frequencies) are rebuilt, not saved
    tensors.update({f"buffer.{n}": b.contiguous() for n, b in model.named_buffers() if n in persistent})
    for p, st in optimizer.state.items():
        for key, value in st.items():
            tensors[f"optim.{names[p]}.{key}"] = value.detach().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(path)
    try:
        save_tensors(tensors, tmp / STATE_TENSORS, metadata={"format": STATE_FORMAT})
        meta = {
            "format": STATE_FORMAT, "step": result.step, "sha256": _sha256(tmp / STATE_TENSORS),
            "tensors": sorted(tensors), "model_config": _config_dict(result.model_config),
            "train_config": _config_dict(result.train_config), "history": result.history, "evals": result.evals,
            "data": result.data_fingerprint, "threads": torch.get_num_threads(),
        }
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n")
        share(tmp)
        _replace_dir(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_room(e) and not isinstance(e, DiskFull):
            raise DiskFull(path, sum(t.numel() * t.element_size() for t in tensors.values()),
                           quota=e.errno == errno.EDQUOT) from e
        raise
    return path


def read_state_meta(path: str | Path) -> dict:
    """The JSON half of a saved training state, checked: format, and the tensors file's hash."""
    path = Path(path)
    meta_file, tensor_file = path / STATE_JSON, path / STATE_TENSORS
    hint = f"delete {path} to start the run afresh"
    for f in (meta_file, tensor_file):
        if not f.is_file():
            raise CheckpointError(f"training state {path} has no {f.name}: it is incomplete ({hint})")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_file} is not valid JSON ({e}): the training state is damaged ({hint})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{meta_file} is not a {STATE_FORMAT} training state ({hint})")
    missing = [k for k in ("step", "sha256", "tensors", "model_config", "train_config", "history", "evals") if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_file} lacks {', '.join(missing)}: the training state is damaged ({hint})")
    kinds = {"step": int, "sha256": str, "tensors": list, "model_config": dict, "train_config": dict, "history": list,
             "evals": list}
    wrong = [k for k, kind in kinds.items() if not isinstance(meta[k], kind) or isinstance(meta[k], bool)]
    if wrong:  # edited by hand, say: refused here, not as a TypeError deep in the resumption
        raise CheckpointError(f"{meta_file} has {', '.join(f'{k} {meta[k]!r}' for k in wrong)}, not "
                              f"{' / '.join(kinds[k].__name__ for k in wrong)}: the training state is damaged ({hint})")
    digest = _sha256(tensor_file)
    if digest != meta["sha256"]:
        raise CheckpointError(f"{tensor_file} is damaged or truncated: its sha256 is {digest[:16]}..., the state "
                              f"recorded {meta['sha256'][:16]}... ({hint})")
    return meta


def check_resumable(path: str | Path, model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """The saved state's metadata, if a run with these settings may resume it; else a CheckpointError saying why."""
    path = Path(path)
    meta = read_state_meta(path)
    saved, now = meta["model_config"], _config_dict(model_cfg)
    if saved != now:
        # Over both sides' fields: one a later course version added is missing from the saved config.
        diff = [k if k in saved else f"{k}, which the course version that saved it did not have"
                for k in sorted(saved.keys() | now.keys()) if saved.get(k, ...) != now.get(k, ...)]
        raise CheckpointError(f"{path} was trained with another model config (differs in {'; '.join(diff)}): "
                              "resume with the same model, or start in another folder, or over with --fresh")
    mine = _config_dict(cfg)
    diff = sorted(k for k in mine if k not in RESUMABLE_CHANGES and meta["train_config"].get(k) != mine[k])
    if diff:
        was = ", ".join(f"{k}={meta['train_config'].get(k)!r} (now {k}={mine[k]!r})" for k in diff)
        raise CheckpointError(f"{path} was trained with {was}; resuming needs the same settings "
                              "(or start in another folder, or over with --fresh)")
    return meta


def check_same_data(path: str | Path, meta: dict, data_fingerprint: str | None, warn: bool = True) -> None:
    """Refuse to resume a saved state on token data other than it was trained on."""
    if data_fingerprint is None:
        return
    if not meta.get("data"):  # saved before states recorded their data: resumed, with a word of caution
        if not warn:
            return
        print(f"{path} was saved before training states recorded their data, so nothing can check that this "
              "corpus and tokenizer give the same tokens as then; if the course was updated since, start over "
              "with --fresh", file=sys.stderr)
    elif meta["data"] != data_fingerprint:
        raise CheckpointError(f"{path} was trained on other token data than this corpus and tokenizer give now "
                              f"(fingerprint {meta['data']}, now {data_fingerprint}; an update of the course that "
                              "changes its corpus changes them): resuming needs the same data, so start over with "
                              "--fresh, or in another folder")


def load_state(path: str | Path, model: GPT, optimizer: torch.optim.Optimizer, model_cfg: ModelConfig,
               cfg: TrainConfig, data_fingerprint: str | None = None) -> dict:
    """Restore a saved training state into ``model`` and ``optimizer``; refuse one that is damaged or foreign."""
    from safetensors import safe_open

    path = Path(path)
    meta = check_resumable(path, model_cfg, cfg)
    check_same_data(path, meta, data_fingerprint)
    threads = meta.get("threads")
    if isinstance(threads, int) and threads != torch.get_num_threads():
        print(f"{path} was trained on {threads} thread(s) and resumes on {torch.get_num_threads()}: the sums run in "
              "another order, so the weights differ from an uninterrupted run's in their last bits (--threads "
              f"{threads}, or torch.set_num_threads({threads}), resumes it exactly)", file=sys.stderr)
    try:
        f = safe_open(safetensors_path(path / STATE_TENSORS), framework="pt", device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path / STATE_TENSORS} is not a readable safetensors file ({e})") from None
    with f:
        stored = set(f.keys())
        if stored != set(meta["tensors"]):
            raise CheckpointError(f"{path / STATE_TENSORS} does not hold the tensors its JSON lists")

        def get(name: str, like: torch.Tensor | None = None) -> torch.Tensor:
            if name not in stored:
                raise CheckpointError(f"{path / STATE_TENSORS} is missing tensor {name!r}")
            # A copy: a tensor straight from the file keeps it mapped (AdamW keeps its moments), so Windows could
            # not replace this folder at the next save, and Linux would hold the replaced file's space.
            t = f.get_tensor(name).clone()
            if like is not None and (t.shape != like.shape or t.dtype != like.dtype):
                raise CheckpointError(f"tensor {name!r} in {path / STATE_TENSORS} is {t.dtype} {tuple(t.shape)}; "
                                      f"the model needs {like.dtype} {tuple(like.shape)}")
            return t

        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(get(f"model.{n}", p))
            for n, b in model.named_buffers():
                if f"buffer.{n}" in stored:
                    b.copy_(get(f"buffer.{n}", b))
        optimizer.state.clear()
        for n, p in model.named_parameters():
            keys = [k for k in stored if k.startswith(f"optim.{n}.") and "." not in k[len(f"optim.{n}."):]]
            if keys:  # AdamW's moments have the parameter's shape; its step count is a number
                optimizer.state[p] = {k.rsplit(".", 1)[1]: get(k, p if k.endswith(("exp_avg", "exp_avg_sq")) else None)
                                      for k in keys}
        if meta["step"] > 0 and not optimizer.state:
            raise CheckpointError(f"{path / STATE_TENSORS} has no optimizer state after {meta['step']} steps")
        rng = get("rng.torch")
        if rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
            raise CheckpointError(f"tensor 'rng.torch' in {path / STATE_TENSORS} is {rng.dtype} {tuple(rng.shape)}; "
                                  f"a random generator's state is {tuple(torch.get_rng_state().shape)} uint8 bytes: "
                                  "the state is damaged")
        torch.set_rng_state(rng)
    return meta


def save_run(out: str | Path, result: TrainResult) -> None:
    """Save, for GPT-2- or gpt-oss-shaped models, ``out/model``, then the training state to ``out/state``."""
    out = Path(out)
    # The model first: a state saved says that its model is saved too (a save cut short between the two
    # leaves the state of an earlier step, and resuming from it writes both again).
    if _has_hf_layout(result.model_config):
        export(result, out / MODEL_DIR)
    save_state(out / STATE_DIR, result)


def _exported_step(model_dir: Path) -> int | None:
    """The step out/model was written at (its training.json), or None if it is missing or unreadable."""
    try:
        steps = json.loads((model_dir / "training.json").read_text())["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _has_hf_layout(cfg: ModelConfig) -> bool:
    return cfg.is_gpt2_shaped() or cfg.is_gptoss_shaped()


def export(result: TrainResult, path: str | Path, command: str | None = None, about: str | None = None,
           data: TokenData | None = None) -> Path:
    """Write the model in the real HF layout (bf16, MXFP4 experts if any) with its training record beside it.

    With ``data``, the written checkpoint is loaded back and its validation loss measured over
    the full vocabulary (what MXFP4 and bf16 cost); with ``about``, a TRAINING.md is added.
    Everything is written in a temporary folder first and renamed into place at the end.
    """
    from .checkpoint import load_model

    path = check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(path)
    try:
        try:
            folder = write_checkpoint(result.model, tmp / "ckpt", mxfp4=True)
        except DiskFull as e:  # named as the folder it was going to, not the temporary one
            raise DiskFull(path, e.needed, before=e.before, quota=e.quota) from e
        cfg, tc = result.model_config, result.train_config
        ids = HARMONY_SPECIAL_TOKENS
        if cfg.is_gptoss_shaped() and cfg.vocab_size > ids["<|call|>"]:
            # gpt-oss's own generation_config.json: a reply ends at <|return|>, <|endoftext|> or <|call|>.
            # Like the Hub's, it names no top_k: transformers' generate then keeps the 50 likeliest tokens,
            # where the course's sampler (and OpenAI's) keeps them all.
            gen = {"bos_token_id": ids["<|startoftext|>"],
                   "eos_token_id": [ids["<|return|>"], ids["<|endoftext|>"], ids["<|call|>"]],
                   "pad_token_id": ids["<|endoftext|>"], "do_sample": True, "temperature": 1.0, "top_p": 1.0}
            (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        exported = None
        if data is not None:
            # One window at a time: full-vocabulary logits of a whole batch would take gigabytes.
            windows = tc.replace(batch_size=1, eval_batches=tc.batch_size * tc.eval_batches)
            exported = evaluate(load_model(folder), data, windows, None)
        (folder / "training.json").write_text(json.dumps(training_record(result, command, exported), indent=1) + "\n")
        if about is not None:
            (folder / "TRAINING.md").write_text(training_markdown(result, about, command or "", exported),
                                              encoding="utf-8")  # the command line may name any folder
        share(folder)
        _replace_dir(folder, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def check_export_target(path: str | Path) -> Path:
    """``path``, absolute; refused if it is the current folder, a file, or a folder that holds anything but an
    exported checkpoint."""
    path = away_from_here(path, "export to ", "my-export")
    check_replaceable(path, "export into an empty or new folder, or one that holds only an earlier export")
    return path


def make_folders(folders: list[tuple[str, Path]]) -> list[Path]:
    """Make each (option, folder) and check it is writable: the folders this call made, deepest first; on a
    refusal, those are removed."""
    made: list[Path] = []
    try:
        for option, folder in folders:
            missing = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ValueError(f"{option}: cannot make the folder {folder} ({e.strerror}): choose one you can "
                                 "write") from None
            made += missing
            if not os.access(folder, os.W_OK):
                raise ValueError(f"{option}: the folder {folder} is not writable by you: choose one you can write")
    except ValueError:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty after all, or gone: leave it
        raise
    return made


COURSE_CHECKPOINT = REPO / "data" / "tiny-gpt-oss"  # notebooks 11, 12 and 13 read it; their outputs are stored


def check_not_the_course_checkpoint(path: Path, rec: Recipe, tc: TrainConfig) -> None:
    """Refuse to export over the course's shipped checkpoint a run other than the one its training.json records."""
    if path.resolve() != COURSE_CHECKPOINT.resolve() or not (COURSE_CHECKPOINT / "training.json").exists():
        return
    shipped = json.loads((COURSE_CHECKPOINT / "training.json").read_text())
    if shipped.get("model_config") == _config_dict(rec.model) and shipped.get("train_config") == _config_dict(tc):
        return  # the recipe as shipped: how the course's checkpoint is made again
    raise ValueError(f"--export {path} is the course's own checkpoint (notebooks 11 and 12 chat with it), made by "
                     f"the full tiny-gpt-oss-chat recipe; this run's settings differ from it, so it would replace "
                     f"the course's model with another: export it elsewhere, e.g. --export runs/{rec.name}-export")


def _rounded(x: float) -> float | None:
    """``x`` to 4 decimals, or None when it is no number (NaN) or infinite."""
    return round(x, 4) if math.isfinite(x) else None


def training_record(result: TrainResult, command: str | None = None, exported_val_loss: float | None = None) -> dict:
    """How the model was trained and how far it got, for training.json and TRAINING.md."""
    return {
        "command": command, "steps": result.step, "tokens_seen": result.tokens_seen,
        # None, not NaN, before any step or evaluation: NaN is not JSON, and strict readers refuse the file.
        "final_train_loss": _rounded(result.final_loss()), "val_loss": _rounded(result.val_loss),
        "exported_val_loss": None if exported_val_loss is None else round(exported_val_loss, 4),
        "model_config": _config_dict(result.model_config), "train_config": _config_dict(result.train_config),
        "evals": [{"step": e["step"], "val_loss": round(e["val_loss"], 4)} for e in result.evals],
    }


# ---- recipes and the command line ---------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """A named run: the model, the training settings, and a note on why they are what they are."""

    name: str
    model: ModelConfig
    train: TrainConfig
    about: str


CHAT_ABOUT = """\
A gpt-oss-shaped model (RMSNorm, RoPE with YaRN, grouped-query attention with sinks, sliding
windows on alternating layers, top-2 of 8 SwiGLU experts) small enough to train on a laptop
CPU, in the real vocabulary: the harmony renderer's token ids are valid for it, so notebooks
11 and 12 can chat with it when no GPU or no real weights are there. It learned Shakespeare's
speeches wrapped as harmony chats (the user says a speech, the assistant answers with the next
one, on the final channel, ending with <|return|>), so its replies are in the right format and
stop by themselves; what they say is Shakespeare-flavoured, not sensible.

Why these sizes: the 201,088-token embedding costs 201,088 x d_model numbers whatever else the
model is. gpt-oss keeps a separate unembedding (lm_head); here it is tied to the embedding
(tie_word_embeddings: true in config.json, which transformers' GptOssForCausalLM honours), and
d_model is 32, the smallest width MXFP4's 32-value blocks allow. That makes the checkpoint
about 13 MB in bf16, of which the embedding is 12.9 MB; an untied d_model 64 would be 51 MB.
Only the tokens that occur in the training text (12,158 of 201,088) get rows of their own;
all the others share one row (see gptoss_edu.train.CorpusVocab), which makes the softmax of
training 16.5 times narrower and loses nothing: no training text contains them. Training pushes
that row down wherever the training text goes, but on text it has not seen the model can still
give the unused tokens a share: now and then a sampled reply picks one and wanders off into
other scripts.

What the two losses measure: the 2,000 steps read the training chats about 8 times over (each
speech twice, as a user's message and as the assistant's answer), and the loss counts every token
of a chat, the user's included; the validation loss was lowest a few hundred steps before the end.
It also scores the validation text's tokens that never occur in training, which only the shared row
can predict, so part of the gap between the training and validation losses is theirs.
"""


def chat_model_config() -> ModelConfig:
    """The tiny gpt-oss the course ships in data/tiny-gpt-oss (real vocabulary, tied, d_model 32)."""
    return preset("gpt-oss-tiny").replace(
        name="tiny-gpt-oss", d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16, d_ff=128,
        n_experts=8, experts_per_token=2, sliding_window=32, tie_embeddings=True)


def recipe(name: str) -> Recipe:
    """A named recipe: 'tiny-gpt-oss-chat', or 'course-step-NN' (the course's model after notebook NN)."""
    if name == "tiny-gpt-oss-chat":
        tc = TrainConfig(steps=2000, batch_size=8, seq_len=256, lr=5e-3, min_lr=5e-4, warmup_steps=100,
                         data="harmony", eval_every=100, eval_batches=8, checkpoint_every=100)
        return Recipe(name, chat_model_config(), tc, CHAT_ABOUT)
    if name.startswith("course-step-"):
        digits = name.removeprefix("course-step-")
        if not (len(digits) == 2 and digits.isascii() and digits.isdigit() and 1 <= int(digits) <= LAST_STEP):
            raise ValueError(f"{name!r}: the course steps are course-step-01 .. course-step-{LAST_STEP:02d} (two digits)")
        step = int(digits)
        cfg = course_config(step)
        tc = TrainConfig(steps=300, batch_size=8, seq_len=64, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                         data="text", eval_every=50, eval_batches=8, checkpoint_every=100)
        about = (f"The course's small model after notebook {step} ({cfg.name}), trained on the plays as plain "
                 "text with the GPT-2 tokenizer.")
        return Recipe(name, cfg, tc, about)
    raise KeyError(f"no recipe {name!r}: use tiny-gpt-oss-chat or course-step-01 .. course-step-13")


def export_format(cfg: ModelConfig) -> str:
    """How an export stores ``cfg``'s weights: bf16, and its experts (if it has any) in MXFP4."""
    return "bf16, MXFP4 experts" if cfg.n_experts else "bf16"


def training_markdown(result: TrainResult, about: str, command: str, exported_val_loss: float | None) -> str:
    """TRAINING.md for an exported checkpoint: the command, the settings, and the losses reached."""
    cfg, tc = result.model_config, result.train_config
    counts = cfg.param_counts()
    lines = [
        f"# {cfg.name}: how it was trained", "", about.strip(), "", "## Command", "",
        f"From {'the repository root' if Path.cwd() == REPO else 'the folder it was started in'}, on a CPU:", "",
        "```", command, "```", "",
        "Running the same command again after an interruption resumes where it stopped.", "",
        "## Result", "",
        "| | |", "| --- | --- |",
        f"| steps | {result.step:,} |",
        f"| tokens seen | {result.tokens_seen:,} ({tc.batch_size} x {tc.seq_len} per step) |",
        f"| final training loss (mean of the last 20 steps) | {result.final_loss():.3f} nats/token |",
        f"| validation loss (fp32 weights) | {result.val_loss:.3f} nats/token |",
    ]
    if result.evals:
        best = min(result.evals, key=lambda e: e["val_loss"])
        lines.append(f"| lowest validation loss during the run | {best['val_loss']:.3f} at step {best['step']:,} |")
    if exported_val_loss is not None:
        lines.append(f"| validation loss of this checkpoint ({export_format(cfg)}) | {exported_val_loss:.3f} nats/token |")
    lines += [
        f"| parameters | {counts['total']:,} ({counts['embedding']:,} in the embedding) |",
        f"| time in training steps | {sum(h.get('seconds', 0.0) for h in result.history) / 60:.0f} minutes "
        f"(evaluations and checkpoints not counted) |", "",
        "The validation set is the last 5% of each play (data/corpus/split.json), as "
        + ("harmony chats." if tc.data == "harmony" else "plain text."), "",
        "## Settings", "", "| setting | value |", "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in _config_dict(tc).items()]
    lines += ["", "Model: `gptoss_edu.train.chat_model_config()`" if cfg.name == "tiny-gpt-oss" else "",
              "", "Loss by evaluation:", "", "| step | val loss |", "| --- | --- |"]
    lines += [f"| {e['step']} | {e['val_loss']:.3f} |" for e in result.evals]
    return "\n".join(lines) + "\n"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The train command's arguments: a recipe, where to write, and overrides of its settings."""
    ap.add_argument("recipe", help=f"tiny-gpt-oss-chat, or course-step-NN (01..{LAST_STEP:02d})")
    ap.add_argument("--out", help="run folder for checkpoints (default runs/<recipe>); a run already there is resumed")
    ap.add_argument("--export", help="also write the final model here (HF layout, MXFP4 experts, TRAINING.md)")
    ap.add_argument("--fresh", action="store_true",
                    help="start over even if --out holds a run (its state/ and model/ are deleted)")
    # Each override says what it replaces: the chat recipe's value, then the course steps' (all alike).
    chat, step = recipe("tiny-gpt-oss-chat").train, recipe("course-step-01").train

    def defaults(name: str) -> str:
        return f"(recipes: {getattr(chat, name):g} for tiny-gpt-oss-chat, {getattr(step, name):g} for course steps)"

    ap.add_argument("--steps", type=int, help=f"training steps {defaults('steps')}; the warmup shrinks in proportion "
                                               "unless --warmup-steps is given")
    for name, kind, what in [("batch_size", int, "sequences a step"), ("seq_len", int, "tokens a sequence"),
                             ("warmup_steps", int, "steps of linear warmup"), ("seed", int, "random seed"),
                             ("eval_every", int, "steps between validation losses"),
                             ("checkpoint_every", int, "steps between checkpoints"),
                             ("min_lr", float, "learning rate of the last step, where the cosine ends")]:
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{what} {defaults(name)}")
    ap.add_argument("--lr", type=float, help=f"peak learning rate {defaults('lr')}; the last step's rate scales with "
                                             "it unless --min-lr is given")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    """`python -m gptoss_edu.train ...`, as TRAINING.md records a run: the same as `python -m gptoss_edu train ...`."""
    from .__main__ import main as course_main  # its Ctrl-C, closed-pipe and console handling too

    return course_main(["train", *(sys.argv[1:] if argv is None else argv)])


def run(args: argparse.Namespace) -> int:
    """Train the recipe named in ``args`` (the train command)."""
    argv = getattr(args, "argv", None)
    try:
        rec = recipe(args.recipe)
    except (KeyError, ValueError) as e:
        print(f"train: {e.args[0]}", file=sys.stderr)
        return 2
    try:
        return _run(args, rec, argv)
    except BrokenPipeError:  # `... | head`: the reader has gone; the command line ends quietly
        raise
    except (ValueError, OSError, FloatingPointError) as e:  # bad settings, a damaged or foreign run, a missing
        # corpus, a full disk, a run that diverged
        print(f"train: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, rec: Recipe, argv: list[str] | None) -> int:
    for flag, given in (("--out", args.out), ("--export", args.export)):
        if given is not None and not given.strip():  # an unset shell variable: "" was the default folder
            raise ValueError(f"{flag} is empty: give it a folder (leave {flag} out for "
                             + ("runs/<recipe>)" if flag == "--out" else "no export)"))
    # `--out=~/run`: the shell leaves a ~ after = as it is, and a folder named ~ would be made here.
    args.out = None if args.out is None else str(Path(args.out).expanduser())
    args.export = None if args.export is None else str(Path(args.export).expanduser())
    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "seq_len", "warmup_steps", "seed", "eval_every",
                                               "checkpoint_every", "lr", "min_lr") if getattr(args, k) is not None}
    if "steps" in overrides and "warmup_steps" not in overrides:
        # A shorter run keeps the recipe's share of warmup (a warmup longer than the run is refused).
        overrides["warmup_steps"] = rec.train.warmup_steps * overrides["steps"] // rec.train.steps
    if "lr" in overrides and "min_lr" not in overrides:
        # As the warmup: the recipe's ratio of last to peak rate (a min_lr above a lowered lr is refused).
        overrides["min_lr"] = rec.train.min_lr * overrides["lr"] / rec.train.lr
    tc = rec.train.replace(**overrides)
    if tc.seq_len > rec.model.context_length:
        raise ValueError(f"--seq-len {tc.seq_len} is longer than the model's context ({rec.model.context_length})")
    # Above the cores, threads only take turns; thousands of them crash torch outright (a segmentation fault, with
    # 2048 on a 2-core machine). 256 still lets a run resume on the thread count of any machine it began on.
    most = max(256, os.cpu_count() or 1)
    if args.threads is not None and not 1 <= args.threads <= most:
        raise ValueError(f"--threads must be in 1 .. {most} (this machine has {os.cpu_count()} cores), "
                         f"got {args.threads}")
    if args.export and not _has_hf_layout(rec.model):
        print(f"train: {rec.name} is a course step between GPT-2 and gpt-oss: it has no HF layout to export "
              "(drop --export)", file=sys.stderr)
        return 2
    if args.export:
        check_export_target(Path(args.export))
        check_not_the_course_checkpoint(Path(args.export), rec, tc)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or Path("runs") / rec.name)
    for flag, folder in [("--out", out)] + ([("--export", Path(args.export))] if args.export else []):
        safetensors_path(folder, f"{flag} ")  # said now, not when the first checkpoint of the run is written
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the run's checkpoints")
    if args.export:
        export_r, out_r = Path(args.export).resolve(), out.resolve()
        if export_r == out_r or out_r in export_r.parents or export_r in out_r.parents:
            raise ValueError(f"--export {args.export} and --out {out} overlap: the export is replaced as a whole and "
                             "the run keeps its checkpoints in --out, so give each a folder of its own")
    # Made now, before --fresh deletes anything: a folder that cannot be written is said before the
    # training, not after it.
    made = make_folders([("--out", out)] + ([("--export", Path(args.export).parent)] if args.export else []))
    try:
        with hold(out, "training run"):  # from --fresh to the export: two commands on one --out would undo each other
            return _run_in(args, rec, tc, out, argv)
    except BaseException:
        # Refused or stopped before the first checkpoint (a missing corpus, out of memory, Ctrl-C): the folders
        # this command made go again, as long as nothing was written into them.
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:200]


def _run_in(args: argparse.Namespace, rec: Recipe, tc: TrainConfig, out: Path, argv: list[str] | None) -> int:
    if args.export:  # as for the run's own folders (train): what exports killed mid-way left beside this one
        for stale in remove_leftovers(Path(args.export)):
            print(f"removed {stale}, what a killed export left", file=sys.stderr)
    if args.fresh:
        # Only what a run writes: the folder may hold other things, and so may its model/ and state/.
        keep = "move them out of it (--fresh deletes the run's model/ and state/ folders), then run again"
        check_replaceable(out / MODEL_DIR, keep)
        check_replaceable(out / STATE_DIR, keep, (STATE_TENSORS, STATE_JSON))
        for name in (STATE_DIR, MODEL_DIR):
            for folder in (out / name, *set_aside(out / name)):  # and copies a cut-short save set aside
                shutil.rmtree(folder, ignore_errors=True)
    # What TRAINING.md records, and what resumes the run: without --fresh, which would start it over.
    # argparse takes any start of it (--fr, --fre) as --fresh: each is left out.
    recorded = [a for a in argv if not (len(a) > 2 and "--fresh".startswith(a))] if argv is not None else [args.recipe]
    command = "python -m gptoss_edu.train " + " ".join(shlex.quote(a) for a in recorded)
    restore_folder(out / STATE_DIR)
    meta = None
    if (out / STATE_DIR).exists():
        # The settings are checked before the corpus is read, the data before anything is said of them: a
        # refusal is the only thing said.
        meta = check_resumable(out / STATE_DIR, rec.model, tc)
    data = prepare_data(tc.data, rec.model.vocab_size, seed=tc.seed)
    if meta is not None:
        check_same_data(out / STATE_DIR, meta, data.fingerprint(), warn=False)  # train() warns, once
    print(data, file=sys.stderr)
    if meta is not None:
        if meta["step"] >= tc.steps:
            then = f"; exporting it to {args.export}" if args.export else ""
            print(f"the run in {out} has finished its {tc.steps} steps{then} (--fresh starts it over)", file=sys.stderr)
        else:
            print(f"resuming the run in {out} from step {meta['step']}", file=sys.stderr)
    try:
        result = train(rec.model, tc, data, out=out, progress=not args.no_progress)
    except RuntimeError as e:
        if not is_out_of_memory(e):
            raise
        # The steps done are saved (train keeps the last finished one), but a run resumes only with the
        # settings it began with.
        raise ValueError(f"out of memory at {tc.batch_size} x {tc.seq_len} tokens a step ({_first_line(e)}): run "
                         "again with a smaller --batch-size or --seq-len, and --fresh (a run resumes only with the "
                         "settings it began with)") from None
    val = f"val loss {result.val_loss:.3f}" if result.evals else "no evaluation yet"
    summary = f"{result.step} steps: train loss {result.final_loss():.3f}, {val} (checkpoints in {out})"
    if result.interrupted:
        print(summary)
        again = "the same command" + (" without --fresh" if args.fresh else "")
        print(f"interrupted after step {result.step}: run {again} again to resume", file=sys.stderr)
        return 130
    if args.export:  # before the summary: a reader of the output gone (`| head`) must not cost the export
        try:
            export(result, args.export, command, rec.about, data)
        except RuntimeError as e:
            if not is_out_of_memory(e):
                raise
            again = "the same command" + (" without --fresh" if args.fresh else "")
            raise ValueError(f"out of memory while exporting to {args.export} ({_first_line(e)}): it is as it was "
                             f"before, and the run is saved in {out}: free some memory (close other programs and "
                             f"notebooks), then {again} exports it without training again") from None
        except KeyboardInterrupt:
            print(summary)
            again = "the same command" + (" without --fresh" if args.fresh else "")
            print(f"\ninterrupted while exporting: {args.export} is as it was before (an export replaces it only "
                  f"once complete); the run is saved in {out}, so {again} exports it without training again",
                  file=sys.stderr)
            return 130
    print(summary)
    if args.export:
        record = json.loads((Path(args.export) / "training.json").read_text())
        print(f"exported to {args.export} (its val loss, {export_format(rec.model)}: {record['exported_val_loss']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
