"""`python -m gptoss_edu COMMAND`: every command is wired and answers as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_edu.__main__ import COMMANDS, build_parser, main
from simulated import hide_modules

REPO = Path(__file__).resolve().parents[1]


def test_every_command_has_a_parser():
    parser = build_parser()
    required = {"train": ["tiny-gpt-oss-chat"], "chat": ["--model", "data/tiny-gpt-oss"]}
    for name in COMMANDS:
        args = parser.parse_args([name] + required.get(name, []))
        assert callable(args.run)
    assert set(COMMANDS) >= {"doctor", "download", "chat", "train", "student"}


def test_help_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "gptoss_edu", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout
    assert proc.stdout.startswith("usage: python -m gptoss_edu ")
    # The console script the package installs says its own name in usage lines and errors.
    script = Path(sys.executable).parent / "gptoss-edu"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: gptoss-edu "), proc.stdout + proc.stderr


def test_student_copies_without_solutions(tmp_path, capsys):
    src = tmp_path / "course"
    src.mkdir()
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "x = 1", "outputs": []},
                    {"cell_type": "markdown", "metadata": {}, "source": "text"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (src / "01_a.ipynb").write_text(json.dumps(nb))
    assert main(["student", str(src), str(tmp_path / "out")]) == 0
    assert "01_a.ipynb: 1 solution cell removed" in capsys.readouterr().out
    copied = json.loads((tmp_path / "out" / "01_a.ipynb").read_text())
    assert "x = 1" not in json.dumps(copied)
    assert main(["student", str(tmp_path / "empty"), str(tmp_path / "out2")]) == 2


def test_student_replaces_only_an_unchanged_earlier_copy(tmp_path, capsys, monkeypatch):
    src = tmp_path / "course"
    src.mkdir()
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "x = 1", "outputs": []}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (src / "01_a.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "out"
    assert main(["student", str(src), str(out)]) == 0
    assert main(["student", str(src), str(out)]) == 0  # an unchanged copy is refreshed
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_text("autosaved")
    assert main(["student", str(src), str(out)]) == 0  # Jupyter's checkpoints are kept, moved into the new copy
    assert (out / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").read_text() == "autosaved"
    (out / "01_a.ipynb").write_text((out / "01_a.ipynb").read_text().replace("removed", "my answer"))
    capsys.readouterr()
    assert main(["student", str(src), str(out)]) == 2  # a learner's answers are never overwritten
    assert "01_a.ipynb: changed or added since" in capsys.readouterr().err
    assert "my answer" in (out / "01_a.ipynb").read_text()

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "important.txt").write_text("x")
    (tmp_path / "afile").write_text("y")
    monkeypatch.chdir(src)
    for dst, why in ((keep, "not a student copy"), (tmp_path / "afile", "not a folder"), (src, "the course itself"),
                     (tmp_path, "the course itself"), (Path(".."), "the course itself"), (Path("."), "the course")):
        assert main(["student", str(src), str(dst)]) == 2
        assert why in capsys.readouterr().err
    assert (keep / "important.txt").read_text() == "x" and (tmp_path / "afile").read_text() == "y"
    assert (src / "01_a.ipynb").exists() and not list(tmp_path.glob(".*"))  # nothing left behind
    (src / "02_b.ipynb").write_text("{")
    assert main(["student", str(src), str(tmp_path / "new")]) == 2
    assert "02_b.ipynb is not a readable notebook" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*"))


def test_download_of_a_local_folder_checks_it(tmp_path, capsys):
    assert main(["download", str(REPO / "data" / "tiny-gpt-oss")]) == 0
    assert capsys.readouterr().out.strip().endswith("tiny-gpt-oss")
    assert main(["download", str(tmp_path)]) == 2                  # an empty folder is not a checkpoint
    assert "config.json" in capsys.readouterr().err


def test_download_offline_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "openai/gpt-oss-20b", "--local-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "offline" in err and "hf download" in err
    # A dry run lists the repository: no traceback, a reason.
    assert main(["download", "openai/gpt-oss-20b", "--dry-run"]) == 2
    assert "cannot plan the download: offline mode is on (HF_HUB_OFFLINE=1)" in capsys.readouterr().err


def test_train_refuses_an_unknown_recipe(capsys):
    assert main(["train", "course-step-99"]) == 2
    assert "course-step-01" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["doctor"])
def test_doctor_prints_a_verdict_per_package(command, capsys):
    code = main([command])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "torch" in out and ("OK" in out or "FAIL" in out)


def test_doctor_runs_without_torch_or_tiktoken():
    """The check must be able to report what is missing: nothing it imports may need torch or tiktoken."""
    import subprocess
    import sys
    import textwrap

    code = hide_modules("torch", "tiktoken") + textwrap.dedent("""
        from gptoss_edu.__main__ import main
        status = main(["doctor"])
        assert "torch" not in sys.modules and "tiktoken" not in sys.modules
        print("status", status)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "data files" in done.stdout and "tokenizers load offline" in done.stdout
    assert "status " in done.stdout


