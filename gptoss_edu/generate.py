"""Generation over the KV cache: greedy or temperature/top-p sampling, streamed token by token."""

from __future__ import annotations

import gc
import math
import numbers
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from .attention import KVCache
from .model import GPT, check_token_ids

# One decode step: the token just chosen in, the logits [vocab] for the next one out.
DecodeStep = Callable[[int], torch.Tensor]


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> int:
    """Pick the next token from logits [vocab]: argmax at temperature 0, else nucleus sampling."""
    if logits.dim() != 1:
        raise ValueError(f"sample_next takes the logits of one position, [vocab]; got shape {tuple(logits.shape)} "
                         "(for a batch, pick each row: logits[i])")
    check_sampling(temperature, top_p)
    top = float(logits.max())  # NaN when any logit is NaN
    if not math.isfinite(top):
        nan, inf = int(logits.isnan().sum()), int(logits.isposinf().sum())
        what = f"{nan:,} NaN" if nan else f"{inf:,} +inf" if inf else "only -inf"
        raise ValueError(f"the logits hold {what} of {logits.numel():,}: there is nothing to sample from. The model's "
                         "output is broken (a float16 overflow, say, or weights that did not load right)")
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.float()
    # Below 1e-20, logit / temperature can overflow float32 (softmax: NaN), and below about 1e-45 the
    # temperature itself rounds to 0 in float32 (0 / 0 for the top logit). At such a temperature the draw is
    # the top token (one of them, if tied) either way: 0 for the top, -inf for the rest. Decided on the
    # number, not on the tensor: no extra GPU sync at every token.
    if temperature < 1e-20:
        scaled = torch.where(logits == top, 0.0, -math.inf)
    else:
        scaled = logits / temperature
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1:
        probs = nucleus(probs, top_p)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)  # torch draws with a generator on the tensor's own device
    # One draw is an exponential race, argmax(probs / noise) with one Exp(1) number per token: with the
    # same seed, every token gets the same noise, so two prompts with similar next-token distributions
    # tend to pick the same token (notebook 11 counts how long replies agree).
    return int(torch.multinomial(probs, 1, generator=generator))


