"""gptoss_kernels: the course's Triton kernels, each beside its PyTorch reference.

- ``rmsnorm``      RMSNorm, fp32 inside, any leading shape
- ``attention``    causal attention with windows, sinks and GQA (prefill and decode kernels)
- ``moe_mxfp4``    gpt-oss experts straight from MXFP4 blocks and scales
- ``vector_add``   the "hello Triton" kernel

Each function lives in a module of its own, named after it (``moe_mxfp4`` in ``moe``). Three of
those modules share their function's name, and the function wins: ``gptoss_kernels.attention`` is
the function. For a module's other names, import from it (``from gptoss_kernels.attention import
TILE``) or fetch it with ``importlib.import_module("gptoss_kernels.attention")``.

Importing works without Triton; calling a kernel then raises an error that names the PyTorch
path to use instead. On a machine without a GPU, set ``TRITON_INTERPRET=1`` before importing
to run the kernels in Triton's interpreter (slow, for checking and learning).
"""

from ._common import interpreter_mode, require_triton, triton_available, writable_triton_cache
from .attention import attention, attention_reference
from .moe import moe_mxfp4, moe_mxfp4_reference
from .rmsnorm import rmsnorm, rmsnorm_reference
from .vector_add import vector_add, vector_add_reference

writable_triton_cache()  # before the first compile, which would stop on a cache it cannot write

__all__ = [
    "attention", "attention_reference", "interpreter_mode", "moe_mxfp4", "moe_mxfp4_reference",
    "require_triton", "rmsnorm", "rmsnorm_reference", "triton_available", "vector_add", "vector_add_reference",
]
