"""scripts/execute_notebooks.py: runs notebooks, keeps the originals with --out, overrides settings
with --set after the cell tagged 'parameters', and reports a failing cell by its error."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from course_layout import run_like_make_test

ROOT = Path(__file__).resolve().parents[1]


def notebook(path: Path, *cells: str, tag_first: bool = True) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if tag_first:
        nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


def execute(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/execute_notebooks.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"]


def test_set_overrides_a_setting_and_the_original_is_kept(tmp_path):
    src = notebook(tmp_path / "a.ipynb", "MODEL = 'openai/gpt-oss-20b'\nSEED = 0", "print(MODEL, SEED)")
    done = execute("--out", str(tmp_path / "out"), "--set", "MODEL='tiny'", "--set", "SEED = 3", str(src))
    assert done.returncode == 0, done.stderr
    assert outputs(tmp_path / "out" / "a.ipynb") == ["", "", "tiny 3\n"]  # the injected cell sits second
    assert outputs(src) == ["", ""]  # not executed in place


def test_in_place_run_and_a_failing_cell(tmp_path):
    good = notebook(tmp_path / "good.ipynb", "print(6 * 7)")
    bad = notebook(tmp_path / "bad.ipynb", "x = 1", "1 / 0", "print('never')")
    done = execute(str(good), str(bad))
    assert done.returncode == 1
    assert "good.ipynb: ran" in done.stdout and "bad.ipynb: FAILED: ZeroDivisionError: division by zero" in done.stdout
    assert outputs(good) == ["42\n"]
    assert outputs(bad)[2] == "" and "ZeroDivisionError" in str(nbformat.read(bad, as_version=4).cells[1].outputs)


def test_a_cell_past_the_timeout_is_reported_and_the_next_notebook_runs(tmp_path):
    slow = notebook(tmp_path / "slow.ipynb", "print('started')", "import time; time.sleep(30)")
    fast = notebook(tmp_path / "fast.ipynb", "print('fast')")
    done = execute("--timeout", "2", "--out", str(tmp_path / "out"), str(slow), str(fast))
    assert done.returncode == 1 and "slow.ipynb: FAILED" in done.stdout and "fast.ipynb: ran" in done.stdout
    assert outputs(tmp_path / "out" / "slow.ipynb")[0] == "started\n"  # saved as far as it ran
    assert outputs(tmp_path / "out" / "fast.ipynb") == ["fast\n"]


def test_set_without_out_a_parameters_cell_or_in_a_bad_form_is_refused(tmp_path):
    plain = notebook(tmp_path / "plain.ipynb", "print(1)", tag_first=False)
    out = ("--out", str(tmp_path / "out"))
    done = execute(*out, "--set", "MODEL='x'", str(plain))
    assert done.returncode == 2 and "no cell is tagged 'parameters'" in done.stderr
    done = execute(*out, "--set", "not a name", str(plain))
    assert done.returncode == 2 and "write NAME=EXPR" in done.stderr
    tagged = notebook(tmp_path / "tagged.ipynb", "MODEL = 'a'")
    done = execute("--set", "MODEL='x'", str(tagged))  # in place, it would write the override into the notebook
    assert done.returncode == 2 and "give --out DIR" in done.stderr
    assert outputs(plain) == [""] and len(nbformat.read(tagged, as_version=4).cells) == 1
    (tmp_path / "sub").mkdir()
    for folder in (str(tmp_path), f"{tmp_path}/sub/.."):  # --out naming the notebook's own folder: "in place"
        done = execute("--out", folder, "--set", "MODEL='x'", str(tagged))
        assert done.returncode == 2 and "is the folder tagged.ipynb is in" in done.stderr, done.stderr
    assert len(nbformat.read(tagged, as_version=4).cells) == 1  # no override written into it


def test_a_missing_or_broken_notebook_is_a_message(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{")
    for path, message in ((tmp_path / "nowhere.ipynb", "is not a notebook file"),
                          (ROOT / "README.md", "is not a notebook file"),
                          (tmp_path / "broken.ipynb", "not a readable notebook")):
        done = execute(str(path))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_notebook_12_has_its_settings_cell_tagged():
    nb = nbformat.read(ROOT / "notebooks" / "12_gpt_oss_20b.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "MODEL = " in tagged[0].source


def test_in_place_runs_hide_the_gpu_and_copies_keep_it(tmp_path):
    # The stored outputs are the ones CI checks without a GPU: on a GPU machine an in-place run must
    # not store the GPU branches of notebooks 10 and 12. An empty CUDA_VISIBLE_DEVICES hides every GPU.
    # Nor notebook 13's short schedule: a CI or GPTOSS_EDU_QUICK left in the shell stored its numbers.
    cell = "import os; print(repr([os.environ.get(n) for n in ('CUDA_VISIBLE_DEVICES', 'CI', 'GPTOSS_EDU_QUICK')]))"
    src = notebook(tmp_path / "env.ipynb", cell)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "CI": "true", "GPTOSS_EDU_QUICK": "1"}
    for args, seen in (((), "['', None, None]"), (("--out", str(tmp_path / "out")), "['0', 'true', '1']")):
        done = subprocess.run([sys.executable, "scripts/execute_notebooks.py", *args, str(src)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        assert outputs(src if not args else tmp_path / "out" / "env.ipynb") == [seen + "\n"]


def test_nbval_runs_notebooks_without_the_gpu_and_leaves_this_process_its_own(tmp_path):
    # The conftests hide the GPU from nbval's kernels only (the kernel tests in this process keep
    # it). Laid out as the course is (both conftests, a notebook in notebooks/, a test in tests/) and
    # run as `make test` runs it: a notebook whose stored output is the empty CUDA_VISIBLE_DEVICES
    # passes, and the test after it sees the variable as it was. A hook in tests/conftest.py alone
    # would never reach the notebook's cells: pytest calls it only for tests below tests/.
    # Nor do the kernels get what tests/conftest.py sets for the tests (NaN-filled kernel buffers, the
    # interpreter): a notebook run alone, or by execute_notebooks.py, which stores the outputs, has neither.
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; print(repr([os.environ.get(n) for n in ('CUDA_VISIBLE_DEVICES', 'GPTOSS_KERNELS_POISON')]))",
        execution_count=1, outputs=[nbformat.v4.new_output("stream", name="stdout", text="['', None]\n")])])
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_after.py").write_text("import os\n\ndef test_after():\n"
                                                      "    assert os.environ['CUDA_VISIBLE_DEVICES'] == '0'\n"
                                                      "    assert os.environ['GPTOSS_KERNELS_POISON'] == '1'\n")
    done = run_like_make_test(tmp_path, nb, "notebooks", "tests", name="env.ipynb",
                              env={"CUDA_VISIBLE_DEVICES": "0", "GPTOSS_KERNELS_POISON": None})
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


def test_a_notebook_that_cannot_be_written_is_said_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """A full disk left NAME.ipynb.tmp beside the notebook and a traceback."""
    import errno
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    src = notebook(tmp_path / "a.ipynb", "print(6 * 7)")
    before = src.read_bytes()

    def full(nb, path):
        Path(path).write_text('{"cells": [')  # part of it reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nbformat, "write", full)
    assert script.main([str(src)]) == 2
    assert f"a.ipynb: ran, but {src} could not be written (No space left on device): it is as it was" in \
        capsys.readouterr().err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb"]


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_streams_are_joined_as_nbconvert_joins_them_without_nbconvert():
    """The GPU machine's image has no nbconvert: importing its CoalesceStreamsPreprocessor stopped the notebooks step
    before any ran. The script's own join must give what nbconvert gives."""
    import random

    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    source = (ROOT / "scripts" / "execute_notebooks.py").read_text()
    assert "from nbconvert" not in source and "import nbconvert" not in source  # scripts/device_wheels.sh has none
    join_streams = load_script().join_streams
    rng = random.Random(0)
    pieces = ["a", "b\n", "\r50%", "\r100%\n", "\n", "x\ry", ""]
    for _ in range(300):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x"), nbformat.v4.new_markdown_cell("m")])
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.8:
                out = nbformat.v4.new_output("stream", name=rng.choice(["stdout", "stderr"]),
                                             text="".join(rng.choices(pieces, k=rng.randint(1, 3))))
            else:
                out = nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1)
            nb.cells[0].outputs.append(out)
        theirs = copy.deepcopy(nb)
        join_streams(nb)
        CoalesceStreamsPreprocessor().preprocess(theirs, {})
        assert nbformat.writes(nb) == nbformat.writes(theirs)