_RUN_MAIN = """
from gptoss_edu.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
_WITHOUT_TORCH = hide_modules("torch") + _RUN_MAIN


def test_help_and_a_command_name_need_no_torch():
    """`--help` and a mistyped command answer from the list of commands, without importing any of them."""
    helped = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, "--help"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert helped.returncode == 0, helped.stderr
    assert all(name in helped.stdout for name in COMMANDS)
    typo = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, "chta"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert typo.returncode == 2 and "invalid choice: 'chta'" in typo.stderr and "Traceback" not in typo.stderr


@pytest.mark.parametrize("argv", [["chat", "--model", "data/tiny-gpt-oss"], ["train", "--help"]])
def test_a_command_whose_package_is_missing_says_which_and_where_to_get_it(argv):
    """A learner running the system Python instead of the course's: one line naming torch, not a traceback."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr, done.stderr
    assert f"`python -m gptoss_edu {argv[0]}` needs torch" in done.stderr
    assert "make venv" in done.stderr and "python -m gptoss_edu doctor" in done.stderr


def test_a_package_a_command_imports_late_is_named_too():
    """download imports huggingface_hub only when it runs: the same message, not a traceback from hub.py."""
    code = hide_modules("huggingface_hub") + _RUN_MAIN
    done = subprocess.run([sys.executable, "-c", code, "download", "openai/gpt-oss-20b", "--dry-run"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "`python -m gptoss_edu download` needs huggingface_hub" in done.stderr


def test_ctrl_c_while_the_command_is_still_importing_is_no_traceback():
    code = hide_modules("torch", error="KeyboardInterrupt") + _RUN_MAIN
    done = subprocess.run([sys.executable, "-c", code, "chat", "--model", "data/tiny-gpt-oss"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 130 and "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr

@pytest.mark.parametrize("command", [["gptoss_edu", "doctor"], ["gptoss_edu.corpus", "info"]])
def test_output_piped_into_a_reader_that_stops_early_is_no_error(tmp_path, command):
    """`python -m gptoss_edu doctor | head -1`: the closed pipe ends the command quietly, with no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already stopped: the first write meets a closed pipe
    try:
        done = subprocess.run([sys.executable, "-m", *command], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141


def test_chat_refuses_a_device_that_is_not_one_before_fetching_the_model(monkeypatch, capsys):
    from gptoss_edu import chat

    def fetch(spec):
        raise AssertionError("the model was fetched before the arguments were checked")

    monkeypatch.setattr(chat, "resolve_model", fetch)
    assert main(["chat", "--model", "openai/gpt-oss-20b", "--device", "gpu"]) == 2
    assert "--device 'gpu' is not a device: use auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    for device, message in (("xla", "--device xla: the course runs on cpu, cuda (an NVIDIA GPU) or mps (an Apple one)"),
                            ("meta", "--device meta: the course runs on cpu")):
        assert main(["chat", "--model", "openai/gpt-oss-20b", "--device", device]) == 2
        assert message in capsys.readouterr().err
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert main(["chat", "--model", "openai/gpt-oss-20b", "--device", "mps"]) == 2
    assert "--device mps: no Apple GPU (MPS) is available to this PyTorch; use --device cpu" in capsys.readouterr().err


def test_a_missing_module_of_the_course_itself_is_not_blamed_on_this_python():
    """A course module not found is a bug to see whole, not 'use .venv'; a package is named by its top level."""
    from gptoss_edu.__main__ import MissingPackage, _missing_package

    for name in ("gptoss_edu.widgets.nothing", "gptoss_kernels", None):
        err = ModuleNotFoundError(f"No module named {name!r}", name=name)
        with pytest.raises(ModuleNotFoundError) as raised:
            _missing_package("chat", err)
        assert raised.value is err
    found = _missing_package("chat", ModuleNotFoundError("No module named 'torch._C'", name="torch._C"))
    assert isinstance(found, MissingPackage) and "`python -m gptoss_edu chat` needs torch, which" in str(found)


@pytest.mark.parametrize("argv", [["doctor", "--bogus"], ["train", "tiny-gpt-oss-chat", "--recipe", "x"]])
def test_an_unknown_option_is_refused_with_its_commands_usage(argv, capsys):
    """It got the top level's usage, which lists only the commands, not the options the learner meant."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"usage: python -m gptoss_edu {argv[0]} " in err and f"{argv[0]}: error: unrecognized arguments: " in err
    with pytest.raises(SystemExit):  # given before the command: the top level's option, said so
        main(["--bogus", "doctor"])
    assert "python -m gptoss_edu: error: unrecognized arguments: --bogus" in capsys.readouterr().err
