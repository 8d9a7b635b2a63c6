"""Which exercises a copy of the course passes: read from its notebooks' saved outputs, or run them first.

A learner sees their own progress; a teacher passes one folder per student and gets a table.
Saved outputs say what the learner last ran (and can be edited by hand); ``--run`` runs each
notebook in memory first, so the verdict comes from running the check rather than from what was
saved. Nothing is written to the notebooks either way. Running a notebook runs its code with the
permissions of whoever runs progress, and code can redefine a check: run others' notebooks in an
account or container of their own, and read the solutions you grade.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import tokenize
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .student import SOLUTION_TAG
from .terminal import printable

# An exercise cell calls its check at the start of a line: check_gelu(my_gelu).
CHECK_CALL = re.compile(r"^(check_\w+)\(", re.M)
# The course's names, NN_topic.ipynb: not JupyterLab's duplicates (01_gpt2_block-Copy1.ipynb) beside them.
NOTEBOOK_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
MARKS = {"passed": "✅", "not yet": "❌", "error": "!", "not run": "·"}
RANK = ("passed", "not yet", "error", "not run")  # of one check's cells, the first of these counts
# For a terminal that cannot show those (a Windows console in cp1252, a Latin-1 locale).
ASCII_MARKS = {"passed": "+", "not yet": "x", "error": "!", "not run": "."}


def marks_for(stream: object) -> dict[str, str]:
    """The marks ``stream`` can print: the course's, or plain ASCII ones where its encoding lacks them."""
    try:
        "".join(MARKS.values()).encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return MARKS


def as_printed(text: str, stream: object) -> str:
    """``text`` as ``stream`` prints it: what its encoding lacks written as \\uNNNN (the command line's setting)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: printing will say so
        return text


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes: CJK and the marks take two, combining accents none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _left(text: str, columns: int) -> str:
    """``text`` left-aligned in ``columns`` terminal columns."""
    return text + " " * max(0, columns - _columns(text))


def _right(text: str, columns: int) -> str:
    """``text`` right-aligned in ``columns`` terminal columns."""
    return " " * max(0, columns - _columns(text)) + text


@dataclass(frozen=True)
class Exercise:
    """One exercise cell of a notebook and what its saved output says."""

    notebook: str
    check: str
    status: str  # "passed", "not yet", "error" (the cell raised) or "not run" (no verdict in its output)
    message: str


def _output_text(cell: dict) -> tuple[str, str | None]:
    """The text a code cell printed or returned, and the exception it raised (its name and message), if any."""
    texts, error = [], None
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            error = out.get("ename", "an error") + (f": {out['evalue']}" if out.get("evalue") else "")
        elif out.get("output_type") == "stream":
            texts.append("".join(out.get("text", "")))
        else:
            texts.append("".join(out.get("data", {}).get("text/plain", "")))
    return "".join(texts), error


def exercises(nb: dict, name: str) -> list[Exercise]:
    """The exercises of notebook ``nb`` (its cells that call a check, solutions left out) and their verdicts."""
    found, first_error, cells = [], None, []  # the first cell that raised: a later NameError is mostly its consequence
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") != "code" or SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        cells.append((source, cell, first_error))
        checks = CHECK_CALL.findall(source)
        if not checks:
            first_error = first_error or _output_text(cell)[1]
        for check in checks:
            found.append(_verdict(name, check, cell, first_error))
    # The course's exercise of this notebook, called another way or its cell deleted: looked for even when the
    # notebook calls other checks (notebook 01's run again in 02 does not stand for 02's own).
    called = {e.check for e in found}
    for check in expected_checks(name):
        if check not in called:
            call = re.compile(rf"(?<![\w.]){check}\(")
            # Every cell that calls it, inside print(...) say (a comment's mention is no call; a def is none)
            calling = [(c, err) for source, c, err in cells if call.search(_code_only(source))
                       and not re.search(rf"def\s+{check}\(", source)]
            found += [_verdict(name, check, *c) for c in calling] or [Exercise(
                name, check, "not run", f"no cell calls {check}(...): the exercise cell was deleted or changed; take "
                "it back from the course's copy of the notebook")]
    # A check called in several cells (an exercise cell duplicated to try again, a scratch copy) is one
    # exercise: the best verdict among its cells counts, so a stub left "not yet" beside a solved copy
    # does not read as unfinished.
    best: dict[str, Exercise] = {}
    for e in found:
        if e.check not in best or RANK.index(e.status) < RANK.index(best[e.check].status):
            best[e.check] = e
    return list(best.values())


def _code_only(source: str) -> str:
    """A cell's source without its comments (a '#' inside a string is no comment)."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens)
    except (tokenize.TokenError, SyntaxError):  # IPython's %magic or !shell lines: whole-line comments only
        return re.sub(r"(?m)^\s*#.*", "", source)


