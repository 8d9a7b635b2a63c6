"""The notebooks' stored pictures are checked under nbval (conftest.py at the top): rounding passes, a stale picture fails."""

from __future__ import annotations

import base64
import importlib.util
import io
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from course_layout import ROOT, run_like_make_test  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

spec = importlib.util.spec_from_file_location("course_conftest", ROOT / "conftest.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)


def png(title: str = "loss", shift: float = 0.0, size: tuple[float, float] = (6.0, 3.0)) -> str:
    """A line plot as notebooks store it: base64 PNG."""
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    x = np.linspace(0, 10, 200)
    ax.plot(x, np.sin(x) + shift)
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def test_the_same_picture_and_rounding_pass():
    assert course.picture_difference(png(), png()) is None
    assert course.picture_difference(png(), png(shift=1e-6)) is None   # float32 rounding moves no pixel


@pytest.mark.parametrize("changed, why", [
    (dict(title="validation loss, smoothed"), "pixels changed"),   # a new title
    (dict(shift=0.3), "pixels changed"),                            # the data moved
    (dict(size=(6.0, 3.5)), "pixels stored"),                       # another size
], ids=["title", "data", "size"])
def test_a_changed_picture_is_caught(changed, why):
    assert why in course.picture_difference(png(), png(**changed))


PLOT = ("import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(5, 2.5))\nax.plot([0, 1, 2], {ys})\nax.set_title({title!r})\nplt.show()")


def run_nbval(folder: Path, *cells: str, stale: dict[int, str]) -> subprocess.CompletedProcess:
    """Store the outputs of ``cells`` (run for real), swap in the stale cells' sources, run nbval as make test does."""
    import nbclient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    for i, source in stale.items():  # the code changes, the stored picture stays: what the check must catch
        nb.cells[i].source = source
    return run_like_make_test(folder, nb, "notebooks")


@pytest.mark.slow
def test_nbval_fails_a_stale_picture_and_passes_a_current_one(tmp_path):
    first, second = PLOT.format(ys=[0, 1, 4], title="squares"), PLOT.format(ys=[0, 1, 8], title="cubes")
    done = run_nbval(tmp_path, first, second, stale={1: PLOT.format(ys=[0, 1, 2], title="cubes")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout and "is not what it draws now" in done.stdout
    # Named as JupyterLab shows it (nbval's "Cell 1" counts code cells only): by its id and its first line.
    cell_id = nbformat.reads(Path(tmp_path / "notebooks" / "plots.ipynb").read_text(), 4).cells[1].id
    assert f"the stored picture of cell {cell_id} (import matplotlib.pyplot as plt) is not" in done.stdout
    assert "plots.ipynb::Cell 1" in done.stdout and "execute_notebooks.py notebooks/plots.ipynb" in done.stdout


@pytest.mark.slow
def test_nbval_leaves_the_pictures_of_a_cell_whose_output_it_ignores(tmp_path):
    ignored = "# NBVAL_IGNORE_OUTPUT\n# (a picture that varies)\n" + PLOT.format(ys=[0, 1, 4], title="squares")
    done = run_nbval(tmp_path, ignored, stale={0: ignored.replace("[0, 1, 4]", "[4, 1, 0]")})
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_a_picture_failure_names_another_matplotlib(monkeypatch):
    from gptoss_edu.env import read_pins

    pinned = read_pins()["matplotlib"]
    monkeypatch.setattr(matplotlib, "__version__", pinned)
    assert course._matplotlib_note() == ""
    monkeypatch.setattr(matplotlib, "__version__", "3.8.0")
    assert f"This is matplotlib 3.8.0; the pictures were drawn with {pinned}" in course._matplotlib_note()
