"""Benchmark gpt-oss-20b on one GPU: the course's Triton kernels, plain PyTorch, and transformers.

Builds a full-size gpt-oss-20b with random weights straight on the GPU, experts in the real
MXFP4 layout (uint8 blocks and E8M0 scales, nothing downloaded), and measures, for each path:
  - prefill tokens/s for a 2k-token prompt,
  - batch-1 decode tokens/s with 1k and 8k tokens of context,
  - peak GPU memory,
  - each decode figure as a fraction of the memory-bandwidth ceiling: the bytes a decode step
    must read (the weights it multiplies by, only the chosen experts, plus the KV cache) over
    the device-to-device copy rate measured here.
The paths, one after another on the same weights:
  triton        gptoss_edu.GPT with experts kept in MXFP4, set_backend("triton")
  triton+graph  the same model; each decode step replayed from a CUDA graph of the static-shape step
                (gptoss_edu.static_decode.CUDAGraphDecoder); prefill as triton. Without a GPU
                (--smoke) the same static step runs eagerly
  torch         gptoss_edu.GPT with experts dequantized to bf16, set_backend("torch")
  transformers  GptOssForCausalLM with the same dequantized weights (if transformers is installed)

Usage:
  python benchmarks/bench_gptoss20b.py                 # full size (needs ~60 GB of GPU memory for all paths)
  python benchmarks/bench_gptoss20b.py --layers 4      # the same widths, fewer layers
  python benchmarks/bench_gptoss20b.py --smoke         # a tiny model on the CPU (Triton interpreter): a quick check
  python benchmarks/bench_gptoss20b.py --json out.json # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

GiB = 1024 ** 3
PATHS = ("triton", "triton+graph", "torch", "transformers")
WARMUP_STEPS = 3  # untimed decode steps at each context before the timed ones


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 would read as 'not given', and measure nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=positive_int, default=None, help="run a shrunken model with this many layers")
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU under the Triton interpreter")
    p.add_argument("--contexts", type=positive_int, nargs="+", default=None,
                   help="decode context lengths (default 1024 8192)")
    p.add_argument("--prompt", type=positive_int, default=None, help="prefill prompt length (default 2048)")
    p.add_argument("--decode-steps", type=positive_int, default=None,
                   help="timed decode steps per context (default 32)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    # Said now, not after the first path has been measured (on a GPU, after building the model).
    if args.json is not None and args.json.is_dir():
        p.error(f"--json {args.json} is a folder: give the path of a file, e.g. {args.json / 'bench.json'}")
    if args.json is not None and not args.json.parent.is_dir():
        p.error(f"--json {args.json}: there is no folder {args.json.parent} to write it in")
    if args.json is not None:
        probe = args.json.with_name(f".{args.json.name}.write-test")
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            p.error(f"--json {args.json} cannot be written there ({e.strerror or e}): give a folder you may write")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.smoke:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton or the kernels are imported

import torch  # noqa: E402

import gptoss_edu as g  # noqa: E402
from gptoss_edu.env import triton_gpu_problem, triton_interpret_flag  # noqa: E402
from gptoss_edu.model import GPT  # noqa: E402
from gptoss_edu.rotary import Rotary  # noqa: E402


# ------------------------------------------------------------------------------ the model


def bench_config(args: argparse.Namespace) -> g.ModelConfig:
    """gpt-oss-20b, or fewer layers of it, or (smoke) the tiny preset with a small vocabulary."""
    if args.smoke:
        cfg = g.preset("gpt-oss-tiny").replace(vocab_size=512, n_layers=2,
                                                layer_types=("sliding_attention", "full_attention"))
    else:
        cfg = g.preset("gpt-oss-20b")
    if args.layers:
        base = cfg.layer_types or ("full_attention",) * cfg.n_layers
        types = tuple(base[i % len(base)] for i in range(args.layers))
        cfg = cfg.replace(n_layers=args.layers, layer_types=types)
    return cfg.replace(dropout=0.0)


def empty_model(cfg: g.ModelConfig, device: torch.device, dtype: torch.dtype, packed: bool) -> GPT:
    """The model with uninitialised storage on ``device``: built on the meta device, then allocated."""
    with torch.device("meta"):
        model = GPT(cfg, packed_experts=packed)
    model = model.to(dtype=dtype).to_empty(device=device).eval()
    model.rotary = Rotary(cfg).to(device) if model.rotary is not None else None  # fp32 frequencies, recomputed
    known = ("rotary.", "_blocks", "_scales")
    odd = [n for n, _ in model.named_buffers() if not (n.startswith(known[0]) or n.endswith(known[1:]))]
    if odd:
        raise RuntimeError(f"the benchmark does not know how to initialise these buffers: {odd}")
    return model


@torch.no_grad()
def randomize_packed(model: GPT, seed: int) -> None:
    """Random weights: N(0, 0.02) matrices, unit norms, N(0, 1) sinks; experts as random MXFP4 bytes."""
    gen = torch.Generator(device=model.embed.weight.device).manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0)
        elif "sinks" in name:
            p.normal_(0.0, 1.0, generator=gen)
        else:
            p.normal_(0.0, 0.02, generator=gen)
    for name, b in model.named_buffers():
        if name.endswith("_blocks"):
            b.random_(0, 256, generator=gen)  # any byte is two valid E2M1 codes
        elif name.endswith("_scales"):
            # Random codes have an RMS of about 2.9; a scale of 2^-7 makes weights of RMS ~0.02.
            b.random_(119, 122, generator=gen)


@torch.no_grad()
def dense_from_packed(packed: GPT, device: torch.device, dtype: torch.dtype) -> GPT:
    """The same model with every expert dequantized to ``dtype`` (the plain PyTorch path)."""
    from gptoss_edu.mxfp4 import dequantize

    dense = empty_model(packed.config, device, dtype, packed=False)
    src = dict(packed.named_parameters())
    src_buf = dict(packed.named_buffers())
    for name, p in dense.named_parameters():
        if name in src:
            p.copy_(src[name])
        else:  # blocks.N.mlp.experts.gate_up_proj -> its blocks and scales
            p.copy_(dequantize(src_buf[name + "_blocks"], src_buf[name + "_scales"], dtype))
    return dense


@torch.no_grad()
def hf_from_packed(packed: GPT, device: torch.device, dtype: torch.dtype):
    """transformers' GptOssForCausalLM with the same weights, experts dequantized (eager attention: sinks)."""
    from transformers import GptOssConfig, GptOssForCausalLM
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    from gptoss_edu.checkpoint import hf_state_dict
    from gptoss_edu.mxfp4 import dequantize

    hf_cfg = {k: v for k, v in packed.config.to_hf_config().items() if k != "quantization_config"}
    config = GptOssConfig(**hf_cfg)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        hf = GptOssForCausalLM(config)
    hf = hf.to(dtype=dtype).to_empty(device=device).eval()
    hf.model.rotary_emb = GptOssRotaryEmbedding(config).to(device)
    params = dict(hf.named_parameters())
    pending: dict[str, torch.Tensor] = {}
    for name, t in hf_state_dict(packed, mxfp4_experts=True, dtype=dtype):
        if name.endswith(("_blocks", "_scales")):
            pending[name] = t
            base = name.rsplit("_", 1)[0]
            if base + "_blocks" in pending and base + "_scales" in pending:
                w = dequantize(pending.pop(base + "_blocks"), pending.pop(base + "_scales"), dtype)
                params[base].copy_(w.transpose(1, 2))  # transformers keeps experts as [E, in, out]
        else:
            params[name].copy_(t)
    return hf


