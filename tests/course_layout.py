"""A folder laid out as the course is (both conftests, notebooks/, tests/), where pytest runs as `make test` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def run_like_make_test(folder: Path, notebook: nbformat.NotebookNode, *paths: str, name: str = "plots.ipynb",
                       env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """Write ``notebook`` as notebooks/``name`` beside the course's conftests and run nbval over ``paths``.

    ``env`` adds to the environment; a variable given None is removed.
    """
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (folder / "notebooks").mkdir()
    nbformat.write(notebook, folder / "notebooks" / name)
    (folder / "tests").mkdir(exist_ok=True)
    for conftest in ("conftest.py", "tests/conftest.py"):
        (folder / conftest).write_text((ROOT / conftest).read_text())
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
                           "--nbval", "--nbval-current-env", *paths], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})
