"""gptoss_edu.memory: checkpoint and KV-cache bytes against SPEC.md and real tensors, the workspace
estimate against allocations measured while the course's model runs, and the plan."""

from __future__ import annotations

import json
import shutil
import weakref

import pytest
import torch
from safetensors import safe_open
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import gptoss_edu as g
from gptoss_edu import attention, memory
from gptoss_edu.checkpoint import CheckpointError, read_config
from gptoss_edu.config import PRESET_DIR
from gptoss_edu.model import GPT
from gptoss_edu.tokenizer import data_dir
from simulated import hide_modules

# The released config.json files, shipped with the package; the tests below hold them to SPEC.md's numbers.
CONFIGS = {n: json.loads((PRESET_DIR / f"gpt-oss-{n}.config.json").read_text()) for n in ("20b", "120b")}

# SPEC.md, section 1.
SPEC_CHECKPOINT = {"20b": 13_761_264_768, "120b": 65_248_815_744}
SPEC_KV_PER_TOKEN = {"20b": 48 * 1024, "120b": 72 * 1024}


# ---- weights and KV cache against SPEC.md ---------------------------------------------------------

@pytest.mark.parametrize("size", ["20b", "120b"])
def test_checkpoint_bytes_match_the_spec(size):
    assert memory.checkpoint_bytes(CONFIGS[size]) == SPEC_CHECKPOINT[size]


@pytest.mark.parametrize("size", ["20b", "120b"])
def test_kv_cache_per_token_matches_the_spec(size):
    assert memory.kv_cache_bytes(CONFIGS[size], 1) == SPEC_KV_PER_TOKEN[size]
    assert memory.kv_cache_bytes(CONFIGS[size], 128, batch=3) == 3 * 128 * SPEC_KV_PER_TOKEN[size]
    assert memory.kv_cache_bytes(CONFIGS[size], 10, dtype_bytes=4) == 20 * SPEC_KV_PER_TOKEN[size]
    # SPEC.md: window 128 on the even layers, half of them. Past 128 positions those stop growing.
    half = SPEC_KV_PER_TOKEN[size] // 2
    assert memory.kv_cache_bytes(CONFIGS[size], 4096, batch=3) == 3 * (4096 * half + 128 * half)
    assert memory.kv_cache_bytes(CONFIGS[size], 129) == 129 * half + 128 * half


def test_any_config_form_gives_the_same_numbers():
    """A dict of HF keys, an object with HF attributes, and the course's ModelConfig agree."""
    hf = CONFIGS["20b"]
    as_object = type("HFConfig", (), dict(hf))()
    course = g.preset("gpt-oss-20b")
    for cfg in (as_object, course):
        assert memory.checkpoint_bytes(cfg) == SPEC_CHECKPOINT["20b"]
        assert memory.kv_cache_bytes(cfg, 7) == 7 * SPEC_KV_PER_TOKEN["20b"]
        assert memory.workspace_bytes(cfg, 300, 4096) == memory.workspace_bytes(hf, 300, 4096)


def test_bad_configs_are_named():
    cfg = dict(CONFIGS["20b"])
    del cfg["num_key_value_heads"]
    with pytest.raises(ValueError, match="num_key_value_heads"):
        memory.kv_cache_bytes(cfg, 1)
    with pytest.raises(ValueError, match="no experts"):
        memory.checkpoint_bytes(g.preset("gpt2-124m"))
    # Without layer_types a gpt-oss config.json alternates (as the checkpoint reader and transformers read it).
    unlisted = {k: v for k, v in CONFIGS["20b"].items() if k != "layer_types"}
    assert memory.kv_cache_bytes(unlisted, 4096) == memory.kv_cache_bytes(CONFIGS["20b"], 4096)
    assert memory.kv_cache_bytes(unlisted, 4096) == attention.KVCache(
        g.ModelConfig.from_hf_config(unlisted), 1, 4096, device="meta", dtype=torch.bfloat16).nbytes()
    short = dict(CONFIGS["20b"], layer_types=CONFIGS["20b"]["layer_types"][:-1])
    with pytest.raises(ValueError, match="23 layer_types for 24 layers"):
        memory.kv_cache_bytes(short, 4096)
    with pytest.raises(ValueError, match="multiples of 32"):
        memory.checkpoint_bytes({**CONFIGS["20b"], "intermediate_size": 2880 + 16})


