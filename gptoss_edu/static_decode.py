"""Decoding with static shapes, so that a CUDA graph can replay a whole token step at once.

``model(ids, cache)`` slices the KV cache to its filled length, a Python int, so each decode
step has new shapes and Python launches each of the step's kernels anew (hundreds of launches
for gpt-oss-20b). At batch 1 on a GPU the launches, not the arithmetic, can eat much of a step.
Here one decode step has the same shapes at every position:

- the token ids and their position sit in small device tensors, written before each step;
- each layer writes its key and value into the preallocated cache at that position (index_copy_),
  or, on a sliding-window layer, at the position's slot in the layer's rolling buffer;
- attention reads the position on the device: the PyTorch path runs over the whole cache and masks
  out the keys the position may not see (causal, sliding window; sinks and GQA as in
  ``attention.attend``), the Triton kernel reads only the keys it may see.

Every launch is then the same at every position, so the step is recorded once as a CUDA graph
and replayed per token: one launch from Python instead of hundreds. The step calls the model's
own modules (norms, projections, rotary, router, experts), so it shares their weights.

    decoder = CUDAGraphDecoder(model, cache)  # cache prefilled by model(prompt_ids, cache)
    logits = decoder(token)                   # [B, vocab]; writes position cache.length, then advances it
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .attention import Attention, KVCache, attend_masked, attention_mask, cache_slots
from . import generate as generate_
from .generate import DecodeStep, Generation
from .mlp import gptoss_swiglu
from .model import GPT, check_token_ids
from .moe import Experts, MoE

# Eager runs before capturing: the first one compiles the Triton kernels and sets up cuBLAS,
# neither of which may happen while a graph is being recorded.
WARMUP_STEPS = 2


def _rotate_q_k(q: torch.Tensor, k: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """apply_rotary on q and k at once, with [cos, cos] and [-sin, sin] made once a step: the same numbers, fewer kernels."""
    # first * cos + second * (-sin) rounds as first * cos - second * sin does: the results are equal to the bit.
    qk = torch.cat((q, k), dim=1)
    half = qk.shape[-1] // 2
    turned = qk * cos2 + torch.cat((qk[..., half:], qk[..., :half]), dim=-1) * sin2
    return turned.split((q.shape[1], k.shape[1]), dim=1)


def _attention_step(attn: Attention, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                    cache: KVCache, position: torch.Tensor, allowed: Callable[[int, int], torch.Tensor],
                    rolled: Callable[[int], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Attention.forward for one token [B, 1, d], writing its key and value at ``position``.

    ``rope`` is ([cos, cos], [-sin, sin]) for _rotate_q_k; ``rolled(slots)`` the slot of ``position`` in a
    rolling buffer of that many slots and the last slot filled.
    """
    B = x.shape[0]
    q = attn.q_proj(x).view(B, 1, attn.n_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(B, 1, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(B, 1, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
    if attn.use_rope:
        q, k = _rotate_q_k(q, k, *rope)
    keys, values = cache.k[attn.layer], cache.v[attn.layer]
    slots, rolling = keys.shape[2], cache.rolling(attn.layer)
    # Where to write is data on the device, not a slice bound: the same launch at every position.
    # A rolling buffer holds the window and nothing older: every filled slot is visible, in any
    # order (softmax does not care), so it is read as a causal cache filled up to its last slot.
    (slot, last), window = (rolled(slots), 0) if rolling else ((position, position), attn.window)
    keys.index_copy_(2, slot, k)
    values.index_copy_(2, slot, v)
    if attn.backend == "triton":
        from gptoss_kernels.attention import attention_decode_at

        # Reads the position on the device and only the keys it can see, not the whole cache.
        y = attention_decode_at(q, keys, values, last, scale=attn.scale, sinks=attn.sinks, window=window)
    else:
        y = attend_masked(q, keys, values, allowed(slots, window), scale=attn.scale, sinks=attn.sinks)
    return attn.o_proj(y.transpose(1, 2).reshape(B, 1, -1))


def _experts_gathered(experts: Experts, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Experts.forward's math in fixed shapes: gather each token's k experts' weights instead of looping over experts."""
    N, K = indices.shape
    chosen = indices.reshape(-1)  # pair t * K + slot: token t's slot-th expert
    xs = x.repeat_interleave(K, dim=0)[:, None, :]  # [N*K, 1, d]
    # Experts.weight indexes its stacked weights, so a tensor of experts gathers them all at once.
    w1 = experts.weight("gate_up_proj", chosen, x.dtype)  # [N*K, 2*ff, d], dequantized if packed
    h = gptoss_swiglu(xs @ w1.transpose(1, 2) + experts.gate_up_proj_bias[chosen, None].to(x.dtype),
                      experts.alpha, experts.limit)
    w2 = experts.weight("down_proj", chosen, x.dtype)  # [N*K, d, ff]
    y = h @ w2.transpose(1, 2) + experts.down_proj_bias[chosen, None].to(x.dtype)  # [N*K, 1, d]
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32  # Experts.forward's sum, in its order
    return (y.view(N, K, -1).to(wide) * weights[..., None].to(wide)).sum(dim=1).to(x.dtype)


def _feed_forward_step(mlp: nn.Module, x: torch.Tensor,
                       router: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The block's MLP or MoE on x [B, 1, d], with no data-dependent shapes and no host sync.

    ``router``: the router's weight and bias already in float32 (Router.forward converts them at every call).
    """
    if not isinstance(mlp, MoE):
        return mlp(x)  # a dense MLP has fixed shapes already
    flat = x.reshape(-1, x.shape[-1])
    # top-k: always k experts a token
    _, weights, indices = mlp.router(flat) if router is None else mlp.router.route(flat, *router)
    experts = mlp.experts
    if experts.backend == "triton" and experts.packed:
        from gptoss_kernels.moe import moe_mxfp4_decode

        # check_indices reads the indices on the host (a sync no graph can hold); top-k's are in range.
        out = moe_mxfp4_decode(flat, indices, weights, experts.gate_up_proj_blocks, experts.gate_up_proj_scales,
                               experts.gate_up_proj_bias, experts.down_proj_blocks, experts.down_proj_scales,
                               experts.down_proj_bias, alpha=experts.alpha, limit=experts.limit, check_indices=False)
    else:
        # Experts.forward loops over indices.unique().tolist(): shapes that change and a host sync.
        out = _experts_gathered(experts, flat, indices, weights)
    return out.reshape(x.shape)


def wide_routers(model: GPT) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Each layer's router weight and bias in float32 (float64 in a float64 model), None for a dense MLP."""
    wide = torch.float64 if model.embed.weight.dtype == torch.float64 else torch.float32
    return [(b.mlp.router.weight.detach().to(wide), b.mlp.router.bias.detach().to(wide)) if isinstance(b.mlp, MoE)
            else None for b in model.blocks]


def static_decode_step(model: GPT, cache: KVCache, tokens: torch.Tensor, position: torch.Tensor,
                       routers: Sequence[tuple[torch.Tensor, torch.Tensor] | None] | None = None) -> torch.Tensor:
    """Logits [B, vocab] for ``tokens`` [B] at ``position`` [1], device tensors; writes their keys and values to ``cache``.

    ``routers`` (wide_routers(model), made once) spares each step converting the routers' weights.
    """
    # model(tokens[:, None], cache)[:, -1] at cache.length == position, but cache.length (a Python
    # int, which a graph cannot update) is left to the caller. What every layer would compute alike
    # (the rotary angles, the masks, a rolling buffer's slot) is computed once: in a CUDA graph at batch
    # 1, every kernel costs a few microseconds whatever its size.
    x = model.embed(tokens)[:, None]  # [B, 1, d]
    if model.pos_embed is not None:
        x = x + model.pos_embed(position)
    rope = None
    if model.rotary is not None:
        cos, sin = model.rotary(position, x.dtype)
        rope = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
    masks: dict[tuple[int, int], torch.Tensor] = {}
    slots_of: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def allowed(slots: int, window: int) -> torch.Tensor:
        # One mask [1, slots] per cache layout, shared by the layers that have it.
        if (slots, window) not in masks:
            masks[slots, window] = attention_mask(position, torch.arange(slots, device=position.device), window)
        return masks[slots, window]

    def rolled(slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        if slots not in slots_of:
            slots_of[slots] = position % slots, position.clamp(max=slots - 1)
        return slots_of[slots]

    routers = routers or [None] * len(model.blocks)
    for block, router in zip(model.blocks, routers, strict=True):
        x = x + _attention_step(block.attn, block.attn_norm(x), rope, cache, position, allowed, rolled)
        x = x + _feed_forward_step(block.mlp, block.mlp_norm(x), router)
    return model.logits(x)[:, 0]


class CUDAGraphDecoder:
    """Decodes into one cache with the static step: a CUDA graph recorded once and replayed on a GPU, eager elsewhere."""

    # A graph holds the addresses of the weights and of the cache, and the kernels of the backend
    # set when it was recorded: make a new decoder after replacing any of them.
    def __init__(self, model: GPT, cache: KVCache, cuda_graph: bool | None = None) -> None:
        cfg = model.config
        device, dtype = model.embed.weight.device, model.embed.weight.dtype
        want = [(cfg.n_kv_heads, n, cfg.head_dim) for n in cache_slots(cfg, cache.max_len)]
        have = [tuple(k.shape[1:]) for k in cache.k]
        if have != want:
            raise ValueError(f"the cache does not fit {cfg.name}: its layers hold (KV heads, positions, head_dim) "
                             f"{have}, the model needs {want}: use model.new_cache()")
        if cache.k[0].device != device or cache.k[0].dtype != dtype:
            raise ValueError(f"the cache is {cache.k[0].dtype} on {cache.k[0].device}, the model {dtype} on {device}: "
                             "use model.new_cache()")
        if model.training and cfg.dropout > 0:
            raise ValueError("the static decode step has no dropout: call model.eval() first")
        use_graph = device.type == "cuda" if cuda_graph is None else cuda_graph
        if use_graph and (device.type != "cuda" or not torch.cuda.is_available()):
            raise RuntimeError(f"CUDA graphs need the model and cache on a CUDA GPU, and these are on {device}: pass "
                               "cuda_graph=False (or leave it None) to run the same static step eagerly")
        self.model, self.cache, self.use_graph = model, cache, use_graph
        # Converted now, as a graph records the weights' addresses: a decoder follows the weights it was made with.
        self.routers = wide_routers(model)
        # The step's inputs: persistent buffers, so a recorded graph reads whatever was written last.
        self.tokens = torch.zeros(cache.k[0].shape[0], dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # the graph's output buffer

    def _run(self) -> torch.Tensor:
        return static_decode_step(self.model, self.cache, self.tokens, self.position, self.routers)

    def _set_position(self) -> None:
        if self.cache.length >= self.cache.max_len:
            raise ValueError(f"the KV cache holds {self.cache.max_len} positions and all are filled: "
                             "make a larger cache (model.new_cache(batch, max_len)) to decode further")
        self.cache.check_step(self.cache.length)  # before the step writes, as the eager path checks
        self.position.fill_(self.cache.length)

    @torch.no_grad()
    def capture(self) -> None:
        """Record the step as a CUDA graph (once); its warm-up writes only at cache.length, which the next step rewrites."""
        if not self.use_graph or self.graph is not None:
            return
        # Position cache.length is not filled yet, so the warm-up's writes are harmless; in a rolling
        # buffer they replace position cache.length - window, which no query from here on can see.
        self._set_position()
        device = self.position.device
        # torch.cuda.graph records on the current device's streams: the model's GPU must be the current one.
        with torch.cuda.device(device):
            side = torch.cuda.Stream(device)  # warm up off the default stream, as PyTorch's graph docs do
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self._run()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.logits = self._run()
        self.graph = graph

    @torch.no_grad()
    def __call__(self, tokens: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Logits [B, vocab] after ``tokens`` (one per sequence) at position cache.length, which then advances by one."""
        # On the graph path the logits are the graph's output buffer: the next call overwrites them.
        if isinstance(tokens, (bool, float)) or (
                isinstance(tokens, torch.Tensor) and tokens.dtype not in (torch.int64, torch.int32)):
            kind = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens are token ids, ints (or an int64/int32 tensor), one per sequence; got {kind}")
        if not isinstance(tokens, torch.Tensor) or tokens.device.type == "cpu":  # host ids are checked for free;
            # a device tensor would sync
            ids = [tokens] if isinstance(tokens, int) else torch.as_tensor(tokens).reshape(-1).tolist()
            given = tokens if isinstance(tokens, (list, tuple)) else ()  # [True, 5] becomes ints in a tensor
            if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or any(
                    isinstance(i, bool) for i in given):  # True is no token id
                raise ValueError(f"tokens are token ids, whole numbers, one per sequence; got {tokens!r}")
            if ids:
                check_token_ids(min(ids), max(ids), self.model.config.vocab_size)
        count = 1 if isinstance(tokens, int) else (tokens.numel() if isinstance(tokens, torch.Tensor) else len(ids))
        if not isinstance(tokens, int) and count != self.tokens.numel():
            raise ValueError(f"tokens: one per sequence, and the cache holds {self.tokens.numel()}; got {count}")
        self._set_position()
        if isinstance(tokens, int):
            self.tokens.fill_(tokens)  # a fill kernel: no copy from the host
        else:
            self.tokens.copy_(torch.as_tensor(tokens).reshape(self.tokens.shape))
        if self.use_graph:
            self.capture()
            self.graph.replay()
            logits = self.logits
        else:
            logits = self._run()
        self.cache.length += 1
        return logits


def graph_step(cuda_graph: bool | None = None) -> Callable[[GPT, KVCache], DecodeStep]:
    """A ``decoder`` for gptoss_edu.generate: each decode step on a CUDAGraphDecoder over the cache."""
    def make(model: GPT, cache: KVCache) -> DecodeStep:
        decoder = CUDAGraphDecoder(model, cache, cuda_graph)
        decoder.capture()  # at position 0 (the prefill overwrites it), before generate's clock starts
        return lambda token: decoder(token)[0]
    return make


def _on_gpu(model: GPT) -> bool:
    return model.embed.weight.device.type == "cuda"


def fast_step(cuda_graph: bool | None = None) -> Callable[[GPT, KVCache], DecodeStep]:
    """A ``decoder`` for gptoss_edu.generate: a CUDA graph where the model is on a GPU, the plain step elsewhere.

    ``cuda_graph=None`` (the chats' default) falls back to the plain step, with a warning, if the
    graph cannot be recorded; True insists on the graph (an error says why not); False never records one.
    """
    def make(model: GPT, cache: KVCache) -> DecodeStep:
        if not (_on_gpu(model) if cuda_graph is None else cuda_graph):
            # On a CPU the plain step is as fast: no launch overhead to save, and it reads only the filled cache.
            return generate_.cached_step(model, cache)
        try:
            return graph_step(True)(model, cache)
        except RuntimeError as e:
            if cuda_graph:
                raise
            warnings.warn(f"the decode step could not be recorded as a CUDA graph ({e}); decoding without one, "
                          "slower (pass cuda_graph=False, or --no-cuda-graph, to skip the attempt)", stacklevel=2)
            return generate_.cached_step(model, cache)
    return make


def generate(model: GPT, prompt_ids: Sequence[int] | torch.Tensor, *, cuda_graph: bool | None = None,
             **kwargs: Any) -> Generation:
    """``generate.generate`` on the static decode step (a CUDA graph on a GPU); returns tokens and timings."""
    return generate_.generate(model, prompt_ids, decoder=graph_step(cuda_graph), **kwargs)
