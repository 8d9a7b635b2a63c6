"""pytest set-up shared by every test module."""

from __future__ import annotations

import os

import torch

# Triton reads TRITON_INTERPRET when a @triton.jit function is defined, i.e. when a module of
# kernels is first imported; without a GPU the kernels can only run in the interpreter, so set
# it before any test module imports Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