@pytest.mark.parametrize("size", ["20b", "120b"])
def test_checkpoint_bytes_equal_the_model_built_on_meta(size):
    """The course model of the full config, packed experts and bf16 rest, built without memory."""
    with torch.device("meta"):
        model = GPT(g.ModelConfig.from_hf_config(CONFIGS[size]), packed_experts=True).to(torch.bfloat16)
    state = model.state_dict()
    assert sum(t.numel() * t.element_size() for t in state.values()) == SPEC_CHECKPOINT[size]
    parts = memory.checkpoint_parts(CONFIGS[size])
    assert parts["mxfp4_blocks"] == sum(t.numel() for n, t in state.items() if n.endswith("_blocks"))
    assert parts["mxfp4_scales"] == sum(t.numel() for n, t in state.items() if n.endswith("_scales"))


@pytest.mark.parametrize("changes", [{}, {"n_experts": 4, "experts_per_token": 1, "d_ff": 96},
                                     {"n_layers": 2, "layer_types": ("sliding_attention", "full_attention"),
                                      "n_heads": 8, "n_kv_heads": 1, "vocab_size": 1000},
                                     {"tie_embeddings": True}, {"attn_bias": False},
                                     {"tie_embeddings": True, "attn_bias": False, "vocab_size": 777}])
def test_checkpoint_bytes_equal_a_written_checkpoint(tmp_path, changes):
    """The tensor bytes of a real-layout checkpoint the course writes, shard headers excluded."""
    cfg = g.preset("gpt-oss-tiny").replace(**changes)
    folder = g.write_checkpoint(GPT(cfg), tmp_path / "ckpt")
    on_disk = tensor_bytes(folder)
    assert on_disk == memory.checkpoint_bytes(json.loads((folder / "config.json").read_text()))
    assert on_disk == memory.checkpoint_bytes(cfg)


def test_checkpoint_bytes_of_the_shipped_tied_model():
    """data/tiny-gpt-oss shares its embedding with the output layer: counted once, as stored."""
    folder = data_dir() / "tiny-gpt-oss"
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    assert memory.checkpoint_bytes(config) == tensor_bytes(folder)


def tensor_bytes(folder) -> int:
    """Bytes of every tensor in a folder's safetensors files (headers excluded)."""
    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                t = f.get_tensor(name)
                total += t.numel() * t.element_size()
    return total



def test_a_trimmed_config_json_is_read_as_the_loader_reads_it():
    """Without sliding_window (transformers' default, 128) every layer was counted as full attention, twice the
    cache; with OpenAI's experts_per_token alone the experts' workspace assumed 4 experts a token."""
    hf = dict(CONFIGS["20b"])
    trimmed = {k: v for k, v in hf.items() if k != "sliding_window"}
    loaded = g.ModelConfig.from_hf_config(trimmed)
    assert memory.kv_cache_bytes(trimmed, 8192) == memory.kv_cache_bytes(loaded, 8192) == memory.kv_cache_bytes(hf, 8192)
    untyped = {k: v for k, v in trimmed.items() if k != "layer_types"} | {"sliding_window": None}  # null: no window
    assert memory.kv_cache_bytes(untyped, 100) == memory.kv_cache_bytes(g.ModelConfig.from_hf_config(untyped), 100)
    original = {k: v for k, v in hf.items() if k != "num_experts_per_tok"} | {"experts_per_token": 16}
    loaded = g.ModelConfig.from_hf_config(original)
    assert loaded.experts_per_token == 16
    assert memory.workspace_bytes(original, 300, 4096) == memory.workspace_bytes(loaded, 300, 4096) != \
        memory.workspace_bytes(hf, 300, 4096)


