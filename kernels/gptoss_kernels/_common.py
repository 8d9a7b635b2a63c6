"""What every kernel module shares: Triton (or a stand-in when it is missing), and launch checks."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

try:
    import triton
    import triton.language as tl

    _TRITON_ERROR: str | None = None
except ImportError as err:  # the CPU wheel of torch does not bring Triton along
    _TRITON_ERROR = str(err)

    def _jit(fn: Callable | None = None, **_: Any) -> Any:
        # Kernels still get defined (so importing works); calling a wrapper raises in check_launch.
        return fn if fn is not None else (lambda f: f)

    triton = SimpleNamespace(jit=_jit, cdiv=lambda a, b: -(-a // b),
                             next_power_of_2=lambda n: 1 << max(0, int(n) - 1).bit_length())
    tl = SimpleNamespace(constexpr=Any)

# Set GPTOSS_KERNELS_POISON=1 (the tests do) to fill every buffer a wrapper allocates with NaN,
# so an element a kernel forgets to write shows up instead of hiding as stale memory.
POISON_ENV = "GPTOSS_KERNELS_POISON"

TORCH_FALLBACK = {
    # Names as typed after `import gptoss_kernels`: gptoss_kernels.rmsnorm is the function, not its module.
    "rmsnorm": "gptoss_edu.norms.rms_norm (or gptoss_kernels.rmsnorm_reference)",
    "attention": "gptoss_edu.attention.attend (or gptoss_kernels.attention_reference)",
    "moe": "gptoss_kernels.moe.moe_mxfp4_reference",
    "moe.dequantize_mxfp4": "gptoss_edu.mxfp4.dequantize",
    "vector_add": "x + y",
}


def triton_available() -> bool:
    """True when Triton can be imported."""
    return _TRITON_ERROR is None


def interpreter_mode() -> bool:
    """True when Triton runs kernels on the CPU with numpy: TRITON_INTERPRET, read as Triton itself reads it."""
    if triton_available():
        try:
            from triton import knobs
            return bool(knobs.runtime.interpret)
        except (ImportError, AttributeError):  # a Triton older than its knobs (3.4)
            pass
    from gptoss_edu.env import triton_interpret_flag  # Triton's spelling of yes, without Triton

    return triton_interpret_flag()


def writable_triton_cache() -> str | None:
    """Point Triton's cache at a temporary folder when its own (~/.triton/cache) cannot be written; that folder, or None.

    Triton makes its cache folder when it first compiles and has no fallback: with HOME read-only or
    missing (a read-only container, an account such as nobody), the first kernel call on a GPU would stop
    with a PermissionError from deep inside Triton.
    """
    if interpreter_mode() or not triton_available():
        return None  # nothing is compiled
    from gptoss_edu.files import write_problem

    chosen = os.environ.get("TRITON_CACHE_DIR")
    folder = Path(chosen) if chosen else \
        Path(os.environ.get("TRITON_HOME") or os.path.expanduser("~")) / ".triton" / "cache"
    problem = write_problem(folder)
    if problem is None:  # what makedirs would start from can be written, and entered
        return None
    tmp = tempfile.mkdtemp(prefix="triton-cache-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["TRITON_CACHE_DIR"] = tmp  # Triton reads it when it compiles, so setting it now is in time
    where = f"TRITON_CACHE_DIR={chosen}" if chosen else f"Triton's cache {folder}"
    warnings.warn(f"{where} cannot be written here ({problem}), so the kernels compile into {tmp} and again in the "
                  "next session: set TRITON_CACHE_DIR to a folder you may write to keep them", stacklevel=2)
    return tmp


def _interpreted(kernel: Any) -> bool:
    # The environment is read when @triton.jit runs (at import), so ask the kernel, not os.environ.
    return type(kernel).__name__ == "InterpretedFunction"


@functools.lru_cache(maxsize=None)
def interpreter_problem() -> str | None:
    """Why Triton's interpreter cannot run the kernels with this Triton and numpy, or None; asked once."""
    from gptoss_edu.env import interpreter_problem as problem

    return problem()


@functools.lru_cache(maxsize=None)
def gpu_problem(index: int | None) -> str | None:
    """Why Triton cannot compile for CUDA GPU ``index`` (None: the current one), or None; asked once per GPU."""
    from gptoss_edu.env import triton_gpu_problem

    return triton_gpu_problem(index)


# TRITON_INTERPRET inherited on a GPU machine (it is for the CPU tests): Triton would copy every tensor to
# the CPU and interpret the kernel there, slowly, and wrongly in bfloat16.
INTERPRETED_ON_GPU = ("TRITON_INTERPRET was set when gptoss_kernels was imported, so Triton would run the kernels "
                      "in its interpreter on the CPU (slow, and wrong in bfloat16). Unset TRITON_INTERPRET (it is "
                      "for machines without a GPU), then start Python, or the notebook's kernel, again")

# How to get Triton, said the same way wherever it is missing: the Makefile installs the pinned one.
INSTALL_TRITON = "Install it with the course (Triton has builds for Linux only: there, make clean-venv, then make lab)"


