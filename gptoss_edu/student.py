"""Make a student copy of the notebooks: each solution cell, with its output, replaced by a note."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

from .files import NO_ROOM, in_course_folder, remove_leftovers, replace_folder, restore_folder, temporary_folder

SOLUTION_TAG = "solution"
PLACEHOLDER = "<i>The solution has been removed from this copy. Ask your teacher, or see the full course.</i>"
# What a copy writes besides its notebooks: their hashes, so a later copy knows what it may replace.
MANIFEST = ".student-copy.json"
IGNORED = {".ipynb_checkpoints", ".DS_Store"}  # made by Jupyter and macOS, never anyone's work
# A markdown link out of the notebooks' folder, [text](../data/... "title"): from a copy elsewhere (a
# class's ~/gpt-oss-course) it would lead nowhere, so the copy names the file in the course's folder
# instead (an #anchor and a title go). An image, ![alt](../...), is left as it is.
_LINK_OUT = re.compile(r'(?<!!)\[([^\]\n]+)\]\(\.\./([^)\s#]+)(?:#[^)\s]*)?(?:\s+"[^"\n]*")?\)')


def strip_notebook(nb: dict) -> tuple[dict, int]:
    """A copy of notebook ``nb`` with every cell tagged 'solution' replaced by a note; and how many.

    Links out of the notebooks' folder become the file's name in the course's folder, in words.
    """
    cells, removed = [], 0
    for cell in nb["cells"]:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            removed += 1
            cell_id = {"id": cell["id"]} if "id" in cell else {}  # nbformat 4.5 wants every cell to have one
            cells.append({"cell_type": "markdown", **cell_id, "metadata": {}, "source": PLACEHOLDER})
        elif cell.get("cell_type") == "markdown" and "](../" in "".join(cell.get("source", "")):
            source = _LINK_OUT.sub(r"\1 (`\2` in the course's folder)", "".join(cell["source"]))
            cells.append({**cell, "source": source})
        else:
            cells.append(cell)
    return {**nb, "cells": cells}, removed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_student_target(src: Path, dst: Path) -> None:
    """Refuse a destination whose replacement could lose anything: only an unchanged earlier copy is replaced."""
    src_r, dst_r, here = src.resolve(), dst.resolve(), Path.cwd().resolve()
    if dst_r == src_r or dst_r in src_r.parents:
        raise ValueError(f"{dst} holds the course itself: write the student copy to another folder, e.g. student")
    if src_r in dst_r.parents:  # `student . student` typed in JupyterLab's terminal, which opens in notebooks/
        raise ValueError(f"{dst} is inside {src}, the notebooks it copies: the copies without answers would sit "
                         f"among the originals; write them beside it, e.g. {src_r.parent / 'student'}")
    if dst_r == here or dst_r in here.parents:
        raise ValueError(f"{dst} holds the folder you are in: write the student copy to a new folder, e.g. student")
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise ValueError(f"{dst} exists and is not a folder: choose a folder for the student copy")
    if not dst.exists():
        return
    entries = {p.name for p in dst.iterdir()} - IGNORED
    if not entries:
        return
    manifest = dst / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{dst} already holds files ({', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}) "
                         "and is not a student copy made by this command: choose a new folder, or empty it first")
    try:
        written = json.loads(manifest.read_bytes())["notebooks"]
        if not isinstance(written, dict) or not all(isinstance(h, str) for h in written.values()):
            raise TypeError("the notebooks are not a map of names to hashes")
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{manifest} is damaged: check what {dst} holds, then delete it or choose another folder") from None
    changed = sorted(name for name in entries - {MANIFEST}
                     if name not in written or not (dst / name).is_file()
                     or _sha256((dst / name).read_bytes()) != written[name])
    if changed:
        raise ValueError(f"{dst} holds work that is not the copy this command wrote ({', '.join(changed[:3])}"
                         f"{', ...' if len(changed) > 3 else ''}: changed or added since): move it elsewhere, or "
                         "write the new copy to another folder")


def kernelspec(name: str) -> dict[str, str]:
    """The notebook metadata that opens a notebook in the Jupyter kernel ``name`` (one this machine has)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise ValueError(f"this machine has no Jupyter kernel named {name!r}: register the course's Python as one "
                         f"first (sudo .venv/bin/python -m ipykernel install --name {name} --display-name "
                         "\"gpt-oss course\"), or list the kernels there are with jupyter kernelspec list") from None
    return {"display_name": spec.display_name, "language": spec.language, "name": name}


