"""`python -m gptoss_edu student`: what a solution cell leaves behind, and every kind of destination
that must be refused or accepted (tests/test_cli.py checks the command's wiring)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gptoss_edu.__main__ import main
from gptoss_edu.student import MANIFEST, PLACEHOLDER


PYTHON3 = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def course(root: Path, tags=("solution",), outputs=None) -> Path:
    src = root / "course"
    src.mkdir()
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": list(tags)}, "source": "x = 1", "execution_count": 3,
                     "outputs": outputs or []},
                    {"cell_type": "markdown", "metadata": {}, "source": "text"}],
          "metadata": {"kernelspec": PYTHON3}, "nbformat": 4, "nbformat_minor": 5}  # as the course's name one
    (src / "01_a.ipynb").write_text(json.dumps(nb))
    return src


def test_a_solution_leaves_no_output_and_a_valid_markdown_cell(tmp_path, capsys):
    """The solution's outputs (a printed answer, a ✅) go with it; the note is a plain markdown cell."""
    out = [{"output_type": "stream", "name": "stdout", "text": "SECRET ANSWER 42"}]
    src = course(tmp_path, tags=("hide-input", "solution"), outputs=out)  # other tags beside 'solution'
    assert main(["student", str(src), str(tmp_path / "out")]) == 0
    assert "01_a.ipynb: 1 solution cell removed" in capsys.readouterr().out
    copied = json.loads((tmp_path / "out" / "01_a.ipynb").read_text())
    assert "SECRET" not in json.dumps(copied)
    assert copied["cells"][0] == {"cell_type": "markdown", "metadata": {}, "source": PLACEHOLDER}


def test_only_the_top_level_notebooks_are_copied(tmp_path, capsys):
    src = course(tmp_path)
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_text((src / "01_a.ipynb").read_text())
    assert main(["student", str(src), str(tmp_path / "out")]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == [MANIFEST, "01_a.ipynb"]


def test_a_notebook_without_solutions_says_0_cells(tmp_path, capsys):
    src = course(tmp_path, tags=())
    assert main(["student", str(src), str(tmp_path / "out")]) == 0
    assert "01_a.ipynb: 0 solution cells removed" in capsys.readouterr().out


def test_a_folder_holding_only_jupyter_leftovers_is_used(tmp_path, capsys):
    src, out = course(tmp_path), tmp_path / "out"
    (out / ".ipynb_checkpoints").mkdir(parents=True)
    (out / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("autosaved")
    (out / ".DS_Store").write_text("")
    assert main(["student", str(src), str(out)]) == 0
    assert (out / ".ipynb_checkpoints" / "x-checkpoint.ipynb").read_text() == "autosaved"


def test_a_file_added_to_an_earlier_copy_is_kept(tmp_path, capsys):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / "my_notes.ipynb").write_text("{}")
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 2
    assert "my_notes.ipynb: changed or added since" in capsys.readouterr().err
    assert (out / "my_notes.ipynb").read_text() == "{}"


def test_a_folder_where_a_notebook_was_is_refused(tmp_path, capsys):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / "01_a.ipynb").unlink()
    (out / "01_a.ipynb").mkdir()
    (out / "01_a.ipynb" / "work.txt").write_text("mine")
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 2
    assert "01_a.ipynb: changed or added since" in capsys.readouterr().err
    assert (out / "01_a.ipynb" / "work.txt").read_text() == "mine"


@pytest.mark.parametrize("manifest", [b"[]", b'{"notebooks": ["01_a.ipynb"]}', b'{"notebooks": 5}',
                                      b'{"notebooks": {"01_a.ipynb": 5}}', b"{not json", b"\xff\xfe\x00"])
def test_a_damaged_manifest_is_named(tmp_path, capsys, manifest):
    # Valid JSON of the wrong shape used to end in a TypeError traceback.
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / MANIFEST).write_bytes(manifest)
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 2
    assert "is damaged" in capsys.readouterr().err
    assert (out / "01_a.ipynb").exists()  # the earlier copy is left as it was