def require_triton(device: torch.device | str | None = None) -> None:
    """Raise a clear RuntimeError unless the kernels can run here (on ``device``): Triton, a GPU or the interpreter."""
    if not triton_available():
        raise RuntimeError(
            f"the Triton kernels need Triton, which is not installed ({_TRITON_ERROR}). {INSTALL_TRITON}, "
            f"or use the PyTorch path instead: model.set_backend('torch')."
        )
    device = torch.device(device) if device is not None else None
    on_gpu = device.type == "cuda" if device is not None else torch.cuda.is_available() and not interpreter_mode()
    problem = gpu_problem(device.index if device is not None else None) if on_gpu else None
    if problem:
        interpret = ("" if device is not None else " Or set TRITON_INTERPRET=1 before importing triton and "
                     "gptoss_kernels to run the kernels on the CPU in Triton's (slow) interpreter.")
        raise RuntimeError(f"the Triton kernels cannot run on this GPU: {problem}. The PyTorch path runs on it: "
                           f"model.set_backend('torch').{interpret}")
    if on_gpu and device is not None:
        from .rmsnorm import _rmsnorm_kernel

        if _interpreted(_rmsnorm_kernel):
            raise RuntimeError(f"the Triton kernels cannot run on {device}: {INTERPRETED_ON_GPU}. The PyTorch path "
                               "runs as it is: model.set_backend('torch').")
    if on_gpu:
        return
    from .rmsnorm import _rmsnorm_kernel

    # On the CPU the kernels run only if they were made for the interpreter: the environment is read when
    # gptoss_kernels is imported, so ask a kernel, not TRITON_INTERPRET as it is now.
    if _interpreted(_rmsnorm_kernel):
        if interpreter_problem():
            raise RuntimeError(f"the Triton kernels cannot run here: {interpreter_problem()}. The PyTorch path runs "
                               "anywhere: model.set_backend('torch').")
        return
    late = (" TRITON_INTERPRET is set now but was not when gptoss_kernels was imported: restart Python (or the "
            "notebook's kernel) and set it first." if interpreter_mode() else "")
    interpret = ("set TRITON_INTERPRET=1 before importing triton and gptoss_kernels to run them on the CPU in "
                 f"Triton's (slow) interpreter.{late} The PyTorch path runs anywhere: model.set_backend('torch').")
    if torch.cuda.is_available():  # a GPU machine, and a model left on the CPU
        raise RuntimeError(f"the Triton kernels compile for the GPU, and this model is on {device or 'the CPU'}: "
                           f"move it to the GPU first (model.to('cuda')), or {interpret}")
    raise RuntimeError(f"the Triton kernels need a CUDA GPU, or {interpret}")


# Set by gptoss_kernels.aot while it records the launches a GPU would get: the wrappers then pick
# the GPU's tile sizes and split counts for CPU tensors, and let them through check_launch.
AOT_TARGET: dict[str, int] = {}  # {"sms": streaming multiprocessors of the GPU compiled for}


def gpu_tiles(t: torch.Tensor) -> bool:
    """Whether a launch on ``t`` uses the GPU's tile sizes: on a GPU, or while aot records one."""
    return t.is_cuda or bool(AOT_TARGET)


def on_tensors_device(wrapper: Callable) -> Callable:
    """Run a kernel wrapper with its first tensor's GPU as the current CUDA device.

    Triton launches on the current device, wherever the tensors are: a model on cuda:1 would have
    its kernels run on cuda:0, reading memory that is not theirs.
    """
    @functools.wraps(wrapper)
    def on_device(*args: Any, **kwargs: Any) -> Any:
        t = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if t is not None and t.is_cuda and t.device.index not in (None, torch.cuda.current_device()):
            with torch.cuda.device(t.device):
                return wrapper(*args, **kwargs)
        return wrapper(*args, **kwargs)
    return on_device


