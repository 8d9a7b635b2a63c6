"""Run notebooks top to bottom and save them with their outputs (in place, or as copies in --out).

    python scripts/execute_notebooks.py notebooks/06_sliding_window_sinks.ipynb   # refresh stored outputs
    python scripts/execute_notebooks.py --out gpu-run notebooks/1[02]_*.ipynb     # keep the originals
    python scripts/execute_notebooks.py --out run --set 'MODEL="/path/to/checkpoint"' notebooks/12_*.ipynb

The kernel runs in the notebooks' folder, as JupyterLab and nbval run it. ``--set NAME=EXPR``
adds a cell ``NAME = EXPR`` right after the notebook's settings cell (the one tagged
``parameters``, as papermill does), so a run can change a setting without editing the notebook.
A cell that raises (or runs past --timeout, or kills the kernel) stops its notebook: the notebook
is saved as far as it ran, the next one runs, and the exit status is 1.

Run in place, the kernel sees no GPU even where there is one: the stored outputs are the ones
nbval checks in CI, which has none. Copies in --out run on the GPU (notebooks 10 and 12 take
their GPU branches).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write executed copies here instead of in place")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may run (default: 1800)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=EXPR",
                        help="a setting to override after the cell tagged 'parameters' (repeatable)")
    args = parser.parse_args(argv)
    if args.set and args.out is None:
        parser.error("--set changes a notebook's settings for one run: give --out DIR, so the notebook itself "
                     "is not rewritten with the override in it")
    for item in args.set:
        name, _, expr = item.partition("=")
        if not name.strip().isidentifier() or not expr.strip():
            parser.error(f"--set {item!r}: write NAME=EXPR, e.g. --set 'MODEL=\"/path/to/checkpoint\"'")
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (NN_name.ipynb)")
        if args.out is not None and args.out.resolve() == path.parent.resolve():
            # --out keeps the GPU visible and --set writes its override: neither must land on the notebook.
            parser.error(f"--out {args.out} is the folder {path.name} is in: the copy would replace it. Give "
                         "another folder, or no --out to run it in place as CI does")
    if args.out is not None:  # said now, not after a run of minutes whose copy then has nowhere to go
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            probe = args.out / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            parser.error(f"--out {args.out} cannot hold the copies ({e.strerror or e}): give a folder you may write")

    import nbclient
    import nbformat

    notebooks = {}
    for path in args.notebooks:  # all read first: a broken one stops the run before any has run
        try:
            notebooks[path] = nbformat.read(path, as_version=4)
        except Exception as e:  # not JSON, or not a notebook: nbformat raises several kinds
            print(f"{path}: not a readable notebook ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
    failed = []
    for path, nb in notebooks.items():
        if args.set:
            tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
            if not tagged:
                print(f"{path.name}: no cell is tagged 'parameters', so --set has nowhere to go", file=sys.stderr)
                return 2
            lines = [f"{n.strip()} = {e.strip()}" for n, _, e in (item.partition("=") for item in args.set)]
            nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
                "# Set by scripts/execute_notebooks.py --set\n" + "\n".join(lines)))
        target = path if args.out is None else args.out / path.name
        t0 = time.perf_counter()
        client = nbclient.NotebookClient(nb, timeout=args.timeout, kernel_name="python3", record_timing=False,
                                         extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not its TCP warning
                                         resources={"metadata": {"path": str(path.parent)}})
        # In place: as CI runs it, without a GPU (an empty CUDA_VISIBLE_DEVICES hides every one), and never on
        # notebook 13's short schedule (a CI or GPTOSS_EDU_QUICK left in the shell would store its numbers).
        env = dict(os.environ)
        if args.out is None:
            env.update(CUDA_VISIBLE_DEVICES="")
            for name in ("CI", "GPTOSS_EDU_QUICK"):
                env.pop(name, None)
        interrupted = False
        try:
            client.execute(env=env)
            status = "ran"
        except (nbclient.exceptions.CellExecutionError, nbclient.exceptions.CellTimeoutError,
                nbclient.exceptions.DeadKernelError) as e:
            failed.append(path.name)
            last = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[-1]  # the error, without colours
            status = f"FAILED: {last}"
        except (KeyboardInterrupt, AssertionError):
            # Ctrl-C, or a time limit's SIGINT (gpu_check.sh): the kernel dies with it, and nbclient's clean-up may
            # then trip on it (an AssertionError). A copy keeps the cells that ran, to show where it stalled.
            interrupted = True
            failed.append(path.name)
            status = "stopped (interrupted)"
            if args.out is None:
                print(f"{path.name}: stopped; run in place, it is left as it was", file=sys.stderr)
                return 130
        join_streams(nb)
        tmp = target.with_name(target.name + ".tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, tmp)
            tmp.replace(target)  # never a half-written notebook
        except BaseException as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if not isinstance(e, OSError):
                raise
            print(f"{path.name}: {status}, but {target} could not be written ({e.strerror or e}): it is as it was",
                  file=sys.stderr)
            return 2
        print(f"{path.name}: {status} in {time.perf_counter() - t0:.0f} s -> {target}", flush=True)
        if interrupted:  # the whole command was asked to stop, not only this notebook
            return 130
    return 1 if failed else 0


CARRIAGE_RETURN = re.compile(r".*\r(?=[^\n])")  # a line a progress bar rewrote: its last state is kept


def join_streams(nb) -> None:
    """Join each cell's consecutive outputs to one stream, as JupyterLab does when it opens the notebook.

    Each flush of a print is an output of its own: unjoined, nbviewer and GitHub show a streamed reply one word a
    line. (nbconvert's CoalesceStreamsPreprocessor does this too; a GPU machine's image has no nbconvert.)
    """
    for cell in nb.cells:
        joined = []
        for out in cell.get("outputs", []):
            last = joined[-1] if joined else None
            if (last is not None and out.output_type == "stream" and last.output_type == "stream"
                    and last.name == out.name):
                last.text += out.text
            else:
                joined.append(out)
        for out in joined:
            if out.output_type == "stream" and "\r" in out.text:
                out.text = CARRIAGE_RETURN.sub("", out.text)
        if "outputs" in cell:
            cell.outputs = joined


if __name__ == "__main__":
    sys.exit(main())