def test_an_out_folder_that_cannot_hold_the_copies_is_refused_before_any_run(tmp_path):
    """An --out that is a file ran the notebook to the end, then failed with a traceback (NotADirectoryError)."""
    (tmp_path / "afile").write_text("x")
    src = notebook(tmp_path / "a.ipynb", "open('ran', 'w').close()")
    done = execute("--out", str(tmp_path / "afile"), str(src))
    assert done.returncode == 2 and "--out" in done.stderr and "cannot hold the copies" in done.stderr, done.stderr
    assert not (tmp_path / "ran").exists() and "Traceback" not in done.stderr


def test_an_interrupted_run_keeps_the_cells_that_ran_and_stops(tmp_path):
    """gpu_check.sh stops a step with SIGINT at its limit: the kernel died with it, nbclient's clean-up raised an
    AssertionError, and nothing was written, not even the cells that had run."""
    import signal
    import time

    slow = notebook(tmp_path / "slow.ipynb", "print('started', flush=True); open('started', 'w').close()",
                    "import time; time.sleep(60)")
    later = notebook(tmp_path / "later.ipynb", "print('later')")
    proc = subprocess.Popen([sys.executable, "scripts/execute_notebooks.py", "--out", str(tmp_path / "out"),
                             str(slow), str(later)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "started").exists():  # the kernel runs in the folder
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # as timeout -s INT does: the whole group, the kernel included
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "slow.ipynb: stopped (interrupted)" in out and "execute_notebooks.py\", line" not in err, out + err
    assert outputs(tmp_path / "out" / "slow.ipynb")[0] == "started\n"  # saved as far as it ran
    assert not (tmp_path / "out" / "later.ipynb").exists()  # the whole command stopped


def test_diff_outputs_names_the_cells_whose_text_or_pictures_changed(tmp_path):
    """A re-run's git diff is hundreds of lines (widget ids, PNG bytes); this names only what a reader sees change."""
    def stored(text: str, png: str) -> dict:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(n)\nplot()"),
                                             nbformat.v4.new_code_cell("widget")])
        nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text),
                               nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
        nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": png}, "text/plain": "Explorer(...)"})]
        for i, cell in enumerate(nb.cells):
            cell.id = f"cell{i}"
        return nb

    nbformat.write(stored("norms: 5\n", "AAAA"), tmp_path / "old.ipynb")
    for text, png, says in (("norms: 5\n", "AAAA", None), ("norms: 9\n", "AAAA", "text changed"),
                            ("norms: 5\n", "BBBB", "picture(s) changed (1 before, 1 now)")):
        nbformat.write(stored(text, png), tmp_path / "new.ipynb")  # the widget's id changes too: never reported
        done = subprocess.run([sys.executable, "scripts/diff_outputs.py", str(tmp_path / "new.ipynb"), "--old",
                               str(tmp_path / "old.ipynb")], cwd=ROOT, capture_output=True, text=True, timeout=60)
        if says is None:
            assert done.returncode == 0 and "no stored output changed" in done.stdout, done
            continue
        assert done.returncode == 1 and f"cell cell0 (print(n)): {says}" in done.stdout, done
        assert "cell1" not in done.stdout
        if "text" in says:
            assert "    -norms: 5" in done.stdout and "    +norms: 9" in done.stdout

    # The same plain text, other HTML (a code diff's colours): nbval compares HTML too, so it is named.
    for name, html in (("old", "<td style='background:#fdd'>x</td>"), ("new", "<td><pre style='color:#1a1a1a'>x</pre></td>")):
        nb = stored("norms: 5\n", "AAAA")
        nb.cells[0].outputs.append(nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "x"}))
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    done = subprocess.run([sys.executable, "scripts/diff_outputs.py", str(tmp_path / "new.ipynb"), "--old",
                           str(tmp_path / "old.ipynb")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cell cell0 (print(n)): text/html changed (nbval compares it)" in done.stdout, done


def test_diff_outputs_compares_with_the_last_commit_by_default(tmp_path):
    """In a git repository of its own, so that it runs in a copy of the course without .git too."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    def diff(path):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "diff_outputs.py"), path], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env=dict(os.environ, LC_ALL="C"))

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('✅')")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="✅ 1\n")]
    nbformat.write(nb, tmp_path / "a.ipynb")
    git("init", "-q")
    git("add", "a.ipynb")
    done = diff("a.ipynb")
    assert done.returncode == 2 and "a.ipynb is in no commit yet: give the notebook to compare with as --old" in done.stderr
    git("commit", "-qm", "a")
    assert diff("a.ipynb").returncode == 0
    nb.cells[0].outputs[0].text = "✅ 2\n"
    nbformat.write(nb, tmp_path / "a.ipynb")
    done = diff("a.ipynb")  # in the C locale too: the stored text is UTF-8
    assert done.returncode == 1 and "-✅ 1" in done.stdout and "+✅ 2" in done.stdout, done
