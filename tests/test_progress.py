"""`python -m gptoss_edu progress`: each exercise's verdict, from the saved outputs or from running the notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from gptoss_edu.__main__ import main
from gptoss_edu.progress import COURSE_NOTEBOOKS, exercises, expected_checks

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebook(path: Path, *cells: tuple[str, list[dict]], solution: str | None = None) -> Path:
    """A notebook whose code cells have these sources and saved outputs (and a solution cell, if given)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, outputs in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, outputs=[nbformat.from_dict(o) for o in outputs]))
    if solution is not None:
        cell = nbformat.v4.new_code_cell(solution, outputs=[nbformat.from_dict(result("✅ Right"))])
        cell.metadata["tags"] = ["solution"]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def result(text: str) -> dict:
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": text}}


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_each_course_notebook_has_one_exercise_stored_as_not_yet(path):
    """The stub's saved verdict; the folded solution's ✅ is never counted as the learner's."""
    found = exercises(nbformat.read(path, as_version=4), path.name)
    assert [e.status for e in found] == ["not yet"], (f"{path.name}: one exercise, whose stub's stored verdict is "
                                                      f"'not yet' (DEVELOPERS.md, Adding an exercise); found {found}")
    assert found[0].check.startswith("check_") and found[0].message.startswith("not yet")
    assert [found[0].check] == expected_checks(path.name)  # what progress expects where the call is gone


def test_each_verdict_is_read_from_what_the_cell_saved(tmp_path):
    nb = notebook(tmp_path / "01_a.ipynb",
                  ("x = 1", []),
                  ("check_one(f)", [result("✅ Right: 3 cases")]),
                  ("check_two(g)", [{"output_type": "stream", "name": "stdout", "text": "trying\n❌ not yet: off by 1"}]),
                  ("check_three(h)", [{"output_type": "error", "ename": "NameError", "evalue": "h", "traceback": []}]),
                  ("check_four(k)", []),
                  solution="check_one(solution_f)")
    found = exercises(nbformat.read(nb, as_version=4), nb.name)
    assert [(e.check, e.status) for e in found] == [("check_one", "passed"), ("check_two", "not yet"),
                                                     ("check_three", "error"), ("check_four", "not run")]
    assert found[1].message == "not yet: off by 1" and found[2].message == "the cell raised NameError: h"


def test_a_name_error_after_an_earlier_cell_failed_names_that_cell_s_error(tmp_path):
    """Without Triton, notebook 10's check said only "the cell raised NameError": its first cell had failed."""
    error = {"output_type": "error", "ename": "ModuleNotFoundError", "evalue": "No module named 'triton'", "traceback": []}
    nb = notebook(tmp_path / "10_a.ipynb", ("import triton", [error]),
                  ("check_k(kernel)", [{"output_type": "error", "ename": "NameError", "evalue": "name 'triton' is not "
                                        "defined", "traceback": []}]))
    found = exercises(nbformat.read(nb, as_version=4), nb.name)
    assert found[0].message == ("the cell raised NameError: name 'triton' is not defined, after an earlier cell raised "
                                "ModuleNotFoundError: No module named 'triton'")


