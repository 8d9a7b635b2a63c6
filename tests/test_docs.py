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