@pytest.mark.parametrize("n,text", [(999.4e9, "999 B"), (999.6e9, "1 T"), (1.8e12, "1.8 T"), (5e5, "0.5 M")])
def test_counts_of_a_trillion_and_more_are_trillions(n, text):
    assert memory.format_count(n) == text  # '.3g' wrote them '1e+03 B' and '1.8e+03 B'


def test_kv_cache_bytes_equal_the_course_cache():
    cfg = g.preset("gpt-oss-tiny")
    assert cfg.sliding_window and "sliding_attention" in cfg.layer_types
    # Shorter, as long as and longer than the window.
    for batch, context, dtype in ((1, 100, torch.bfloat16), (3, 17, torch.float32),
                                  (2, cfg.sliding_window, torch.float32), (1, cfg.sliding_window - 1, torch.float16)):
        cache = attention.KVCache(cfg, batch, context, dtype=dtype)
        assert memory.kv_cache_bytes(cfg, context, batch, dtype.itemsize) == cache.nbytes()
    full = cfg.replace(layer_types=())
    assert memory.kv_cache_bytes(full, 100) == full.kv_cache_bytes(100) == attention.KVCache(full, 1, 100, dtype=torch.bfloat16).nbytes()
    assert memory.kv_cache_bytes(cfg, 100) < cfg.kv_cache_bytes(100)


# ---- workspace against measured allocations ---------------------------------------------------------