def check_launch(kernel: Any, name: str, *tensors: torch.Tensor) -> None:
    """Raise a clear error when ``kernel`` cannot run on the devices of ``tensors``."""
    fallback = TORCH_FALLBACK.get(name, "the PyTorch path")
    if not triton_available():
        raise RuntimeError(
            f"gptoss_kernels.{name} needs Triton, which is not installed ({_TRITON_ERROR}). {INSTALL_TRITON}, "
            f"or use the PyTorch path instead: model.set_backend('torch'), or {fallback}."
        )
    devices = {t.device.type for t in tensors}
    if len({str(t.device) for t in tensors}) > 1:  # two GPUs count as two devices
        shapes = ", ".join(f"{tuple(t.shape)} on {t.device}" for t in tensors)
        raise ValueError(f"gptoss_kernels.{name}: all tensors must be on one device, got {shapes}; move them to "
                         "one (a small index or position tensor left on the CPU is the usual slip)")
    if devices == {"cpu"} and not _interpreted(kernel) and not AOT_TARGET:
        hint = (" TRITON_INTERPRET is set now but was not when gptoss_kernels was imported: set it first."
                if interpreter_mode() else "")
        raise RuntimeError(
            f"gptoss_kernels.{name} got CPU tensors, but Triton compiles for a GPU. Move the tensors to "
            f"a CUDA device, or set TRITON_INTERPRET=1 before importing triton and gptoss_kernels to run "
            f"the kernel on the CPU in Triton's (slow) interpreter.{hint} The PyTorch path runs anywhere: "
            f"model.set_backend('torch'), or {fallback}."
        )
    if devices == {"cuda"}:
        problem = gpu_problem(tensors[0].device.index)
        if problem:  # a GPU older than Triton supports: not run there, compiled or interpreted
            raise RuntimeError(f"gptoss_kernels.{name} cannot run on this GPU: {problem}. The PyTorch path runs on "
                               f"it: model.set_backend('torch'), or {fallback}.")
        if _interpreted(kernel):  # on a T4, where the course sets TRITON_INTERPRET itself, the reason is the above
            raise RuntimeError(f"gptoss_kernels.{name} got GPU tensors, but {INTERPRETED_ON_GPU}. The PyTorch path "
                               f"runs as it is: model.set_backend('torch'), or {fallback}.")
    if _interpreted(kernel) and interpreter_problem():
        raise RuntimeError(f"gptoss_kernels.{name} cannot run: {interpreter_problem()}. The PyTorch path runs "
                           f"anywhere: model.set_backend('torch'), or {fallback}.")
    if _interpreted(kernel) and any(t.dtype == torch.bfloat16 for t in tensors):
        # Seen with triton 3.6 and 3.9: NaN from a bf16 add, garbage from tl.dot; a wrong answer, silently.
        raise RuntimeError(
            f"gptoss_kernels.{name} got bfloat16 tensors in Triton's interpreter, which computes bfloat16 wrong "
            f"(NaN, garbage matmuls). On the CPU use float32 (model.float()); bfloat16 runs on a GPU."
        )


def refuse_grad(name: str, **activations: torch.Tensor) -> None:
    """Raise if an activation wants a gradient: the kernels have no backward pass.

    Weights (sinks, norm weights, expert biases) are read as constants, so one that alone requires grad (all
    else frozen) gets none: train on the PyTorch path.
    """
    # A graph built through a kernel would quietly stop there: in a model, the residual stream
    # still carries gradients around it, so training would run and freeze what the kernel read.
    wanting = [key for key, t in activations.items() if t is not None and t.requires_grad]
    if wanting and torch.is_grad_enabled():
        raise RuntimeError(
            f"gptoss_kernels.{name} has no backward pass, and {', '.join(wanting)} requires grad. Run it under "
            f"torch.no_grad() (or torch.inference_mode()) for inference, or compute gradients on the PyTorch path: "
            f"model.set_backend('torch'), or {TORCH_FALLBACK.get(name, 'the PyTorch path')}."
        )


def new_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor for a kernel to fill (NaN-filled when GPTOSS_KERNELS_POISON=1)."""
    if dtype.is_floating_point and os.environ.get(POISON_ENV, "") == "1":
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def check_tensor(name: str, t: Any, ndim: int | None = None, dtypes: tuple[torch.dtype, ...] | None = None) -> None:
    """Raise a ValueError/TypeError naming ``name`` if it is not a tensor of the right rank and dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f"{name} must be one of {[str(d) for d in dtypes]}, got {t.dtype}")


def check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming ``name`` if its shape is not ``shape``."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def tile_size(name: str, value: int | None, default: int, least: int = 16) -> int:
    """A tile-size option: ``default`` when not given, else checked: a power of two, at least ``least``."""
    if value is None:
        return default
    # tl.arange needs a power of two, and tl.dot on a GPU needs 16 or more along each side (the
    # interpreter runs smaller tiles, so the mistake would only show on the GPU).
    if isinstance(value, bool) or not isinstance(value, int) or value < least or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, at least {least}, got {value!r}")
    return value


# The kernels compute element offsets in 32-bit integers (Triton's default for indices and most strides).
INDEX_LIMIT = 2**31


def extent(t: torch.Tensor) -> int:
    """How many elements past its first one a tensor's last element sits, plus one (its span in memory)."""
    return 0 if t.numel() == 0 else 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))


def check_index_range(name: str, **spans: int) -> None:
    """Refuse a launch in which an offset would pass 2**31 elements, before it wraps around on the GPU."""
    big = [f"{what} spans {n:,} elements" for what, n in spans.items() if n >= INDEX_LIMIT]
    if big:
        raise ValueError(f"gptoss_kernels.{name}: {', '.join(big)}, past the 2**31 the kernels' 32-bit offsets "
                         "reach: split the batch (or the prompt) into smaller calls, or use the PyTorch path")


# tl.dot's input precision. For float32 inputs "ieee" keeps every bit (tf32 would lose 13 of the 23
# mantissa bits); for bf16 and fp16 inputs the choice changes nothing (NVIDIA's code is the same), and
# "ieee" is the one every backend takes: Triton's AMD backend refuses "tf32" on most of its GPUs.
DOT_PRECISION = "ieee"
