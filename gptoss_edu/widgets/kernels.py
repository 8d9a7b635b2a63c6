"""Notebook 10's explorer and measurements: which elements each Triton program handles, what each
kernel must compute and move, and the roofline those two numbers sit on.

Nothing here imports Triton at import time: :func:`benchmark_cases` imports the kernels when it
is called, so the explorer and the cost model work on any machine.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from unittest import mock

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..config import ModelConfig
from . import Explorer, check_choice

BLOCKS = (4, 8, 16, 32, 64)
MXFP4_BYTES_PER_VALUE = 17 / 32  # 16 bytes of codes plus one scale byte per block of 32 values


# --------------------------------------------------------------------------- the block explorer


def ownership(n: int, block: int) -> np.ndarray:
    """[programs, block]: the element each lane of each program handles; -1 where the mask is off."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if block < 1 or block & (block - 1):
        raise ValueError(f"BLOCK must be a power of two (tl.arange needs one), got {block}")
    programs = -(-n // block)  # triton.cdiv(n, block)
    offs = np.arange(programs)[:, None] * block + np.arange(block)[None, :]  # pid * BLOCK + tl.arange(0, BLOCK)
    return np.where(offs < n, offs, -1)


def launch_stats(n: int, block: int) -> dict[str, float]:
    """Programs launched, lanes in all, lanes the mask switches off, and their share."""
    own = ownership(n, block)
    masked = int((own < 0).sum())
    return {"programs": own.shape[0], "lanes": own.size, "masked": masked, "masked_share": masked / own.size}


def block_explorer(n: int = 50, block: int = 16) -> Explorer:
    """Choose n elements and a BLOCK: see which program handles which element, and the masked tail."""
    stats: dict[str, float] = {}
    # tab10 without its grey (index 7): a program in grey reads as masked lanes, which are grey.
    colours = [matplotlib.colormaps["tab10"](j) for j in range(10) if j != 7]

    def draw(fig: Figure, n: int, block: int) -> None:
        own = ownership(n, block)
        stats.update(launch_stats(n, block))
        programs = own.shape[0]
        rgb = np.ones((*own.shape, 3)) * 0.88  # masked lanes: light grey
        for pid in range(programs):
            active = own[pid] >= 0
            rgb[pid, active] = 0.55 * np.array(colours[pid % len(colours)][:3]) + 0.45  # pale, so the numbers read

        ax, ax2 = fig.subplots(1, 2, width_ratios=(2.2, 1))
        ax.imshow(rgb, aspect="auto", interpolation="nearest")
        labelled = block <= 32  # write the element indices (and × marks) while they fit
        if labelled:  # every lane up to 16, else every 4th
            every = 1 if block <= 16 else 4
            for pid in range(programs):
                for lane in range(block):
                    e = own[pid, lane]
                    # The last element is always named (where the mask starts), and every masked lane marked.
                    if lane % every and e != n - 1 and e >= 0:
                        continue
                    ax.text(lane, pid, str(e) if e >= 0 else "×", ha="center", va="center", fontsize=7,
                            color="k" if e >= 0 else "#777")
        ax.set_xlabel("lane: tl.arange(0, BLOCK)")
        ax.set_ylabel("program: tl.program_id(0)")
        ax.set_xticks(range(block) if block <= 16 else range(0, block, 8))
        ax.set_yticks(range(programs) if programs <= 13 else range(0, programs, 5))
        mark = "×" if labelled else "grey"
        ax.set_title(f"n = {n}, BLOCK = {block}: grid of cdiv(n, BLOCK) = {programs} program"
                     f"{'' if programs == 1 else 's'}; {stats['masked']} lane{'' if stats['masked'] == 1 else 's'} "
                     f"masked ({mark})", fontsize=9)

        shares = [launch_stats(n, b)["masked_share"] for b in BLOCKS]
        ax2.bar([str(b) for b in BLOCKS], [100 * s for s in shares],
                color=["#ffb347" if b == block else "#8aa9c9" for b in BLOCKS])
        for i, b in enumerate(BLOCKS):
            ax2.text(i, 100 * shares[i] + 1, f"{launch_stats(n, b)['programs']:.0f}", ha="center", fontsize=7)
        ax2.set_ylim(0, 112)  # room above a full bar for its number, below the title
        ax2.set_yticks(range(0, 101, 20))
        for label in ax2.get_xticklabels():  # the chosen BLOCK, marked even where its bar has no height
            if label.get_text() == str(block):
                label.set(color="#a35200", fontweight="bold")
        ax2.set_xlabel("BLOCK")
        ax2.set_ylabel("% of lanes masked")
        ax2.set_title(f"n = {n}: the tail's waste\n(numbers: programs launched)", fontsize=9)

    check_choice("block", block, list(BLOCKS), " (a BLOCK is a power of two: tl.arange takes no other length)")
    controls = {
        "n": widgets.IntSlider(value=n, min=1, max=100, description="n"),
        "block": widgets.Dropdown(options=list(BLOCKS), value=block, description="BLOCK"),
    }
    explorer = Explorer("Which program handles which element", draw, controls, figsize=(9.0, 3.8), asked={"n": n})
    explorer.stats = stats  # the numbers behind the current picture, for tests and curious learners
    return explorer


# ----------------------------------------------------------------------------- kernel calls

# The wrappers the model calls, by the module of gptoss_kernels that holds them.
KERNEL_WRAPPERS = {"rmsnorm": ("rmsnorm",), "attention": ("attention_prefill", "attention_decode"),
                   "moe": ("moe_mxfp4_prefill", "moe_mxfp4_decode")}


@contextlib.contextmanager
def counting_kernel_calls(calls: collections.Counter) -> Iterator[collections.Counter]:
    """While inside: each kernel wrapper the model calls adds one to calls[its name], then runs the real kernel."""
    def counted(name: str, real: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    with contextlib.ExitStack() as undo:  # on leaving, even by an error, the real ones are back
        for module, names in KERNEL_WRAPPERS.items():
            mod = importlib.import_module(f"gptoss_kernels.{module}")
            for name in names:
                undo.enter_context(mock.patch.object(mod, name, counted(name, getattr(mod, name))))
        yield calls


# ------------------------------------------------------------------------------- cost model


@dataclass(frozen=True)
class KernelCost:
    """What one kernel call must compute and move (each tensor it reads or writes counted once)."""

    name: str
    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte moved."""
        return self.flops / self.bytes


def _attention_cost(cfg: ModelConfig, tokens: int, context: int, window: int, act: int) -> tuple[int, int]:
    Hq, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    positions = range(context - tokens, context)  # the new queries sit at the end of the sequence
    keys_seen = sum(min(p + 1, window) if window else p + 1 for p in positions)
    first_key = max(0, context - tokens - window + 1) if window else 0
    keys_read = context - first_key  # each key and value the queries may see, read once
    flops = 4 * Hq * D * keys_seen  # q.k and p.v: 2 * D each per (query head, query, key seen)
    moved = act * (2 * tokens * Hq * D + 2 * keys_read * Hkv * D + Hq)  # q in, out, k and v, sinks
    return flops, moved


def kernel_costs(cfg: ModelConfig, tokens: int, context: int, act_bytes: int = 2) -> list[KernelCost]:
    """FLOPs and bytes of one layer's kernels when ``tokens`` new tokens end a ``context``-long sequence.

    Activations, KV cache, biases and dense weights take ``act_bytes`` a value; MXFP4 weights 17/32.
    The experts count every expert some token chose as read once (``min(E, tokens * k)`` of them) and
    the hidden h between their two matmuls as written and read once (these kernels keep it in memory);
    past ``DECODE_MAX_TOKENS`` tokens (the grouped path) also each (token, expert) pair's float32 output,
    written by the down matmul and read back by the sum over a token's experts, and that sum, in float32,
    written and read back by the cast to the activations' dtype (none when they are float32).
    """
    from gptoss_kernels.moe import DECODE_MAX_TOKENS  # here: importing the kernels may import Triton

    if not 1 <= tokens <= context:
        raise ValueError(f"need 1 <= tokens <= context, got tokens={tokens}, context={context}")
    d, act = cfg.d_model, act_bytes
    costs = [KernelCost("RMSNorm", 4 * tokens * d, act * (2 * tokens * d + d))]  # x*x, sum, *rstd, *w
    if cfg.sliding_window:
        costs.append(KernelCost(f"attention, window {cfg.sliding_window}",
                                *_attention_cost(cfg, tokens, context, cfg.sliding_window, act)))
    costs.append(KernelCost("attention, full", *_attention_cost(cfg, tokens, context, 0, act)))
    if cfg.is_moe:
        E, k, I = cfg.n_experts, cfg.experts_per_token, cfg.d_ff
        used = min(E, tokens * k)
        flops = 6 * tokens * k * d * I  # 2 * d * 2I for gate_up, 2 * I * d for down, per (token, expert)
        other = act * (used * (2 * I + d) + 2 * tokens * d + 2 * tokens * k * I)  # biases, x and out, h
        if tokens > DECODE_MAX_TOKENS:
            other += 2 * tokens * k * d * 4  # float32 y [tokens * k, d] written, then read by the sum
            other += 2 * tokens * d * 4 if act != 4 else 0  # the float32 sum [tokens, d], read by the cast
        costs.append(KernelCost("experts, MXFP4", flops, used * 3 * I * d * MXFP4_BYTES_PER_VALUE + other))
        dtype = {2: "bf16", 4: "fp32"}.get(act, f"{8 * act}-bit")
        costs.append(KernelCost(f"experts, {dtype}", flops, used * 3 * I * d * act + other))
    return costs


# -------------------------------------------------------------------------------- roofline


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")


def draw_roofline(ax: Axes, points: Sequence[tuple[str, KernelCost, float | None]], peak_flops: float,
                  peak_bw: float, title: str | None = None) -> Axes:
    """The roof min(peak FLOP/s, bandwidth x intensity), and each (label, cost, seconds) point on it.

    A point with measured seconds sits at its achieved FLOP/s (filled); one without sits on the
    roof at its intensity (hollow): the most it could reach there.
    """
    intensities = [c.intensity for _, c, _ in points] or [1.0]
    lo = min(0.1, min(intensities) / 3)
    hi = max(1e4, max(intensities) * 3, 3 * peak_flops / peak_bw)
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.loglog(x, np.minimum(peak_flops, peak_bw * x), color="k", lw=1.5)
    ridge = peak_flops / peak_bw
    ax.axvline(ridge, color="#888", ls=":", lw=1)
    # Three figures (7.57, not 8): a point at 7.99 FLOP/B is above this ridge, and must be seen to be.
    ax.text(ridge * 1.1, peak_flops * 0.5, f"ridge\n{ridge:.3g} FLOP/B", fontsize=7, color="#555", va="top")
    # Under the slope, which a label above it would run into.
    ax.text(lo * 1.3, peak_bw * lo * 0.35, f"memory: {peak_bw / 1e9:.0f} GB/s", fontsize=7, color="#555")
    ax.text(hi / 1.3, peak_flops * 1.25, f"compute: {peak_flops / 1e12:.3g} TFLOP/s", fontsize=7, ha="right",
            color="#555")
    # tab10 without its grey, which vanishes against the grey roof and the ridge line.
    palette = [matplotlib.colormaps["tab10"](j) for j in range(10) if j != 7]
    bottom = peak_bw * lo
    for i, (label, cost, seconds) in enumerate(points):
        bound = min(peak_flops, peak_bw * cost.intensity)
        y = cost.flops / seconds if seconds else bound
        bottom = min(bottom, y)  # a launch-bound kernel may sit far below the roof: keep it in view
        # A shape as well as a colour for each point: colours alone fail some readers, and two points
        # at nearly the same intensity still show as two shapes.
        colour = palette[i % len(palette)]
        ax.plot([cost.intensity], [y], MARKERS[i % len(MARKERS)], ms=7, color=colour, mew=1.5,
                mfc=colour if seconds else "none", label=label)
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom / 3, peak_flops * 3)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("FLOP/s")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return ax


# ------------------------------------------------------------------------------ benchmarks


def _dense_name(costs: dict[str, KernelCost]) -> str:
    return next(n for n in costs if n.startswith("experts, ") and n != "experts, MXFP4")


@dataclass
class BenchCase:
    """One kernel call ready to time: ``fn()`` runs it on inputs already on the device."""

    name: str
    backend: str  # "triton" or "torch"
    cost: KernelCost
    fn: Callable[[], torch.Tensor]


def benchmark_cases(cfg: ModelConfig, tokens: int, context: int, device: str | torch.device = "cuda",
                    dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> list[BenchCase]:
    """Random inputs at ``cfg``'s shapes and one call of each kernel of a layer (Triton and PyTorch)."""
    from gptoss_kernels.attention import attention
    from gptoss_kernels.moe import dequantize_mxfp4, moe_mxfp4
    from gptoss_kernels.rmsnorm import rmsnorm

    from ..attention import attend
    from ..moe import Experts
    from ..norms import rms_norm

    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(shape, generator=gen) * scale).to(device=device, dtype=dtype)

    act = torch.tensor([], dtype=dtype).element_size()
    costs = {c.name: c for c in kernel_costs(cfg, tokens, context, act)}
    d, Hq, Hkv, D = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    cases: list[BenchCase] = []

    x, w = randn(tokens, d), 1 + randn(d, scale=0.1)
    cases.append(BenchCase("RMSNorm", "triton", costs["RMSNorm"], lambda: rmsnorm(x, w, cfg.norm_eps)))
    cases.append(BenchCase("RMSNorm", "torch", costs["RMSNorm"], lambda: rms_norm(x, w, cfg.norm_eps)))

    q = randn(1, Hq, tokens, D)
    k, v = randn(1, Hkv, context, D), randn(1, Hkv, context, D)
    sinks = randn(Hq)
    windows = ([cfg.sliding_window] if cfg.sliding_window else []) + [0]
    for window in windows:
        name = f"attention, window {window}" if window else "attention, full"
        kw = dict(scale=D ** -0.5, q_start=context - tokens)
        cases.append(BenchCase(name, "triton", costs[name],
                               lambda kw=kw, window=window: attention(q, k, v, sinks=sinks, window=window, **kw)))
        cases.append(BenchCase(name, "torch", costs[name],
                               lambda kw=kw, window=window: attend(q, k, v, sinks=sinks, window=window, **kw)))

    if cfg.is_moe:
        E, K, I = cfg.n_experts, cfg.experts_per_token, cfg.d_ff
        u8 = dict(dtype=torch.uint8, generator=gen)
        # Random codes; scales of 2^-8 to 2^-4 keep the products of unit-scale activations moderate.
        w1 = (torch.randint(0, 256, (E, 2 * I, d // 32, 16), **u8), torch.randint(119, 124, (E, 2 * I, d // 32), **u8))
        w2 = (torch.randint(0, 256, (E, d, I // 32, 16), **u8), torch.randint(119, 124, (E, d, I // 32), **u8))
        w1 = tuple(t.to(device) for t in w1)
        w2 = tuple(t.to(device) for t in w2)
        b1, b2 = randn(E, 2 * I, scale=0.1), randn(E, d, scale=0.1)
        logits = torch.randn(tokens, E, generator=gen)
        top, idx = logits.topk(K, dim=-1)
        idx, wts = idx.to(device), torch.softmax(top, dim=-1).to(device=device, dtype=dtype)
        cases.append(BenchCase("experts, MXFP4", "triton", costs["experts, MXFP4"],
                               lambda: moe_mxfp4(x, idx, wts, *w1, b1, *w2, b2, alpha=cfg.swiglu_alpha,
                                                 limit=cfg.swiglu_limit, check_indices=not x.is_cuda)))
        # The PyTorch path on the same weights dequantized (what set_backend("torch") runs with dense experts).
        with torch.device("meta"):
            dense = Experts(cfg)
        for name, value in (("gate_up_proj", dequantize_mxfp4(*w1, dtype=dtype)), ("gate_up_proj_bias", b1),
                            ("down_proj", dequantize_mxfp4(*w2, dtype=dtype)), ("down_proj_bias", b2)):
            setattr(dense, name, torch.nn.Parameter(value, requires_grad=False))
        dense_name = _dense_name(costs)
        cases.append(BenchCase(dense_name, "torch", costs[dense_name], lambda: dense(x, idx, wts)))
    return cases