class PeakBytes(TorchDispatchMode):
    """Counts the bytes of tensors allocated while active, and their peak (views and in-place results
    of memory allocated before do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors alive on it]
        self.now = self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or (key not in self.live and key in inputs):
                continue
            if key not in self.live:
                self.live[key] = [storage.nbytes(), 0]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def test_peak_counter_itself():
    a = torch.ones(1000, 1000)
    with PeakBytes() as p:
        b = a * 2  # 4 MB
        c = b + 1  # 8 MB live
        del b
        d = c @ c  # 8 MB live again
        c.add_(1)  # in place: nothing new
        v = d[10:]  # a view: nothing new
        del c, d, v
    assert p.peak == 8_000_000 and p.now == 0


def measured_workspace(cfg: g.ModelConfig, prompt: int, dtype: torch.dtype, batch: int = 1,
                       last_only: bool = False) -> int:
    """Peak bytes allocated by one prefill forward of the course model (MXFP4 experts) with its cache."""
    torch.manual_seed(0)
    model = GPT(cfg, packed_experts=True).to(dtype).eval()
    cache = model.new_cache(batch, prompt)
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt))
    with torch.no_grad(), PeakBytes() as p:
        model(ids, cache, last_only=last_only)
    return p.peak


# Shapes where each phase leads in turn: experts (wide d_ff), attention (many heads, a long prompt,
# several query chunks), logits (large vocabulary).
TWO_LAYERS = dict(n_layers=2, layer_types=("sliding_attention", "full_attention"))
SHAPES = {
    "experts": dict(vocab_size=100, d_model=128, d_ff=512, n_heads=1, n_kv_heads=1, head_dim=32, n_experts=2,
                    experts_per_token=1, **TWO_LAYERS),
    "attention": dict(vocab_size=300, d_model=64, d_ff=64, n_heads=16, n_kv_heads=2, head_dim=16, **TWO_LAYERS),
    "logits": dict(vocab_size=20000, d_model=64, d_ff=64, **TWO_LAYERS),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("prompt", [1, 50, 200])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_workspace_bounds_the_measured_peak(shape, prompt, dtype, monkeypatch):
    """The estimate is never below what the model allocates, and within 1.6x of it."""
    monkeypatch.setattr(attention, "QUERY_CHUNK", 64)  # several query chunks at prompt 200 (4, the last ragged)
    cfg = g.preset("gpt-oss-tiny").replace(**SHAPES[shape])
    measured = measured_workspace(cfg, prompt, dtype)
    estimate = memory.workspace_bytes(cfg, prompt, prompt, dtype_bytes=dtype.itemsize)
    assert measured <= estimate <= 1.6 * measured, (shape, prompt, dtype, measured, estimate)
    if prompt == 200:  # the phase the shape was made for is the one the estimate says leads
        parts = memory.workspace_parts(cfg, prompt, prompt, dtype_bytes=dtype.itemsize)
        assert max(("attention", "experts", "logits"), key=parts.get) == shape


@pytest.mark.parametrize("prompt", [50, 200])
@pytest.mark.parametrize("batch", [1, 2])
def test_workspace_when_the_score_budget_shrinks_the_query_chunks(prompt, batch, monkeypatch):
    """Past SCORE_CHUNK scores the chunks shrink with the keys (and the batch): the estimate follows them."""
    monkeypatch.setattr(attention, "SCORE_CHUNK", 16 * 400)  # 16 heads: 400 scores a query's row, at most
    cfg = g.preset("gpt-oss-tiny").replace(**SHAPES["attention"])
    chunk = attention.query_chunk(batch, 16, prompt)
    assert chunk == max(1, 400 // (batch * prompt)) < 64  # the budget, not QUERY_CHUNK, sets it here
    measured = measured_workspace(cfg, prompt, torch.float32, batch)
    estimate = memory.workspace_bytes(cfg, prompt, prompt, batch, dtype_bytes=4)
    assert measured <= estimate <= 1.6 * measured, (prompt, batch, measured, estimate)


def test_a_long_prompt_on_the_torch_path_needs_bounded_attention_memory():
    """At 20b's 64 heads the scores of 1,024 queries over 131,072 keys were 16 GiB, three times over; the
    query chunk now shrinks with the keys, to 16 queries there, and the plan counts what that leaves."""
    cfg = g.preset("gpt-oss-20b")
    assert [attention.query_chunk(1, 64, keys) for keys in (100, 2048, 8192, 131072)] == [1024, 1024, 256, 16]
    for prompt in (8192, 131072):
        scores = memory.workspace_parts(cfg, prompt)["attention"] - prompt * 3 * (2880 + 4096 + 2 * 512) * 2
        assert scores <= 4 * attention.SCORE_CHUNK * 2, (prompt, scores)  # 1 GiB: 256 MiB of bf16 scores, 4 copies


@pytest.mark.parametrize("prompt", [1, 200])
def test_workspace_with_the_last_logits_only(prompt, monkeypatch):
    """Generation's prefill (last_only) makes one row of logits: the estimate follows, and still bounds it."""
    monkeypatch.setattr(attention, "QUERY_CHUNK", 64)
    cfg = g.preset("gpt-oss-tiny").replace(**SHAPES["logits"])
    measured = measured_workspace(cfg, prompt, torch.float32, last_only=True)
    estimate = memory.workspace_bytes(cfg, prompt, prompt, dtype_bytes=4, last_only=True)
    assert measured <= estimate <= 1.6 * measured, (prompt, measured, estimate)
    if prompt > 1:
        assert estimate < memory.workspace_bytes(cfg, prompt, prompt, dtype_bytes=4) / 4  # the logits were most of it
    assert memory.plan(cfg, prompt, 0, dtype_bytes=4).workspace == estimate


def test_workspace_batch_and_decode():
    cfg = CONFIGS["20b"]
    one = memory.workspace_parts(cfg, 512, 4096)
    two = memory.workspace_parts(cfg, 512, 4096, batch=2)
    assert two["logits"] == 2 * one["logits"] and two["stream"] == 2 * one["stream"]
    # A one-token step over a long cache: the scores of one query over every key.
    step = memory.workspace_parts(cfg, 1, 131072)
    assert step["attention"] >= 64 * 131072 * 4


