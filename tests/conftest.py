"""pytest set-up shared by every test module."""

from __future__ import annotations

import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when a @triton.jit function is defined, i.e. when a module of
# kernels is first imported; without a GPU the kernels can only run in the interpreter, so set
# it before any test module imports Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# Triton has builds for Linux only. Elsewhere (macOS, Windows) the tests of the kernels, and of
# what runs on them, are skipped with the reason; CI runs on Linux, where a missing Triton is an error.
try:
    import triton  # noqa: F401  (after TRITON_INTERPRET is set above)

    TRITON = True
except ImportError:
    TRITON = False
NEEDS_TRITON = {"test_kernels.py", "test_static_decode.py", "test_exercises_nb10.py", "test_widgets_kernels.py",
                "test_benchmarks.py", "10_triton_kernels.ipynb"}
NO_TRITON = "Triton has no build for this platform (it needs Linux): the kernels cannot run here"


def pytest_collection_modifyitems(config, items):
    if TRITON:
        return
    needing = [item for item in items if item.path.name in NEEDS_TRITON
               or any(name in item.name for name in ("10_triton_kernels", "triton_backend"))]
    if needing and os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the kernel tests, and Triton is not installed ({len(needing)} tests)")
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=NO_TRITON))


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module: its sums are added in one order, and on a shared 2-core machine two
    threads wait on each other far more than they help. Used as pytestmark = usefixtures("one_thread")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
