"""pytest set-up for the notebooks under nbval (`make test`); tests/conftest.py has the tests' own.

It sits at the top of the repository because pytest calls a conftest's per-test hooks only for
tests in or below its folder: from tests/ these hooks would never see the cells of notebooks/.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile

import pytest

# tests/conftest.py sets these for the tests (the interpreter, NaN-filled kernel buffers) as it is imported,
# after this file: the notebooks' kernels get them as they were before, as a notebook run alone and
# scripts/execute_notebooks.py (which stores the outputs) do.
_AS_BEFORE_THE_TESTS = {name: os.environ.get(name) for name in ("TRITON_INTERPRET", "GPTOSS_KERNELS_POISON")}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    # nbval starts a notebook's kernel while it sets up the notebook's first cell. The stored outputs
    # are a machine's without a GPU (CI's), so the kernel must not see one: on a GPU machine notebooks
    # 10 and 12 would take their GPU branches and differ. This pytest process keeps the GPU for the
    # kernel tests; benchmarks/gpu_check.sh runs the notebooks' GPU branches.
    # nbval kills each kernel at its notebook's end, before the notebooks' TemporaryDirectory folders (13's
    # checkpoint of 100 MB) are removed: the kernels make them in a folder of the run's, removed at its end.
    if type(item).__name__ != "IPyNbCell":
        return (yield)
    settings = {"CUDA_VISIBLE_DEVICES": "", "TMPDIR": _kernels_tmp(), **_AS_BEFORE_THE_TESTS}
    before = {name: os.environ.get(name) for name in settings}
    _set(settings)
    try:
        return (yield)
    finally:
        _set(before)


def _set(values: dict[str, str | None]) -> None:
    """Set each environment variable to its value; None removes it."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_KERNELS_TMP: list[str] = []


def _kernels_tmp() -> str:
    """The notebook kernels' temporary folder, made once a run and removed when the run ends."""
    if not _KERNELS_TMP:
        _KERNELS_TMP.append(tempfile.mkdtemp(prefix="nbval-kernels-"))
    return _KERNELS_TMP[0]


def pytest_sessionfinish(session, exitstatus):
    for folder in _KERNELS_TMP:
        shutil.rmtree(folder, ignore_errors=True)


# A picture may differ from the stored one by rounding (a few pixels of anti-aliasing a shade or two
# off, as float32 sums differ from CPU to CPU); a stale one differs in many pixels by a lot.
PIXEL_CHANGE = 0.25     # a channel moving by more than a quarter of its range
CHANGED_SHARE = 0.001   # in more than 0.1% of the pixels (a few words of a title, a line moved)


def picture_difference(stored: str, new: str) -> str | None:
    """How two base64 PNGs differ as pictures, or None when they differ by rounding at most."""
    import numpy as np
    from matplotlib import image

    a, b = (image.imread(io.BytesIO(base64.b64decode(png)), format="png") for png in (stored, new))
    if a.shape != b.shape:
        return f"{a.shape[1]}x{a.shape[0]} pixels stored, {b.shape[1]}x{b.shape[0]} now"
    changed = int((np.abs(a - b).max(axis=-1) > PIXEL_CHANGE).sum())
    if changed > CHANGED_SHARE * a.shape[0] * a.shape[1]:
        return f"{changed:,} of its {a.shape[0] * a.shape[1]:,} pixels changed"
    return None


def _pictures(outputs) -> list[str]:
    return [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]


def _matplotlib_note() -> str:
    """Why every picture may differ: another matplotlib than the one the pictures were drawn with."""
    import matplotlib

    from gptoss_edu.env import _same_release, read_pins

    pinned = read_pins().get("matplotlib")
    if pinned is None or _same_release(matplotlib.__version__, pinned):
        return ""
    return (f". This is matplotlib {matplotlib.__version__}; the pictures were drawn with {pinned}, and another "
            f"version draws text and lines a little differently: make clean-venv, then make test, installs {pinned}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # nbval compares text only, so a figure whose code changed would keep its old picture on the page
    # (GitHub shows the stored one) while every test passed. Where nbval compares a cell's text, this
    # compares its pictures too.
    result = yield
    if (type(item).__name__ == "IPyNbCell" and item.options.get("check")
            and item.cell.execution_count is not None):
        stored, new = _pictures(item.cell.outputs), _pictures(getattr(item, "test_outputs", []))
        why = (f"{len(stored)} picture(s) stored, {len(new)} drawn now" if len(stored) != len(new) else
               next((f"picture {n + 1}: {d}" for n, (s, t) in enumerate(zip(stored, new))
                     if (d := picture_difference(s, t))), None))
        if why:
            first = next((line for line in item.cell.source.splitlines() if line.strip()), "")
            pytest.fail(f"the stored picture of cell {item.cell.get('id', '?')} ({first[:70]}) is not what it draws "
                        f"now ({why}). If the change is meant, "
                        f"store the notebook's new outputs: .venv/bin/python scripts/execute_notebooks.py "
                        f"{os.path.relpath(item.path, item.config.rootpath)}{_matplotlib_note()}", pytrace=False)
    return result


# Triton has builds for Linux only. Elsewhere (a Mac), notebook 10 and the cells of other notebooks
# tagged needs-triton are skipped with the reason, also when a notebook is tested on its own (as
# DEVELOPERS.md shows); tests/conftest.py does the same for the tests. Looked up, not imported: Triton
# must be imported only after tests/conftest.py has set TRITON_INTERPRET.
NO_TRITON = "Triton has no build for this platform (it needs Linux): the kernels cannot run here"


def pytest_collection_modifyitems(config, items):
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        return
    for item in items:
        if type(item).__name__ == "IPyNbCell" and (
                item.path.name == "10_triton_kernels.ipynb" or "needs-triton" in item.cell.metadata.get("tags", [])):
            item.add_marker(pytest.mark.skip(reason=NO_TRITON))
