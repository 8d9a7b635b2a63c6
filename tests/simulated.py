"""Failures the tests simulate: a Python without some packages, a folder that may not be entered, and running out
of memory."""

from __future__ import annotations

import pathlib

import torch


def hide_modules(*names: str, error: str = "ModuleNotFoundError") -> str:
    """Python source that, run first, makes importing any of ``names`` (or their submodules) raise ``error``."""
    raised = ("raise KeyboardInterrupt" if error == "KeyboardInterrupt"
              else 'raise ModuleNotFoundError(f"No module named {name!r}", name=name)')
    return f"""
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            {raised}
        return None

sys.meta_path.insert(0, _Missing())
"""


# What a GPU raises, and what the CPU's allocator raises (a plain RuntimeError).
OUT_OF_MEMORY = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                 RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                              "memory: you tried to allocate 400000000000 bytes. Error code 12")]
OUT_OF_MEMORY_IDS = ["gpu", "cpu"]


def unenterable(monkeypatch, locked: pathlib.Path) -> None:
    """Make ``locked`` a folder this user may not enter (another user's HOME): Path.exists raises PermissionError for
    what lies below it, as the system does (only ENOENT and the like read as False)."""
    real_exists = pathlib.Path.exists

    def exists(self, *args, **kwargs):
        if locked in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