def test_a_link_is_not_a_destination(tmp_path, capsys):
    src, target = course(tmp_path), tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    assert main(["student", str(src), str(tmp_path / "link")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert (tmp_path / "link").is_symlink() and list(target.iterdir()) == []


def test_the_course_itself_is_never_the_destination(tmp_path, capsys):
    src = course(tmp_path)
    for dst in (src, tmp_path):  # the notebooks' folder, or the course's folder that holds it
        assert main(["student", str(src), str(dst)]) == 2
        assert f"{dst} holds the course itself: write the student copy to another folder" in capsys.readouterr().err
    assert (src / "01_a.ipynb").exists()


def test_the_folder_you_are_in_is_never_replaced(tmp_path, capsys, monkeypatch):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / ".ipynb_checkpoints").mkdir()
    monkeypatch.chdir(out / ".ipynb_checkpoints")  # a shell inside the earlier copy
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 2
    assert "holds the folder you are in" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_copy_is_readable_by_others(tmp_path, capsys, umask):
    """A handout: with umask 077 the folder was 755 but its notebooks 600, which no student could open."""
    src, out = course(tmp_path), tmp_path / "out"
    old = os.umask(umask)
    try:
        assert main(["student", str(src), str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o644 for p in out.iterdir()}


def test_a_destination_that_may_not_be_written_is_named_with_what_to_do(tmp_path, capsys, monkeypatch):
    """From a course installed read-only it said "[Errno 13] Permission denied: '.../.student.tmp-_o1l4wmk'"."""
    import errno
    import tempfile

    src = course(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".student.tmp-_o1l4wmk"))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    assert main(["student", str(src), str(tmp_path / "student")]) == 2
    err = capsys.readouterr().err
    assert err == (f"student: cannot write into {tmp_path.resolve()} (Permission denied): give a folder you may write "
                   f"as the destination, e.g. gptoss-edu student {src} ~/gpt-oss-course\n"), err


def test_a_failed_swap_puts_the_earlier_copy_back(tmp_path, capsys, monkeypatch):
    """If the new copy cannot take the old one's place, the old one is restored, not lost."""
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    before = (out / "01_a.ipynb").read_bytes()
    real_replace = os.replace

    def flaky_replace(source, target):
        name = os.path.basename(source)
        if Path(target) == out.resolve() and name.startswith(".out.") and ".old-" not in name:
            raise OSError("simulated: the new copy cannot be moved into place")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", flaky_replace)
    assert main(["student", str(src), str(out)]) == 2
    assert (out / "01_a.ipynb").read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left beside it


def test_a_failed_swap_keeps_the_learners_jupyter_checkpoints(tmp_path, capsys, monkeypatch):
    """They were moved into the new copy before the swap, and deleted with it when the swap failed."""
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_text("my saved answers")

    def swap_fails(new, path):
        raise KeyboardInterrupt  # Ctrl-C just before the new copy would take the old one's place

    monkeypatch.setattr("gptoss_edu.student.replace_folder", swap_fails)
    assert main(["student", str(src), str(out)]) == 130
    assert (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").read_text() == "my saved answers"
    monkeypatch.undo()
    assert main(["student", str(src), str(out)]) == 0  # and a copy that succeeds carries them over
    assert (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").read_text() == "my saved answers"


def test_jupyter_checkpoints_that_are_a_link_stay_a_link(tmp_path, capsys):
    """Copied as a file, the link to a folder stopped the copy with "[Errno 21] Is a directory"."""
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (tmp_path / "elsewhere").mkdir()
    (out / ".ipynb_checkpoints").symlink_to(tmp_path / "elsewhere")
    assert main(["student", str(src), str(out)]) == 0
    assert (out / ".ipynb_checkpoints").is_symlink()
    assert os.readlink(out / ".ipynb_checkpoints") == str(tmp_path / "elsewhere")


def test_a_copy_killed_between_its_renames_is_undone_by_the_next(tmp_path, capsys):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_text("my saved answers")
    out.rename(tmp_path / ".out.old-0123abcd")  # killed after the first rename: the copy is only set aside
    (tmp_path / ".out.tmp-a1b2c3d4").mkdir()  # and the new copy's temporary folder stays
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 0
    err = capsys.readouterr().err
    assert "is back from where a cut-short copy had set it aside" in err and "removed " in err
    assert (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").read_text() == "my saved answers"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "out"]


@pytest.mark.skipif(os.name != "posix", reason="folders are fsynced on POSIX systems only")
def test_the_copy_is_on_the_disk_before_it_is_renamed_into_place(tmp_path, disk_log):
    src, out = course(tmp_path), tmp_path / "out"
    for _ in range(2):  # a new copy, then one that replaces it
        assert main(["student", str(src), str(out)]) == 0
        disk_log.assert_synced_before_renamed(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "out"]


def test_the_copy_of_the_course_is_valid_nbformat(tmp_path):
    """A solution's note keeps the cell's id: nbformat 4.5 requires one on every cell."""
    import nbformat

    src = Path(__file__).resolve().parents[1] / "notebooks"
    assert main(["student", str(src), str(tmp_path / "student")]) == 0
    notes = 0
    for path in sorted((tmp_path / "student").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert all("id" in c for c in nb["cells"]), f"{path.name} has a cell without an id"
        nbformat.validate(nb)
        notes += sum(c["source"] == PLACEHOLDER for c in nb["cells"])
    assert notes >= 13  # every notebook's exercise has its solution replaced


def _bound_and_read(source: str) -> tuple[set[str], set[str]]:
    """Names a cell binds at its top level, and names it reads (IPython's % and ! lines left out)."""
    import ast

    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With, ast.Import,
                               ast.ImportFrom)):
            targets = node.names if isinstance(node, (ast.Import, ast.ImportFrom)) else [node]
            for t in targets:
                if isinstance(t, ast.alias):
                    bound.add((t.asname or t.name).split(".")[0])
                else:
                    bound |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return bound, read


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_no_cell_after_a_solution_needs_what_the_solution_made(path):
    # The student copy runs top to bottom ("Run All") with every exercise still a stub: a later cell
    # that reads a name a solution binds would fail there (the stub returns None), or not exist.
    made: dict[str, int] = {}
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        bound, read = _bound_and_read("".join(cell["source"]))
        if "solution" in cell.get("metadata", {}).get("tags", []):
            made.update(dict.fromkeys(bound, i))
            continue
        needs = sorted(name for name in read & set(made))
        assert not needs, f"{path.name} cell {i} reads {needs}, made by the solution in cell {made[needs[0]]}"
        for name in bound:
            made.pop(name, None)  # bound again here: later cells read this cell's version


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_a_solution_is_hidden_and_leaves_the_learners_answer_alone(path):
    # A learner who runs every cell (Shift+Enter through, or Run All) also runs the hidden solution:
    # if it bound the exercise's name, the learner's function would be silently replaced by the
    # solution and its ✅ shown as theirs.
    cells = json.loads(path.read_text())["cells"]
    earlier: set[str] = set()
    solutions = 0
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        bound, _ = _bound_and_read("".join(cell["source"]))
        if "solution" in cell.get("metadata", {}).get("tags", []):
            solutions += 1
            hidden = cell.get("metadata", {}).get("jupyter", {})
            assert hidden.get("source_hidden") and hidden.get("outputs_hidden"), \
                f"{path.name} cell {i}: a solution's code and its ✅ are hidden until the learner opens them"
            clash = sorted(bound & earlier)
            assert not clash, f"{path.name} cell {i}: the solution binds {clash}, which the learner's cells bind"
            shown = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                            for o in cell.get("outputs", []))
            assert any(line.startswith("✅") for line in shown.splitlines()), \
                f"{path.name} cell {i}: the stored output of the solution is not its check's ✅: {shown[:200]!r}"
        else:
            earlier |= bound
    assert solutions == 1, (f"{path.name} has {solutions} solution cells: each notebook has one exercise, with one "
                            "solution (DEVELOPERS.md, Adding an exercise)")


def test_a_full_disk_names_the_copy_and_the_room_it_takes(tmp_path, capsys, monkeypatch):
    """It said only 'student: [Errno 28] No space left on device', naming neither the copy nor its size."""
    import errno

    src = course(tmp_path)
    out = tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["student", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"student: could not write {out} (no space left on the disk): nothing there was changed. "
                          "The copy takes about 0.0 MB: free some space"), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "out"]  # no temporary folder left

    def quota(self, data):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(Path, "write_bytes", quota)  # a JupyterHub's usual limit
    assert main(["student", str(src), str(out)]) == 2
    assert f"could not write {out} (this account's disk quota is used up): nothing" in capsys.readouterr().err


def test_a_source_notebook_that_may_not_be_read_is_named_as_such(tmp_path, capsys, monkeypatch):
    """An unreadable notebook of the course was reported as "cannot write into" the destination's folder."""
    import errno

    src = course(tmp_path)
    first = sorted(src.glob("*.ipynb"))[0]
    read_text = Path.read_text

    def denied(path, *args, **kwargs):
        if path == first:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    assert main(["student", str(src), str(tmp_path / "student")]) == 2
    assert capsys.readouterr().err == f"student: cannot read {first} (Permission denied): nothing was written\n"
    assert not (tmp_path / "student").exists()


def test_the_copies_open_in_the_kernel_the_teacher_names(tmp_path, capsys, monkeypatch):
    """A JupyterHub's course kernel (ipykernel install --name gptoss-edu) named in every copy; an unknown one refused."""
    spec = tmp_path / "jupyter" / "kernels" / "gptoss-edu"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["python", "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "gpt-oss course", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    src = course(tmp_path)
    assert main(["student", str(src), str(tmp_path / "out"), "--kernel", "gptoss-edu"]) == 0  # in place of python3
    copied = json.loads((tmp_path / "out" / "01_a.ipynb").read_text())
    assert copied["metadata"]["kernelspec"] == {"display_name": "gpt-oss course", "language": "python",
                                                "name": "gptoss-edu"}
    assert main(["student", str(src), str(tmp_path / "other"), "--kernel", "gptoss-edux"]) == 2
    err = capsys.readouterr().err
    assert "no Jupyter kernel named 'gptoss-edux'" in err and "ipykernel install --name gptoss-edux" in err
    assert not (tmp_path / "other").exists()
    assert main(["student", str(src), str(tmp_path / "plain")]) == 0  # without --kernel: the notebook's own
    assert json.loads((tmp_path / "plain" / "01_a.ipynb").read_text())["metadata"]["kernelspec"] == PYTHON3


def test_a_notebook_holding_half_an_emoji_is_copied_as_it_came(tmp_path, capsys):
    """A lone surrogate is valid JSON ("\\ud83d", as JavaScript writes half an emoji) but no UTF-8: the copy
    stopped with "surrogates not allowed", naming no notebook."""
    src = course(tmp_path)
    nb = json.loads((src / "01_a.ipynb").read_text())
    nb["cells"][1]["source"] = "a smile: \ud83d, café"
    (src / "01_a.ipynb").write_text(json.dumps(nb))  # ensure_ascii: the file holds \ud83d as six characters
    assert main(["student", str(src), str(tmp_path / "out")]) == 0, capsys.readouterr().err
    raw = (tmp_path / "out" / "01_a.ipynb").read_text(encoding="utf-8")
    assert json.loads(raw)["cells"][1]["source"] == "a smile: \ud83d, café"
    assert "\\ud83d, café" in raw  # only the half emoji escaped: the rest of the notebook as UTF-8, as ever


def test_a_destination_inside_the_notebooks_it_copies_is_refused(tmp_path, capsys, monkeypatch):
    """`student . student` from JupyterLab's terminal (which opens in notebooks/) put the answer-free copies among
    the originals."""
    src = course(tmp_path)
    monkeypatch.chdir(src)
    assert main(["student", ".", "student"]) == 2
    err = capsys.readouterr().err
    assert "student is inside ., the notebooks it copies" in err and str(tmp_path / "student") in err
    assert sorted(p.name for p in src.iterdir()) == ["01_a.ipynb"]
    monkeypatch.chdir(tmp_path)
    assert main(["student", "course", "st/"]) == 0
    assert capsys.readouterr().out.endswith("student copy in st/\n")  # not st//


def test_links_out_of_the_notebooks_folder_name_the_file_in_the_copy(tmp_path):
    """A class's copy lives elsewhere (~/gpt-oss-course): ../data/... from there leads nowhere."""
    src = Path(__file__).resolve().parents[1] / "notebooks"
    assert main(["student", str(src), str(tmp_path / "student")]) == 0
    rewritten = 0
    for path in sorted((tmp_path / "student").glob("*.ipynb")):
        original = json.loads((src / path.name).read_text())
        for cell, was in zip(json.loads(path.read_text())["cells"], original["cells"]):
            text, before = "".join(cell["source"]), "".join(was["source"])
            assert "](../" not in text, path.name
            if "](../" in before and was["cell_type"] == "markdown":
                rewritten += 1
                for target in re.findall(r"\]\(\.\./([^)\s]+)\)", before):
                    assert (src.parent / target).exists(), target  # the file the words name is there
                    assert f"(`{target}` in the course's folder)" in text
            elif "solution" not in was["metadata"].get("tags", []):
                assert cell == was  # nothing else is touched
    assert rewritten == 3  # notebook 11's two links to TRAINING.md and notebook 13's


def test_a_link_out_with_a_title_or_an_anchor_is_named_and_an_image_is_left_alone():
    from gptoss_edu.student import strip_notebook

    source = ('See [the data](../data/tiny.txt "a title"), [setup](../README.md#setup), '
              '[here](01_a.ipynb) and ![a figure](../data/fig.png).')
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [source[:30], source[30:]]}]}
    copied, _ = strip_notebook(nb)
    (cell,) = copied["cells"]
    assert cell["source"] == ("See the data (`data/tiny.txt` in the course's folder), setup (`README.md` in the "
                              "course's folder), [here](01_a.ipynb) and ![a figure](../data/fig.png).")