def _verdict(name: str, check: str, cell: dict, first_error: str | None) -> Exercise:
    """The verdict ``cell`` saved for ``check``: passed, not yet, error, or not run."""
    text, error = _output_text(cell)
    # A check's verdict is one line that starts with its mark (CheckResult's repr and print).
    verdict = next((line for line in text.splitlines() if line.startswith(("✅", "❌"))), None)
    if error:
        status, message = "error", f"the cell raised {error}"
        if first_error is not None and error.startswith("NameError"):
            message += f", after an earlier cell raised {first_error}"
    elif verdict is None:
        status, message = "not run", "no verdict in the saved output: run the cell"
    else:
        status = "passed" if verdict.startswith("✅") else "not yet"
        message = verdict[1:].strip()
    return Exercise(name, check, status, message)


# The course's notebooks: a learner's own 01_my_notes.ipynb beside them has no exercise to miss.
COURSE_NOTEBOOKS = (
    "00_welcome.ipynb",
    "01_gpt2_block.ipynb",
    "02_rope.ipynb",
    "03_rmsnorm.ipynb",
    "04_swiglu.ipynb",
    "05_gqa_kv_cache.ipynb",
    "06_sliding_window_sinks.ipynb",
    "07_mixture_of_experts.ipynb",
    "08_mxfp4.ipynb",
    "09_yarn.ipynb",
    "10_triton_kernels.ipynb",
    "11_tokenizer_harmony.ipynb",
    "12_gpt_oss_20b.ipynb",
    "13_train_tiny.ipynb",
)


def expected_checks(name: str) -> list[str]:
    """The checks the course's notebook ``name`` calls in its exercise cell (from gptoss_edu.exercises.nbNN)."""
    if name not in COURSE_NOTEBOOKS:
        return []
    try:
        module = importlib.import_module(f"{__package__}.exercises.nb{name[:2]}")
    except ImportError:
        return []
    return sorted(n for n, f in vars(module).items()
                  if n.startswith("check_") and callable(f) and getattr(f, "__module__", None) == module.__name__)


def notebook_files(path: Path) -> list[Path]:
    """The course notebooks (NN_name.ipynb) a path names: the file itself, or those in the folder."""
    try:
        if path.is_file():
            if path.suffix != ".ipynb":
                raise ValueError(f"{path} is not a notebook (a .ipynb file)")
            return [path]
        if not path.is_dir():
            raise ValueError(f"there is no file or folder {path}")
        # glob finds nothing in a folder it may not list: say why, rather than "holds no course notebooks"
        found = sorted(p for p in path.iterdir() if NOTEBOOK_NAME.match(p.name))
        if not found and (path / "notebooks").is_dir():  # a student's whole copy of the course, as handed out
            found = sorted(p for p in (path / "notebooks").iterdir() if NOTEBOOK_NAME.match(p.name))
    except OSError as e:  # a student's private folder, on a shared machine
        raise ValueError(f"cannot read {path} ({e.strerror or e}): run progress as a user who may read it") from None
    if not found:
        raise ValueError(f"{path} holds no course notebooks (NN_name.ipynb)")
    return found


