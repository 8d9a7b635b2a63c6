"""Causal self-attention: multi-head to grouped-query, sliding windows, sinks, and a KV cache."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .config import ModelConfig
from .rotary import apply_rotary

# Queries are processed in chunks of at most QUERY_CHUNK, and of at most SCORE_CHUNK scores (256 MiB in
# bf16), so the score matrix stays small on long prompts: at gpt-oss's 64 heads, 1,024 queries over
# 131,072 keys would make 16 GiB of scores, three times over while the softmax runs.
QUERY_CHUNK = 1024
SCORE_CHUNK = 1 << 27


def query_chunk(batch: int, heads: int, keys: int) -> int:
    """How many queries attend() takes at a time over ``keys`` keys: QUERY_CHUNK, fewer on long prompts."""
    return max(1, min(QUERY_CHUNK, SCORE_CHUNK // max(1, batch * heads * keys)))


class KVCache:
    """Preallocated keys and values for every layer; ``length`` positions are filled.

    A full-attention layer keeps every position. A sliding-window layer sees only the last ``window``
    keys, its own included, so it keeps only its last ``window`` positions in a rolling buffer:
    position p lives in slot p % window, overwriting position p - window.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if max_len > cfg.context_length:
            raise ValueError(f"a cache of {max_len} positions exceeds the context length {cfg.context_length}")
        self.slots = cache_slots(cfg, max_len)
        self.k = [torch.zeros((batch_size, cfg.n_kv_heads, n, cfg.head_dim), device=device, dtype=dtype)
                  for n in self.slots]
        self.v = [torch.zeros_like(k) for k in self.k]
        self.max_len = max_len
        self._length = 0
        self._written = 0  # the furthest length reached since the last start over: what the buffers have seen
        # Each layer's furthest position written, + 1: a step that fails after some layers wrote (an error, Ctrl-C)
        # leaves them ahead of ``length``, and a sliding layer's writes have overwritten what a retry would read.
        self._layer_written = [0] * len(self.slots)

    @property
    def length(self) -> int:
        """Positions filled: the next step writes position ``length``."""
        return self._length

    @length.setter
    def length(self, value: int) -> None:
        # Going back is re-doing steps (notebook 05 times one step so): a rolling buffer that has wrapped
        # no longer holds what a query more than one position back would see. Back from the furthest
        # length written, not from the current one: two steps back of one each are two steps back.
        if value < 0 or value > self.max_len:
            raise ValueError(f"a cache of {self.max_len} positions cannot hold {value}")
        written = max(self._written, *self._layer_written)
        wrapped = [n for n in self.slots if n < self.max_len and written > n] if 0 < value < written - 1 else []
        if wrapped:
            n = min(wrapped)
            # After a step that stopped part-way, the furthest length written is no place to go back to either.
            later = "" if self._part_way() else f"Go back to {written - 1} at the earliest, or "
            raise ValueError(
                f"the cache cannot go back to {value} positions, {written} having been written: its sliding-window "
                f"layers keep only their last {n}, and positions {written - n - 1} and before are overwritten, "
                f"though a query at position {value} would see them. {later or 'Go back '}to 0 (start over)")
        self._length = value
        self._written = 0 if value == 0 else max(written, value)
        if value == 0:
            self._layer_written = [0] * len(self.slots)

    def check_step(self, start: int, layers: Iterable[int] | None = None) -> None:
        """Refuse a step from position ``start`` whose keys a step that stopped part-way has overwritten."""
        if max(self._layer_written) <= start + 1:  # the usual case, at every decode step: no layer wrote ahead
            return
        for layer in range(len(self.slots)) if layers is None else layers:
            n, ahead = self.slots[layer], self._layer_written[layer]
            if n < self.max_len and ahead > n and start < ahead - 1:
                raise RuntimeError(f"layer {layer}'s sliding-window buffer already holds positions up to {ahead - 1}, "
                                   "written by a step that stopped part-way (an error or Ctrl-C inside the model), "
                                   f"and they overwrote keys that position {start} needs: start over with "
                                   "cache.length = 0, or make a new cache with model.new_cache()")

    def _part_way(self) -> bool:
        """Whether a step stopped part-way: some layers wrote past ``length``, others did not."""
        furthest = max(self._layer_written)
        return furthest > self._length and min(self._layer_written) < furthest

    def rolling(self, layer: int) -> bool:
        """Whether ``layer`` keeps a rolling buffer shorter than the cache (a sliding-window layer)."""
        return self.slots[layer] < self.max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Store this step's keys and values for ``layer``; return the keys and values its queries attend
        over, and the index among them of the step's first query (its position, until the layer rolls)."""
        start, end = self.length, self.length + k.shape[2]
        n, keys, values = self.slots[layer], self.k[layer], self.v[layer]
        if k.shape[0] != keys.shape[0] or k.dtype != keys.dtype or k.device != keys.device:
            raise ValueError(f"the KV cache was made for batch {keys.shape[0]}, {keys.dtype} on {keys.device}; this "
                             f"step is batch {k.shape[0]}, {k.dtype} on {k.device}: make the cache with "
                             "model.new_cache(batch_size), after moving or converting the model")
        if end > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions; this step needs {end}")
        if keys.is_inference() and not torch.is_inference_mode_enabled():  # PyTorch's own error names no cure
            raise RuntimeError("this KV cache was made inside torch.inference_mode(), and PyTorch writes into such "
                               "tensors only there: step it under inference_mode too, or make the cache under "
                               "torch.no_grad() (model.new_cache())")
        self.check_step(start, (layer,))
        ahead = self._layer_written[layer]
        self._layer_written[layer] = max(ahead, end)
        if end <= n:  # nothing has rolled over yet: position p sits in slot p
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            return keys[:, :, :end], values[:, :, :end], start
        if k.shape[2] == 1:
            # Decoding one token: once it is written, the buffer holds exactly the window it sees.
            # Softmax does not care about their order, so the query reads them as the last of n.
            slot = start % n
            keys[:, :, slot:slot + 1] = k
            values[:, :, slot:slot + 1] = v
            return keys, values, n - 1
        # Several new positions: the first queries may need keys this write overwrites, so read the
        # held ones first, in position order, and put the step's own after them.
        lo = max(0, start - n)
        held = torch.arange(lo, start, device=k.device) % n
        old_k, old_v = keys.index_select(2, held), values.index_select(2, held)
        first = max(start, end - n)  # only the step's last n positions stay
        slots = torch.arange(first, end, device=k.device) % n
        keys.index_copy_(2, slots, k[:, :, first - start:])
        values.index_copy_(2, slots, v[:, :, first - start:])
        if start == 0:  # nothing held before this step (a first prompt longer than the window)
            return k, v, 0
        return torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2), start - lo

    def nbytes(self) -> int:
        """Bytes held by the cache."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


def cache_slots(cfg: ModelConfig, max_len: int) -> list[int]:
    """Positions each layer's cache holds: ``max_len``, or the window on sliding-window layers."""
    return [min(cfg.window(layer) or max_len, max_len) for layer in range(cfg.n_layers)]


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor | None = None) -> None:
    """Refuse q [B, Hq, Tq, D], k and v [B, Hkv, Tk, D] and sinks [Hq] that do not fit together, naming the shapes."""
    # Called at every layer of every step: the message is made only when one is needed.
    shapes = lambda: f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"  # noqa: E731
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"q must be [B, Hq, Tq, D], and k and v both [B, Hkv, Tk, D]; got {shapes()}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"q, k and v must agree in batch B and head size D; got {shapes()}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"the query heads ({q.shape[1]}) must be a multiple of the KV heads ({k.shape[1]}): "
                         f"{shapes()}")
    if sinks is not None and tuple(sinks.shape) != (q.shape[1],):
        raise ValueError(f"sinks must hold one logit per query head, [{q.shape[1]}], got {tuple(sinks.shape)}")


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int = 0) -> torch.Tensor:
    """Boolean [Tq, Tk]: True where a query may look at a key (causal, and within the window)."""
    if window < 0:  # a negative window would mask every key, and every row's softmax would be NaN
        raise ValueError(f"window must be >= 0 (0 = no window, else the keys each query sees), got {window}")
    delta = q_pos[:, None] - k_pos[None, :]
    allowed = delta >= 0
    if window:
        allowed &= delta < window  # ``window`` keys, the current one included
    return allowed


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, q_start: int = 0,
           window: int = 0, sinks: torch.Tensor | None = None, dropout: float = 0.0) -> torch.Tensor:
    """Softmax attention of q [B, Hq, Tq, D] over k, v [B, Hkv, Tk, D]; query i sits at q_start + i."""
    check_qkv(q, k, v, sinks)
    if q_start < 0:
        raise ValueError(f"q_start is the position of the first query, >= 0, got {q_start}")
    Tq, Tk = q.shape[2], k.shape[2]
    if q_start + Tq > Tk:  # a query past the last key has no key of its own: NaN, or all its weight on the sink
        raise ValueError(f"the queries sit at positions q_start..q_start+Tq-1 = {q_start}..{q_start + Tq - 1}, which "
                         f"must be keys too (Tk = {Tk}): need 0 <= q_start <= Tk - Tq")
    k_pos = torch.arange(Tk, device=q.device)
    chunk = query_chunk(q.shape[0], q.shape[1], Tk)
    outs = []
    for s in range(0, Tq, chunk):  # a chunk of queries at a time: its scores are [.., chunk, Tk]
        qc = q[:, :, s:s + chunk]
        q_pos = torch.arange(q_start + s, q_start + s + qc.shape[2], device=q.device)
        outs.append(attend_masked(qc, k, v, attention_mask(q_pos, k_pos, window), scale=scale, sinks=sinks,
                                  dropout=dropout))
    return torch.cat(outs, dim=2) if outs else q.new_empty(q.shape)  # no queries: nothing to attend


