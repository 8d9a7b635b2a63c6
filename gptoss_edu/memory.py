"""Memory and disk planning for a gpt-oss model: checkpoint bytes, KV cache, workspace, does it fit.

Every figure is derived from a config: a dict of Hugging Face ``config.json`` keys (``hidden_size``,
``num_hidden_layers``, ...), any object with those attributes, or the course's ``ModelConfig``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from .config import alternating_layer_types

KiB, MiB, GiB = 1024, 1024**2, 1024**3
# A GPU's free memory is what it holds less the CUDA context torch creates on it (a few hundred MiB).
CUDA_CONTEXT_BYTES = GiB // 2
MXFP4_BLOCK = 32  # values per block: 16 bytes of E2M1 codes and one E8M0 scale byte

# Hugging Face config key -> the course ModelConfig attribute that holds the same number.
_KEYS = {
    "hidden_size": "d_model",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "head_dim": "head_dim",
    "vocab_size": "vocab_size",
    "num_local_experts": "n_experts",
    "intermediate_size": "d_ff",
}
_FLAGS = {"attention_bias": ("attn_bias", True), "tie_word_embeddings": ("tie_embeddings", False)}


def dims(config: Any) -> dict[str, int]:
    """The sizes memory planning needs, as HF config keys, from a dict, an HF config or a ModelConfig."""
    def get(key: str, course_name: str, default: Any = None) -> Any:
        if isinstance(config, Mapping):  # OpenAI's original config.json says experts_per_token, as the course does
            return config[key] if key in config else config.get(course_name, default)
        for name in (key, course_name):
            if hasattr(config, name):
                return getattr(config, name)
        return default

    out: dict[str, int] = {}
    for key, course_name in _KEYS.items():
        value = get(key, course_name)
        # No fallback for a missing head_dim: gpt-oss's is not hidden_size / heads (64, not 2880 / 64 = 45),
        # and the loader refuses a config.json without one too.
        if value is None:
            raise ValueError(f"the config has no {key!r} (nor {course_name!r}): pass a gpt-oss config.json dict "
                             "or a ModelConfig")
        out[key] = int(value)
    for key, (course_name, default) in _FLAGS.items():
        out[key] = int(bool(get(key, course_name, default)))
    out["num_experts_per_tok"] = int(get("num_experts_per_tok", "experts_per_token", 4) or 0)  # gpt-oss's 4 if unsaid
    return out


# ---- weights ----------------------------------------------------------------------------------

def checkpoint_parts(config: Any) -> dict[str, int]:
    """Bytes of a gpt-oss checkpoint by kind: bf16 tensors, MXFP4 expert blocks and their scales."""
    c = dims(config)
    d, L, E, ff, V = c["hidden_size"], c["num_hidden_layers"], c["num_local_experts"], c["intermediate_size"], c["vocab_size"]
    H, q, kv = c["num_attention_heads"], c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    if E <= 0:
        raise ValueError("this config has no experts (num_local_experts is 0): the gpt-oss checkpoint layout, "
                         "with MXFP4 experts, does not apply")
    if d % MXFP4_BLOCK or ff % MXFP4_BLOCK:
        raise ValueError(f"MXFP4 experts need hidden_size ({d}) and intermediate_size ({ff}) to be multiples of 32")
    bias = c["attention_bias"]
    attn = d * (q + 2 * kv) + q * d + bias * (q + 2 * kv + d) + H  # q, k, v, o (+ biases) and the sinks
    layer_bf16 = attn + 2 * d + (E * d + E) + E * (2 * ff + d)  # + two norms, the router, expert biases
    expert_values = E * (2 * ff * d + d * ff)  # gate_up [2ff, d] and down [d, ff] per expert
    embeddings = V * d * (1 if c["tie_word_embeddings"] else 2)
    return {
        "bf16": 2 * (embeddings + L * layer_bf16 + d),  # + the final norm
        "mxfp4_blocks": L * expert_values // 2,  # two 4-bit codes a byte
        "mxfp4_scales": L * expert_values // MXFP4_BLOCK,  # one byte a block of 32
    }


def checkpoint_bytes(config: Any) -> int:
    """Bytes of a gpt-oss checkpoint on disk (and of its weights in memory with experts kept in MXFP4)."""
    return sum(checkpoint_parts(config).values())


def layer_windows(config: Any) -> list[int]:
    """Each layer's sliding window in keys (0 = full attention), from ``layer_types`` and ``sliding_window``."""
    n_layers = dims(config)["num_hidden_layers"]
    if callable(getattr(config, "window", None)):  # the course's ModelConfig knows its layers
        return [config.window(layer) for layer in range(n_layers)]
    get = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
    types, window = get("layer_types"), int(get("sliding_window") or 0)
    if isinstance(config, Mapping) and "sliding_window" not in config:
        window = 128  # transformers' default, which the checkpoint reader takes too (null or 0 means none)
    if not types:  # a gpt-oss config.json without the list alternates, as the checkpoint reader does
        types = alternating_layer_types(n_layers)
    if len(types) != n_layers:
        raise ValueError(f"the config has {len(types)} layer_types for {n_layers} layers")
    return [window if t == "sliding_attention" else 0 for t in types]