def run_notebook(path: Path, timeout: int) -> dict:
    """``path`` run top to bottom in memory (the file is never written); returns the notebook as it ran."""
    import nbclient
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - not JSON, or not a notebook: nbformat raises several kinds
        raise ValueError(f"{path} is not a readable notebook ({type(e).__name__}: {e})") from None
    for cell in nb.cells:  # a cell the run does not reach must not keep the verdict saved in the file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # The notebook's own folder is the working directory, as in JupyterLab. The kernel is this Python,
    # the course's, whatever kernel named python3 the machine's Jupyter knows (a JupyterHub's may lack torch).
    km = _this_python_kernel()
    # The kernel's own warnings (it talks over TCP, unencrypted, on this machine) went to stderr once a
    # notebook, 14 lines each, burying the class's real problems.
    client = nbclient.NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                     extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                     resources={"metadata": {"path": str(path.parent)}})
    # The kernel's temporary folders go in one of ours, removed after it stops: a notebook's TemporaryDirectory
    # (a checkpoint of 100 MB in 13) is removed by the kernel only when it ends in good order.
    scratch = tempfile.mkdtemp(prefix="progress-kernel-")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = scratch  # read when the kernel starts, in client.execute()
    try:
        client.execute()
    except (nbclient.exceptions.CellTimeoutError, nbclient.exceptions.DeadKernelError) as e:
        if not _interrupted(client):
            print(f"progress: {path} stopped part-way ({type(e).__name__}); the exercises after it count as not run",
                  file=sys.stderr)
    except RuntimeError as e:  # the kernel did not start
        raise ValueError(f"could not run {path}: the kernel ({sys.executable}) did not start ({e})") from None
    except BaseException:  # Ctrl-C while the kernel starts: nbclient cancels its wait (asyncio.CancelledError)
        if _interrupted(client):
            raise KeyboardInterrupt from None
        raise
    finally:
        # nbclient leaves a kernel it was handed running: a timed-out cell would go on (and a class's
        # kernels, torch loaded in each, would pile up until progress exits).
        from jupyter_core.utils import run_sync

        try:
            try:
                if client.kc is not None:  # nbclient closes the client's sockets only for a kernel it started
                    client.kc.stop_channels()
            finally:  # and the kernel is stopped even when that fails or a second Ctrl-C comes
                if run_sync(km.is_alive)():
                    run_sync(km.shutdown_kernel)(now=False)  # asked first, killed if it does not answer in seconds
        finally:  # a second Ctrl-C during that wait included
            if before is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = before
            shutil.rmtree(scratch, ignore_errors=True)
    if _interrupted(client):  # Ctrl-C meant the whole command, not a "!" for this notebook and on to the next
        raise KeyboardInterrupt
    return json.loads(nbformat.writes(nb))


def _interrupted(client: object) -> bool:
    """Whether Ctrl-C (or SIGTERM) came while ``client`` ran: nbclient takes it to stop the kernel, and goes on."""
    return getattr(client, "_async_cleanup_kernel_future", None) is not None


def _this_python_kernel():
    """A kernel manager that starts an IPython kernel in this very Python (sys.executable)."""
    import ipykernel.kernelspec
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict())

    # Async: with a blocking manager, nbclient waits on a silent cell for ever and --timeout never fires.
    return AsyncKernelManager(kernel_name="this-python", kernel_spec_manager=ThisPython())


def check_notebooks(paths: list[Path], run: bool = False, timeout: int = 1800) -> dict[str, list[Exercise]]:
    """For each notebook file, its exercises' verdicts: saved, or (``run``) from running it first."""
    results = {}
    for path in paths:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a readable notebook ({e})") from None
        except OSError as e:  # a notebook its owner keeps private (umask 077), on a shared machine
            raise ValueError(f"cannot read {path} ({e.strerror or e}): run progress as a user who may read it") from None
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError(f"{path} is not a readable notebook (no list of cells)")
        results[path.name] = exercises(run_notebook(path, timeout) if run else nb, path.name)
    return results


def by_course_notebook(results: dict[str, list[Exercise]]) -> dict[str, list[Exercise]]:
    """``results`` with each exercise under the notebook its check belongs to: a renamed copy's (06_mine.ipynb calling
    notebook 06's check) under 06, and a check run again elsewhere (01's check_gelu in 02) under 01."""
    home = {check: name for name in COURSE_NOTEBOOKS for check in expected_checks(name)}
    merged: dict[str, dict[str, Exercise]] = {}
    for name, found in results.items():
        merged.setdefault(name, {})
        for e in found:
            where = home.get(e.check, name)
            if where != name:
                e = Exercise(where, e.check, e.status, f"{e.message} (in {name})")
            best = merged.setdefault(where, {}).get(e.check)
            if best is None or RANK.index(e.status) < RANK.index(best.status):
                merged[where][e.check] = e
    # A copy whose exercises all went to their notebook is no column of its own (a notebook without any still is)
    return {name: list(found.values()) for name, found in sorted(merged.items()) if found or not results.get(name)}


def add_missing_notebooks(students: dict[str, dict[str, list[Exercise]]]) -> None:
    """In a class, a course notebook some students have and others not: each of its exercises not run for those."""
    present = {name for results in students.values() for name in results if name in COURSE_NOTEBOOKS}
    for results in students.values():
        for name in present - results.keys():
            results[name] = [Exercise(name, check, "not run", f"there is no {name} in the folder: take it back "
                                      "from the course's copy") for check in expected_checks(name)]


