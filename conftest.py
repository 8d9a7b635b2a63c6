"""pytest set-up for the notebooks under nbval (`make test`); tests/conftest.py has the tests' own.

It sits at the top of the repository because pytest calls a conftest's per-test hooks only for
tests in or below its folder: from tests/ these hooks would never see the cells of notebooks/.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    # nbval starts a notebook's kernel while it sets up the notebook's first cell. The stored outputs
    # are a machine's without a GPU (CI's), so the kernel must not see one: on a GPU machine notebooks
    # 10 and 12 would take their GPU branches and differ. This pytest process keeps the GPU for the
    # kernel tests; benchmarks/gpu_check.sh runs the notebooks' GPU branches.
    if type(item).__name__ != "IPyNbCell":
        return (yield)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        return (yield)
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