def check_max_new_tokens(max_new_tokens: int) -> None:
    """Refuse a max_new_tokens that is not a whole number >= 0 (5.0, None and True included)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a whole number, 0 or more (an int), got {max_new_tokens!r}")


def check_seed(seed: Any) -> int | None:
    """A seed as torch's generators take it (a whole number in -2**63 .. 2**64 - 1, numpy's too), or None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be a whole number (or None: torch's global generator), got {seed!r}")
    seed = operator.index(seed)  # numpy's integers too: manual_seed takes only Python's
    if not -2**63 <= seed < 2**64:  # past it, manual_seed said only "Overflow when unpacking long long"
        raise ValueError(f"seed must be in -2**63 .. 2**64 - 1 (torch's range), got {seed}")
    return seed


def check_chat_settings(max_new_tokens: int, temperature: float, top_p: float, seed: Any) -> int | None:
    """A chat's settings checked when it is made (a bad one would fail every turn); the seed as check_seed gives it."""
    check_max_new_tokens(max_new_tokens)
    if max_new_tokens < 1:  # every message would be dropped unanswered
        raise ValueError(f"max_new_tokens must be at least 1 for a chat to answer, got {max_new_tokens}")
    check_sampling(temperature, top_p)
    return check_seed(seed)


def turn_seed(seed: int | None, turn: int) -> int | None:
    """A chat's seed for its turn ``turn`` (0, 1, ...): seed + turn, wrapped round into torch's range (None: None)."""
    if seed is None:
        return None
    return seed + turn - 2**64 if seed + turn >= 2**64 else seed + turn


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse a temperature that is not a finite number >= 0, or a top_p outside (0, 1] (NaN included)."""
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        one_number = isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) or one_number):
            raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not 0 <= temperature < math.inf or not 0 < top_p <= 1:  # NaN fails both comparisons
        raise ValueError(f"temperature must be a number >= 0 (0 is greedy) and top_p in (0, 1], got {temperature} "
                         f"and {top_p}")


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs [vocab] zeroed outside the nucleus: the most likely tokens until their mass reaches top_p."""
    # The nucleus is mostly a small head of the vocabulary: the k most likely tokens are sorted first,
    # with k growing until they hold top_p. On a CPU, sorting all of gpt-oss's 201,088 probabilities
    # takes about 20 ms, the top 1,024 about 1 ms.
    n = probs.shape[-1]
    # A float32 softmax over 201,088 tokens sums to 1 give or take 3e-5: top_p is a share of that sum, not of 1.
    wanted = top_p * probs.sum(dtype=torch.float64)
    for k in (64, 1024, 16384, n):
        k = min(k, n)
        top, order = probs.topk(k) if k < n else probs.sort(descending=True)  # most likely first
        mass = top.cumsum(-1, dtype=torch.float64)  # float32 would drift over 100,000 small terms
        if k == n or mass[-1] >= wanted:  # every token after these is cut
            break
    # A token stays while the tokens before it hold less than top_p: the first always stays. Of tokens
    # tied at the edge, those sorted first stay (topk's order; transformers keeps the later ones).
    keep = torch.cat([mass.new_zeros(1), mass[:-1]]) < wanted
    return torch.zeros_like(probs).scatter_(-1, order[keep], top[keep])


@dataclass
class Generation:
    """The new tokens, why generation stopped, and how fast it ran."""

    tokens: list[int] = field(default_factory=list)
    # "max_new_tokens", "context_full", "stop_token"; a chat's reader sets "other_role" (it cut the
    # reply where the model began a message of another role) or "format_problem" (where it broke harmony),
    # and ChatSession.reply "interrupted" (Ctrl-C, or Jupyter's Interrupt, stopped the reply).
    stop_reason: str = "max_new_tokens"
    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def cut_short(self) -> bool:
        """Whether something outside the model ended the reply: the token budget, a full context, an interrupt."""
        return self.stop_reason in ("max_new_tokens", "context_full", "interrupted")

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: new tokens after the first over the time spent producing them."""
        return (len(self.tokens) - 1) / self.decode_seconds if len(self.tokens) > 1 and self.decode_seconds else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cached_step(model: GPT, cache: KVCache) -> DecodeStep:
    """The plain decode step: one token through ``model`` over ``cache``."""
    device = model.embed.weight.device
    return lambda token: model(torch.tensor([[token]], device=device), cache)[0, -1]


@torch.no_grad()
def stream(model: GPT, prompt_ids: Sequence[int] | torch.Tensor, *, max_new_tokens: int = 256,
           temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
           stop_tokens: int | Sequence[int] | torch.Tensor = (), stats: Generation | None = None,
           decoder: Callable[[GPT, KVCache], DecodeStep] = cached_step) -> Iterator[int]:
    """Yield new token ids one by one; the prompt is prefilled once, then one ``decoder`` step per token.

    One sequence, no padding. Prompt and reply together stay within the context, so that the whole
    reply can be fed back (a chat's next turn). A stop token ends the reply and is its last token.
    A seeded draw uses a generator of its own (on the GPU for a CUDA model, else on the CPU: a GPU
    draws other numbers than the CPU); without a seed, torch's global generator.
    """
    ids, stops, seed = _checked_stream_args(model, prompt_ids, max_new_tokens, temperature, top_p, seed, stop_tokens)
    ctx = model.config.context_length
    stats = stats if stats is not None else Generation()
    stats.prompt_tokens = len(ids)
    if max_new_tokens == 0:  # nothing to sample: no prefill either (on gpt-oss-20b, a whole prompt's worth)
        stats.stop_reason = "max_new_tokens"
        return
    device = model.embed.weight.device
    # On a GPU the seeded draw happens there: no copy of 201,088 probabilities to the CPU at every token.
    generator = (torch.Generator(device if device.type == "cuda" else "cpu").manual_seed(seed)
                 if seed is not None else None)
    budget = min(max_new_tokens, ctx - len(ids))
    cache = model.new_cache(1, len(ids) + budget)
    step_logits = decoder(model, cache)  # made before the clock starts: it may prepare (e.g. record a graph)
    t0 = time.perf_counter()
    logits = model(torch.tensor([ids], device=device), cache, last_only=True)[0, -1]
    for step in range(budget):
        token = sample_next(logits, temperature, top_p, generator)
        _sync(device)
        now = time.perf_counter()
        if step == 0:
            stats.prefill_seconds = now - t0
        else:
            stats.decode_seconds += now - t0  # only the time spent here, not the caller's between tokens
        stats.tokens.append(token)
        yield token
        t0 = time.perf_counter()
        if token in stops:
            stats.stop_reason = "stop_token"
            return
        if step + 1 < budget:
            logits = step_logits(token)
    stats.stop_reason = "max_new_tokens" if budget == max_new_tokens else "context_full"


def _checked_stream_args(model: GPT, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int,
                         temperature: float, top_p: float, seed: Any,
                         stop_tokens: int | Sequence[int] | torch.Tensor) -> tuple[list[int], set[int], int | None]:
    """stream's arguments checked, each mistake said in words: the prompt's ids, the stop set and the seed."""
    ids = _prompt_list(prompt_ids)
    if not ids:
        raise ValueError("the prompt is empty: give at least one token")
    check_token_ids(min(ids), max(ids), model.config.vocab_size)
    if model.training and model.config.dropout > 0:
        raise ValueError(f"the model is in training mode, so dropout ({model.config.dropout}) would change every "
                         "token: call model.eval() before generating")
    check_max_new_tokens(max_new_tokens)
    check_sampling(temperature, top_p)
    stops = _stop_set(stop_tokens)
    seed = check_seed(seed)
    ctx = model.config.context_length
    if len(ids) >= ctx:
        raise ValueError(f"the prompt has {len(ids)} tokens, and the context holds {ctx} with the reply: a prompt "
                         f"of at most {ctx - 1} leaves room for one")
    return ids, stops, seed


def release_memory() -> None:
    """After a generation ran out of memory: free its cache and activations, and give them back to the GPU."""
    gc.collect()  # the failed step's tensors may sit in reference cycles (its traceback's frames)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _prompt_list(prompt_ids: Sequence[int] | torch.Tensor) -> list[int]:
    """One sequence of ids as a list: from a list, a [T] tensor or a [1, T] tensor."""
    if isinstance(prompt_ids, str):
        raise ValueError(f"the prompt is text ({prompt_ids[:30]!r}): generate takes token ids, so encode it first "
                         "(e.g. tokenizer.encode(text), or harmony.render_conversation for a chat)")
    if isinstance(prompt_ids, torch.Tensor):
        if prompt_ids.dim() == 2 and prompt_ids.shape[0] == 1:
            prompt_ids = prompt_ids[0]
        if (prompt_ids.dim() != 1 or prompt_ids.is_floating_point() or prompt_ids.is_complex()
                or prompt_ids.dtype == torch.bool):
            raise ValueError(f"generate takes one sequence: a list of ids, or an integer [T] or [1, T] tensor; got "
                             f"{prompt_ids.dtype} {tuple(prompt_ids.shape)}")
        return prompt_ids.tolist()
    return [_token_id(i, "generate takes one sequence of int token ids") for i in prompt_ids]


def _token_id(item: Any, refusal: str) -> int:
    """One token id from an int, a numpy int or a 0-d integer tensor (not a bool, not a float); else ``refusal``."""
    if not isinstance(item, bool):
        try:
            return operator.index(item)
        except TypeError:
            pass
    raise ValueError(f"{refusal}; got an item {item!r} ({type(item).__name__})")


def _stop_set(stop_tokens: int | Sequence[int] | torch.Tensor | None) -> set[int]:
    """The stop tokens as a set of ints, from one id, a sequence of ids or an integer tensor."""
    if stop_tokens is None:
        return set()
    if isinstance(stop_tokens, torch.Tensor):
        if stop_tokens.is_floating_point() or stop_tokens.is_complex() or stop_tokens.dtype == torch.bool:
            raise ValueError(f"stop_tokens must be token ids (ints); got a {stop_tokens.dtype} tensor")
        # As ints: a tensor hashes by identity, so a set of tensors would never hold a sampled token.
        return set(stop_tokens.flatten().tolist())
    if isinstance(stop_tokens, numbers.Integral) and not isinstance(stop_tokens, bool):
        return {int(stop_tokens)}  # one id, as tokenizers give eos_token_id
    return {_token_id(t, "stop_tokens must be token ids (ints)") for t in stop_tokens}


def generate(model: GPT, prompt_ids: Sequence[int] | torch.Tensor, *, max_new_tokens: int = 256,
             temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
             stop_tokens: int | Sequence[int] | torch.Tensor = (), on_token: Callable[[int], None] | None = None,
             decoder: Callable[[GPT, KVCache], DecodeStep] = cached_step) -> Generation:
    """Generate up to ``max_new_tokens``, calling ``on_token`` with each; returns tokens and timings."""
    result = Generation()
    for token in stream(model, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        seed=seed, stop_tokens=stop_tokens, stats=result, decoder=decoder):
        if on_token is not None:
            on_token(token)
    return result