def attend_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, *, scale: float,
                  sinks: torch.Tensor | None = None, dropout: float = 0.0) -> torch.Tensor:
    """Softmax attention of q [B, Hq, Tq, D] over k, v [B, Hkv, Tk, D], the keys each query sees marked in ``allowed``."""
    B, Hq, Tq, D = q.shape
    Hkv = k.shape[1]
    groups = Hq // Hkv
    # Grouped-query attention: view the query heads as [Hkv, groups] instead of copying k and v.
    qg = q.reshape(B, Hkv, groups, Tq, D)
    # Scores stay in q's dtype, scaled there, as OpenAI's reference does (QK *= sm_scale): in bf16 this
    # gives its bits. torch's softmax computes in float32 inside and rounds once.
    scores = (qg @ k.unsqueeze(2).transpose(-1, -2)) * scale  # [B, Hkv, G, Tq, Tk]
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        # The sink is one more logit in every row; its probability is dropped after the softmax.
        sink = sinks.to(scores.dtype).reshape(1, Hkv, groups, 1, 1).expand(B, Hkv, groups, Tq, 1)
        probs = torch.softmax(torch.cat((scores, sink), dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1)
    if dropout:
        probs = nn.functional.dropout(probs, dropout, training=True)
    return (probs.to(v.dtype) @ v.unsqueeze(2)).reshape(B, Hq, Tq, D)


class Attention(nn.Module):
    """Causal self-attention with GQA, RoPE on q and k (learned positions are added in GPT), a window, sinks."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads, self.head_dim = layer, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.window = cfg.window(layer)
        self.use_rope = cfg.positions != "learned"
        self.scale = cfg.head_dim ** -0.5
        self.dropout = cfg.dropout
        q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, q_dim, bias=cfg.attn_bias)
        self.k_proj = nn.Linear(cfg.d_model, kv_dim, bias=cfg.attn_bias)
        self.v_proj = nn.Linear(cfg.d_model, kv_dim, bias=cfg.attn_bias)
        self.o_proj = nn.Linear(q_dim, cfg.d_model, bias=cfg.attn_bias)
        self.sinks = nn.Parameter(torch.zeros(cfg.n_heads)) if cfg.sinks else None
        self.backend = "torch"

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T, d_model] to [B, T, d_model]; ``rope`` is (cos, sin) of the T positions, ``cache`` this layer's."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        q_start = 0
        if cache is not None:
            need = min(self.window or cache.max_len, cache.max_len)
            if cache.slots[self.layer] != need:
                raise ValueError(f"layer {self.layer}'s cache holds {cache.slots[self.layer]} positions but its "
                                 f"{f'window of {self.window}' if self.window else 'full attention'} needs {need}: "
                                 "the cache was made for another model; make one with model.new_cache()")
            # q_start counts from the first key returned: masks only look at differences.
            k, v, q_start = cache.update(self.layer, k, v)
        dropout = self.dropout if self.training else 0.0
        if self.backend == "triton" and not dropout:
            from gptoss_kernels.attention import attention

            y = attention(q, k, v, scale=self.scale, sinks=self.sinks, window=self.window, q_start=q_start)
        else:
            y = attend(q, k, v, scale=self.scale, q_start=q_start, window=self.window, sinks=self.sinks,
                       dropout=dropout)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))