def kv_cache_bytes(config: Any, context: int, batch: int = 1, dtype_bytes: int = 2) -> int:
    """Bytes of keys and values for ``context`` positions, held as the course's KVCache holds them.

    A full-attention layer keeps every position; a sliding-window layer keeps its last ``window``
    (a rolling buffer), so at long contexts gpt-oss's cache is about half of every layer in full.
    """
    c = dims(config)
    per_position = 2 * c["num_key_value_heads"] * c["head_dim"] * dtype_bytes  # one layer's key and value
    positions = sum(min(w, int(context)) if w else int(context) for w in layer_windows(config))
    return per_position * positions * int(batch)


# ---- workspace --------------------------------------------------------------------------------

# attention.QUERY_CHUNK, attention.SCORE_CHUNK and mxfp4._DEQUANT_CHUNK, for a Python where torch does not
# import (tests hold them equal).
CHUNKS_WITHOUT_TORCH = (1024, 1 << 27, 1 << 22)


def _query_chunk_without_torch(batch: int, heads: int, keys: int) -> int:
    """attention.query_chunk, for a Python where torch does not import (tests hold the two equal)."""
    query_chunk, score_chunk = CHUNKS_WITHOUT_TORCH[:2]
    return max(1, min(query_chunk, score_chunk // max(1, batch * heads * keys)))


def workspace_parts(config: Any, prompt_tokens: int, context: int | None = None, batch: int = 1,
                    dtype_bytes: int = 2, last_only: bool = False) -> dict[str, int]:
    """Peak temporary bytes of each phase of the course's PyTorch forward pass over ``prompt_tokens``.

    The phases follow one another, so a pass needs the largest of them (``workspace_bytes``):
    attention holds the scores for a chunk of queries at a time (attention.query_chunk); the experts unpack one
    expert's MXFP4 weights through float32 temporaries; the last step makes the logits of every
    prompt position, or with ``last_only`` (as generation runs it) of the last one. Decode steps
    (one query over ``context`` keys) need far less. The Triton kernels never hold the scores nor
    unpacked experts, so they need less again.

    tests/test_memory.py checks the estimate against the bytes the model allocates: never below,
    within 1.6 times.
    """
    try:  # the model's own settings, read when called (tests change them)
        from .attention import query_chunk
        from .mxfp4 import _DEQUANT_CHUNK
    except Exception:  # noqa: BLE001 - no torch, or one that does not import: the environment check plans
        # notebook 12 without it
        query_chunk, _DEQUANT_CHUNK = _query_chunk_without_torch, CHUNKS_WITHOUT_TORCH[2]

    c = dims(config)
    d, ff, V, E, hd = (c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_local_experts"],
                       c["head_dim"])
    H, q, kv = c["num_attention_heads"], c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    P, B, act = int(prompt_tokens), int(batch), int(dtype_bytes)
    N = B * P  # tokens in the pass
    # Live through the pass: the residual stream and its normed copy, the rotary cos/sin (float32).
    stream = N * (2 * d * act + 2 * hd * 4)

    # Attention, per score element, in the model's dtype: the scores, their masked copy, and the
    # softmax with its sink column (3 values); the previous chunk's masked scores and softmax stay
    # alive while the next chunk's are made.
    chunk = query_chunk(B, H, P)  # over the prompt's P keys
    chunks = [min(chunk, P - s) for s in range(0, P, chunk)]
    prev = [0] + chunks[:-1]
    per_key = act * max(max(3 * c_ + p_, 2 * c_ + 2 * p_) for c_, p_ in zip(chunks, prev))
    decode = 3 * act * max(int(context or P), P)  # one query over every cached key
    attention = B * H * max(per_key * P, decode) + N * 3 * (d + q + 2 * kv) * act

    # Experts, one at a time: mxfp4.dequantize makes the unpacked weights (n values) through at most
    # about 13 bytes of temporaries a weight (int64 indices, float32 halves, their interleaving), for at
    # most _DEQUANT_CHUNK weights at a time; first for gate_up [2ff, d], then for down [d, ff] while
    # the SwiGLU output [N, ff] waits; between the two, gate_up's output and the SwiGLU's temporaries
    # take about 7 ff values a token. At worst every token picks the same expert. Beside these live
    # the block's input, its normed copy, the gathered tokens, the summed output, the router's
    # float32 logits, and each token's k weighted outputs in float32 (summed and rounded once) with
    # one expert's products on their way there.
    def unpack(n: int) -> int:
        return n * act + min(n, _DEQUANT_CHUNK) * 13

    ffn = max(unpack(2 * ff * d), unpack(d * ff) + N * ff * act, N * 7 * ff * act) if E else N * 7 * ff * act
    experts = ffn + N * (6 * d * act + 4 * E) + N * c["num_experts_per_tok"] * d * max(4, act)
    rows = B if last_only else N  # the positions whose logits are made
    logits = rows * V * act + rows * 4 * d  # the norm before the head works in float32
    return {"attention": attention, "experts": experts, "logits": logits, "stream": stream}


def workspace_bytes(config: Any, prompt_tokens: int, context: int | None = None, batch: int = 1,
                    dtype_bytes: int = 2, last_only: bool = False) -> int:
    """Peak temporary bytes of the course's PyTorch forward pass: its largest phase plus the residual stream."""
    parts = workspace_parts(config, prompt_tokens, context, batch, dtype_bytes, last_only)
    return max(parts["attention"], parts["experts"], parts["logits"]) + parts["stream"]


# ---- the machine ------------------------------------------------------------------------------

class GpuMemory(NamedTuple):
    """Free and total bytes of a GPU, as CUDA reports them."""

    free: int
    total: int


def gpu_memory() -> GpuMemory | None:
    """Free and total bytes of the current CUDA device, or None when there is no GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    try:
        free, total = torch.cuda.mem_get_info()
    except RuntimeError:  # no room left for even a CUDA context: another program holds the whole GPU
        try:
            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        except RuntimeError:
            total = 0
        return GpuMemory(0, int(total))
    return GpuMemory(int(free), int(total))


def gpu_free_bytes(index: int) -> int | None:
    """Free bytes of CUDA GPU ``index`` as nvidia-smi counts them, or None where NVML cannot say.

    Asked of NVML, not of CUDA: torch.cuda.mem_get_info makes a CUDA context on the GPU it asks
    (a few hundred MiB, held until Python ends), which a look at another GPU must not leave behind.
    """
    import torch

    try:
        used = torch.cuda.device_memory_used(index)
        total = torch.cuda.get_device_properties(index).total_memory
    except Exception:  # noqa: BLE001 - no NVML (pynvml missing), or a driver that does not say
        return None
    return max(int(total) - int(used), 0)


def misfit_advice(config: Any, context: int, prompt_tokens: int, dtype_bytes: int = 2) -> str:
    """What would let ``config``'s plan fit when the current GPU's free memory does not hold it.

    Smaller settings help only while the weights fit; else freeing what this Python or other programs
    hold, or another of the machine's GPUs (named as CUDA_VISIBLE_DEVICES would name it), or a larger GPU.
    """
    import torch

    here = gpu_memory()
    if here is None:
        raise RuntimeError("misfit_advice needs a CUDA GPU: there is none here")

    def fits(free: int, positions: int = context, prompt: int = prompt_tokens) -> bool:
        return bool(plan(config, positions, free, prompt_tokens=prompt, dtype_bytes=dtype_bytes).fits)

    if fits(here.free, 1, 1):
        advice = "lower CONTEXT or PROMPT_TOKENS in the settings"
    else:
        advice = f"its weights alone take {format_bytes(plan(config, 1, 0, prompt_tokens=1).weights)}"
        mine = torch.cuda.memory_reserved()  # a model loaded earlier in this notebook, say
        others = max(here.total - here.free - mine - CUDA_CONTEXT_BYTES, 0)
        room = here.total - CUDA_CONTEXT_BYTES  # all of it, but for this Python's CUDA context
        held_here = f"this Python holds {format_bytes(mine)} of the GPU"
        held_elsewhere = f"other programs hold {format_bytes(others)} of its {format_bytes(here.total)} (nvidia-smi lists them)"
        if not fits(room):
            advice += ", more than this GPU holds"
        elif mine and fits(room - others):
            advice += f"; {held_here}: restart it (the notebook's kernel) first"
        elif fits(room - mine):
            advice += f"; {held_elsewhere}: the plan fits once they end"
        else:
            advice += f"; {held_here} and {held_elsewhere}: the plan fits once both are freed"
    current = torch.cuda.current_device()
    visible = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    for index in range(torch.cuda.device_count()):
        free = gpu_free_bytes(index) if index != current else None
        if free is not None and fits(free):
            name = visible[index] if index < len(visible) else str(index)  # changed since CUDA started: a guess
            return (f"{advice}; or use GPU {index} ({torch.cuda.get_device_name(index)}, {format_bytes(free)} "
                    f"free): start JupyterLab with CUDA_VISIBLE_DEVICES={name}")
    return advice


def disk_free(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would: the nearest existing parent is asked)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: a GPU's (torch.OutOfMemoryError) or the CPU's."""
    import torch

    # The CPU allocator raises a plain RuntimeError: "DefaultCPUAllocator: can't allocate memory: ...".
    return isinstance(error, torch.OutOfMemoryError) or (isinstance(error, RuntimeError)
                                                          and "DefaultCPUAllocator" in str(error))


def format_bytes(n: int | float) -> str:
    """Bytes in binary units: '12.82 GiB', '48.0 KiB', '512 B'."""
    n = float(n)
    units = (("KiB", KiB, 1), ("MiB", MiB, 1), ("GiB", GiB, 2), ("TiB", 1024**4, 2))
    if abs(n) < KiB:
        return f"{int(n)} B"
    i = max(k for k, (_, size, _) in enumerate(units) if abs(n) >= size)
    if i + 1 < len(units) and round(abs(n) / units[i][1], units[i][2]) >= 1024:
        i += 1  # 1 GiB less one byte is "1.00 GiB", not "1024.0 MiB"
    unit, size, digits = units[i]
    return f"{n / size:.{digits}f} {unit}"


def short_bytes(n: int | float) -> str:
    """Bytes in binary units with three significant digits, for tables: 49152 -> '48 KiB', 1040384 -> '0.992 MiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(float(f"{n:.3g}")) < 1000:  # what rounds to 1000..1023 would print as 1e+03
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB" if abs(float(f"{n:.3g}")) < 1000 else f"{n:,.0f} TiB"


def format_count(n: int | float) -> str:
    """A parameter count in millions, billions or trillions, three significant digits: '6.86 M', '20.9 B'."""
    # Compared after rounding: 999.6 M rounds to 1000 M, which is written 1 B (not '1e+03 M').
    for scale, unit in ((1e6, "M"), (1e9, "B")):
        shown = f"{n / scale:.3g}"
        if abs(float(shown)) < 1000:
            return f"{shown} {unit}"
    return f"{n / 1e12:.3g} T"


# ---- the plan ---------------------------------------------------------------------------------

@dataclass
class MemoryPlan:
    """What running a model at a given context needs on the GPU, and whether it fits."""

    weights: int
    kv_cache: int
    workspace: int
    context: int
    prompt_tokens: int
    gpu_bytes: int | None = None

    @property
    def total(self) -> int:
        """Bytes of the whole plan: weights, KV cache and workspace."""
        return self.weights + self.kv_cache + self.workspace

    @property
    def fits(self) -> bool | None:
        """True or False against ``gpu_bytes``; None when no GPU memory was given or found."""
        return None if self.gpu_bytes is None else self.total <= self.gpu_bytes

    @property
    def headroom(self) -> int | None:
        """GPU bytes left over (negative: missing), or None without a GPU figure."""
        return None if self.gpu_bytes is None else self.gpu_bytes - self.total

    def rows(self) -> list[tuple[str, int | None]]:
        """(label, bytes) rows of the plan, for a table."""
        return [("weights (experts in MXFP4)", self.weights),
                (f"KV cache ({self.context} positions)", self.kv_cache),
                (f"workspace (prefill of {self.prompt_tokens} tokens)", self.workspace),
                ("total", self.total),
                ("GPU memory available", self.gpu_bytes)]

    def __str__(self) -> str:
        lines = [f"{label:<40} {format_bytes(b) if b is not None else 'no GPU':>12}" for label, b in self.rows()]
        if self.fits is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"{verdict}: {format_bytes(abs(self.headroom or 0))} "
                         f"{'to spare' if self.fits else 'missing'}")
        return "\n".join(lines)


def _context_length(config: Any) -> int | None:
    """The most positions the model attends to (max_position_embeddings), where the config says."""
    value = (config.get("max_position_embeddings") if isinstance(config, Mapping)
             else getattr(config, "context_length", getattr(config, "max_position_embeddings", None)))
    return int(value) if value else None


def plan(config: Any, context: int, gpu_bytes: int | None = None, *, prompt_tokens: int | None = None,
         batch: int = 1, dtype_bytes: int = 2) -> MemoryPlan:
    """Weights, KV cache and workspace for ``context`` positions, against ``gpu_bytes`` (default: this GPU's free memory).

    ``prompt_tokens`` (the prefill length) defaults to the whole context: the worst case.
    ``dtype_bytes`` is the size of the run's dtype (2 for bf16): of the weights other than the
    MXFP4 experts, of the KV cache and of the activations. The workspace is that of generation's
    prefill, which makes only the last position's logits (``model(ids, cache, last_only=True)``).
    """
    if context <= 0 or batch <= 0:
        raise ValueError(f"context and batch must be positive, got {context} and {batch}")
    most = _context_length(config)
    if most is not None and context > most:  # the model refuses such a cache (new_cache): plan what can run
        raise ValueError(f"context {context:,} is longer than the model's context length ({most:,}): it cannot use "
                         "more positions, so plan for at most that")
    prompt = int(context if prompt_tokens is None else prompt_tokens)
    if not 0 < prompt <= context:
        raise ValueError(f"prompt_tokens must be in 1..context ({context}), got {prompt}")
    if gpu_bytes is None:
        found = gpu_memory()
        gpu_bytes = found.free if found is not None else None
    parts = checkpoint_parts(config)
    # The experts stay packed as on disk; everything else is held in the run's dtype.
    weights = parts["bf16"] // 2 * dtype_bytes + parts["mxfp4_blocks"] + parts["mxfp4_scales"]
    return MemoryPlan(weights=weights,
                      kv_cache=kv_cache_bytes(config, context, batch, dtype_bytes),
                      workspace=workspace_bytes(config, prompt, context, batch, dtype_bytes, last_only=True),
                      context=int(context), prompt_tokens=prompt, gpu_bytes=gpu_bytes)
