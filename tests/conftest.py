"""pytest set-up shared by every test module."""

from __future__ import annotations

import os
import stat
import zlib

import pytest
import torch

from gptoss_edu.env import triton_gpu

# Triton reads TRITON_INTERPRET when a @triton.jit function is defined, i.e. when a module of
# kernels is first imported; without a GPU Triton supports (none, or one older than compute
# capability 8.0) the kernels can only run in the interpreter, so set it before any test module
# imports Triton.
if not triton_gpu():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Every buffer a kernel wrapper allocates starts as NaN, so an element no program writes fails a test: in
# every test file, whichever of them a run collects.
os.environ.setdefault("GPTOSS_KERNELS_POISON", "1")


# Triton has builds for Linux only. Elsewhere (macOS, Windows) the tests of the kernels, and of
# what runs on them, are skipped with the reason; CI runs on Linux, where a missing Triton is an error.
try:
    import triton  # noqa: F401  (after TRITON_INTERPRET is set above)

    TRITON = True
except ImportError:
    TRITON = False
# Whole files of kernel tests; elsewhere a test that needs Triton is marked needs_triton.
NEEDS_TRITON = {"test_kernels.py", "test_exercises_nb10.py", "test_benchmarks.py", "10_triton_kernels.ipynb"}
NO_TRITON = "Triton has no build for this platform (it needs Linux): the kernels cannot run here"


def pytest_collection_modifyitems(config, items):
    if TRITON:
        return
    needing = [item for item in items if item.path.name in NEEDS_TRITON or item.get_closest_marker("needs_triton")
               or any(name in item.name for name in ("10_triton_kernels", "triton_backend"))]
    if needing and os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the kernel tests, and Triton is not installed ({len(needing)} tests)")
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=NO_TRITON))


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """A function that makes torch report CUDA GPUs (capability, name, count) that are not there.

    The kernels' cached answer about the GPU (gptoss_kernels._common.gpu_problem) is forgotten
    before and after, so no test sees another's GPU.
    """
    from gptoss_kernels._common import gpu_problem  # imports without Triton too

    def stand_in(capability: tuple[int, int] = (7, 5), name: str = "Tesla T4", count: int = 1) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.version, "hip", None)
        gpu_problem.cache_clear()

    yield stand_in
    gpu_problem.cache_clear()


@pytest.fixture
def no_stray_memory():
    """In Triton's interpreter, each test: no kernel loads or stores outside the tensors its launch was given.

    Outputs cannot show a stray load whose lanes are never stored; on a GPU it reads another
    tensor's memory or faults. Compiled on a GPU, the addresses cannot be watched. Used as
    pytestmark = pytest.mark.usefixtures("no_stray_memory").
    """
    if triton_gpu() or not TRITON:  # compiled, or no kernels at all (their tests are skipped)
        yield
        return
    from gptoss_kernels.memcheck import stray_accesses

    with stray_accesses() as strays:
        yield
    assert not strays, "; ".join(map(str, strays))


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module: its sums are added in one order, and on a shared 2-core machine two
    threads wait on each other far more than they help. Used as pytestmark = usefixtures("one_thread")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



class DiskLog:
    """What reached the disk, in order: ("fsync", path) per file or folder flushed, ("replace", src, dst)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def assert_synced_before_renamed(self, target) -> None:
        """``target`` (a folder, or a file) was renamed into place after it was flushed (a folder: its
        files and its own entries), and the rename itself was flushed after (its parent folder synced)."""
        target = os.path.abspath(target)
        at = max(i for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == target)
        tmp = self.events[at][1]
        synced = {e[1] for e in self.events[:at] if e[0] == "fsync"}
        files = {os.path.join(tmp, name) for name in os.listdir(target)} if os.path.isdir(target) else {tmp}
        assert files and files | {tmp} <= synced, f"not flushed before the rename: {sorted((files | {tmp}) - synced)}"
        assert ("fsync", os.path.dirname(target)) in self.events[at + 1:], "the rename itself was not flushed"


@pytest.fixture
def disk_log(monkeypatch) -> DiskLog:
    """Records every os.fsync (with the path its descriptor was opened on) and os.replace."""
    log, opened = DiskLog(), {}
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def open_(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = os.path.abspath(path)
        return fd

    def fsync(fd):
        log.events.append(("fsync", opened.get(fd)))
        real_fsync(fd)

    def replace(src, dst, **kwargs):
        log.events.append(("replace", os.path.abspath(src), os.path.abspath(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


@pytest.fixture
def failing_fsync(monkeypatch):
    """``failing_fsync(err, only=None)``: from then on, syncing a folder (only the folder ``only``, if
    given) raises OSError(err), as a disk error, or a file system that cannot sync folders, would."""
    real = os.fsync

    def arm(err: int, only=None) -> None:
        inode = os.stat(only).st_ino if only is not None else None

        def fsync(fd):
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode) and inode in (None, st.st_ino):
                raise OSError(err, os.strerror(err))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return arm


@pytest.fixture(autouse=True)
def _seeded_global_generator(request):
    # Draws without a generator (torch.randn(3, 16)) are then the same whether a test runs alone or after
    # others, so a failure reproduces with `pytest file::test`.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