# ---- the machine and the plan ---------------------------------------------------------------------

def test_disk_free_and_gpu_memory(tmp_path, monkeypatch):
    # Two readings of a shared disk's free space differ while anything else writes: read the real one
    # once for its range, then the exact value through a stand-in.
    assert 0 < memory.disk_free(tmp_path) <= shutil.disk_usage(tmp_path).total
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 40, 60))
    assert memory.disk_free(tmp_path / "a" / "b") == 60
    found = memory.gpu_memory()
    if torch.cuda.is_available():
        assert 0 < found.free <= found.total
    else:
        assert found is None


def stand_in_gpus(monkeypatch, *gpus: tuple[str, float, float], mine: float = 0, current: int = 0) -> None:
    """torch reports CUDA GPUs (name, total GiB, free GiB) that are not there; this process holds ``mine`` GiB."""
    gib = memory.GiB

    def mem_get_info(index=None):
        if index not in (None, current):  # it would leave a CUDA context on that GPU
            raise AssertionError(f"mem_get_info asked of GPU {index}, not the current one")
        _, total, free = gpus[current]
        if free is None:  # all of it held elsewhere: CUDA cannot even make a context
            raise torch.OutOfMemoryError("CUDA error: out of memory")
        return int(free * gib), int(total * gib)

    def device_memory_used(index):  # NVML's count, as nvidia-smi's
        _, total, free = gpus[index]
        return int(total * gib) - int((free or 0) * gib)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "device_memory_used", device_memory_used)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: gpus[current if index is None else index][0])
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: type("Props", (), {"total_memory": int(gpus[index][1] * gib)}))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index=None: int(mine * gib))


def test_misfit_advice_says_what_would_make_the_plan_fit(monkeypatch):
    """Not "lower CONTEXT" where the weights alone do not fit: the memory others hold, another GPU, a larger one."""
    cfg20, cfg120 = g.preset("gpt-oss-20b"), g.preset("gpt-oss-120b")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    stand_in_gpus(monkeypatch, ("RTX 4090", 23.99, 14.0))  # the full context does not fit; a smaller one does
    assert memory.misfit_advice(cfg20, 131072, 1024) == "lower CONTEXT or PROMPT_TOKENS in the settings"
    stand_in_gpus(monkeypatch, ("RTX 4090", 23.99, 2.0), ("RTX 4090", 23.99, 23.6))  # GPU 0 busy, GPU 1 free
    assert memory.misfit_advice(cfg20, 4096, 1024) == (
        "its weights alone take 12.82 GiB; other programs hold 21.49 GiB of its 23.99 GiB (nvidia-smi lists them): "
        "the plan fits once they end; or use GPU 1 (RTX 4090, 23.60 GiB free): start JupyterLab with "
        "CUDA_VISIBLE_DEVICES=1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")  # torch's GPU 1 is the machine's GPU 5
    assert memory.misfit_advice(cfg20, 4096, 1024).endswith("start JupyterLab with CUDA_VISIBLE_DEVICES=5")
    stand_in_gpus(monkeypatch, ("RTX 4090", 23.99, 2.0), mine=21.0)  # this notebook loaded a model before
    assert memory.misfit_advice(cfg20, 4096, 1024) == (
        "its weights alone take 12.82 GiB; this Python holds 21.00 GiB of the GPU: restart it (the notebook's "
        "kernel) first")
    stand_in_gpus(monkeypatch, ("RTX 4090", 23.99, 2.7), mine=10.6)  # neither alone frees enough
    assert memory.misfit_advice(cfg20, 4096, 1024).endswith(
        "this Python holds 10.60 GiB of the GPU and other programs hold 10.19 GiB of its 23.99 GiB (nvidia-smi lists "
        "them): the plan fits once both are freed")
    assert not memory.plan(cfg20, 4096, int((23.49 - 10.6) * memory.GiB), prompt_tokens=1024).fits
    assert not memory.plan(cfg20, 4096, int((23.49 - 10.19) * memory.GiB), prompt_tokens=1024).fits
    stand_in_gpus(monkeypatch, ("RTX 4090", 23.99, 2.0), ("RTX 4090", 23.99, 23.6))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # changed in a cell after CUDA started: shorter than the GPUs
    assert memory.misfit_advice(cfg20, 4096, 1024).endswith("start JupyterLab with CUDA_VISIBLE_DEVICES=1")
    stand_in_gpus(monkeypatch, ("A100-SXM4-40GB", 39.5, 39.0))
    assert memory.misfit_advice(cfg120, 4096, 1024) == "its weights alone take 60.77 GiB, more than this GPU holds"
    # Each advice is true: the smaller settings fit, and the weights do not.
    assert memory.plan(cfg120, 1, 39 * memory.GiB, prompt_tokens=1).fits is False
    assert memory.plan(cfg20, 4096, 14 * memory.GiB, prompt_tokens=1024).fits is True


