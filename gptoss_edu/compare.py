"""Compare two models layer by layer: the first block whose output differs is where to look for a bug."""

from __future__ import annotations

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
def layer_outputs(model: nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input to the first block ("embeddings"), every block's output, and the logits (in eval mode)."""
    blocks = find_blocks(model)
    seen: dict[str, torch.Tensor] = {}

    def grab_input(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
        seen["embeddings"] = _tensor(x).detach().float().clone()

    hooks = [blocks[0].register_forward_pre_hook(grab_input, with_kwargs=True)]
    for i, block in enumerate(blocks):
        hooks.append(block.register_forward_hook(
            lambda _m, _i, out, name=f"block {i}": seen.__setitem__(name, _tensor(out).detach().float().clone())))
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
    seen["logits"] = logits.detach().float()
    return seen


@dataclass
class LayerComparison:
    """Max abs difference per layer between two models on the same input, and the first that differs."""

    names: tuple[str, str]
    diffs: dict[str, float]
    atol: float

    @property
    def first_difference(self) -> str | None:
        """The first layer whose outputs differ by more than ``atol`` (None if all agree)."""
        return next((layer for layer, d in self.diffs.items() if not d <= self.atol), None)

    @property
    def equal(self) -> bool:
        """True when every layer agreed within ``atol``."""
        return self.first_difference is None

    def __repr__(self) -> str:
        first = self.first_difference
        lines = [f"{'layer':<12}{'max |' + self.names[0] + ' - ' + self.names[1] + '|':>28}", "-" * 40]
        for layer, d in self.diffs.items():
            mark = "   <- first difference" if layer == first else ""
            lines.append(f"{layer:<12}{d:>28.1e}{mark}")
        verdict = (f"all layers agree within {self.atol:g}" if first is None
                   else f"{self.names[0]} and {self.names[1]} part at {first} (tolerance {self.atol:g})")
        return "\n".join(lines + [verdict])


def compare_layers(a: nn.Module, b: nn.Module, input_ids: torch.Tensor, atol: float = 1e-4,
                   names: tuple[str, str] = ("a", "b")) -> LayerComparison:
    """Run both models on ``input_ids`` and compare their per-block hidden states and logits."""
    out_a, out_b = layer_outputs(a, input_ids), layer_outputs(b, input_ids)
    if list(out_a) != list(out_b):
        raise ValueError(f"{names[0]} has {len(out_a) - 2} blocks and {names[1]} has {len(out_b) - 2}: "
                         "compare models of the same depth")
    diffs = {}
    for layer, ta in out_a.items():
        tb = out_b[layer]
        if ta.shape != tb.shape:
            raise ValueError(f"{layer}: {names[0]} gives shape {tuple(ta.shape)}, {names[1]} {tuple(tb.shape)}")
        diffs[layer] = (ta - tb).abs().max().item()
    return LayerComparison(names, diffs, atol)
