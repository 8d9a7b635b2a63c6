"""The static-shape decode step and its CUDA graph decoder against the model's own incremental decode.

Tolerance: float32 rounding. The static step attends over the whole preallocated cache (the
masked keys add exact zeros, but the sums are ordered differently) and runs the experts as one
batched matmul over the gathered weights instead of a loop over experts, so its logits differ
from model(ids, cache) by float32 rounding: at most 4.3e-6 on logits up to 12 in the cases below
(about 4e-7 relative; keys and values 7e-7). We allow 1e-5 absolute and relative. On the Triton
backend both run the same kernels, and agree here to the bit. On a GPU we allow 1e-4: its kernels
(and cuBLAS) order their float32 sums their own way.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch

import gptoss_edu as g
from gptoss_edu.config import LAST_STEP
from gptoss_edu import static_decode
from gptoss_edu.attention import KVCache
from gptoss_edu.env import triton_gpu
from gptoss_edu.generate import generate
from gptoss_edu.static_decode import CUDAGraphDecoder, generate as static_generate, static_decode_step
from random_weights import randomize

# In the interpreter, no kernel may load or store outside the tensors of its launch (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_stray_memory")

RTOL = ATOL = 1e-5
ON_GPU = triton_gpu()  # a GPU Triton supports; an older one counts as none
# The kernel tests run where the kernels compile: on the GPU, or on the CPU in the interpreter.
DEVICE = "cuda" if ON_GPU else "cpu"
GPU_TOL = 1e-4  # float32 still, but GPU kernels order their sums their own way
KERNEL_TOL = GPU_TOL if ON_GPU else RTOL
SAME_KERNELS_TOL = GPU_TOL if ON_GPU else 0.0  # both paths on the same kernels, in the interpreter: to the bit
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU: a CUDA graph records GPU kernel launches")


def config(kind: str) -> g.ModelConfig:
    """Small configs covering what the static step must handle."""
    if kind == "gpt-oss-tiny":  # YaRN, window 8 on every other layer, sinks, GQA 4:2, 8 experts top-2
        return g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64)
    if kind == "gqa-4":  # 4 query heads per KV head, window 5, 3 layers, top-1 of 4 experts
        layers = ("sliding_attention", "full_attention", "sliding_attention")
        return g.preset("gpt-oss-tiny").replace(vocab_size=300, context_length=64, d_model=48, n_layers=3, n_heads=8,
                                                 n_kv_heads=2, head_dim=12, sliding_window=5, layer_types=layers,
                                                 n_experts=4, experts_per_token=1)
    if kind == "gpt2-tiny":  # learned positions, LayerNorm, GELU, MHA, tied embeddings
        return g.preset("gpt2-tiny").replace(vocab_size=300, context_length=64, dropout=0.0)
    if kind == "course-step-05":  # RoPE, RMSNorm, a dense gpt-oss SwiGLU, GQA: halfway through the course
        return g.course_config(5).replace(vocab_size=300, context_length=64)
    raise KeyError(kind)


def decode_both(model: g.GPT, ids: torch.Tensor, prompt: int) -> tuple[list, list, KVCache, KVCache]:
    """Logits of each decode step after ``prompt`` tokens: model(ids, cache) and the static decoder."""
    B, T = ids.shape
    eager_cache, static_cache = model.new_cache(B, T), model.new_cache(B, T)
    with torch.no_grad():
        model(ids[:, :prompt], eager_cache)
        model(ids[:, :prompt], static_cache)
        decoder = CUDAGraphDecoder(model, static_cache)
        eager = [model(ids[:, t:t + 1], eager_cache)[:, -1] for t in range(prompt, T)]
        static = [decoder(ids[:, t]).clone() for t in range(prompt, T)]
    return eager, static, eager_cache, static_cache


@pytest.mark.parametrize("kind, batch, prompt, packed", [
    ("gpt-oss-tiny", 1, 3, False),
    ("gpt-oss-tiny", 2, 1, True),  # MXFP4 experts, dequantized per gathered expert
    ("gqa-4", 2, 4, False),
    ("gpt2-tiny", 1, 5, False),
    ("course-step-05", 3, 2, False),
])
def test_static_step_equals_incremental_decode(kind: str, batch: int, prompt: int, packed: bool) -> None:
    cfg = config(kind)
    # Packed experts: random MXFP4 bytes from the constructor (randomize changes parameters only).
    model = randomize(g.GPT(cfg, packed_experts=packed), seed=batch + prompt)
    T = 24
    assert cfg.sliding_window == 0 or T - prompt > cfg.sliding_window + 2  # many steps past the window
    ids = torch.randint(0, cfg.vocab_size, (batch, T), generator=torch.Generator().manual_seed(prompt))
    eager, static, eager_cache, static_cache = decode_both(model, ids, prompt)
    assert max(e.abs().max().item() for e in eager) > 0.5  # a live model, not zeros against zeros
    for step, (e, s) in enumerate(zip(eager, static)):
        torch.testing.assert_close(s, e, rtol=RTOL, atol=ATOL, msg=lambda m: f"decode step {step}: {m}")
    assert static_cache.length == eager_cache.length == T
    for layer in range(cfg.n_layers):
        torch.testing.assert_close(static_cache.k[layer], eager_cache.k[layer], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(static_cache.v[layer], eager_cache.v[layer], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("step", range(1, LAST_STEP + 1))
def test_the_static_step_follows_every_course_step(step: int) -> None:
    """The static step writes the block out again: a switch a teacher adds (DEVELOPERS.md) must reach it too."""
    cfg = g.course_config(step).replace(vocab_size=300, context_length=40, dropout=0.0)
    model = randomize(g.GPT(cfg), seed=step)
    ids = torch.randint(0, cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(step))
    eager, static, _, _ = decode_both(model, ids, 3)
    for e, s in zip(eager, static):
        torch.testing.assert_close(s, e, rtol=RTOL, atol=ATOL)


def test_static_step_leaves_the_cache_length_to_the_caller() -> None:
    model = randomize(g.GPT(config("gpt-oss-tiny")), seed=1)
    cache = model.new_cache(1, 10)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache)
        logits = static_decode_step(model, cache, torch.tensor([4]), torch.tensor([3]))
    assert logits.shape == (1, 300) and cache.length == 3
    assert cache.k[0][:, :, 3].abs().sum() > 0 and cache.k[0][:, :, 4:].abs().sum() == 0


@pytest.mark.parametrize("kind", ["gpt-oss-tiny", "gpt2-tiny"])
def test_greedy_generation_gives_the_same_tokens(kind: str) -> None:
    model = randomize(g.GPT(config(kind)), seed=11)
    prompt = [5, 17, 42, 7]
    want = generate(model, prompt, max_new_tokens=20, temperature=0)
    got = static_generate(model, prompt, max_new_tokens=20, temperature=0)
    assert got.tokens == want.tokens and len(got.tokens) == 20
    assert got.stop_reason == want.stop_reason == "max_new_tokens"


def test_sampling_and_stops_match_generate() -> None:
    model = randomize(g.GPT(config("gpt-oss-tiny")), seed=12)
    kw = dict(max_new_tokens=15, temperature=0.8, top_p=0.9, seed=3)
    want = generate(model, [1, 2, 3], **kw)
    assert static_generate(model, [1, 2, 3], **kw).tokens == want.tokens
    stop = want.tokens[4]
    got = static_generate(model, [1, 2, 3], stop_tokens=[stop], **kw)
    assert got.tokens == want.tokens[:want.tokens.index(stop) + 1] and got.stop_reason == "stop_token"
    full = static_generate(model, list(range(60)), max_new_tokens=10, temperature=0)  # context 64
    assert len(full.tokens) == 4 and full.stop_reason == "context_full"


def test_triton_backend_static_step_equals_incremental_decode(monkeypatch) -> None:
    """Packed experts on the Triton kernels (the interpreter without a GPU): attention_decode_at, MoE, RMSNorm."""
    monkeypatch.setenv("GPTOSS_KERNELS_POISON", "1")  # NaN in every buffer a kernel wrapper allocates
    cfg = config("gpt-oss-tiny").replace(n_layers=2, layer_types=("sliding_attention", "full_attention"))
    model = g.GPT(cfg, packed_experts=True).eval()
    randomize(model, seed=4)
    model.to(DEVICE).set_backend("triton")
    ids = torch.randint(0, cfg.vocab_size, (1, 13), generator=torch.Generator().manual_seed(4)).to(DEVICE)
    eager, static, eager_cache, static_cache = decode_both(model, ids, prompt=3)  # 10 steps, the last 5 past the window of 8
    for e, s in zip(eager, static):
        torch.testing.assert_close(s, e, rtol=SAME_KERNELS_TOL, atol=SAME_KERNELS_TOL)
    for layer in range(cfg.n_layers):  # layer 0's rolling buffer and layer 1's full cache
        torch.testing.assert_close(static_cache.k[layer], eager_cache.k[layer], rtol=SAME_KERNELS_TOL,
                                   atol=SAME_KERNELS_TOL)
        torch.testing.assert_close(static_cache.v[layer], eager_cache.v[layer], rtol=SAME_KERNELS_TOL,
                                   atol=SAME_KERNELS_TOL)


# ------------------------------------------------------------------------- clear errors


def test_cuda_graph_asked_for_on_the_cpu_is_a_clear_error() -> None:
    model = randomize(g.GPT(config("gpt2-tiny")), seed=0)
    with pytest.raises(RuntimeError, match="CUDA graphs need .* CUDA GPU.*cuda_graph=False"):
        CUDAGraphDecoder(model, model.new_cache(1, 8), cuda_graph=True)
    assert not CUDAGraphDecoder(model, model.new_cache(1, 8)).use_graph  # the default: eager on the CPU


def test_the_graph_is_recorded_with_the_models_gpu_current(monkeypatch) -> None:
    """torch.cuda.graph records on the current device's streams: a model on cuda:1 must make cuda:1 current first.

    No GPU here: CUDA's stream, graph and device objects are stand-ins that note which device is current
    when the warm-up runs and when the graph records.
    """
    current, seen = ["cuda:0"], []

    class Device:  # torch.cuda.device
        def __init__(self, device):
            self.device, self.before = str(device), None

        def __enter__(self):
            self.before, current[0] = current[0], self.device

        def __exit__(self, *exc):
            current[0] = self.before

    class Noted:  # a stream, a stream context, a graph, a graph context: each notes the device current when made
        def __init__(self, *args, **kwargs):
            seen.append((type(self).__name__, current[0]))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait_stream(self, other):
            pass

    class Stream(Noted): pass  # noqa: E701
    class StreamContext(Noted): pass  # noqa: E701
    class CUDAGraph(Noted): pass  # noqa: E701
    class GraphContext(Noted): pass  # noqa: E701

    cuda = torch.cuda
    for name, fake in (("device", Device), ("Stream", Stream), ("stream", StreamContext), ("CUDAGraph", CUDAGraph),
                       ("graph", GraphContext), ("current_stream", lambda device=None: Stream())):
        monkeypatch.setattr(cuda, name, fake)
    model = randomize(g.GPT(config("gpt2-tiny")), seed=0)
    decoder = CUDAGraphDecoder(model, model.new_cache(1, 8))
    decoder.use_graph = True  # as on a GPU; the position buffer stands for the model's GPU
    decoder.position = decoder.position.as_subclass(_OnGpu1)
    monkeypatch.setattr(decoder, "_run", lambda: seen.append(("step", current[0])) or torch.zeros(1))
    decoder.capture()
    assert seen and all(device == "cuda:1" for _, device in seen), seen
    assert {kind for kind, _ in seen} == {"Stream", "StreamContext", "CUDAGraph", "GraphContext", "step"}
    assert current == ["cuda:0"]  # and back afterwards


class _OnGpu1(torch.Tensor):
    """A CPU tensor that reports cuda:1 as its device."""

    @property
    def device(self):
        return torch.device("cuda", 1)

def test_a_batch_with_one_bad_id_is_refused_before_decoding() -> None:
    # The host check reads the batch's smallest and largest id: either end may be the bad one.
    model = randomize(g.GPT(config("gpt2-tiny")), seed=0)
    cache = model.new_cache(2, 8)
    with torch.no_grad():
        model(torch.tensor([[1, 2], [3, 4]]), cache)
    decoder = CUDAGraphDecoder(model, cache)
    for bad, ids in ((-1, [5, -1]), (-7, [-7, 299]), (300, [0, 300]), (300, torch.tensor([0, 300]))):
        with pytest.raises(ValueError, match=f"token id {bad} is outside the vocabulary"):
            decoder(ids)  # a CPU tensor too: it was a bare IndexError (on a GPU, a device-side assert)
    assert cache.length == 2  # nothing was decoded
    # 1.5 was decoded as token 1, True (or [True, 5]) as token 1, a float tensor converted silently.
    for odd in (1.5, True, [5, 2.5], [True, 5], torch.tensor([1.0, 2.0])):
        with pytest.raises(ValueError, match="tokens are token ids"):
            decoder(odd)
    assert cache.length == 2
    # Too few or too many for the batch: PyTorch's "shape '[2]' is invalid for input of size 3" said neither.
    for wrong, count in (([], 0), ([1, 2, 3], 3), (torch.tensor([[1, 2], [3, 4]]), 4)):
        with pytest.raises(ValueError, match=f"tokens: one per sequence, and the cache holds 2; got {count}"):
            decoder(wrong)
    assert cache.length == 2
    decoder([5, 299])
    assert cache.length == 3


def test_full_cache_and_bad_caches_are_clear_errors() -> None:
    model = randomize(g.GPT(config("gpt2-tiny")), seed=0)
    cache = model.new_cache(1, 4)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache)
    decoder = CUDAGraphDecoder(model, cache)
    with pytest.raises(ValueError, match="token id 300 is outside the vocabulary"):
        decoder(300)
    decoder(np.int64(4))  # a numpy integer is one token too
    with pytest.raises(ValueError, match="all are filled"):
        decoder(5)
    other = g.GPT(config("gpt-oss-tiny"))
    with pytest.raises(ValueError, match="does not fit"):
        CUDAGraphDecoder(model, other.new_cache(1, 4))
    with pytest.raises(ValueError, match="float64"):
        CUDAGraphDecoder(model, KVCache(model.config, 1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="model.eval"):
        CUDAGraphDecoder(g.GPT(config("gpt2-tiny").replace(dropout=0.1)), model.new_cache(1, 4))



def test_after_static_steps_the_cache_goes_back_one_position_exactly_and_no_further() -> None:
    """The static step writes the rolling buffers without KVCache.update, so only the cache's own count of the
    furthest length reached remembers what they hold: counted from the current length instead, two steps back of
    one each were let through, and the query redone saw a key from its own future."""
    cfg = config("gpt-oss-tiny")
    model = randomize(g.GPT(cfg), seed=2)
    ids = torch.randint(0, cfg.vocab_size, (1, 24), generator=torch.Generator().manual_seed(2))
    cache = model.new_cache(1, 24)
    with torch.no_grad():
        full = model(ids)[0]
        model(ids[:, :3], cache)
        decoder = CUDAGraphDecoder(model, cache)
        for t in range(3, 20):  # 20 > the window of 8: the buffers have wrapped
            decoder(ids[:, t])
        cache.length -= 1  # one back: the last step redone
        torch.testing.assert_close(decoder(ids[:, 19])[0], full[19], rtol=RTOL, atol=ATOL)
        cache.length -= 1
        with pytest.raises(ValueError, match="cannot go back to 18 positions, 20 having been written"):
            cache.length -= 1
    assert cache.length == 19


# ------------------------------------------------- what a CUDA graph cannot record, caught on a CPU

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")


@pytest.mark.parametrize("kind, packed", [("gpt-oss-tiny", True), ("gpt-oss-tiny", False), ("gpt2-tiny", False),
                                          ("course-step-05", False)])
def test_after_its_warm_up_the_torch_step_reads_nothing_back_and_copies_nothing_in(kind, packed, monkeypatch) -> None:
    # A graph records device work only: a value read back to the host (.item(), an `if` on a tensor)
    # or a tensor made from Python data (torch.tensor) inside the step breaks the recording on a GPU.
    # The warm-up before recording may do both (the first call makes and keeps what it needs).
    model = randomize(g.GPT(config(kind), packed_experts=packed), seed=1)
    cache = model.new_cache(1, 16)
    tokens, position = torch.tensor([4]), torch.tensor([3])
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache)
        want = static_decode_step(model, cache, tokens, position).clone()  # the warm-up

        def refuse(*args, **kwargs):
            raise AssertionError("the step reads a tensor back to the host or makes one from Python data")

        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, refuse)
        monkeypatch.setattr(torch, "tensor", refuse)
        got = static_decode_step(model, cache, tokens, position)
        monkeypatch.undo()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ------------------------------------------------------------------ the chats' decoder


def test_fast_step_takes_the_plain_step_on_a_cpu_and_falls_back_when_no_graph_can_be_recorded(monkeypatch) -> None:
    model = randomize(g.GPT(config("gpt-oss-tiny")), seed=3)
    prompt = [5, 17, 42, 7]
    want = generate(model, prompt, max_new_tokens=12, temperature=0).tokens
    real_graph_step = static_decode.graph_step

    def no_graph(*args, **kwargs):
        raise AssertionError("fast_step tried to record a graph")

    # On a CPU (and wherever cuda_graph=False) nothing is recorded: the plain step, the same tokens.
    monkeypatch.setattr(static_decode, "graph_step", no_graph)
    assert generate(model, prompt, max_new_tokens=12, temperature=0, decoder=static_decode.fast_step()).tokens == want
    monkeypatch.setattr(static_decode, "_on_gpu", lambda m: True)
    assert generate(model, prompt, max_new_tokens=12, temperature=0,
                    decoder=static_decode.fast_step(cuda_graph=False)).tokens == want
    # "On a GPU" whose graph cannot be recorded (here: the model is on the CPU after all), a warning and
    # the plain step; insisting on the graph is an error that says why.
    monkeypatch.setattr(static_decode, "graph_step", real_graph_step)
    with pytest.warns(UserWarning, match="could not be recorded as a CUDA graph .*CUDA graphs need"):
        got = generate(model, prompt, max_new_tokens=12, temperature=0, decoder=static_decode.fast_step())
    assert got.tokens == want
    with pytest.raises(RuntimeError, match="CUDA graphs need the model and cache on a CUDA GPU"):
        generate(model, prompt, max_new_tokens=12, temperature=0, decoder=static_decode.fast_step(cuda_graph=True))


# ------------------------------------------------------------- the position-tensor kernel

attn_mod = importlib.import_module("gptoss_kernels.attention")

# (B, Hq, Hkv, Tq, Tk, D, window, sinks)
DECODE_AT_CASES = [
    (1, 8, 2, 1, 70, 64, 0, True),  # groups 4, no window
    (2, 4, 4, 1, 50, 48, 16, False),  # MHA, window smaller than the cache
    (1, 4, 2, 3, 45, 80, 100, True),  # three queries, window larger than the cache
    (1, 4, 1, 2, 37, 48, 5, True),  # window barely above the queries
]


@pytest.mark.needs_triton
@pytest.mark.parametrize("case", DECODE_AT_CASES)
@pytest.mark.parametrize("num_splits", [None, 1, 3])
def test_attention_decode_at_reads_the_position_on_the_device(case, num_splits, monkeypatch) -> None:
    monkeypatch.setenv("GPTOSS_KERNELS_POISON", "1")
    B, Hq, Hkv, Tq, Tk, D, window, sinks = case
    gen = torch.Generator().manual_seed(Tk)
    q, k, v = (torch.randn(s, generator=gen).to(DEVICE) for s in ((B, Hq, Tq, D), (B, Hkv, Tk, D), (B, Hkv, Tk, D)))
    s = 2 * torch.randn(Hq, generator=gen).to(DEVICE) if sinks else None
    for pos in (0, 3, 17, Tk - Tq):
        # The unfilled cache may hold anything: NaN there shows the kernel never reads it.
        k_nan, v_nan = k.clone(), v.clone()
        k_nan[:, :, pos + Tq:], v_nan[:, :, pos + Tq:] = float("nan"), float("nan")
        out = attn_mod.attention_decode_at(q, k_nan, v_nan, torch.tensor([pos], device=DEVICE), scale=D ** -0.5,
                                           sinks=s, window=window, num_splits=num_splits, block_n=16)
        want = attn_mod.attention_reference(q, k[:, :, :pos + Tq], v[:, :, :pos + Tq], scale=D ** -0.5, sinks=s,
                                            window=window, q_start=pos)
        torch.testing.assert_close(out, want, rtol=KERNEL_TOL, atol=KERNEL_TOL)


def test_attention_decode_at_bad_position() -> None:
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="one position"):
        attn_mod.attention_decode_at(q, k, k, torch.tensor([1, 2]), scale=0.25)
    with pytest.raises(TypeError, match="position"):
        attn_mod.attention_decode_at(q, k, k, torch.tensor([1.0]), scale=0.25)


# ------------------------------------------------------------------------------ on a GPU


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_cuda_graph_replay_equals_incremental_decode(backend: str) -> None:
    cfg = config("gpt-oss-tiny")
    model = g.GPT(cfg, packed_experts=True)
    randomize(model, seed=6)
    model = model.to("cuda").set_backend(backend)
    ids = torch.randint(0, cfg.vocab_size, (1, 24), generator=torch.Generator().manual_seed(6)).cuda()
    eager, static, eager_cache, static_cache = decode_both(model, ids, prompt=4)
    for e, s in zip(eager, static):
        torch.testing.assert_close(s, e, rtol=GPU_TOL, atol=GPU_TOL)
    torch.testing.assert_close(static_cache.v[1], eager_cache.v[1], rtol=GPU_TOL, atol=GPU_TOL)


@pytest.mark.gpu
@needs_gpu
def test_cuda_graph_is_recorded_once_and_generation_matches() -> None:
    model = randomize(g.GPT(config("gpt-oss-tiny")), seed=8).to("cuda")
    cache = model.new_cache(1, 16)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]], device="cuda"), cache)
    decoder = CUDAGraphDecoder(model, cache)
    assert decoder.use_graph
    first = decoder(4).clone()
    graph = decoder.graph
    decoder(5)
    assert graph is not None and decoder.graph is graph and cache.length == 5
    assert first.isfinite().all()
    prompt = [5, 17, 42, 7]
    want = generate(model, prompt, max_new_tokens=20, temperature=0)
    assert static_generate(model, prompt, max_new_tokens=20, temperature=0).tokens == want.tokens


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_the_chats_decoder_records_a_graph_on_the_gpu(backend: str, monkeypatch) -> None:
    model = randomize(g.GPT(config("gpt-oss-tiny"), packed_experts=True), seed=9).to("cuda").set_backend(backend)
    recorded = []
    real = static_decode.CUDAGraphDecoder.capture

    def capture(self):
        real(self)
        recorded.append(self.graph)

    monkeypatch.setattr(static_decode.CUDAGraphDecoder, "capture", capture)
    prompt = [5, 17, 42, 7]
    want = generate(model, prompt, max_new_tokens=20, temperature=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the plain step
        got = generate(model, prompt, max_new_tokens=20, temperature=0, decoder=static_decode.fast_step())
    assert recorded and recorded[0] is not None
    assert got.tokens == want.tokens


# ---- found by mutation testing: bf16, a cache with another window, the torch backend's experts -----


def test_the_static_step_in_bfloat16_stays_bfloat16_and_matches_decode() -> None:
    # bf16 is what gpt-oss runs in; float32 router weights must not promote the residual stream.
    # Tolerance 1e-2: the two paths run the same ops (measured on a CPU: identical); 0.05 let through router
    # weights rounded to bf16 before weighting the experts, which moved logits by 2e-2.
    cfg = config("gpt-oss-tiny")
    model = randomize(g.GPT(cfg), seed=5).to(torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(5))
    eager_cache, static_cache = model.new_cache(1, 8), model.new_cache(1, 8)
    with torch.no_grad():
        model(ids[:, :4], eager_cache)
        model(ids[:, :4], static_cache)
        decoder = CUDAGraphDecoder(model, static_cache)
        for t in range(4, 8):
            want = model(ids[:, t:t + 1], eager_cache)[:, -1]
            got = decoder(ids[:, t])
            assert got.dtype == torch.bfloat16
            torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)


def test_a_cache_with_another_window_is_refused() -> None:
    # Same layers, KV heads and head_dim: only the sliding layers' rolling buffers differ (4 slots, not 8).
    cfg = config("gpt-oss-tiny")
    model = randomize(g.GPT(cfg), seed=0)
    other = g.GPT(cfg.replace(sliding_window=4))
    with pytest.raises(ValueError, match="does not fit"):
        CUDAGraphDecoder(model, other.new_cache(1, 16))


def test_the_torch_backend_runs_packed_experts_without_the_triton_kernel(monkeypatch) -> None:
    import gptoss_kernels.moe as kernels_moe

    def refuse(*args, **kwargs):
        raise AssertionError("the torch backend called the Triton MoE kernel")

    monkeypatch.setattr(kernels_moe, "moe_mxfp4_decode", refuse)
    model = randomize(g.GPT(config("gpt-oss-tiny"), packed_experts=True), seed=1).eval()  # backend "torch"
    cache = model.new_cache(1, 6)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache)
        CUDAGraphDecoder(model, cache)(4)
    assert cache.length == 4


@pytest.mark.parametrize("made_once", [False, True])
def test_the_static_step_in_float64_keeps_float64(made_once) -> None:
    # The course checks its model to 1e-15 in float64 (attend keeps its scores and softmax in float64); the
    # static step must not round its scores or sinks to float32 (that gave 4e-8), nor the routers' weights that
    # CUDAGraphDecoder makes once (made_once: wide_routers) to float32 (2e-7).
    cfg = config("gpt-oss-tiny")
    model = randomize(g.GPT(cfg), seed=7).double().eval()
    routers = static_decode.wide_routers(model) if made_once else None
    ids = torch.randint(0, cfg.vocab_size, (2, 20), generator=torch.Generator().manual_seed(7))
    eager_cache, static_cache = model.new_cache(2, 20), model.new_cache(2, 20)
    with torch.no_grad():
        model(ids[:, :3], eager_cache)
        model(ids[:, :3], static_cache)
        for t in range(3, 20):  # past the window of 8
            want = model(ids[:, t:t + 1], eager_cache)[:, -1]
            got = static_decode_step(model, static_cache, ids[:, t], torch.tensor([t]), routers)
            static_cache.length = t + 1
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=lambda m: f"step {t}: {m}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_rotating_q_and_k_together_gives_the_same_bits(dtype):
    """The step turns q and k in one pass with [cos, cos] and [-sin, sin]: apply_rotary's numbers exactly."""
    from gptoss_edu.rotary import Rotary, apply_rotary

    cfg = config("gpt-oss-tiny")  # YaRN: the attention factor is folded into cos and sin
    gen = torch.Generator().manual_seed(11)
    for position in (0, 5, 63):
        cos, sin = Rotary(cfg)(torch.tensor([position]), dtype)
        q = (torch.randn(3, cfg.n_heads, 1, cfg.head_dim, generator=gen, dtype=torch.float64) * 4).to(dtype)
        k = (torch.randn(3, cfg.n_kv_heads, 1, cfg.head_dim, generator=gen, dtype=torch.float64) * 4).to(dtype)
        q2, k2 = static_decode._rotate_q_k(q, k, torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1))
        assert torch.equal(q2, apply_rotary(q, cos, sin)) and torch.equal(k2, apply_rotary(k, cos, sin))


def test_the_step_converts_the_routers_once_not_at_every_token():
    """In bf16 a router's weight and bias were converted to float32 in every layer at every token: two kernels
    each, a few microseconds apiece in a CUDA graph at batch 1. Made once, the same logits to the bit."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.copies = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.copies += func.overloadpacket.__name__ == "_to_copy"
            return func(*args, **(kwargs or {}))

    model = randomize(g.GPT(config("gpt-oss-tiny")), seed=12).to(torch.bfloat16).eval()
    ids = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(13))
    logits, copies = {}, {}
    for routers in (None, static_decode.wide_routers(model)):
        cache = model.new_cache(1, 16)
        with torch.no_grad():
            model(ids[:, :8], cache)
            with Count() as counted:
                logits[routers is None] = static_decode_step(model, cache, ids[0, 8:], torch.tensor([8]), routers)
        copies[routers is None] = counted.copies
    assert torch.equal(logits[True], logits[False])
    assert copies[True] - copies[False] == 2 * model.config.n_layers  # weight and bias, in every layer