def test_a_gpu_held_whole_by_another_program_has_no_free_memory(monkeypatch):
    """Where CUDA cannot make a context (another program holds all of it), no free bytes, not a traceback."""
    stand_in_gpus(monkeypatch, ("Tesla T4", 14.56, None))
    assert memory.gpu_memory() == memory.GpuMemory(0, int(14.56 * memory.GiB))
    assert memory.misfit_advice(g.preset("gpt-oss-20b"), 4096, 1024) == (
        "its weights alone take 12.82 GiB; other programs hold 14.06 GiB of its 14.56 GiB (nvidia-smi lists them): "
        "the plan fits once they end")


def test_plan_adds_up_and_says_whether_it_fits():
    cfg = CONFIGS["20b"]
    p = memory.plan(cfg, 4096, gpu_bytes=16 * memory.GiB, prompt_tokens=512)
    assert p.weights == SPEC_CHECKPOINT["20b"]
    assert p.kv_cache == (4096 + 128) * SPEC_KV_PER_TOKEN["20b"] // 2  # the window layers hold 128
    assert p.workspace == memory.workspace_bytes(cfg, 512, 4096, last_only=True)  # generation makes the last logits only
    assert p.total == p.weights + p.kv_cache + p.workspace
    assert p.fits is True and p.headroom == 16 * memory.GiB - p.total
    fp32 = memory.plan(cfg, 4096, gpu_bytes=16 * memory.GiB, prompt_tokens=512, dtype_bytes=4)
    assert fp32.weights - p.weights == memory.checkpoint_parts(cfg)["bf16"]  # the non-expert part doubles
    assert fp32.kv_cache == 2 * p.kv_cache
    assert memory.plan(cfg, 4096, gpu_bytes=p.total).fits is not None
    assert memory.plan(cfg, 4096, gpu_bytes=p.total, prompt_tokens=512).fits is True
    assert memory.plan(cfg, 4096, gpu_bytes=p.total - 1, prompt_tokens=512).fits is False
    # 120b: its 60.77 GiB of weights do not fit in 48 GiB, and fit in 80 GiB.
    assert memory.plan(CONFIGS["120b"], 4096, gpu_bytes=48 * memory.GiB, prompt_tokens=64).fits is False
    assert memory.plan(CONFIGS["120b"], 4096, gpu_bytes=80 * memory.GiB, prompt_tokens=64).fits is True
    text = str(p)
    assert "12.82 GiB" in text and "fits" in text and "KV cache (4096 positions)" in text



def test_a_plan_for_a_batch_holds_a_cache_for_each_sequence():
    """Every sequence of a batch has its own keys and values (and activations); the weights are shared. No test
    planned a batch, so a plan whose KV cache ignored ``batch`` went unnoticed."""
    cfg = CONFIGS["20b"]
    one = memory.plan(cfg, 4096, gpu_bytes=0, prompt_tokens=512)
    eight = memory.plan(cfg, 4096, gpu_bytes=0, prompt_tokens=512, batch=8)
    assert eight.kv_cache == 8 * one.kv_cache == memory.kv_cache_bytes(cfg, 4096, batch=8)
    assert eight.workspace == memory.workspace_bytes(cfg, 512, 4096, batch=8, last_only=True) > one.workspace
    assert eight.weights == one.weights  # shared by the batch

