"""A wheel of the course (pip install . without -e) holds every module of the package and the kernels.

pyproject.toml lists the packages by hand, so a new subpackage left off the list works in the
editable install the Makefile makes, yet is missing from a wheel: notebooks importing
gptoss_edu.widgets or gptoss_edu.exercises would stop there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def source_files() -> set[str]:
    """Every module and data file the wheel must hold, under its installed name."""
    files = {str(p.relative_to(REPO)) for p in (REPO / "gptoss_edu").rglob("*")
             if p.suffix in (".py", ".json", ".typed") and "__pycache__" not in p.parts}
    files |= {str(p.relative_to(REPO / "kernels")) for p in (REPO / "kernels" / "gptoss_kernels").glob("*.py")}
    return files


def test_a_wheel_holds_every_module(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "gptoss_edu", src / "gptoss_edu", ignore=ignore)
    shutil.copytree(REPO / "kernels", src / "kernels", ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    # A data folder (presets/) left off the packages list still ships through package-data, but
    # setuptools then prints a page of warning into every learner's `make venv`.
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    held = set(zipfile.ZipFile(wheel).namelist())
    want = source_files()
    assert {"gptoss_edu/widgets/chat.py", "gptoss_edu/exercises/nb01.py", "gptoss_kernels/moe.py"} <= want
    assert not want - held, f"missing from the wheel: {sorted(want - held)}"


def test_the_kernels_folder_does_not_hide_the_pypi_package_kernels(tmp_path: Path) -> None:
    # transformers imports the PyPI package `kernels` whenever it is installed (5.25 requires it). Python
    # run in the course's folder puts that folder first on sys.path: a kernels/__init__.py there would be
    # imported instead, and every transformers model would fail to import (ImportError: CUDAProperties).
    site = tmp_path / "site"
    (site / "kernels").mkdir(parents=True)
    (site / "kernels" / "__init__.py").write_text("CUDAProperties = 'the PyPI package'\n")
    code = "import kernels, gptoss_kernels; print(kernels.CUDAProperties, gptoss_kernels.__name__)"
    ran = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["the", "PyPI", "package", "gptoss_kernels"]


@pytest.mark.parametrize("path", ["runs/course-step-13/model/model.safetensors",
                                  "notebooks/runs/course-step-01/state/optimizer.safetensors"])
def test_training_runs_are_not_for_git(path: str) -> None:
    """From JupyterLab's terminal (it opens in notebooks/) train wrote notebooks/runs/, 45 MB that git offered to add."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to ignore")
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert done.returncode == 0, f"git would track {path}"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed here")
def test_a_checkout_that_converts_line_endings_leaves_the_checked_files_as_they_are(tmp_path: Path) -> None:
    """Git for Windows writes text files with CRLF (core.autocrlf): the tokenizer files and the corpus, checked by
    SHA-256, were then refused as damaged. .gitattributes keeps data/ byte for byte, and scripts with LF for bash."""
    files = [".gitattributes", "data/r50k_base.tiktoken", "data/corpus/shakespeare.txt", "data/corpus/split.json",
             "scripts/device_wheels.sh", "Makefile"]
    src = tmp_path / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, src / f)

    def git(*args: str, cwd: Path = src) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.autocrlf=false", *args],
                       cwd=cwd, check=True, capture_output=True, timeout=120)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "the course's files")
    subprocess.run(["git", "clone", "-q", "-c", "core.autocrlf=true", str(src), str(tmp_path / "clone")],
                   check=True, capture_output=True, timeout=120)
    changed = [f for f in files[1:] if (tmp_path / "clone" / f).read_bytes() != (REPO / f).read_bytes()]
    assert not changed, f"a checkout with core.autocrlf=true changed {changed}: mark them in .gitattributes"
