"""The Makefile's set-up, run for real on stand-in Pythons: a half-made .venv is made again, a failed
`python3 -m venv` says what to install and leaves nothing behind, and clean-venv deletes only .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed here")

# A Python that answers every command (the version check, pip, `import triton`) and logs it.
HEALTHY = '#!/bin/sh\necho "python $*" >> "{log}"\nexit 0\n'
# What `python3 -m venv` leaves where ensurepip is missing (Debian without python3-venv): a Python, no pip.
NO_PIP = '#!/bin/sh\ncase "$*" in *"-m pip"*) echo "No module named pip" >&2; exit 1;; esac\nexit 0\n'


def script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


# What a make running these tests passes down: `make test VENV=$CONDA_PREFIX` (as the README has conda users
# run it) put VENV in MAKEFLAGS, and the make below then ran pip on the learner's environment, not the stand-in.
MAKE_SETTINGS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VENV", "PYTHON", "TORCH_INDEX", "WHEELHOUSE",
                 "LAB_ARGS")


def make(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_SETTINGS}
    return subprocess.run(["make", *args], cwd=course, capture_output=True, text=True, timeout=60, env=env)


def stand_in_python3(course: Path, works: bool) -> Path:
    """A `python3` whose `-m venv DIR` makes DIR/bin/python (healthy) or, failing, only a Python without pip."""
    log = course / "log"
    made = HEALTHY.format(log=log) if works else NO_PIP
    body = (f'#!/bin/sh\necho "python3 $*" >> "{log}"\nmkdir -p "$3/bin"\n'
            f"cat > \"$3/bin/python\" <<'EOF'\n{made}EOF\nchmod +x \"$3/bin/python\"\n"
            f"{'exit 0' if works else 'echo ensurepip is not available >&2; exit 1'}\n")
    script(course / "python3", body)
    return course / "python3"


def test_a_venv_left_without_pip_is_made_again(course):
    script(course / ".venv" / "bin" / "python", NO_PIP)  # an earlier, failed `python3 -m venv`
    done = make(course, "venv", f"PYTHON={stand_in_python3(course, works=True)}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ".venv has no pip (an earlier python3 -m venv failed part-way): making it again" in done.stdout
    log = (course / "log").read_text()
    assert "python3 -m venv .venv" in log and "python -m pip install --quiet -c constraints.txt --build-constraint constraints.txt -e .[dev]" in log
    assert (course / ".venv" / ".installed").exists()


def test_a_failed_venv_says_what_to_install_and_leaves_nothing_behind(course):
    done = make(course, "venv", f"PYTHON={stand_in_python3(course, works=False)}")
    assert done.returncode != 0
    assert "install python3-venv (sudo apt install python3-venv), then run make again" in done.stdout
    assert not (course / ".venv").exists()  # else the next make would take the half-made one for a venv


def test_python_and_venv_exported_for_another_project_are_not_used(course):
    """node-gyp users export PYTHON; a stray VENV once sent the course's pinned installs into another environment."""
    script(course / ".venv" / "bin" / "python", HEALTHY.format(log=course / "log"))
    other = course / "other-project-env"
    env = {k: v for k, v in os.environ.items() if k not in MAKE_SETTINGS}
    env.update(PYTHON="python2", VENV=str(other))
    done = subprocess.run(["make", "-n", "venv"], cwd=course, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(other) not in done.stdout and ".venv/bin/python -m pip install" in done.stdout, done.stdout
    assert f"{other}/bin/python -m pip" in make(course, "-n", "venv", f"VENV={other}").stdout  # the command line still may


def test_a_working_environment_is_kept(course):
    script(course / ".venv" / "bin" / "python", HEALTHY.format(log=course / "log"))
    done = make(course, "venv", f"PYTHON={stand_in_python3(course, works=True)}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "making it again" not in done.stdout and "python3 -m venv" not in (course / "log").read_text()


def test_a_new_pin_reinstalls_into_the_environment(course):
    """torch and triton are pinned in the Makefile itself: bumping one once left the old torch installed."""
    script(course / ".venv" / "bin" / "python", HEALTHY.format(log=course / "log"))
    assert make(course, "venv").returncode == 0
    assert make(course, "-q", "venv").returncode == 0  # up to date
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        (course / "log").write_text("")
        text = (course / name).read_text()
        (course / name).write_text(text.replace("TORCH_VERSION := 2.13.0", "TORCH_VERSION := 2.13.1"))
        stamp = (course / ".venv" / ".installed").stat().st_mtime
        os.utime(course / name, (stamp + 2, stamp + 2))  # newer even on a file system that keeps whole seconds
        done = make(course, "venv")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "-m pip install --quiet" in (course / "log").read_text(), f"{name} changed, nothing reinstalled"


def test_the_torch_index_a_venv_was_made_with_is_used_again_after_an_update(course):
    """A CPU-only learner's .venv made with TORCH_INDEX: a new pin once reinstalled PyPI's CUDA build, several GB."""
    log = course / "log"
    script(course / ".venv" / "bin" / "python", HEALTHY.format(log=log))
    index = "https://download.pytorch.org/whl/cpu"
    assert make(course, "venv", f"TORCH_INDEX={index}").returncode == 0
    assert f"--index-url {index} --extra-index-url https://pypi.org/simple torch==" in log.read_text()

    def update_and_make(*args: str) -> str:
        """An update of the Makefile (newer than the environment), then make: the line that installs torch."""
        log.write_text("")
        stamp = (course / ".venv" / ".installed").stat().st_mtime
        os.utime(course / "Makefile", (stamp + 2, stamp + 2))
        done = make(course, "venv", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return next(line for line in log.read_text().splitlines() if "torch==" in line)

    assert f"--index-url {index} " in update_and_make()  # no TORCH_INDEX given: the remembered one
    assert "--index-url" not in update_and_make("TORCH_INDEX=")  # given empty: back to PyPI, and remembered
    assert "--index-url" not in update_and_make() and not (course / ".venv" / ".torch-index").exists()


def test_a_wheelhouse_holds_what_the_venv_installs_and_is_then_read_alone(course):
    """A class on a poor network: `make wheelhouse` on one machine, then every install reads its wheels only."""
    script(course / ".venv" / "bin" / "python", HEALTHY.format(log=course / "log"))
    assert make(course, "venv").returncode == 0
    (course / "log").write_text("")
    done = make(course, "wheelhouse")
    assert done.returncode == 0, done.stdout + done.stderr
    downloads = [line for line in (course / "log").read_text().splitlines() if "-m pip download" in line]
    assert any("-c constraints.txt" in d and "torch==2.13.0" in d and ".[dev]" in d and "pip setuptools wheel" in d
               for d in downloads), downloads
    assert any("gpt-oss==0.0.9" in d for d in downloads) and any("triton==3.9.0" in d for d in downloads)

    (course / "log").write_text("")
    (course / "wheelhouse").mkdir(exist_ok=True)
    (course / "wheelhouse" / "torch-2.13.0-cp311-none-any.whl").write_text("")
    (course / "Makefile").touch()
    os.utime(course / "Makefile", (os.path.getmtime(course / ".venv" / ".installed") + 2,) * 2)
    done = make(course, "venv")
    assert done.returncode == 0 and "installing from wheelhouse/ alone" in done.stdout, done.stdout + done.stderr
    installs = [line for line in (course / "log").read_text().splitlines() if "-m pip install" in line]
    assert len(installs) >= 4 and all("--no-index --find-links wheelhouse" in i for i in installs), installs


def test_clean_venv_removes_only_the_course_venv(course, tmp_path_factory):
    conda = tmp_path_factory.mktemp("conda-env")
    (conda / "keep").write_text("a whole conda environment")
    done = make(course, "clean-venv", f"VENV={conda}")
    assert done.returncode != 0 and "removes only the course's .venv" in done.stdout
    assert (conda / "keep").exists()
    script(course / ".venv" / "bin" / "python", NO_PIP)
    assert make(course, "clean-venv").returncode == 0 and not (course / ".venv").exists()


def test_the_conda_environment_pins_what_the_makefile_pins():
    """environment.yml installs torch itself (conda's pip has no Makefile): the same version, on a Python it runs."""
    import re

    make_torch = re.search(r"^TORCH_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    env = (REPO / "environment.yml").read_text()
    assert f"torch=={make_torch}" in env, f"environment.yml's torch is not the Makefile's {make_torch}"
    python = re.search(r"^\s*- python=(\d+)\.(\d+)", env, re.M)
    least = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO / "pyproject.toml").read_text())
    assert python and least and tuple(map(int, python.groups())) >= tuple(map(int, least.groups()))