def make_student_copy(src: str | Path, dst: str | Path, kernel: str | None = None) -> dict[str, int]:
    """Copy every notebook of ``src`` into ``dst`` without its solutions; returns removed counts.

    ``dst`` is replaced as a whole, so it must be new, empty, or an earlier copy nobody has changed.
    ``kernel`` names the Jupyter kernel the copies open in (default: the one the course's notebooks name).
    """
    spec = kernelspec(kernel) if kernel is not None else None
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(in_course_folder(src) or f"{src} is not a folder of notebooks")
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {src}")
    # A copy killed between its two renames set the earlier one aside: it comes back (with the learner's
    # Jupyter checkpoints in it) before anything is judged; the killed copy's temporary folder goes.
    if restore_folder(dst.absolute()):
        print(f"student: {dst} is back from where a cut-short copy had set it aside", file=sys.stderr)
    for stale in remove_leftovers(dst.absolute()):
        print(f"student: removed {stale}, what a cut-short copy left", file=sys.stderr)
    check_student_target(src, dst)
    dst = dst.resolve()  # "student/." and the like get a real name to put the temporary folder beside
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(dst)
    try:
        counts, written = {}, {}
        for path in notebooks:
            try:
                nb, counts[path.name] = strip_notebook(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} is not a readable notebook ({e})") from None
            if spec is not None:
                nb["metadata"] = {**nb.get("metadata", {}), "kernelspec": spec}
            text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
            # Half an emoji ("\ud83d", valid JSON as JavaScript writes it) has no UTF-8: it stays escaped, as it came.
            data = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text).encode()
            (tmp / path.name).write_bytes(data)
            (tmp / path.name).chmod(0o644)  # a handout: readable by the class, whatever this user's umask
            written[path.name] = _sha256(data)
        (tmp / MANIFEST).write_text(json.dumps({"notebooks": written}, indent=1) + "\n")
        (tmp / MANIFEST).chmod(0o644)
        for name in IGNORED:  # Jupyter's checkpoints and the like stay: copied, so a failed copy loses none
            if (dst / name).is_symlink():  # a link (to a folder elsewhere, say) stays the link it was
                os.symlink(os.readlink(dst / name), tmp / name)
            elif (dst / name).is_dir():
                shutil.copytree(dst / name, tmp / name, symlinks=True)
            elif (dst / name).exists():
                shutil.copy2(dst / name, tmp / name)
        tmp.chmod(0o755)  # mkdtemp makes it private
        replace_folder(tmp, dst)  # an earlier copy comes back if the new one cannot take its place
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


# `python -m gptoss_edu student`: the command-line interface's add_arguments/run pair.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The student command's arguments: the course folder and where the copy goes."""
    parser.add_argument("src", nargs="?", default="notebooks",
                        help="folder of the course's notebooks (default: notebooks)")
    parser.add_argument("dst", nargs="?", default="student",
                        help="folder for the student copy: new, empty, or an earlier copy (replaced unless changed; "
                             "default: student)")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="the Jupyter kernel the copies open in, e.g. the course's Python registered for a "
                             "JupyterHub as gptoss-edu (default: the notebooks' own, python3)")


def _inside(filename: str | None, folder: str | Path) -> bool:
    """Whether the file an error names is in ``folder`` (the source: a read failed, not a write)."""
    if not filename:
        return False
    path, folder = Path(filename).expanduser().resolve(), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents


def run(args: argparse.Namespace) -> int:
    """Write the student copy and say how many solutions each notebook lost."""
    try:
        counts = make_student_copy(args.src, args.dst, args.kernel)
    except OSError as e:
        if e.errno in NO_ROOM:  # the error names no file: say which copy, and how much room it takes
            size = sum(p.stat().st_size for p in Path(args.src).glob("*.ipynb"))
            full = "this account's disk quota is used up" if e.errno == errno.EDQUOT else "no space left on the disk"
            print(f"student: could not write {args.dst} ({full}): nothing there was changed. The "
                  f"copy takes about {size / 1e6:.1f} MB: free some space, then run again", file=sys.stderr)
        elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and _inside(e.filename, args.src):
            print(f"student: cannot read {e.filename} ({e.strerror}): nothing was written", file=sys.stderr)
        elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # a course installed read-only, say
            where = Path(args.dst).expanduser().resolve().parent
            print(f"student: cannot write into {where} ({e.strerror}): give a folder you may write as the "
                  f"destination, e.g. gptoss-edu student {args.src} ~/gpt-oss-course", file=sys.stderr)
        else:
            print(f"student: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"student: {e}", file=sys.stderr)
        return 2
    for name, n in counts.items():
        print(f"{name}: {n} solution cell{'s' if n != 1 else ''} removed")
    print(f"student copy in {os.path.join(args.dst, '')}")  # one slash, however the folder was typed
    return 0
