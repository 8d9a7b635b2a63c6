"""Make a student copy of the notebooks: solution cells removed, outputs of exercises cleared."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

SOLUTION_TAG = "solution"
PLACEHOLDER = "<i>The solution has been removed from this copy. Ask your teacher, or see the full course.</i>"


def strip_notebook(nb: dict) -> tuple[dict, int]:
    """A copy of notebook ``nb`` with every cell tagged 'solution' replaced by a note; and how many."""
    cells, removed = [], 0
    for cell in nb["cells"]:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            removed += 1
            cells.append({"cell_type": "markdown", "metadata": {}, "source": PLACEHOLDER})
        else:
            cells.append(cell)
    return {**nb, "cells": cells}, removed


def make_student_copy(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Copy every notebook of ``src`` into ``dst`` without its solutions; returns removed counts."""
    src, dst = Path(src), Path(dst)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {src}")
    if dst.resolve() == src.resolve():
        raise ValueError("the student copy must go to another folder than the course")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {}
    for path in notebooks:
        nb, counts[path.name] = strip_notebook(json.loads(path.read_text()))
        (tmp / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return counts


# `python -m gptoss_edu student`: the command-line interface's add_arguments/run pair.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The student command's arguments: the course folder and where the copy goes."""
    parser.add_argument("src", nargs="?", default="notebooks", help="folder of the course's notebooks")
    parser.add_argument("dst", nargs="?", default="student", help="folder for the student copy (replaced)")


def run(args: argparse.Namespace) -> int:
    """Write the student copy and say how many solutions each notebook lost."""
    try:
        counts = make_student_copy(args.src, args.dst)
    except (FileNotFoundError, ValueError) as e:
        print(f"student: {e}")
        return 1
    for name, n in counts.items():
        print(f"{name}: {n} solution cell{'s' if n != 1 else ''} removed")
    print(f"student copy in {args.dst}/")
    return 0