def test_one_learner_gets_a_line_an_exercise_and_a_class_a_table(tmp_path, capsys):
    right = ("check_a(f)", [result("✅ Right")])
    wrong = ("check_a(f)", [result("❌ not yet: returned None")])
    notebook(tmp_path / "ana" / "01_x.ipynb", right)
    notebook(tmp_path / "ana" / "02_y.ipynb", right)
    notebook(tmp_path / "ben" / "01_x.ipynb", wrong)
    assert main(["progress", str(tmp_path / "ana")]) == 0  # every exercise passed
    assert capsys.readouterr().out == "✅ 01 check_a: Right\n✅ 02 check_a: Right\n"
    assert main(["progress", str(tmp_path / "ben")]) == 1
    assert capsys.readouterr().out == "❌ 01 check_a: not yet: returned None\n"
    assert main(["progress", str(tmp_path / "ana"), str(tmp_path / "ben")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["student", "01", "02", "passed"]
    assert lines[1].split() == [str(tmp_path / "ana"), "✅", "✅", "2/2"]
    assert lines[2].split() == [str(tmp_path / "ben"), "❌", "-", "0/1"]  # ben has no notebook 02


def test_paths_that_hold_no_notebook_are_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for name, text in (("broken", "{"), ("a_list", "[]"), ("empty", "{}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "01_a.ipynb").write_text(text)
    for path, message, run in ((tmp_path / "nowhere", "there is no file or folder", False),
                               (tmp_path / "notes.txt", "is not a notebook", False),
                               (tmp_path, "holds no course notebooks", False),
                               (tmp_path / "broken", "is not a readable notebook", False),
                               (tmp_path / "a_list", "is not a readable notebook (no list of cells)", False),
                               (tmp_path / "empty", "is not a readable notebook", True)):
        assert main(["progress", *(["--run"] if run else []), str(path)]) == 2
        assert message in capsys.readouterr().err


def test_a_class_table_keeps_the_students_it_can_read_and_leaves_out_copies(tmp_path, capsys):
    right = ("check_a(f)", [result("✅ Right")])
    notebook(tmp_path / "ana" / "01_x.ipynb", right)
    notebook(tmp_path / "ana" / "01_x-Copy1.ipynb", ("check_a(f)", [result("❌ not yet")]))  # JupyterLab's Duplicate
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "01_x.ipynb").write_text("[]")
    assert main(["progress", str(tmp_path / "ana"), str(tmp_path / "ben"), str(tmp_path / "cy")]) == 2  # a row could not be read
    out = capsys.readouterr()
    assert out.out.splitlines()[1].split() == [str(tmp_path / "ana"), "✅", "1/1"]
    assert "ben/01_x.ipynb is not a readable notebook" in out.err and "there is no file or folder" in out.err
    # Notebooks named one by one are one learner's, counted with their folder, not a student each.
    notebook(tmp_path / "ana" / "02_y.ipynb", right)
    assert main(["progress", str(tmp_path / "ana" / "01_x.ipynb"), str(tmp_path / "ana" / "02_y.ipynb")]) == 0
    assert capsys.readouterr().out == "✅ 01 check_a: Right\n✅ 02 check_a: Right\n"


def test_run_gives_the_checks_own_verdict_and_leaves_the_file_alone(tmp_path, capsys):
    """A saved ✅ under code that is now wrong (or was pasted in) counts for nothing with --run."""
    path = notebook(tmp_path / "00_a.ipynb",
                    ("from gptoss_edu.exercises.nb00 import check_block_params", []),
                    ("def count(cfg):\n    return 12 * cfg.d_model ** 2\n\ncheck_block_params(count)",
                     [result("✅ Right: one GPT-2 124M block has 7,087,872 parameters")]))
    before = path.read_bytes()
    assert main(["progress", str(path)]) == 0  # the saved output says passed
    capsys.readouterr()
    assert main(["progress", "--run", str(path)]) == 1
    assert capsys.readouterr().out.startswith("❌ 00 check_block_params: not yet: 7,077,888 for d_model=768")
    assert path.read_bytes() == before


# ---- found by a review of a class on a shared machine ----

def test_a_notebook_or_folder_the_teacher_may_not_read_costs_one_row_not_the_table(tmp_path, capsys, monkeypatch):
    """A student's private notebook (umask 077) raised PermissionError out of the command: no table at all."""
    right = ("check_a(f)", [result("✅ Right")])
    notebook(tmp_path / "ana" / "01_x.ipynb", right)
    private = notebook(tmp_path / "cy" / "01_x.ipynb", right)
    shut = tmp_path / "dee"
    shut.mkdir()
    read_text, iterdir = Path.read_text, Path.iterdir

    def refuse(path, *args, **kwargs):  # as chmod 600 by another user would (the tests may run as root)
        if path == private:
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    def refuse_dir(path):
        if path == shut:
            raise PermissionError(13, "Permission denied", str(path))
        return iterdir(path)

    monkeypatch.setattr(Path, "read_text", refuse)
    monkeypatch.setattr(Path, "iterdir", refuse_dir)
    assert main(["progress", str(tmp_path / "ana"), str(tmp_path / "cy"), str(shut)]) == 2  # a row missing
    out = capsys.readouterr()
    assert out.out.splitlines()[1].split() == [str(tmp_path / "ana"), "✅", "1/1"]
    assert f"cannot read {private} (Permission denied): run progress as a user who may read it" in out.err
    assert f"cannot read {shut} (Permission denied)" in out.err and "holds no course notebooks" not in out.err


def test_run_uses_this_python_whatever_kernel_jupyter_calls_python3(tmp_path, capsys, monkeypatch):
    """A JupyterHub's python3 kernel may be another Python, without torch or the course: it was the one used."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text('{"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", '
                                      '"{connection_file}"], "display_name": "Python 3", "language": "python"}')
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    path = notebook(tmp_path / "00_a.ipynb", ("import sys\nprint(sys.executable)", []))
    from gptoss_edu.progress import run_notebook
    import sys

    ran = run_notebook(path, timeout=120)
    assert "".join(ran["cells"][0]["outputs"][0]["text"]).strip() == sys.executable


def test_run_leaves_no_temporary_files_of_the_notebooks_behind(tmp_path):
    """A class's runs left each notebook's temporary folders (13's 100 MB checkpoint) in the teacher's /tmp."""
    import os

    from gptoss_edu.progress import run_notebook

    path = notebook(tmp_path / "13_a.ipynb",
                    ("import tempfile\nkept = tempfile.TemporaryDirectory()\nprint(kept.name)", []),
                    ("import os\nnever = tempfile.mkdtemp()\nopen(os.path.join(never, 'x'), 'w').write('x')\n"
                     "print(never)", []))
    before = os.environ.get("TMPDIR")
    ran = run_notebook(path, timeout=120)
    folders = [Path("".join(cell["outputs"][0]["text"]).strip()) for cell in ran["cells"]]
    assert all(folder.is_absolute() for folder in folders) and folders[0].parent == folders[1].parent
    assert not any(folder.exists() for folder in folders) and not folders[0].parent.exists()
    assert os.environ.get("TMPDIR") == before


def test_run_closes_the_kernel_client_s_sockets(tmp_path):
    """nbclient closes a client's channels only for a kernel it started: each --run left two zmq sockets open."""
    import os
    import subprocess
    import sys

    path = notebook(tmp_path / "00_a.ipynb", ("print('ran')", []))
    code = (f"from pathlib import Path\nfrom gptoss_edu.progress import run_notebook\n"
            f"run_notebook(Path({str(path)!r}), timeout=120)\nimport gc\ngc.collect()")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Unclosed socket" not in done.stderr, done.stderr[-2000:]


def test_progress_in_a_folder_of_course_notebooks_reads_that_folder(tmp_path, capsys, monkeypatch):
    """A student's own copy has no notebooks/ folder inside: "there is no file or folder notebooks" helped nobody."""
    notebook(tmp_path / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    monkeypatch.chdir(tmp_path)
    assert main(["progress"]) == 0
    assert capsys.readouterr().out == "✅ 01 check_a: Right\n"


def test_a_saved_output_cannot_drive_the_teachers_terminal(tmp_path, capsys):
    """A student's saved verdict with an escape sequence (a clipboard write, a screen clear) was printed raw."""
    notebook(tmp_path / "eve" / "01_x.ipynb", ("check_a(f)", [result("❌ \x1b]52;c;cm0gLXJmIH4=\x07\x1b[2Jbad")]))
    assert main(["progress", str(tmp_path / "eve")]) == 1
    assert capsys.readouterr().out == "❌ 01 check_a: \\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2Jbad\n"


def test_a_folder_name_cannot_drive_the_teachers_terminal_either(tmp_path, capsys):
    """Folder names come from the students too (an unzipped submission): they were printed raw, table and errors."""
    notebook(tmp_path / "ana" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    notebook(tmp_path / "eve\x1b]0;pwned\x07" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    (tmp_path / "mal\x1b[31mory").mkdir()
    (tmp_path / "mal\x1b[31mory" / "01_x.ipynb").write_text("{")
    assert main(["progress", *(str(tmp_path / n) for n in ("ana", "eve\x1b]0;pwned\x07", "mal\x1b[31mory"))]) == 2
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\x07" not in out.out
    assert "eve\\x1b]0;pwned\\x07" in out.out and "mal\\x1b[31mory" in out.err
    lines = out.out.splitlines()
    assert lines[1].index("✅") == lines[2].index("✅")  # the escaped name is measured as printed: columns line up


def test_a_check_in_several_cells_is_one_exercise_with_its_best_verdict(tmp_path, capsys):
    """A duplicated exercise cell (the stub left "not yet", the copy solved) once read 1/2 and exited 1."""
    nb = notebook(tmp_path / "ana" / "01_x.ipynb",
                  ("check_a(f)", [result("❌ not yet: off by 1")]),
                  ("check_a(g)", [result("✅ Right")]),
                  ("check_b(h)", []),
                  ("check_b(k)", [{"output_type": "error", "ename": "NameError", "evalue": "k", "traceback": []}]),
                  ("check_b(m)", [result("❌ not yet: None")]))
    found = exercises(nbformat.read(nb, as_version=4), nb.name)
    assert [(e.check, e.status, e.message) for e in found] == [("check_a", "passed", "Right"),
                                                                ("check_b", "not yet", "not yet: None")]
    notebook(tmp_path / "ben" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]), ("check_a(f)", [result("✅ Right")]))
    assert main(["progress", str(tmp_path / "ben")]) == 0
    assert capsys.readouterr().out == "✅ 01 check_a: Right\n"


def test_run_stops_a_cell_that_runs_past_the_timeout_even_when_it_prints_nothing(tmp_path, capsys):
    """A silent cell (a download stalled in its TLS handshake) held progress --run for ever: the timeout never fired."""
    import time

    path = notebook(tmp_path / "01_a.ipynb", ("import time\ntime.sleep(60)", []), ("check_a(f)", []))
    t0 = time.perf_counter()
    assert main(["progress", "--run", "--timeout", "3", str(path)]) == 1
    assert time.perf_counter() - t0 < 45  # the kernel's start and stop included; the cell alone would take 60
    captured = capsys.readouterr()
    assert "01_a.ipynb stopped part-way (CellTimeoutError)" in captured.err
    assert captured.out.startswith("· 01 check_a: ")  # not run: the run stopped before it
    import psutil

    kernels = [c for c in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]
    assert kernels == []  # shut down: the timed-out cell does not go on, nor does a kernel stay per notebook


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_a_console_that_cannot_show_the_marks_gets_plain_ones_and_no_traceback(tmp_path, encoding):
    import os
    import subprocess
    import sys

    # A Windows console (cp1252) or a Latin-1 locale has no ✅: progress crashed with UnicodeEncodeError
    # and exit status 1, which a teacher's script reads as "not yet passed".
    notebook(tmp_path / "ana" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    notebook(tmp_path / "ben 東京" / "01_x.ipynb", ("check_a(f)", [result("❌ not yet: 2*d ≠ d")]))
    env = dict(os.environ, PYTHONIOENCODING=encoding, PYTHONPATH=os.pathsep.join(sys.path))
    for folders, status, want in ((["ana"], 0, "+ 01 check_a: Right"),
                                  (["ben 東京"], 1, "x 01 check_a: not yet: 2*d \\u2260 d"),
                                  (["ana", "ben 東京"], 1, "ben \\u6771\\u4eac")):
        run = subprocess.run([sys.executable, "-m", "gptoss_edu", "progress", *folders], cwd=tmp_path, env=env,
                             capture_output=True, timeout=120)
        out = run.stdout.decode(encoding)
        assert run.returncode == status and not run.stderr and want in out, (run.returncode, out, run.stderr)
    assert "+ passed, x not yet" in out
    rows = out.splitlines()[1:3]  # ana's and ben's: their marks in one column, the name however it is shown
    assert rows[0].index("+") == rows[1].index("x"), out


def test_a_class_table_lines_up_whatever_the_students_names_are_written_in():
    import unicodedata

    from gptoss_edu.progress import Exercise, _columns, table

    names = ["bob", "李小龙", unicodedata.normalize("NFD", "José Núñez"), "Zoë"]  # wide, combining accents
    found = {"01_x.ipynb": [Exercise("01_x.ipynb", "check_a", "passed", "Right")],
             "02_y.ipynb": [Exercise("02_y.ipynb", "check_b", "not yet", "no")]}
    lines = table({name: found for name in names}).splitlines()
    assert [_columns(line) for line in lines[1:5]] == [_columns(lines[1])] * 4
    for name, line in zip(names, lines[1:5]):
        assert _columns(line[:line.index("✅")]) == _columns(lines[0][:lines[0].index("01")])  # marks under 01
        assert line.startswith(name)


def test_ctrl_c_during_run_stops_the_whole_command(tmp_path):
    """nbclient takes Ctrl-C to kill the kernel and carries on: each Ctrl-C cost the notebook it hit a false "!"
    and progress went on to the next student, exiting 1 where the README promises 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cell = "import pathlib, time\npathlib.Path('started').write_text('')\ntime.sleep(60)"
    for student in ("a", "b"):
        notebook(tmp_path / student / "01_x.ipynb", (cell, []), ("check_a(f)", [result("✅ Right")]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "gptoss_edu", "progress", "--run", "a", "b"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "a" / "started").exists():  # the kernel runs the first notebook's cell
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C reaches the command (the kernel has its own session)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert not (tmp_path / "b" / "started").exists()  # the next student's notebook was not run
    assert "stopped part-way" not in err and "Kernel is running over TCP" not in err, err


def test_ctrl_c_while_a_kernel_starts_is_an_interrupt_not_a_traceback(tmp_path, monkeypatch, capsys):
    """nbclient cancels its wait for the kernel on Ctrl-C: asyncio.CancelledError, no Exception, went past every
    handler, and progress ended with a traceback and status 1 (a window of about 0.2 s a notebook)."""
    import asyncio

    import nbclient

    def interrupted_while_starting(self, **kwargs):
        self._async_cleanup_kernel_future = object()  # what nbclient's own Ctrl-C handler sets
        raise asyncio.CancelledError

    monkeypatch.setattr(nbclient.NotebookClient, "execute", interrupted_while_starting)
    path = notebook(tmp_path / "01_a.ipynb", ("check_a(f)", []))
    assert main(["progress", "--run", str(path)]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_a_deleted_or_wrapped_exercise_call_is_not_a_pass(tmp_path, capsys):
    """A learner who deleted the exercise cell (or wrote print(check_gelu(...))) had no exercise: "- 01 (no
    exercise)", and exit 0, as if every exercise had passed."""
    notebook(tmp_path / "cy" / "01_gpt2_block.ipynb", ("x = 1", []))
    notebook(tmp_path / "cy" / "03_rmsnorm.ipynb", ("print(check_rms_norm(my_rms_norm))", [result("✅ Right")]))
    notebook(tmp_path / "cy" / "02_rope.ipynb", ("def check_rope(f):\n    return 1", []))
    assert main(["progress", str(tmp_path / "cy")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("· 01 check_gelu: no cell calls check_gelu(...): the exercise cell was deleted or changed; "
                        "take it back from the course's copy of the notebook")
    assert lines[1].startswith("· 02 check_rope: no cell calls check_rope(...)")  # a def is not a call
    assert lines[2] == "✅ 03 check_rms_norm: Right"  # called inside print(...): found, and its verdict read


def test_a_students_whole_copy_of_the_course_is_read_from_its_notebooks_folder(tmp_path, capsys):
    """The README hands out the repository: the class's folders hold notebooks/ one level down, and progress said
    "holds no course notebooks"."""
    notebook(tmp_path / "alice" / "notebooks" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    notebook(tmp_path / "bob" / "notebooks" / "01_x.ipynb", ("check_a(f)", [result("❌ not yet")]))
    assert main(["progress", str(tmp_path / "alice"), str(tmp_path / "bob")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == [str(tmp_path / "alice"), "✅", "1/1"] and lines[2].split()[-1] == "0/1"


def test_wrapped_calls_take_the_best_verdict_and_a_comment_is_no_call(tmp_path, capsys):
    """Two print(check_gelu(...)) cells, the first saved ❌ and the second ✅, read ❌ (the first that mentioned the
    check counted); a comment that mentions check_gelu( was taken for the call, and read "run the cell"."""
    notebook(tmp_path / "a" / "01_gpt2_block.ipynb", ("print(check_gelu(g))", [result("❌ not yet: off")]),
             ("print(check_gelu(h))", [result("✅ Right")]))
    notebook(tmp_path / "b" / "01_gpt2_block.ipynb", ("print('#1'); print(check_gelu(h))", [result("✅ Right")]))
    for who in ("a", "b"):  # b: a '#' inside a string is no comment
        assert main(["progress", str(tmp_path / who)]) == 0, who
        assert capsys.readouterr().out == "✅ 01 check_gelu: Right\n"
    notebook(tmp_path / "c" / "01_gpt2_block.ipynb", ("x = 1  # test it with check_gelu(my_gelu)", []),
             ("%time y = 2\n# check_gelu(my_gelu)", []))
    assert main(["progress", str(tmp_path / "c")]) == 1
    assert capsys.readouterr().out.startswith("· 01 check_gelu: no cell calls check_gelu(...)")


def test_a_learners_own_notebook_beside_the_course_has_no_exercise_to_miss(tmp_path, capsys):
    notebook(tmp_path / "a" / "01_gpt2_block.ipynb", ("check_gelu(my_gelu)", [result("✅ Right")]))
    notebook(tmp_path / "a" / "01_my_notes.ipynb", ("x = 1", []))
    assert main(["progress", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out == "✅ 01 check_gelu: Right\n- 01 (no exercise)\n"


def test_the_course_notebooks_progress_knows_are_the_course_s():
    assert list(COURSE_NOTEBOOKS) == [p.name for p in COURSE]


def test_a_course_notebook_missing_from_a_students_folder_counts_as_not_run(tmp_path, capsys):
    """Bob, handed notebooks 00..13, kept 00 and 01: his row read 1/2 where Ana's read 1/14, as if nearly done."""
    right = ("check_gelu(my_gelu)", [result("✅ Right")])
    for who in ("ana", "bob"):
        notebook(tmp_path / who / "01_gpt2_block.ipynb", right)
        notebook(tmp_path / who / "00_welcome.ipynb", ("check_block_params(count)", [result("❌ not yet: off")]))
    for name in COURSE_NOTEBOOKS[2:]:
        notebook(tmp_path / "ana" / name, *[(f"{check}(f)", [result("❌ not yet")]) for check in expected_checks(name)])
    assert main(["progress", str(tmp_path / "ana"), str(tmp_path / "bob")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["student", *(name[:2] for name in COURSE_NOTEBOOKS), "passed"]
    assert lines[1].split() == [str(tmp_path / "ana"), "❌", "✅", *["❌"] * 12, "1/14"]
    assert lines[2].split() == [str(tmp_path / "bob"), "❌", "✅", *["·"] * 12, "1/14"]
    assert main(["progress", str(tmp_path / "bob"), str(tmp_path / "ana")]) == 1  # in either order
    assert capsys.readouterr().out.splitlines()[1].split()[3:5] == ["·", "·"]
    assert main(["progress", str(tmp_path / "bob")]) == 1  # one learner alone: what their folder holds
    assert capsys.readouterr().out == "❌ 00 check_block_params: not yet: off\n✅ 01 check_gelu: Right\n"


def test_another_notebooks_check_run_again_never_stands_for_this_notebooks_own(tmp_path, capsys):
    """02 calling notebook 01's check_gelu at a line's start hid 02's own check_rope: "2/2" and exit 0 for a ❌."""
    for who in "ab":
        notebook(tmp_path / who / "01_gpt2_block.ipynb", ("check_gelu(g)", [result("✅ Right")]))
    notebook(tmp_path / "a" / "02_rope.ipynb", ("check_gelu(g)", [result("✅ Right")]),
             ("print(check_rope(r))", [result("❌ not yet: off")]))
    notebook(tmp_path / "b" / "02_rope.ipynb", ("check_gelu(g)", [result("✅ Right")]))  # the rope cell deleted
    assert main(["progress", str(tmp_path / "a")]) == 1
    assert capsys.readouterr().out == "✅ 01 check_gelu: Right\n❌ 02 check_rope: not yet: off\n"
    assert main(["progress", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:] for line in lines[1:3]] == [["✅", "❌", "1/2"], ["✅", "·", "1/2"]]


def test_a_renamed_copy_of_a_course_notebook_counts_for_that_notebook(tmp_path, capsys):
    """06_mine.ipynb was a column of its own beside 06, both headed "06", and its exercise counted twice."""
    notebook(tmp_path / "a" / "06_sliding_window_sinks.ipynb", ("check_sink_share(f)", [result("❌ not yet: None")]))
    notebook(tmp_path / "a" / "06_mine.ipynb", ("check_sink_share(g)", [result("✅ Right")]))
    notebook(tmp_path / "a" / "07_notes.ipynb", ("x = 1", []))
    notebook(tmp_path / "b" / "06_sliding_window_sinks_v2.ipynb", ("check_sink_share(g)", [result("❌ not yet: None")]))
    notebook(tmp_path / "b" / "06_sliding_window_sinks.ipynb", ("x = 1", []))
    assert main(["progress", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out == "✅ 06 check_sink_share: Right (in 06_mine.ipynb)\n- 07 (no exercise)\n"
    assert main(["progress", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["student", "06", "07", "passed"]
    assert lines[1].split()[1:] == ["✅", "-", "1/1"]  # 07_notes has no exercise, and b has no notebook 07
    assert lines[2].split()[1:] == ["❌", "-", "0/1"]  # the best of _v2's ❌ and the course copy's cell-less ·


# ---- found by mutation testing of progress.py ----

def _error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def test_each_verdict_has_a_mark_of_its_own_whatever_the_console_can_show():
    """An error's mark must never read as "not yet"; a stream with no or an unknown encoding is no crash."""
    from types import SimpleNamespace

    from gptoss_edu.progress import ASCII_MARKS, MARKS, marks_for

    for encoding, want in (("utf-8", MARKS), (None, MARKS), ("cp1252", ASCII_MARKS), ("ascii", ASCII_MARKS),
                           ("no-such-codec", ASCII_MARKS)):
        marks = marks_for(SimpleNamespace(encoding=encoding))
        assert marks is want, encoding
        assert len(set(marks.values())) == 4 and all(m.isprintable() for m in marks.values())
    assert marks_for(object()) is MARKS  # a stream that names no encoding
    assert all(m.isascii() for m in ASCII_MARKS.values())


def test_a_check_whose_cells_raised_or_never_ran_reads_as_the_error(tmp_path):
    """Of a stub never run and a copy that raised, the error (which says what went wrong) counts."""
    nb = notebook(tmp_path / "01_x.ipynb", ("check_a(f)", []),
                  ("check_a(g)", [_error("NameError", "name 'g' is not defined")]))
    found = exercises(nbformat.read(nb, as_version=4), nb.name)
    assert [(e.status, e.message) for e in found] == [("error", "the cell raised NameError: name 'g' is not defined")]


def test_only_a_name_error_is_blamed_on_an_earlier_cell_however_many_cells_ran_between(tmp_path, capsys):
    notebook(tmp_path / "a" / "10_x.ipynb",
             ("import triton", [_error("ModuleNotFoundError", "No module named 'triton'")]),
             ("import torch", []),  # a clean cell after the failed one does not hide it
             ("check_k(kernel)", [_error("NameError", "name 'kernel' is not defined")]),
             ("check_v(f)", [_error("ValueError", "bad shape")]),  # the check's own failure, not the import's
             ("check_i(f)", [_error("KeyboardInterrupt", "")]))  # interrupted: no message to add
    assert main(["progress", str(tmp_path / "a")]) == 1
    assert capsys.readouterr().out == (
        "! 10 check_k: the cell raised NameError: name 'kernel' is not defined, after an earlier cell raised "
        "ModuleNotFoundError: No module named 'triton'\n"
        "! 10 check_v: the cell raised ValueError: bad shape\n"
        "! 10 check_i: the cell raised KeyboardInterrupt\n")


def test_prose_a_helper_of_ones_own_or_a_comment_is_no_call_of_the_exercise(tmp_path, capsys):
    prose = nbformat.v4.new_notebook()
    prose.cells = [nbformat.v4.new_markdown_cell("check_gelu(my_gelu) prints ✅ once your function is right."),
                   nbformat.v4.new_code_cell("x = 1")]
    (tmp_path / "md").mkdir()
    nbformat.write(prose, tmp_path / "md" / "01_gpt2_block.ipynb")
    notebook(tmp_path / "own" / "01_gpt2_block.ipynb", ("my_check_gelu(my_gelu)", [result("✅ Right")]))
    # A cell Python cannot tokenize (an unclosed bracket): its comment lines are still no call.
    notebook(tmp_path / "typo" / "01_gpt2_block.ipynb", ("y = (1,\n# check_gelu(my_gelu)", []))
    for who in ("md", "own", "typo"):
        assert main(["progress", str(tmp_path / who)]) == 1, who
        assert capsys.readouterr().out.startswith("· 01 check_gelu: no cell calls check_gelu(...)"), who


def test_a_class_table_measures_names_and_marks_in_terminal_columns():
    import unicodedata

    from gptoss_edu.progress import Exercise, _columns, table

    # Fullwidth Latin (a name typed with a Japanese IME) and CJK take two columns; combining accents none.
    assert [_columns(s) for s in ("bob", "李小龙", "Ａｎａ", unicodedata.normalize("NFD", "José"), "✅❌")] == [3, 6, 6, 4, 4]
    found = {"01_x.ipynb": [Exercise("01_x.ipynb", "check_a", "passed", "Right")]}
    lines = table({name: found for name in ("bob", "李小龙李小龙")}).splitlines()  # the widest name is the wide one
    for line in lines[1:3]:
        assert _columns(line[:line.index("✅")]) == lines[0].index("01"), lines


def test_a_notebook_with_several_exercises_keeps_the_table_lined_up():
    from gptoss_edu.progress import Exercise, _columns, table

    two = {"01_x.ipynb": [Exercise("01_x.ipynb", "check_a", "passed", ""), Exercise("01_x.ipynb", "check_b", "not yet", "")]}
    lines = table({"ana": two, "ben": {"01_x.ipynb": []}}).splitlines()
    assert lines[1].split()[1:] == ["✅❌", "1/2"] and lines[2].split()[1:] == ["-", "0/0"]
    assert len({_columns(line[:line.rindex("  ")]) for line in lines[:3]}) == 1, lines  # marks end under the header


def test_a_folder_with_notebooks_of_its_own_is_read_not_a_notebooks_folder_inside_it(tmp_path, capsys):
    notebook(tmp_path / "a" / "01_x.ipynb", ("check_a(f)", [result("✅ Right")]))
    notebook(tmp_path / "a" / "notebooks" / "01_x.ipynb", ("check_a(f)", [result("❌ not yet: old")]))
    assert main(["progress", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out == "✅ 01 check_a: Right\n"


def test_json_that_is_no_notebook_is_refused_without_running_it(tmp_path, capsys):
    for text in ("{}", '{"cells": 5}'):
        (tmp_path / "01_a.ipynb").write_text(text)
        assert main(["progress", str(tmp_path / "01_a.ipynb")]) == 2, text
        assert "is not a readable notebook (no list of cells)" in capsys.readouterr().err


def test_a_folder_without_any_exercise_is_not_all_passed(tmp_path, capsys):
    notebook(tmp_path / "a" / "01_my_notes.ipynb", ("x = 1", []))
    assert main(["progress", str(tmp_path / "a")]) == 1
    assert capsys.readouterr().out == "- 01 (no exercise)\n"


def test_a_class_none_of_whose_folders_can_be_read_prints_no_empty_table(tmp_path, capsys):
    assert main(["progress", str(tmp_path / "ana"), str(tmp_path / "ben")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("there is no file or folder") == 2


def test_progress_in_a_folder_without_course_notebooks_names_the_notebooks_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["progress"]) == 2
    assert "there is no file or folder notebooks" in capsys.readouterr().err


def test_run_counts_an_error_as_such_and_no_saved_verdict_of_a_cell_it_did_not_reach(tmp_path, capsys):
    """A cell that raises is a "!" and the run goes on; after the kernel dies, a cell's saved ✅ counts for nothing."""
    path = notebook(tmp_path / "01_a.ipynb", ("check_a(f)", []), ("import os\nos._exit(1)", []),
                    ("check_b(f)", [result("✅ Right")]))
    assert main(["progress", "--run", "--timeout", "60", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ("! 01 check_a: the cell raised NameError: name 'check_a' is not defined\n"
                            "· 01 check_b: no verdict in the saved output: run the cell\n"), captured
    assert "stopped part-way (DeadKernelError)" in captured.err