# ------------------------------------------------------------------------------ runners


class Runner:
    """One way of running the model: make a cache, feed tokens into it."""

    def __init__(self, name: str, model: Any, new_cache: Callable[[int], Any], step: Callable[[torch.Tensor, Any], Any]):
        self.name, self.model, self.new_cache, self.step = name, model, new_cache, step


# Every path computes the logits of the last position only, as generation does: a 2,048-token
# chunk's full logits would be 0.8 GB of bf16 and 16% of the prefill's work, for nothing.
def ours(name: str, model: GPT) -> Runner:
    return Runner(name, model, lambda max_len: model.new_cache(1, max_len),
                  lambda ids, cache: model(ids, cache, last_only=True))


def graph_runner(model: GPT) -> Runner:
    """The triton path with single-token steps on a CUDAGraphDecoder: one graph recorded per cache, then replayed."""
    from gptoss_edu.static_decode import CUDAGraphDecoder

    held: dict[str, Any] = {}  # the cache the graph was recorded for, and its decoder

    def new_cache(max_len: int) -> Any:
        held.clear()  # free the last cache and its graph first: the peak memory holds one of each
        return model.new_cache(1, max_len)

    def step(ids: torch.Tensor, cache: Any) -> torch.Tensor:
        if ids.shape[1] > 1:
            return model(ids, cache, last_only=True)  # prefill: the ordinary forward fills the cache
        if held.get("cache") is not cache:  # recorded on the first step into a cache (measure's warm-up steps)
            held["cache"], held["decoder"] = cache, CUDAGraphDecoder(model, cache)
        return held["decoder"](ids[:, 0])[:, None]

    return Runner("triton+graph", model, new_cache, step)