def table(students: dict[str, dict[str, list[Exercise]]], marks: dict[str, str] = MARKS) -> str:
    """One row a student (folder), one column a notebook: each exercise's mark."""
    columns = sorted({name for results in students.values() for name in results})
    width = max(len("student"), *(_columns(s) for s in students))
    most = max((len(found) for results in students.values() for found in results.values()), default=1)
    cols = max(3, 2 * most + 1)  # room for every mark of the notebook with the most exercises
    lines = [f"{'student':<{width}}  " + " ".join(_right(c[:2], cols) for c in columns) + "  passed"]
    for student, results in students.items():
        shown = ["".join(marks[e.status] for e in results.get(c, [])) or "-" for c in columns]
        done = sum(e.status == "passed" for found in results.values() for e in found)
        total = sum(len(found) for found in results.values())
        lines.append(_left(student, width) + "  " + " ".join(_right(m, cols) for m in shown) + f"  {done}/{total}")
    legend = ", ".join(f"{mark} {status}" for status, mark in marks.items())
    return "\n".join(lines) + f"\n({legend}; - no exercise, or no such notebook)"


# `python -m gptoss_edu progress`: the command-line interface's add_arguments/run pair.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The progress command's arguments: notebooks or folders of them, and whether to run them first."""
    parser.add_argument("paths", nargs="*", default=[Path("notebooks")], type=Path,
                        help="notebooks, or folders of them; several folders (one a student; notebooks count "
                             "with their folder) give a table (default: notebooks)")
    parser.add_argument("--run", dest="execute", action="store_true",  # args.run is the command itself
                        help="run each notebook first, in memory, its file untouched (minutes a notebook), "
                             "instead of reading its saved outputs. Their code runs as you: run others' notebooks "
                             "in an account or container of their own")
    parser.add_argument("--timeout", type=int, default=1800, help="with --run: seconds a cell may take, 0 for no limit (default 1800)")


def run(args: argparse.Namespace) -> int:
    """Print the exercises' verdicts; exit 0 when every one passed, 1 when some did not, 2 when a path could not be read."""
    if args.execute:
        try:
            import ipykernel  # noqa: F401
            import nbclient  # noqa: F401
        except ImportError as e:
            print(f"progress: --run needs {e.name}, which this Python does not have: run it in the course's "
                  "environment (.venv/bin/python -m gptoss_edu progress --run ...)", file=sys.stderr)
            return 2
    found: dict[str, list[Path]] = {}  # a student (a folder) and their notebooks
    students, problems = {}, {}
    if args.paths == [Path("notebooks")] and not Path("notebooks").exists() and any(
            NOTEBOOK_NAME.match(p.name) for p in Path(".").iterdir()):
        args.paths = [Path(".")]  # run in a folder of course notebooks (a student's own copy): that folder
    for path in args.paths:
        try:
            files = notebook_files(path)
        except ValueError as e:
            problems[str(path)] = str(e)
            continue
        key = str(path.parent) if path.is_file() else str(path)  # a notebook named alone counts with its folder
        found.setdefault(key, []).extend(f for f in files if f not in found.get(key, []))
    for name, files in found.items():
        try:
            students[name] = by_course_notebook(check_notebooks(files, args.execute, args.timeout))
        except ValueError as e:  # one unreadable notebook: that student's row is missing, not the whole table
            problems[name] = str(e)
    for name, problem in problems.items():  # folder names come from students: no terminal escapes
        print(printable(f"progress: {problem}"), file=sys.stderr)
    if not students:
        return 2
    marks = marks_for(sys.stdout)
    if len(set(found) | set(problems)) > 1:  # a class: a table, even when some rows could not be read
        add_missing_notebooks(students)  # so that every row's total counts the same exercises
        # Names as the console will show them (東京 as \u6771\u4eac where it cannot), so the columns line up.
        print(table({as_printed(printable(name), sys.stdout): results for name, results in students.items()}, marks))
    else:
        for results in students.values():
            for name, found_here in results.items():
                for e in found_here:
                    print(printable(f"{marks[e.status]} {name[:2]} {e.check}: {e.message}"))  # a notebook's text
                if not found_here:
                    print(f"- {name[:2]} (no exercise)")
    every = [e for results in students.values() for found_here in results.values() for e in found_here]
    if problems:  # part of what was asked could not be read: not done, though the rest was shown
        return 2
    return 0 if every and all(e.status == "passed" for e in every) else 1