def test_plan_without_a_gpu_figure(monkeypatch):
    monkeypatch.setattr(memory, "gpu_memory", lambda: None)
    p = memory.plan(CONFIGS["20b"], 1024)
    assert p.gpu_bytes is None and p.fits is None and p.headroom is None
    assert p.prompt_tokens == 1024  # the whole context as the prompt: the worst case
    assert "no GPU" in str(p)
    monkeypatch.setattr(memory, "gpu_memory", lambda: memory.GpuMemory(free=10 * memory.GiB, total=16 * memory.GiB))
    assert memory.plan(CONFIGS["20b"], 1024).gpu_bytes == 10 * memory.GiB


def test_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        memory.plan(CONFIGS["20b"], 0, gpu_bytes=1)
    with pytest.raises(ValueError, match="prompt_tokens"):
        memory.plan(CONFIGS["20b"], 100, gpu_bytes=1, prompt_tokens=101)
    # notebook 12 with CONTEXT = 200_000 planned a cache the model then refused to make
    with pytest.raises(ValueError, match=r"context 131,073 is longer than .*context length \(131,072\)"):
        memory.plan(CONFIGS["20b"], 131_073, gpu_bytes=1, prompt_tokens=1)
    assert memory.plan(CONFIGS["20b"], 131_072, gpu_bytes=1, prompt_tokens=1).context == 131_072


def test_format_bytes():
    assert memory.format_bytes(SPEC_CHECKPOINT["20b"]) == "12.82 GiB"
    assert memory.format_bytes(48 * 1024) == "48.0 KiB"
    assert memory.format_bytes(512) == "512 B"
    assert memory.format_bytes(3 * 1024**4) == "3.00 TiB"


def test_short_bytes():
    assert memory.short_bytes(49152) == "48 KiB"
    assert memory.short_bytes(3 * 2 ** 30) == "3 GiB"
    assert memory.short_bytes(512) == "512 B" and memory.short_bytes(-512) == "-512 B"
    # Never scientific notation: 1000..1023 of a unit are shown in the next one.
    assert memory.short_bytes(1000) == "0.977 KiB" and memory.short_bytes(1010 * 2 ** 20) == "0.986 GiB"
    assert memory.short_bytes(1023488) == "0.976 MiB" and memory.short_bytes(999.5 * 2 ** 30) == "0.976 TiB"
    assert memory.short_bytes(5000 * 2 ** 40) == "5,000 TiB"  # past the last unit, whole TiB


# ---- found by mutation testing: a missing head_dim, byte units, a config without the tie flag -------


def test_a_config_without_head_dim_is_refused_as_the_loader_refuses_it(tmp_path):
    # Not guessed: hidden_size / heads would be 45 for gpt-oss (its head_dim is 64, transformers'
    # default for a gpt-oss config without the key), and every byte count after it would be wrong.
    no_head_dim = {k: v for k, v in CONFIGS["20b"].items() if k != "head_dim"}
    with pytest.raises(ValueError, match="'head_dim'"):
        memory.dims(no_head_dim)
    (tmp_path / "config.json").write_text(json.dumps(no_head_dim))
    with pytest.raises(CheckpointError, match="'head_dim'"):
        read_config(tmp_path)


def test_format_bytes_at_the_unit_boundaries():
    assert memory.format_bytes(1023) == "1023 B"
    assert memory.format_bytes(1024) == "1.0 KiB"
    assert memory.format_bytes(memory.GiB) == "1.00 GiB"
    assert memory.format_bytes(memory.GiB - 1) == "1.00 GiB" and memory.format_bytes(memory.KiB - 1) == "1023 B"
    assert memory.format_bytes(memory.MiB - 1) == "1.0 MiB" and memory.format_bytes(-memory.GiB) == "-1.00 GiB"