@torch.no_grad()
def static_decode_check(model: GPT, cfg: g.ModelConfig, device: torch.device, seed: int) -> float:
    """Largest |difference| between the graph path's decode logits and model(ids, cache)'s over 8 steps."""
    from gptoss_edu.static_decode import CUDAGraphDecoder

    ids = torch.randint(0, cfg.vocab_size, (1, 24), generator=torch.Generator().manual_seed(seed + 2)).to(device)
    eager_cache, graph_cache = model.new_cache(1, 24), model.new_cache(1, 24)
    model(ids[:, :16], eager_cache)
    model(ids[:, :16], graph_cache)
    decoder = CUDAGraphDecoder(model, graph_cache)
    diff = 0.0
    for t in range(16, 24):
        want = model(ids[:, t:t + 1], eager_cache)[0, -1].float()
        diff = max(diff, (decoder(ids[:, t])[0].float() - want).abs().max().item())
    return diff


def transformers_runner(hf: Any) -> Runner:
    from transformers import DynamicCache

    def step(ids: torch.Tensor, cache: Any) -> torch.Tensor:
        return hf(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits

    return Runner("transformers", hf, lambda max_len: DynamicCache(config=hf.config), step)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure(runner: Runner, cfg: g.ModelConfig, args: argparse.Namespace, device: torch.device,
            chunk: int) -> dict[str, Any]:
    """Prefill tokens/s, decode tokens/s per context, peak memory; last prefill logits for a cross-check."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = cfg.vocab_size
    out: dict[str, Any] = {"decode": {}, "peak_gib_at": {}}
    gc.collect()  # an earlier path's model, should a reference cycle still hold it

    def start_peak() -> None:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def peak_gib() -> float:
        return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else float("nan")

    start_peak()
    prompt = torch.randint(0, vocab, (1, args.prompt), generator=gen).to(device)
    times = []
    for rep in range(3):  # the first run compiles the kernels: not timed
        cache = runner.new_cache(args.prompt)
        sync(device)
        t0 = time.perf_counter()
        logits = runner.step(prompt, cache)
        sync(device)
        if rep:
            times.append(time.perf_counter() - t0)
        out["prefill_last_logits"] = logits[0, -1].float().cpu()
        del cache, logits  # before the next repeat: the peak holds one of each
    out["prefill_tokens_per_s"] = args.prompt / statistics.median(times)
    out["peak_gib_at"]["prefill"] = peak_gib()

    warmup = WARMUP_STEPS
    for ctx in args.contexts:
        cache = runner.new_cache(ctx + warmup + args.decode_steps)  # frees the last context's cache and graph
        start_peak()  # the peak of this context alone: the model, its cache, one step's work
        ids = torch.randint(0, vocab, (1, ctx + warmup + args.decode_steps), generator=gen).to(device)
        for s in range(0, ctx, chunk):  # fill the cache (not timed)
            runner.step(ids[:, s:min(ctx, s + chunk)], cache)
        for i in range(warmup):
            runner.step(ids[:, ctx + i:ctx + i + 1], cache)
        sync(device)
        t0 = time.perf_counter()
        for i in range(ctx + warmup, ctx + warmup + args.decode_steps):
            runner.step(ids[:, i:i + 1], cache)
        sync(device)
        out["decode"][ctx] = args.decode_steps / (time.perf_counter() - t0)
        del cache
        out["peak_gib_at"][ctx] = peak_gib()
    if device.type == "cuda":
        out["peak_gib"] = max(out["peak_gib_at"].values())
    else:
        del out["peak_gib_at"]  # no figures without a GPU
    return out


# ---------------------------------------------------------------- the bandwidth ceiling


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes per second of a device-to-device copy (each byte read once and written once)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    return 2 * nbytes * reps / (time.perf_counter() - t0)


def decode_bytes(model: torch.nn.Module, cfg: g.ModelConfig, context: int, kv_bytes: int) -> int:
    """Bytes one decode step must read: each weight it uses once (K of E experts, one embedding row), the KV cache."""
    total = 0
    share = cfg.experts_per_token / cfg.n_experts
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in tensors:
        n = t.numel() * t.element_size()
        if "rotary" in name or "inv_freq" in name:
            continue
        if name in ("embed.weight", "model.embed_tokens.weight"):
            n = t.shape[1] * t.element_size()  # one row is looked up
        elif "experts." in name:
            n = int(n * share)
        total += n
    for layer in range(cfg.n_layers):
        window = cfg.window(layer)
        keys = min(context, window) if window else context
        total += 2 * cfg.n_kv_heads * cfg.head_dim * keys * kv_bytes
    return total


# ---------------------------------------------------------------------------------- main


def describe_needs(cfg: g.ModelConfig) -> str:
    packed = cfg.weight_bytes(2, mxfp4_experts=True) / GiB
    dense = cfg.weight_bytes(2) / GiB
    return (f"{cfg.name} ({cfg.n_layers} layers): about {packed:.1f} GiB of weights with MXFP4 experts (triton path) "
            f"and {dense:.1f} GiB dequantized to bf16 (torch and transformers paths, one after another, each "
            f"built from an MXFP4 copy: about {packed + dense + 4:.0f} GiB at the peak)")


def kernels_skipped(device: torch.device, paths: list[str]) -> dict[str, str]:
    """The paths on the Triton kernels, each with the reason, when ``device`` is a GPU too old for Triton."""
    too_old = triton_gpu_problem(device) if device.type == "cuda" else None
    return {path: too_old for path in ("triton", "triton+graph") if too_old and path in paths}


def main(args: argparse.Namespace) -> int:
    cfg = bench_config(args)
    if not args.smoke and not torch.cuda.is_available():
        print("No CUDA GPU here, so there is nothing to measure. This benchmark needs one NVIDIA GPU with room for")
        print("  " + describe_needs(cfg) + ".")
        print("Use --layers N for a shrunken model, or --smoke for a tiny CPU run that only checks the script works.")
        # Asked for figures (--json, as gpu_check.sh asks): a failure, so a run that measured nothing is not taken
        # for one that passed (on a GPU machine whose torch cannot use the GPU, say).
        return 1 if args.json is not None else 0
    if not args.smoke and triton_interpret_flag():
        print("TRITON_INTERPRET is set, so the kernels would run in Triton's interpreter on the CPU, not on the GPU:")
        print("unset it (it is for the CPU tests), or pass --smoke for the CPU check.")
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    args.contexts = args.contexts or ([16, 40] if args.smoke else [1024, 8192])
    args.prompt = args.prompt or (24 if args.smoke else 2048)
    args.decode_steps = args.decode_steps or (2 if args.smoke else 32)
    longest = max(max(args.contexts) + WARMUP_STEPS + args.decode_steps, args.prompt)
    if longest > cfg.context_length:
        print(f"--contexts, --prompt and --decode-steps need {longest:,} positions, more than {cfg.name}'s context of "
              f"{cfg.context_length:,}: ask for shorter ones", file=sys.stderr)
        return 2
    chunk = 24 if args.smoke else 2048
    torch.manual_seed(args.seed)

    import triton

    versions = {"torch": torch.__version__, "triton": triton.__version__}
    if importlib.util.find_spec("transformers"):
        import transformers

        versions["transformers"] = transformers.__version__
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)"
    print(f"{cfg.name}, {cfg.n_layers} layers, random weights; {name}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("needs " + describe_needs(cfg))

    bw = copy_bandwidth(device, (1 if args.smoke else 2) * GiB // (64 if args.smoke else 1))
    print(f"device-to-device copy: {bw / 1e9:.0f} GB/s (bytes read + written)")

    def build_packed() -> GPT:
        # Seeded, so building it again gives the same weights (checked below through the logits).
        model = empty_model(cfg, device, dtype, packed=True)
        randomize_packed(model, args.seed)
        return model

    kv_bytes = torch.empty((), dtype=dtype).element_size()
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}  # a path that failed, and why: the others still run

    unsaved: list[str] = []

    def save() -> None:
        if args.json:
            compare_paths(results)
            try:
                write_json(args.json, cfg, name, versions, bw, results, skipped, args, errors, quiet=True)
            except OSError as e:  # the figures are printed all the same: a failed save is no path's failure
                if not unsaved:
                    print(f"could not save {args.json} ({e.strerror or e}); the figures are in the table above",
                          file=sys.stderr, flush=True)
                unsaved.append(str(e))

    def run(runner: Runner, check: Callable[[], dict[str, Any]] | None = None) -> None:
        print(f"running {runner.name} ...", flush=True)
        r = measure(runner, cfg, args, device, chunk)
        r["decode_bytes"] = {ctx: decode_bytes(runner.model, cfg, ctx, kv_bytes) for ctx in args.contexts}
        r["decode_ceiling_fraction"] = {ctx: r["decode"][ctx] * r["decode_bytes"][ctx] / bw for ctx in args.contexts}
        results[runner.name] = r  # kept even if the check below fails
        # Each path's figures as soon as they exist, so a run stopped by a time limit keeps them.
        print(table_header(args) + "\n" + table_row(runner.name, r, args.contexts), flush=True)
        save()
        if check is not None:
            r.update(check())
            save()

    def attempt(path: str, work: Callable[[], None]) -> bool:
        """Run one path; a failure is recorded and the next path still runs. False: the device is unusable."""
        failed = False
        try:
            work()
        except Exception as e:  # noqa: BLE001 - any failure of one path must not cost the others
            failed = True
            errors[path] = f"{type(e).__name__}: {e}"
            print(f"{path} FAILED:", flush=True)
            traceback.print_exc()
        if failed:
            # Out of the except clause: the error's traceback, which holds the failed path's model, is gone.
            gc.collect()
            try:
                sync(device)  # a CUDA error is sticky: after one, every later call fails too
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            except Exception as sticky:  # noqa: BLE001
                errors[path] += f" (and the device is unusable after it: {type(sticky).__name__}: {sticky})"
                return False
            save()
        return True

    def fits(extra_bytes: int) -> bool:
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return free > extra_bytes + 4 * GiB

    def kernel_paths() -> None:
        packed = build_packed().set_backend("triton")
        if "triton" in args.paths:
            run(ours("triton", packed))
        if "triton+graph" in args.paths:  # the same weights: only the decode loop differs
            run(graph_runner(packed),
                check=lambda m=packed: {"static_decode_max_diff": static_decode_check(m, cfg, device, args.seed)})

    def dense_path(path: str) -> None:
        packed = build_packed()
        model = (dense_from_packed(packed, device, dtype).set_backend("torch") if path == "torch"
                 else hf_from_packed(packed, device, dtype))
        del packed
        if path == "transformers":  # its default for the experts differs by version and device: say which ran
            versions["transformers experts"] = getattr(model.config, "_experts_implementation", None) or "eager"
            print(f"transformers: attention eager, experts {versions['transformers experts']}")
        run(ours("torch", model) if path == "torch" else transformers_runner(model))

    skipped.update(kernels_skipped(device, args.paths))
    usable, stopped = True, False
    try:
        wanted = [p for p in ("triton", "triton+graph") if p in args.paths and p not in skipped]
        if wanted:
            usable = attempt(" and ".join(wanted), kernel_paths)
        # Each dense path is built from a fresh MXFP4 copy, which is then freed: the peak memory of a
        # path counts only its own model.
        dense_bytes = cfg.weight_bytes(2)
        for path in ("torch", "transformers"):
            if path not in args.paths:
                continue
            if not usable:
                skipped[path] = "not run: the device failed on an earlier path"
                continue
            if path == "transformers" and not importlib.util.find_spec("transformers"):
                skipped[path] = "transformers is not installed"
                continue
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if not fits(dense_bytes + cfg.weight_bytes(2, mxfp4_experts=True)):
                skipped[path] = f"needs about {dense_bytes / GiB:.1f} GiB of GPU memory for bf16 experts"
                continue
            usable = attempt(path, lambda path=path: dense_path(path))
    except KeyboardInterrupt:  # a time limit (gpu_check.sh sends Ctrl-C): report what was measured
        stopped = True
        print("\nstopped (Ctrl-C or a time limit): the figures so far", flush=True)

    compare_paths(results)
    report(results, skipped, args, bw, errors)
    if args.smoke:
        print("(smoke run: the kernels ran in Triton's interpreter on the CPU; these figures only show the script works)")
    if args.json:
        try:
            write_json(args.json, cfg, name, versions, bw, results, skipped, args, errors, complete=not stopped)
            unsaved.clear()
        except OSError as e:
            print(f"could not save {args.json} ({e.strerror or e}); the figures are in the table above",
                  file=sys.stderr)
            unsaved.append(str(e))
    return 1 if errors or stopped or unsaved else 0


def table_header(args: argparse.Namespace) -> str:
    """The results table's column names."""
    head = f"{'path':<14}{'prefill ' + str(args.prompt) + ' tok/s':>20}"
    for ctx in args.contexts:
        head += f"{'decode@' + str(ctx) + ' tok/s (ceiling)':>30}"
    return head + f"{'peak GiB (GB)':>16}"


def table_row(name: str, r: dict[str, Any], contexts: list[int]) -> str:
    """One path's line of the results table."""
    line = f"{name:<14}{r['prefill_tokens_per_s']:>20.1f}"
    for ctx in contexts:
        line += f"{r['decode'][ctx]:>20.2f} ({100 * r['decode_ceiling_fraction'][ctx]:5.1f}%)"
    if "peak_gib" not in r:
        return line + f"{'n/a':>16}"
    return line + f"{r['peak_gib']:>9.2f} ({r['peak_gib'] * GiB / 1e9:.2f})"


def report(results: dict[str, dict[str, Any]], skipped: dict[str, str], args: argparse.Namespace, bw: float,
           errors: dict[str, str] | None = None) -> None:
    print("\n" + table_header(args))
    for name, r in results.items():
        print(table_row(name, r, args.contexts))
    for name, why in skipped.items():
        print(f"{name:<13} skipped: {why}")
    for name, why in (errors or {}).items():
        print(f"{name:<13} FAILED: {why}")
    for name, r in results.items():
        per_ctx = ", ".join(f"{ctx}: {n / 1e6:,.1f} MB" for ctx, n in r["decode_bytes"].items())
        print(f"{name}: a decode step must read {per_ctx} (weights it uses, the chosen experts, KV cache)")
    if "triton+graph" in results:
        how = "replayed from a CUDA graph" if torch.cuda.is_available() and not args.smoke else "run eagerly (no GPU)"
        # Missing when the check after its timings failed or was interrupted: the timings stand, unchecked.
        diff = results["triton+graph"].get("static_decode_max_diff")
        print(f"triton+graph: decode steps {how}; their logits vs model(ids, cache) over 8 steps: "
              + (f"max |diff| {diff:.3g}" if diff is not None else "not checked (the check did not finish)"))
    print(f"ceiling = copy rate {bw / 1e9:.0f} GB/s over those bytes; (x%) is the measured decode rate as a share of it")
    for name, r in results.items():
        if "peak_gib" in r:
            print(f"{name}: peak GPU memory " + ", ".join(
                f"{'prefill ' + str(args.prompt) if at == 'prefill' else 'at ' + str(at)} {gib:.2f} GiB "
                f"({gib * GiB / 1e9:.2f} GB)" for at, gib in r["peak_gib_at"].items()))
    for name, r in results.items():
        for ctx, x in r.get("decode_speedup_vs_transformers", {}).items():
            print(f"{name}: decode at {ctx} is {x:.2f}x transformers'")
    for name, r in results.items():
        if "same_weights_max_diff" in r:
            print(f"same weights check: last prefill logits, {name} vs triton: max |diff| "
                  f"{r['same_weights_max_diff']:.3g} (logits up to {r['same_weights_logit_scale']:.3g})")


def compare_paths(results: dict[str, dict[str, Any]]) -> None:
    """Add the cross-path figures to each path's results: the same-weights check and the speed-up over transformers."""
    if "triton" in results:
        ref = results["triton"]["prefill_last_logits"]
        for name, r in results.items():
            if name != "triton":
                r["same_weights_max_diff"] = (r["prefill_last_logits"] - ref).abs().max().item()
                r["same_weights_logit_scale"] = ref.abs().max().item()
    if "transformers" in results:
        hf = results["transformers"]["decode"]
        for name, r in results.items():
            if name != "transformers":
                r["decode_speedup_vs_transformers"] = {ctx: r["decode"][ctx] / hf[ctx] for ctx in r["decode"]}


def write_json(path: Path, cfg: g.ModelConfig, device_name: str, versions: dict[str, str], bw: float,
               results: dict[str, dict[str, Any]], skipped: dict[str, str], args: argparse.Namespace,
               errors: dict[str, str] | None = None, complete: bool = False, quiet: bool = False) -> None:
    data = {
        # complete: false in the files written along the way, and in one cut short by a time limit.
        "complete": complete, "paths_requested": list(args.paths),
        "model": cfg.name, "layers": cfg.n_layers, "device": device_name, "versions": versions,
        "copy_bandwidth_bytes_per_s": bw, "prompt": args.prompt, "decode_steps": args.decode_steps,
        "results": {n: {k: v for k, v in r.items() if k != "prefill_last_logits"} for n, r in results.items()},
        "skipped": skipped, "errors": errors or {}, "config": dataclasses.asdict(cfg),
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path)  # never a half-written file
    except BaseException:
        tmp.unlink(missing_ok=True)  # nor a stray .tmp beside it (a full disk, a Ctrl-C)
        raise
    if not quiet:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main(ARGS))
