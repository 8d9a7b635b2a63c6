"""Which stored outputs a notebook's re-run changed: its text, and whether its pictures moved.

    python scripts/diff_outputs.py notebooks/03_rmsnorm.ipynb            # against the last commit
    python scripts/diff_outputs.py notebooks/03_rmsnorm.ipynb --old OLD.ipynb

A re-run rewrites every widget's id and every picture's bytes, so `git diff` of a notebook is
hundreds of lines for a change of one number. This prints only the code cells whose printed text
changed (old beside new, each cell named by its id and its first line), and those whose pictures
are no longer the same PNG bytes (whether that is more than rounding is conftest.py's call, under
nbval). Rich text (HTML, markdown: a code diff's table, an exercise's verdict), which nbval compares
too, is named when it changed, without its markup. The exit status is 1 when something changed, 0
when nothing did.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import subprocess
import sys
from pathlib import Path


RICH = ("text/html", "text/markdown", "text/latex")


def rich_outputs(cell: dict) -> list[tuple[str, str]]:
    """(kind, hash) of each rich text output of a code cell: what nbval compares besides the plain text."""
    return [(kind, hashlib.sha256("".join(out["data"][kind]).encode()).hexdigest()[:12])
            for out in cell.get("outputs", []) for kind in RICH if kind in out.get("data", {})]


def text_and_pictures(cell: dict) -> tuple[str, list[str]]:
    """A code cell's printed text (streams, text results, errors) and a hash of each stored picture."""
    text, pictures = [], []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text.append("".join(out.get("text", "")))
        elif out.get("output_type") == "error":
            text.append(f"{out.get('ename')}: {out.get('evalue')}\n")
        data = out.get("data", {})
        if "image/png" in data:
            pictures.append(hashlib.sha256("".join(data["image/png"]).encode()).hexdigest()[:12])
        elif "text/plain" in data and "application/vnd.jupyter.widget-view+json" not in data:
            text.append("".join(data["text/plain"]) + "\n")
    return "".join(text), pictures


def code_cells(nb: dict) -> dict[str, dict]:
    """The code cells by id (ids stay when a notebook is run again; nbformat 4.5 gives every cell one)."""
    return {c.get("id", f"#{i}"): c for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}


def changes(old: dict, new: dict) -> list[str]:
    """What differs in the code cells' outputs of two notebooks, as lines to print."""
    before, lines = code_cells(old), []
    for cid, cell in code_cells(new).items():
        source = "".join(cell.get("source", "")).strip().splitlines() or [""]
        name = f"cell {cid} ({source[0][:60]})"
        if cid not in before:
            lines.append(f"{name}: new")
            continue
        (old_text, old_pics), (new_text, new_pics) = text_and_pictures(before[cid]), text_and_pictures(cell)
        if old_text != new_text:
            lines.append(f"{name}: text changed")
            lines += ["    " + d.rstrip("\n") for d in difflib.unified_diff(
                old_text.splitlines(True), new_text.splitlines(True), "stored", "re-run", n=0)][2:]
        if old_pics != new_pics:
            lines.append(f"{name}: picture(s) changed ({len(old_pics)} before, {len(new_pics)} now)")
        old_rich, new_rich = rich_outputs(before[cid]), rich_outputs(cell)
        if old_rich != new_rich:
            kinds = sorted({kind for kind, _ in set(old_rich) ^ set(new_rich)}) or sorted({k for k, _ in new_rich})
            lines.append(f"{name}: {', '.join(kinds)} changed (nbval compares it)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--old", type=Path, default=None, help="the notebook to compare with (default: git HEAD's)")
    args = parser.parse_args(argv)
    try:
        new = json.loads(args.notebook.read_text(encoding="utf-8"))
        if args.old is not None:
            old = json.loads(args.old.read_text(encoding="utf-8"))
        else:
            folder = args.notebook.resolve().parent
            name = subprocess.run(["git", "ls-files", "--full-name", args.notebook.name], cwd=folder,
                                  capture_output=True, text=True, check=True).stdout.strip()
            committed = name and subprocess.run(["git", "cat-file", "-e", f"HEAD:{name}"], cwd=folder,
                                                capture_output=True).returncode == 0
            if not committed:
                raise FileNotFoundError(f"{args.notebook} is in no commit yet: give the notebook to compare with as --old")
            # UTF-8 whatever the locale: the notebooks hold ✅, ×, é.
            old = json.loads(subprocess.run(["git", "show", f"HEAD:{name}"], cwd=folder, capture_output=True,
                                            check=True).stdout.decode("utf-8"))
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        said = getattr(e, "stderr", None) or e
        print(f"diff_outputs: {said.decode('utf-8', 'replace') if isinstance(said, bytes) else said}".strip(),
              file=sys.stderr)
        return 2
    lines = changes(old, new)
    print("\n".join(lines) if lines else f"{args.notebook.name}: no stored output changed")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
