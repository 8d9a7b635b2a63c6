"""Count the kernels one decode step runs (aten ops and Triton launches), without a GPU.

    python benchmarks/count_decode_ops.py              # the static step (what a CUDA graph replays) and the eager one
    python benchmarks/count_decode_ops.py --where      # and which line of the package each aten op comes from

At batch 1 every kernel a CUDA graph replays costs a few microseconds however small, so beside the
bytes a step reads, the number of kernels counts (benchmarks/RESULTS.md). The model is bf16 at
gpt-oss-20b's widths with 2 and then 4 layers (one sliding-window layer in two) and 4 experts; the
counts grow by layer and do not depend on the number of experts, so a step of the real model takes
the per-step count plus 24 times the per-layer one. The Triton launches are recorded as
``gptoss_kernels.aot`` records them for an H100, not run; the aten ops run on the CPU, on weights
that are random, so the step's numbers mean nothing: only the counts do.
"""

from __future__ import annotations

import argparse
import collections
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gptoss_edu as g
from gptoss_edu.rotary import Rotary
from gptoss_edu.static_decode import CUDAGraphDecoder
from gptoss_kernels import aot

REPO = Path(__file__).resolve().parent.parent
# Ops that only relabel memory: no kernel runs for them.
VIEWS = {"view", "_unsafe_view", "transpose", "t", "unsqueeze", "squeeze", "slice", "select", "expand", "detach",
         "alias", "as_strided", "permute", "split", "split_with_sizes", "chunk", "unbind", "empty", "empty_strided",
         "reshape", "lift_fresh", "_reshape_alias"}


class CountOps(TorchDispatchMode):
    """Counts the aten ops that run a kernel, and the line of the package each comes from."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's signature)
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            site = next((f"{Path(f.filename).relative_to(REPO)}:{f.lineno}" for f in reversed(traceback.extract_stack())
                         if f.filename.startswith(str(REPO)) and "site-packages" not in f.filename
                         and "count_decode_ops" not in f.filename), "?")
            self.ops[f"{site} {name}"] += 1
        return func(*args, **(kwargs or {}))


def count(n_layers: int, context: int = 8192) -> dict[str, tuple[collections.Counter, collections.Counter]]:
    """{"static": (aten ops, Triton launches), "eager": ...} of one decode step at ``context`` positions."""
    cfg = g.preset("gpt-oss-20b").replace(n_layers=n_layers, n_experts=4, vocab_size=1000,
                                          layer_types=("sliding_attention", "full_attention") * (n_layers // 2))
    with torch.device("meta"):
        model = g.GPT(cfg, packed_experts=True)
    model = model.to(torch.bfloat16).to_empty(device="cpu").eval()
    model.rotary = Rotary(cfg)  # its frequencies are computed, not stored: make them for real
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    for name, b in model.named_buffers():
        if name.endswith(("_blocks", "_scales")):
            b.random_(0, 200)
    # set_backend("triton") wants a GPU or the interpreter; here no kernel runs, its launch is only recorded.
    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = "triton"
    cache = model.new_cache(1, context + 8)
    cache.length = context
    out = {}
    with torch.no_grad(), aot._recording(132) as launches:
        decoder = CUDAGraphDecoder(model, cache, cuda_graph=False)
        decoder(3)  # a first step, as the graph's warm-up would run
        for kind, step in (("static", lambda: decoder(4)), ("eager", lambda: model(torch.tensor([[5]]), cache))):
            launches.clear()
            with CountOps() as ops:
                step()
            out[kind] = ops.ops, collections.Counter(kernel.fn.__name__ for kernel, _, _ in launches)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--where", action="store_true", help="list the aten ops of the static step by package line")
    args = parser.parse_args(argv)
    two, four = count(2), count(4)
    print(f"{'step':8s}{'aten ops a step':>17s}{'a layer':>9s}{'Triton a step':>15s}{'a layer':>9s}"
          f"{'24 layers: aten + Triton':>27s}")
    for kind in ("static", "eager"):
        a2, a4 = sum(two[kind][0].values()), sum(four[kind][0].values())
        t2, t4 = sum(two[kind][1].values()), sum(four[kind][1].values())
        per_a, per_t = (a4 - a2) / 2, (t4 - t2) / 2
        base_a, base_t = a2 - 2 * per_a, t2 - 2 * per_t
        print(f"{kind:8s}{base_a:>17g}{per_a:>9g}{base_t:>15g}{per_t:>9g}"
              f"{f'{base_a + 24 * per_a:g} + {base_t + 24 * per_t:g}':>27s}")
    print("Triton launches of a 2-layer static step:", dict(two["static"][1]))
    if args.where:
        for site, n in sorted(two["static"][0].items()):
            print(f"  {n:3d}  {site}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
