"""The README and DEVELOPERS.md name only paths, make targets and environment variables that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "DEVELOPERS.md"]
TOP = ("notebooks", "gptoss_edu", "kernels", "data", "tests", "benchmarks", "scripts")
PATH = re.compile(rf"`((?:{'|'.join(TOP)})/[^`\s]*)`")
MAKE = re.compile(r"`make ([a-z-]+)")
ENV = re.compile(r"\bGPTOSS_[A-Z_]+\b")


def code_files() -> str:
    files = [p for d in ("gptoss_edu", "kernels", "tests", "scripts", "benchmarks", "notebooks")
             for p in (REPO / d).rglob("*") if p.suffix in (".py", ".sh", ".ipynb")]
    return "\n".join(p.read_text() for p in files + [REPO / "Makefile"] if p.resolve() != Path(__file__).resolve())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_paths_exist(doc):
    named = [p for p in PATH.findall(doc.read_text()) if "NN" not in p]  # nbNN, NN_name: placeholders
    assert named, f"{doc.name} names no paths: the pattern is broken"
    missing = [p for p in named if not (REPO / p).exists()]
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_make_targets_and_environment_variables_exist(doc):
    text = doc.read_text()
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    assert set(MAKE.findall(text)) <= targets, set(MAKE.findall(text)) - targets
    code = code_files()
    unknown = {v for v in ENV.findall(text) if v not in code}
    assert not unknown, f"{doc.name} names environment variables no code reads: {unknown}"


def test_lab_args_reach_jupyterlab():
    """make lab LAB_ARGS=... (the README's remote-machine recipe) passes the options to JupyterLab."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed here")
    # -n prints the commands without running them; -o venv: as if the environment were already made.
    done = subprocess.run(["make", "-n", "-o", "venv", "-o", ".venv/.installed", "lab",
                           "LAB_ARGS=--no-browser --port 8888"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lab = [line for line in done.stdout.splitlines() if "jupyter lab" in line]
    assert lab and "--no-browser --port 8888 notebooks/00_welcome.ipynb" in lab[-1], done.stdout
    assert 'LAB_ARGS="--no-browser --port 8888"' in (REPO / "README.md").read_text()


def test_the_readmes_gpu_figures_are_notebook_12s_plans():
    """They are computed (memory.plan at notebook 12's defaults, plus the CUDA context), and drifted once."""
    from gptoss_edu.env import GiB, gpu_bytes_for_notebook_12

    text = (REPO / "README.md").read_text()
    for model in ("gpt-oss-20b", "gpt-oss-120b"):
        figure = f"for {model} about {gpu_bytes_for_notebook_12(model) / GiB:.1f} GiB"
        assert figure in text, f"README.md should say {figure!r}"
