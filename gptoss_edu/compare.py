"""Compare two models layer by layer: the first block whose output differs is where to look for a bug."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Where the list of blocks sits: the course's GPT, transformers' GPT2LMHeadModel and
# GptOssForCausalLM, and a from-scratch GPT-2 named like the original (wte, wpe, h, ln_f).
BLOCK_PATHS = ("blocks", "transformer.h", "model.layers", "h", "layers")


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks, wherever its authors put it."""
    for path in BLOCK_PATHS:
        obj: object = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise ValueError(f"{type(model).__name__} has no list of blocks at any of {', '.join(BLOCK_PATHS)}: "
                     "compare_layers needs one of them")


def _tensor(out: object) -> torch.Tensor:
    # Some blocks return a tuple (hidden states, cache, ...): the hidden states come first.
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"expected a tensor output, got {type(out).__name__}")
    return out


@torch.no_grad()
def layer_outputs(model: nn.Module, input_ids: torch.Tensor, name: str = "the model") -> dict[str, torch.Tensor]:
    """The input to the first block ("embeddings"), every block's output, and the logits (in eval mode).

    Raises ValueError, naming what happened, when ``model`` does not run each of its blocks once and in order
    (a loop over the blocks that skips one, repeats one or runs them backwards): compared layer by layer, such
    a model would only seem to part somewhere.
    """
    blocks = find_blocks(model)
    seen: dict[str, torch.Tensor] = {}
    order: list[int] = []  # the blocks, as they ran

    def grab_input(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        if "embeddings" not in seen:  # what the first block to run is given, whichever block that is
            x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            seen["embeddings"] = _tensor(x).detach().float().clone()

    def grab_output(i: int, out: object) -> None:
        order.append(i)
        seen[f"block {i}"] = _tensor(out).detach().float().clone()

    hooks = []
    for i, block in enumerate(blocks):
        hooks.append(block.register_forward_pre_hook(grab_input, with_kwargs=True))
        hooks.append(block.register_forward_hook(lambda _m, _i, out, i=i: grab_output(i, out)))
    # In eval mode: dropout (GPT-2 has 0.1) would make two equal models differ from the embeddings on.
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        logits = _tensor(model(input_ids))
    finally:
        for m, training in modes.items():  # each module as it was, not all as the top one
            m.training = training
        for h in hooks:
            h.remove()
    problem = _loop_problem(order, len(blocks))
    if problem:
        raise ValueError(f"{name} {problem}: a model runs each of its {len(blocks)} blocks once, in order, so its "
                         "loop over the blocks (its forward) is where to look")
    out = {"embeddings": seen["embeddings"], **{f"block {i}": seen[f"block {i}"] for i in range(len(blocks))}}
    out["logits"] = logits.detach().float()
    return out


def _loop_problem(order: list[int], n: int) -> str | None:
    """What is wrong with the order in which a model of ``n`` blocks ran them, or None."""
    if order == list(range(n)):
        return None
    counts = [order.count(i) for i in range(n)]
    never = [str(i) for i in range(n) if counts[i] == 0]
    again = [f"block {i} " + ("twice" if counts[i] == 2 else f"{counts[i]} times") for i in range(n) if counts[i] > 1]
    parts = ([f"ran {', '.join(again)}"] if again else []) + (
        [f"never ran block{'s' * (len(never) > 1)} {', '.join(never)}"] if never else [])
    return " and ".join(parts) if parts else f"ran its blocks in the order {', '.join(map(str, order))}"


@dataclass
class LayerComparison:
    """Max abs difference per layer between two models on the same input, its size, and the first that differs.

    A layer differs when max |a - b| exceeds ``atol + rtol * max |b|``: rounding grows with the
    size of the values, so the tolerance does too, and a bug in a model whose activations are
    small (one just built, at 0.1) is not lost under a tolerance made for large ones.
    """

    names: tuple[str, str]
    diffs: dict[str, float]
    sizes: dict[str, float]  # max |b| per layer, over its finite values
    rtol: float
    atol: float = 0.0
    overflowed: tuple[str, ...] = ()  # the layers where either model holds inf or NaN

    def tolerance(self, layer: str) -> float:
        """The largest difference ``layer`` may show and still agree."""
        return self.atol + self.rtol * self.sizes[layer]

    @property
    def first_difference(self) -> str | None:
        """The first layer whose outputs differ by more than its tolerance (None if all agree)."""
        # A difference that is not a finite number (inf where one model overflowed, NaN where one has it) is one
        # whatever the size.
        return next((layer for layer, d in self.diffs.items()
                     if not (math.isfinite(d) and d <= self.tolerance(layer))), None)

    @property
    def equal(self) -> bool:
        """True when every layer agreed within its tolerance."""
        return self.first_difference is None

    def __repr__(self) -> str:
        first = self.first_difference
        heads = (f"max |{self.names[0]} - {self.names[1]}|", f"max |{self.names[1]}|", "relative")
        w = [max(12, len(h) + 3) for h in heads]  # each column as wide as its heading, names included
        lines = [f"{'layer':<12}{heads[0]:>{w[0]}}{heads[1]:>{w[1]}}{heads[2]:>{w[2]}}", "-" * (12 + sum(w))]
        for layer, d in self.diffs.items():
            mark = "   <- first difference" if layer == first else ""
            size = self.sizes[layer]
            relative = f"{d / size:.1e}" if size else "-"
            lines.append(f"{layer:<12}{d:>{w[0]}.1e}{size:>{w[1]}.3g}{relative:>{w[2]}}{mark}")
        within = f"{self.rtol:g} of each layer's largest value" + (f" plus {self.atol:g}" if self.atol else "")
        verdict = (f"all layers agree within {within}" if first is None
                   else f"{self.names[0]} and {self.names[1]} part at {first} (tolerance: {within})")
        order = list(self.diffs)
        alike = [layer for layer in self.overflowed if first is None or order.index(layer) < order.index(first)]
        if alike:  # agreeing layers, but not finite ones: said, so "agree" is not read as "all is well"
            verdict += (f"; both hold inf or NaN, in the same places, at {alike[0]}"
                        + (f" and {len(alike) - 1} more layer{'s' * (len(alike) > 2)}" if len(alike) > 1 else ""))
        return "\n".join(lines + [verdict])


def compare_layers(a: nn.Module, b: nn.Module, input_ids: torch.Tensor, rtol: float = 1e-5, atol: float = 0.0,
                   names: tuple[str, str] = ("a", "b")) -> LayerComparison:
    """Run both models on ``input_ids`` and compare their per-block hidden states and logits.

    The default ``rtol`` suits float32, where two implementations of the same model round apart by
    1e-7 to 1e-6 of a layer's largest value (GPT-2 124M's 12 layers included); bfloat16, each of
    whose roundings may move a value by 2^-9 (2e-3), needs a far larger one.
    """
    depth_a, depth_b = len(find_blocks(a)), len(find_blocks(b))
    if depth_a != depth_b:
        raise ValueError(f"{names[0]} has {depth_a} blocks and {names[1]} has {depth_b}: compare models of the same "
                         "depth")
    out_a, out_b = layer_outputs(a, input_ids, names[0]), layer_outputs(b, input_ids, names[1])
    diffs, sizes, overflowed = {}, {}, []
    for layer, ta in out_a.items():
        tb = out_b[layer]
        if ta.shape != tb.shape:
            raise ValueError(f"{layer}: {names[0]} gives shape {tuple(ta.shape)}, {names[1]} {tuple(tb.shape)}")
        # Where both overflowed alike (inf and inf, then NaN and NaN), they agree: inf - inf would be NaN, a
        # difference. The size is of the finite values: an inf in b would make the tolerance inf too.
        alike = (ta == tb) | (ta.isnan() & tb.isnan())
        diffs[layer] = torch.where(alike, 0.0, (ta - tb).abs()).max().item()
        finite = tb[tb.isfinite()]
        sizes[layer] = finite.abs().max().item() if finite.numel() else 0.0
        if not (ta.isfinite().all() and tb.isfinite().all()):
            overflowed.append(layer)
    return LayerComparison(names, diffs, sizes, rtol, atol, tuple(overflowed))