def test_a_config_without_tie_word_embeddings_counts_an_untied_head():
    # gpt-oss's default (GptOssConfig: tie_word_embeddings=False): the unembedding is a matrix of its own.
    no_flag = {k: v for k, v in CONFIGS["20b"].items() if k != "tie_word_embeddings"}
    assert memory.checkpoint_bytes(no_flag) == memory.checkpoint_bytes({**CONFIGS["20b"], "tie_word_embeddings": False})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_workspace_of_experts_unpacked_in_chunks(dtype, monkeypatch):
    """A real expert (16.6M weights) is unpacked 4M weights at a time: the estimate counts the chunk's
    temporaries, not the whole expert's (it was 2.5 times the measured peak at 20b's width). Here the
    chunk is made small so that the tiny experts go through several."""
    monkeypatch.setattr(attention, "QUERY_CHUNK", 64)
    monkeypatch.setattr(g.mxfp4, "_DEQUANT_CHUNK", 4096)
    cfg = g.preset("gpt-oss-tiny").replace(**SHAPES["experts"])
    measured = measured_workspace(cfg, 50, dtype)
    estimate = memory.workspace_bytes(cfg, 50, 50, dtype_bytes=dtype.itemsize)
    assert measured <= estimate <= 1.6 * measured, (dtype, measured, estimate)


def test_the_plan_without_torch_is_the_plan_with_it():
    """The environment check plans notebook 12 where torch may be missing: the settings memory.py then
    assumes (attention's QUERY_CHUNK, mxfp4's chunk) must be the modules' own."""
    import subprocess
    import sys
    import textwrap

    code = hide_modules("torch") + textwrap.dedent("""
        from gptoss_edu import memory
        from gptoss_edu.config import preset
        print(memory.workspace_bytes(preset("gpt-oss-20b"), 4096, 8192), memory.workspace_bytes(preset("gpt-oss-120b"), 64, 64))
        assert "torch" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with_torch = (memory.workspace_bytes(g.preset("gpt-oss-20b"), 4096, 8192),
                  memory.workspace_bytes(g.preset("gpt-oss-120b"), 64, 64))
    assert done.stdout.split() == [str(n) for n in with_torch]


@pytest.mark.parametrize("types", [("sliding_attention", "full_attention", "sliding_attention"),
                                   ("full_attention",) * 4, ("sliding_attention",) * 3 + ("full_attention",)])
def test_the_windows_of_a_config_json_follow_its_layer_types(types):
    """The presets alternate over an even count, so layers read in the wrong order gave the same totals."""
    cfg = g.preset("gpt-oss-tiny").replace(n_layers=len(types), layer_types=types)
    hf = cfg.to_hf_config()
    assert memory.layer_windows(hf) == [cfg.window(i) for i in range(len(types))]
    for context in (5, cfg.sliding_window, 3 * cfg.sliding_window):
        assert memory.kv_cache_bytes(hf, context) == attention.KVCache(cfg, 1, context, dtype=torch.bfloat16).nbytes()


def test_the_chunks_planned_without_torch_are_the_models():
    """doctor plans notebook 12 where torch does not import, from copies of two settings that could drift."""
    from gptoss_edu import mxfp4

    assert memory.CHUNKS_WITHOUT_TORCH == (attention.QUERY_CHUNK, attention.SCORE_CHUNK, mxfp4._DEQUANT_CHUNK)
    grid = [(b, h, k) for b in (1, 2, 8) for h in (1, 4, 64, 128) for k in (0, 1, 100, 2048, 4096, 8191, 131072)]
    assert [memory._query_chunk_without_torch(*x) for x in grid] == [attention.query_chunk(*x) for x in grid]