def test_a_learners_backup_beside_the_copy_is_never_taken_for_a_leftover(tmp_path, capsys):
    """.student.original (eight letters, as tempfile's names) was deleted as "what a cut-short copy left", answers in
    it, even when the command then refused to write."""
    src = course(tmp_path)
    out = tmp_path / "student"
    assert main(["student", str(src), str(out)]) == 0
    for name in (".student.original", ".student.backup_1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "01_a.ipynb").write_text("my answers")
    (out / "01_a.ipynb").write_text("changed")  # the copy holds work too: refused
    assert main(["student", str(src), str(out)]) == 2
    assert "removed" not in capsys.readouterr().err
    assert all((tmp_path / name / "01_a.ipynb").read_text() == "my answers" for name in (".student.original", ".student.backup_1"))


# ---- found by mutation testing of student.py ----

def test_every_solution_cell_goes_whatever_its_other_tags(tmp_path, capsys):
    src = course(tmp_path, tags=("solution", "hide-input"))  # 'solution' first among the tags
    nb = json.loads((src / "01_a.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "y = 2",
                        "execution_count": None, "outputs": []})
    (src / "01_a.ipynb").write_text(json.dumps(nb))
    assert main(["student", str(src), str(tmp_path / "out")]) == 0
    assert "01_a.ipynb: 2 solution cells removed" in capsys.readouterr().out
    cells = json.loads((tmp_path / "out" / "01_a.ipynb").read_text())["cells"]
    assert [c["source"] for c in cells] == [PLACEHOLDER, "text", PLACEHOLDER]


def test_a_link_in_a_code_cell_is_code_and_left_alone():
    from gptoss_edu.student import strip_notebook

    cell = {"cell_type": "code", "metadata": {}, "source": 'Markdown("[the data](../data/tiny.txt)")',
            "execution_count": None, "outputs": []}
    copied, removed = strip_notebook({"cells": [cell]})
    assert copied["cells"] == [cell] and removed == 0


def test_the_folder_you_are_in_is_never_the_destination_either(tmp_path, capsys, monkeypatch):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    monkeypatch.chdir(out)  # a shell inside the earlier copy, which would be swapped from under it
    capsys.readouterr()
    for dst in (".", str(out)):
        assert main(["student", str(src), dst]) == 2
        assert "holds the folder you are in" in capsys.readouterr().err


def test_what_jupyter_and_macos_left_in_the_copy_is_kept_as_it_was(tmp_path, capsys):
    src, out = course(tmp_path), tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    (tmp_path / "answers.txt").write_text("mine")
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "link").symlink_to(tmp_path / "answers.txt")
    (out / ".DS_Store").write_bytes(b"\x00\x01")
    assert main(["student", str(src), str(out)]) == 0
    assert os.readlink(out / ".ipynb_checkpoints" / "link") == str(tmp_path / "answers.txt")  # still a link
    assert (out / ".DS_Store").read_bytes() == b"\x00\x01"


def test_a_destination_in_folders_that_do_not_exist_yet_is_made(tmp_path, capsys):
    src = course(tmp_path)
    assert main(["student", str(src), str(tmp_path / "class" / "2025" / "student")]) == 0
    assert (tmp_path / "class" / "2025" / "student" / "01_a.ipynb").is_file()


def test_a_course_notebook_without_cells_is_named_not_a_traceback(tmp_path, capsys):
    src = course(tmp_path)
    (src / "02_b.ipynb").write_text("{}")
    assert main(["student", str(src), str(tmp_path / "out")]) == 2
    assert "02_b.ipynb is not a readable notebook" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
