"""The environment check: pins read from the repository, verdicts per package, and what each row means."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from gptoss_edu import env, hub
from gptoss_edu.env import FAIL, OK, WARN, Check, EnvironmentReport, Package


@pytest.fixture
def course_venv(monkeypatch):
    """This Python taken as the course's own .venv, whose fix is make clean-venv: the tests may run in another
    environment the course is installed in (make VENV=$CONDA_PREFIX test), where the advice differs (tested apart)."""
    monkeypatch.setattr(sys, "prefix", str(env.REPO / ".venv"))


def test_pins_come_from_constraints_and_makefile(tmp_path):
    (tmp_path / "constraints.txt").write_text("# a comment\nnumpy==2.4.6\nHuggingFace_Hub==2.4.0\n-e .\n")
    (tmp_path / "Makefile").write_text("PY := x\nTORCH_VERSION := 2.13.0\nTRITON_VERSION := 3.9.0\n")
    pins = env.read_pins(tmp_path)
    # A CUDA build of torch names its own Triton, which wins over the Makefile's (that one is for the CPU build).
    triton = env.read_pins(tmp_path / "nothing").get("triton", "3.9.0")
    assert pins == {"numpy": "2.4.6", "huggingface-hub": "2.4.0", "torch": "2.13.0", "triton": triton}


def test_the_repositorys_pins_cover_torch_and_transformers():
    pins = env.read_pins()
    assert "torch" in pins and "transformers" in pins


@pytest.mark.parametrize("a, b, same", [("2.13.0+cpu", "2.13.0", True), ("2.13", "2.13.0", True),
                                         ("2.13.1", "2.13.0", False), ("0.0.8", "0.0.8", True),
                                         ("2.13.0+cu128", "2.13.0", True), ("0.8.0rc1", "0.8.0", False),
                                         ("2.13.0.dev20260101+cpu", "2.13.0", False)])
def test_release_comparison_ignores_local_build_tags_but_not_pre_releases(a, b, same):
    assert env._same_release(a, b) is same


@pytest.mark.parametrize("found, least, older", [("2.4.0rc1", "2.4", True), ("2.4.0", "2.4", False),
                                                  ("2.13.0+cpu", "2.13", False), ("2.3.9", "2.4", True)])
def test_a_pre_release_is_older_than_its_release(found, least, older):
    assert env._older(found, least) is older


def test_a_pre_release_of_the_pinned_version_is_not_reported_as_pinned(monkeypatch):
    pkg = Package("safetensors", "safetensors", "course", "checkpoints", "no checkpoints")
    monkeypatch.setattr(env, "_installed", lambda pkg: "0.8.0rc1")
    row = env.check_package(pkg, {"safetensors": "0.8.0"}, {}, gpu=False)
    assert row.status == WARN and "not the tested version" in row.meaning


def test_missing_course_package_fails_and_says_how_to_install():
    pkg = Package("no-such-dist-xyz", "no_such_dist_xyz", "course", "x", "the notebooks stop")
    row = env.check_package(pkg, {"no-such-dist-xyz": "1.0"}, {}, gpu=False)
    assert (row.status, row.found) == (FAIL, "missing")
    # The whole command, runnable from notebooks/ too (where notebook 00 runs): this Python, the pins' full path.
    assert "the notebooks stop" in row.meaning
    assert f"{sys.executable} -m pip install -c {env.REPO / 'constraints.txt'} no-such-dist-xyz==1.0" in row.meaning
    assert (env.REPO / "constraints.txt").is_file()


@pytest.mark.usefixtures("course_venv")
@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_missing_triton_never_advises_a_pip_install_that_cannot_work(monkeypatch, platform):
    triton_pkg = next(p for p in env.PACKAGES if p.dist == "triton")
    monkeypatch.setattr(env, "_installed", lambda pkg: None)
    monkeypatch.setattr(sys, "platform", platform)
    row = env.check_package(triton_pkg, {"triton": "3.9.0"}, {}, gpu=False)
    assert row.status == WARN and "notebook 10's kernels cannot run" in row.meaning
    assert "pip install" not in row.meaning  # no wheel off Linux; on Linux it must match torch's build
    assert ("make lab" in row.meaning) is (platform == "linux")  # the Makefile installs the build that fits torch


def test_missing_optional_package_only_warns():
    pkg = Package("no-such-dist-xyz", "no_such_dist_xyz", "kernels", "x", "notebook 10 runs the references")
    row = env.check_package(pkg, {}, {}, gpu=False)
    assert row.status == WARN and row.wanted == "any"


@pytest.mark.usefixtures("course_venv")
def test_version_against_pin_and_minimum():
    torch_pkg = next(p for p in env.PACKAGES if p.dist == "torch")
    import torch

    base = torch.__version__.split("+")[0]
    assert env.check_package(torch_pkg, {"torch": base}, {}, gpu=False).status == OK
    other = env.check_package(torch_pkg, {"torch": "1.0.0"}, {}, gpu=False)
    assert other.status == WARN and "not the tested version" in other.meaning
    assert "make clean-venv, then make lab" in other.meaning and "pip install" not in other.meaning  # the Makefile
    # picks torch's build (CPU or CUDA): a bare pip install would fetch PyPI's CUDA build on Linux
    old = env.check_package(torch_pkg, {}, {"torch": "99.0"}, gpu=False)
    assert old.status == FAIL and "older than 99.0" in old.meaning


def test_triton_row_says_where_kernels_run(monkeypatch):
    triton_pkg = next(p for p in env.PACKAGES if p.dist == "triton")
    if env._installed(triton_pkg) is None:
        pytest.skip("triton is not installed here (its missing-package row is tested above)")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "interpreter" in env.check_package(triton_pkg, {}, {}, gpu=False).meaning
    assert "compiles" in env.check_package(triton_pkg, {}, {}, gpu=True).meaning
    # Left set in a shell profile on a GPU machine, it made notebook 10 interpret the kernels: "OK" hid it.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    row = env.check_package(triton_pkg, {}, {}, gpu=True)
    assert row.status == env.WARN and "TRITON_INTERPRET is set" in row.meaning and "unset it" in row.meaning
    assert env.check_package(triton_pkg, {}, {}, gpu=False).status == env.OK  # where it belongs


@pytest.mark.parametrize("triton, numpy, stops", [("3.6.0", "2.4.6", True), ("3.5.1", "2.5.2", True),
                                                  ("3.6.0", "2.4.0rc1", False), ("3.6.0", "2.3.5", False),
                                                  ("3.7.0", "2.4.6", False), ("3.9.0", "2.5.2", False)])
def test_an_interpreter_too_old_for_numpy_is_named(triton, numpy, stops):
    # Checked against the wheels: 3.5.1 and 3.6.0 call int() on an array, which numpy 2.4 refuses; 3.7.0 does not.
    problem = env.interpreter_problem(triton, numpy)
    assert (problem is not None) is stops
    if stops:
        assert f"Triton {triton}'s interpreter cannot run with numpy {numpy}" in problem
        assert 'pip install "numpy<2.4"' in problem and "3.7 or newer" in problem


def test_the_triton_row_warns_when_its_interpreter_cannot_run(monkeypatch):
    triton_pkg = next(p for p in env.PACKAGES if p.dist == "triton")
    monkeypatch.setattr(env, "_installed", lambda pkg: "3.6.0")
    monkeypatch.setattr(env.metadata, "version", lambda dist: {"numpy": "2.4.6"}[dist])
    row = env.check_package(triton_pkg, {"triton": "3.6.0"}, {}, gpu=False)
    assert row.status == WARN and row.meaning.startswith("notebook 10's kernels cannot run: Triton 3.6.0's")
    # A GPU compiles the kernels: the interpreter's trouble is not theirs.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set, it would be the trouble (tested above)
    assert env.check_package(triton_pkg, {"triton": "3.6.0"}, {}, gpu=True).status == OK


def _machine_row(monkeypatch, item, gpu=None, free=100 * env.GiB, unused=None, triton=True, gpu_free=None):
    monkeypatch.setattr(env, "_has_triton", lambda: triton)  # as on Linux, whether or not it is installed here
    monkeypatch.setattr(env, "gpu_info", lambda: gpu)
    monkeypatch.setattr(env, "gpu_free_bytes",
                        lambda index: gpu_free if gpu_free is not None else gpu[1] if gpu else None)
    monkeypatch.setattr(env, "unused_nvidia_gpu", lambda: unused)
    monkeypatch.setattr(env, "disk_free", lambda path: free)
    return next(r for r in env.check_machine() if r.item == item)


def test_no_gpu_says_what_runs_instead(monkeypatch):
    row = _machine_row(monkeypatch, "GPU")
    assert row.status == WARN
    assert row.meaning == "CPU only: notebooks run; 10 uses Triton's interpreter, 12 uses the small checkpoint"


def test_without_triton_the_gpu_row_does_not_promise_its_interpreter(monkeypatch):
    """On a Mac the GPU row said "10 uses Triton's interpreter" under a triton row saying 10 cannot run."""
    row = _machine_row(monkeypatch, "GPU", triton=False)
    assert row.meaning == "CPU only: notebooks run; 10 needs Triton, missing here, 12 uses the small checkpoint"
    row = _machine_row(monkeypatch, "GPU", gpu=("NVIDIA H100 80GB HBM3", 80 * env.GiB), triton=False)
    assert row.meaning.startswith("10 needs Triton, missing here; 12 runs gpt-oss-20b")


def test_the_gpu_notebook_12_needs_is_its_own_memory_plan():
    """The doctor once asked for the weights plus a flat 2 GiB (14.8 GiB): a T4, 16 GB on the box and 14.56 GiB
    to torch, was told notebook 12 would fall back, where the notebook's own plan fits it."""
    from gptoss_edu import memory

    from gptoss_edu.config import preset

    plan = memory.plan(preset("gpt-oss-20b"), 4096, 0, prompt_tokens=1024)
    assert env.gpu_bytes_for_notebook_12() == plan.total + env.CUDA_CONTEXT_BYTES
    assert plan.total + env.CUDA_CONTEXT_BYTES < 14.56 * memory.GiB


def test_gpu_size_decides_notebook_12(monkeypatch):
    need = env.gpu_bytes_for_notebook_12()
    big = _machine_row(monkeypatch, "GPU", gpu=("Big GPU", need))
    small = _machine_row(monkeypatch, "GPU", gpu=("Small GPU", need - 1))
    assert big.status == OK and "12 runs gpt-oss-20b" in big.meaning and big.found.startswith("Big GPU")
    assert small.status == WARN and "12 uses the small checkpoint" in small.meaning


def test_a_gpu_others_hold_is_not_promised_to_notebook_12(monkeypatch):
    """The doctor said OK by the GPU's size while notebook 12, reading its free memory, fell back to the CPU."""
    need = env.gpu_bytes_for_notebook_12()
    row = _machine_row(monkeypatch, "GPU", gpu=("RTX 4090", 24 * env.GiB), gpu_free=2 * env.GiB)
    assert row.status == WARN and row.found == "RTX 4090, 24.0 GiB (2.0 GiB free)"
    assert row.meaning.endswith("other programs hold 22.0 GiB of it (nvidia-smi lists them), so 12 uses the small "
                                "checkpoint until they end")
    # What the plan and notebook 12's CUDA context need is free (as nvidia-smi counts, no context of ours): OK.
    just = _machine_row(monkeypatch, "GPU", gpu=("RTX 4090", 24 * env.GiB), gpu_free=need)
    assert just.status == OK and just.found == "RTX 4090, 24.0 GiB" and "12 runs gpt-oss-20b" in just.meaning
    assert _machine_row(monkeypatch, "GPU", gpu=("RTX 4090", 24 * env.GiB), gpu_free=need - 1).status == WARN


def test_the_doctor_asks_nvml_for_free_memory_not_cuda(monkeypatch):
    """mem_get_info makes a CUDA context (held until Python ends): notebook 00's kernel kept part of GPU 0."""
    import torch

    monkeypatch.setattr(env, "gpu_info", lambda: ("RTX 4090", 24 * env.GiB))
    monkeypatch.setattr(env, "unused_nvidia_gpu", lambda: None)
    monkeypatch.setattr(env, "disk_free", lambda path: 100 * env.GiB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: pytest.fail("a CUDA context was made"))
    monkeypatch.setattr(torch.cuda, "device_memory_used", lambda index: 22 * env.GiB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: type("P", (), {"total_memory": 24 * env.GiB}))
    row = next(r for r in env.check_machine() if r.item == "GPU")
    assert row.status == WARN and row.found == "RTX 4090, 24.0 GiB (2.0 GiB free)"
    monkeypatch.setattr(torch.cuda, "device_memory_used", lambda index: (_ for _ in ()).throw(ModuleNotFoundError("pynvml")))
    row = next(r for r in env.check_machine() if r.item == "GPU")  # no NVML: the row goes by the GPU's size
    assert row.found == "RTX 4090, 24.0 GiB" and "12 runs gpt-oss-20b" in row.meaning


@pytest.mark.parametrize("capability, name", [((7, 5), "Tesla T4"), ((7, 0), "Tesla V100-SXM2-16GB"),
                                              ((6, 1), "NVIDIA GeForce GTX 1080")])
def test_a_gpu_older_than_ampere_is_too_old_for_triton(stand_in_gpu, capability, name):
    stand_in_gpu(capability, name)
    problem = env.triton_gpu_problem()
    assert problem.startswith(f"this GPU, {name}, has compute capability {capability[0]}.{capability[1]}, and the "
                              "course runs its Triton kernels only on 8.0 and newer")
    assert not env.triton_gpu()


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)])
def test_ampere_and_newer_gpus_are_for_triton(stand_in_gpu, capability):
    stand_in_gpu(capability, "A GPU")
    assert env.triton_gpu_problem() is None and env.triton_gpu()


def test_no_gpu_or_an_amd_one_is_not_called_too_old(monkeypatch, stand_in_gpu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.triton_gpu_problem() is None and not env.triton_gpu()
    stand_in_gpu((9, 4), "AMD Instinct MI300X")
    monkeypatch.setattr(torch.version, "hip", "6.4")  # ROCm numbers its GPUs' architectures its own way
    assert env.triton_gpu_problem() is None and env.triton_gpu()


def test_a_gpu_too_old_for_triton_says_what_runs_instead(monkeypatch):
    need = env.gpu_bytes_for_notebook_12()
    monkeypatch.setattr(env, "triton_gpu_problem", lambda device=None: "too old")
    row = _machine_row(monkeypatch, "GPU", gpu=("Tesla T4", need))
    assert row.status == WARN and row.found.startswith("Tesla T4")
    assert row.meaning == ("too old for Triton (compute capability below 8.0): 10 uses Triton's interpreter; "
                           "12 runs gpt-oss-20b on the PyTorch path")
    small = _machine_row(monkeypatch, "GPU", gpu=("Tesla T4", need - 1))
    assert small.meaning.endswith("12 uses the small checkpoint") and "interpreter" in small.meaning


SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def _stand_in_smi(monkeypatch, torch_cuda, gpus="Tesla T4, 550.54.15\n", header=SMI_HEADER):
    """nvidia-smi sees ``gpus``; torch, built for CUDA ``torch_cuda`` (None: a CPU build), sees none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", torch_cuda)
    monkeypatch.setattr(env, "_nvidia_smi", lambda *args: gpus if args else header)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # set to '' it would be the reason


def test_a_driver_older_than_torchs_cuda_is_named_with_both_versions(monkeypatch):
    _stand_in_smi(monkeypatch, "13.0")
    name, why = env.unused_nvidia_gpu()
    assert name == "Tesla T4"
    assert why.startswith(f"its driver (550.54.15) runs CUDA up to 12.4, and this torch ({torch.__version__}) is "
                          "built for CUDA 13.0: update the NVIDIA driver, or install a torch built for CUDA 12.4")
    row = _machine_row(monkeypatch, "GPU", unused=(name, why))
    assert row.status == WARN and row.found == "Tesla T4, unused by torch"
    assert row.meaning == why + ". Until then the notebooks run on the CPU"


def test_a_cpu_build_of_torch_on_a_gpu_machine_says_how_to_get_the_cuda_build(monkeypatch):
    _stand_in_smi(monkeypatch, None)
    assert env.unused_nvidia_gpu() == ("Tesla T4", f"this torch ({torch.__version__}) is a CPU build: run make "
                                       "clean-venv, then make lab without TORCH_INDEX (PyPI's Linux torch is the CUDA "
                                       "build)")


def test_a_driver_new_enough_leaves_torchs_own_warning_to_explain(monkeypatch):
    _stand_in_smi(monkeypatch, "12.4")  # 12.4 = 12.4: the versions are not why
    name, why = env.unused_nvidia_gpu()
    assert "cannot use it (driver 550.54.15)" in why and "warning" in why
    # 12.9 < 12.10 as numbers, not as text
    _stand_in_smi(monkeypatch, "12.10", header=SMI_HEADER.replace("12.4 ", "12.9 "))
    assert "runs CUDA up to 12.9" in env.unused_nvidia_gpu()[1]


@pytest.mark.parametrize("visible", ["", "-1", " "])
def test_cuda_visible_devices_hiding_every_gpu_is_named(monkeypatch, visible):
    """Not "see the warning torch prints": with every GPU hidden torch prints none."""
    _stand_in_smi(monkeypatch, "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert env.unused_nvidia_gpu() == ("Tesla T4", f"CUDA_VISIBLE_DEVICES is set to {visible!r}, which hides every "
                                       "GPU from torch: unset it, then start Python (or JupyterLab) again")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # shows one: not the reason
    assert "cannot use it (driver 550.54.15)" in env.unused_nvidia_gpu()[1]


def test_nvidia_smi_is_asked_and_its_failures_are_no_answer(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1" = "--fail" ] && exit 9\necho "asked: $*"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert env._nvidia_smi("--query-gpu=name", "--format=csv") == "asked: --query-gpu=name --format=csv\n"
    assert env._nvidia_smi("--fail") is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert env._nvidia_smi() is None


def test_no_nvidia_gpu_or_one_torch_uses_is_not_unused(monkeypatch):
    _stand_in_smi(monkeypatch, "13.0", gpus=None)  # no nvidia-smi, or it failed
    assert env.unused_nvidia_gpu() is None
    _stand_in_smi(monkeypatch, "13.0", gpus="\n")  # nvidia-smi, and no GPU
    assert env.unused_nvidia_gpu() is None
    _stand_in_smi(monkeypatch, "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert env.unused_nvidia_gpu() is None


def test_gpt_oss_20b_weights_come_from_the_preset():
    from gptoss_edu import preset

    assert env._gpt_oss_20b_bytes() == preset("gpt-oss-20b").weight_bytes(2, mxfp4_experts=True)


def test_small_disk_warns(monkeypatch):
    row = _machine_row(monkeypatch, "free disk (HF cache)", free=env.GiB)
    assert row.status == WARN and "small checkpoint" in row.meaning


def test_report_summary_and_table():
    good = Check("torch", "2.13.0", "2.13.0", OK, "fine")
    warn = Check("GPU", "x", "none", WARN, "CPU only")
    bad = Check("tiktoken", "0.14.0", "missing", FAIL, "install it")
    ok_report = EnvironmentReport([good], [warn])
    assert ok_report.ok and ok_report.summary() == "environment: OK (no FAIL in the table)"
    bad_report = EnvironmentReport([good, bad], [warn])
    assert not bad_report.ok and bad_report.summary().startswith("environment: FAIL: tiktoken")
    text = repr(bad_report)
    assert "tiktoken" in text and "FAIL" in text and text.splitlines()[0].startswith("item")
    assert "background:#ffd0d0" in bad_report._repr_html_()
    assert bad_report["GPU"] is warn
    with pytest.raises(KeyError, match="no row 'disk'"):
        bad_report["disk"]


def test_main_prints_the_table_and_returns_the_status(capsys):
    code = env.main([])
    out = capsys.readouterr().out
    report = env.check_environment()
    assert code == (0 if report.ok else 1)
    assert "torch" in out and "GPU" in out and report.summary() in out
    assert {r.item for r in report} >= {"python", "torch", "triton", "CPU cores", "memory (RAM)", "GPU"}


def test_doctor_command_interface(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    env.add_arguments(parser)
    args = parser.parse_args([])
    code = env.run(args)
    assert code in (0, 1) and "environment:" in capsys.readouterr().out


def test_dependencies_all_there_and_pinned():
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["dependencies"].status == OK and int(rows["dependencies"].found.split()[0]) > 50
    assert rows["pinned versions"].status == OK


def test_a_missing_or_drifted_dependency_is_named(monkeypatch):
    """pyzmq is nobody's direct pick (JupyterLab needs it through ipykernel): without it no kernel starts."""
    real = env.metadata.version

    def version(name: str) -> str:
        if env._normal(name) == "pyzmq":
            raise env.metadata.PackageNotFoundError(name)
        return "0.0.1" if env._normal(name) == "tornado" else real(name)

    monkeypatch.setattr(env.metadata, "version", version)
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["dependencies"].status == FAIL
    assert "pyzmq (for " in rows["dependencies"].meaning and "tornado 0.0.1 (" in rows["dependencies"].meaning
    assert rows["pinned versions"].status == WARN and "tornado 0.0.1 (tested " in rows["pinned versions"].meaning
    report = env.check_environment()
    assert not report.ok and "dependencies" in report.summary()


def test_drift_names_the_course_packages_and_new_releases_first_and_what_has_no_pin(monkeypatch):
    """Of twenty drifted packages the row shows four: transformers' new minor release before patch bumps."""
    real = env.metadata.version
    pins = env.read_pins()
    patched = sorted(n for n in pins if n not in {"torch", "triton", "transformers", "tornado"})[:18]

    def version(name: str) -> str:
        n = env._normal(name)
        if n == "transformers":
            return "5.99.0"
        if n in patched:
            *head, last = env._release(pins[n]) + (0,) * (3 - len(env._release(pins[n])))
            return ".".join(map(str, (*head, last + 1)))
        return real(name)

    monkeypatch.setattr(env.metadata, "version", version)
    row = {r.item: r for r in env.check_dependencies({n: v for n, v in pins.items() if n != "tornado"})}[
        "pinned versions"]
    assert row.status == WARN and row.found == "19 differ", row
    assert row.meaning.startswith("transformers 5.99.0 (tested "), row.meaning
    assert "without a pin (the versions pip chose): tornado " in row.meaning


def test_a_cuda_torch_brings_the_triton_it_requires(tmp_path, monkeypatch):
    (tmp_path / "Makefile").write_text("TORCH_VERSION := 2.13.0\nTRITON_VERSION := 3.9.0\n")
    real = env.metadata.requires
    monkeypatch.setattr(env.metadata, "requires", lambda name: ['triton==3.7.1; platform_system == "Linux"']
                        if name == "torch" else real(name))
    assert env.read_pins(tmp_path)["triton"] == "3.7.1"


def without_metadata(monkeypatch, dist: str) -> None:
    """pip knows nothing of ``dist`` (its import is another matter)."""
    real = env.metadata.version

    def version(name: str) -> str:
        if env._normal(name) == dist:
            raise env.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(env.metadata, "version", version)


def test_a_missing_test_only_package_is_a_warning(monkeypatch):
    """playwright drives the browser tests; no notebook needs it, so no FAIL."""
    without_metadata(monkeypatch, "playwright")
    real_importable = env._importable
    monkeypatch.setattr(env, "_importable", lambda module: module != "playwright" and real_importable(module))
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["dependencies"].status == OK
    assert rows["test dependencies"].status == WARN and "playwright (for gptoss-edu)" in rows["test dependencies"].meaning


@pytest.mark.usefixtures("course_venv")
def test_a_dependency_that_imports_without_pip_metadata_is_there_with_its_version_not_said(monkeypatch):
    """A conda or system torch has no pip metadata: its own row said OK and the dependencies row said it was missing."""
    without_metadata(monkeypatch, "torch")
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["dependencies"].status == OK, rows["dependencies"]
    torch_package = next(p for p in env.PACKAGES if p.dist == "torch")
    row = env.check_package(torch_package, env.read_pins(), {"torch": "2.5"}, gpu=False)
    assert (row.found, row.status) == ("present (version unknown)", WARN)
    assert row.meaning.endswith("its version cannot be compared with the pin: if something fails, make clean-venv, "
                                "then make lab")
    monkeypatch.setattr(env, "_importable", lambda module: False)  # and not importable either: missing
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["dependencies"].status == FAIL and "torch (for gptoss-edu)" in rows["dependencies"].meaning


# ---- found by mutation testing: the disk and memory rows at their limits, pins, unknown versions ----------

def test_disk_free_climbs_to_the_nearest_existing_folder(tmp_path, monkeypatch):
    # The Hugging Face cache often does not exist yet on a fresh machine: ask the disk it will be made on.
    asked = []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: asked.append(p) or shutil._ntuple_diskusage(3, 2, 1))
    assert env.disk_free(tmp_path / "a" / "b" / "c") == 1
    assert asked == [tmp_path.resolve()]


def test_the_disk_row_asks_about_the_hugging_face_cache(monkeypatch):
    asked = []
    monkeypatch.setattr(env, "gpu_info", lambda: None)
    monkeypatch.setattr(env, "disk_free", lambda path: asked.append(path) or 100 * env.GiB)
    env.check_machine()
    assert asked == [hub.hub_cache()]


def test_exactly_enough_disk_and_memory_are_enough(monkeypatch):
    monkeypatch.setattr(env, "gpu_info", lambda: None)
    monkeypatch.setattr(env, "disk_free", lambda path: env._gpt_oss_20b_bytes())
    monkeypatch.setattr(env, "total_ram", lambda: env.MIN_RAM_BYTES)
    rows = {r.item: r for r in env.check_machine()}
    assert rows["free disk (HF cache)"].status == OK and "room to download" in rows["free disk (HF cache)"].meaning
    assert rows["memory (RAM)"].status == OK


def test_a_containers_memory_limit_is_read_from_its_cgroup(tmp_path):
    """cgroup v2 and v1, at the root (a container's own view) or under the group /proc/self/cgroup names."""
    own = tmp_path / "cgroup"
    own.write_text("0::/\n")
    (tmp_path / "memory.max").write_text("4294967296\n")
    assert env.container_memory_limit(tmp_path, own) == 4 * env.GiB
    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit
    assert env.container_memory_limit(tmp_path, own) is None
    own.write_text("4:memory:/pod7/box\n0::/\n")  # v1, the group named in /proc/self/cgroup
    (tmp_path / "memory" / "pod7" / "box").mkdir(parents=True)
    (tmp_path / "memory" / "pod7" / "box" / "memory.limit_in_bytes").write_text(str(3 * env.GiB))
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    assert env.container_memory_limit(tmp_path, own) == 3 * env.GiB
    own.write_text("4:memory:/pod7/box/step_0/task_0\n0::/\n")  # a limit set on a parent group holds too
    assert env.container_memory_limit(tmp_path, own) == 3 * env.GiB
    own.write_text("0::/job_4/step_0/task_0\n")  # cgroup v2, the limit two groups up
    (tmp_path / "job_4").mkdir()
    (tmp_path / "job_4" / "memory.max").write_text(str(5 * env.GiB))
    assert env.container_memory_limit(tmp_path, own) == 5 * env.GiB
    assert env.container_memory_limit(tmp_path / "nothing", tmp_path / "no-such-file") is None


@pytest.mark.parametrize("physical,limit,total", [(64, 4, 4), (8, 9 * 2**30, 8), (None, 4, 4), (8, None, 8),
                                                  (None, None, None)])
def test_total_ram_is_the_smaller_of_the_machine_and_its_container(monkeypatch, physical, limit, total):
    monkeypatch.setattr(env, "physical_ram", lambda: physical and physical * env.GiB)
    monkeypatch.setattr(env, "container_memory_limit", lambda: limit and limit * env.GiB)
    assert env.total_ram() == (total and total * env.GiB)


def test_the_memory_row_says_when_a_container_limits_it(monkeypatch):
    """A JupyterHub pod on a 64 GiB machine, limited to 2 GiB: the row warns, and says whose limit it is."""
    monkeypatch.setattr(env, "gpu_info", lambda: None)
    monkeypatch.setattr(env, "physical_ram", lambda: 64 * env.GiB)
    monkeypatch.setattr(env, "container_memory_limit", lambda: 2 * env.GiB)
    row = {r.item: r for r in env.check_machine()}["memory (RAM)"]
    assert row.status == env.WARN and row.found == f"{env.gib(2 * env.GiB)} (the container's limit)"
    monkeypatch.setattr(env, "container_memory_limit", lambda: None)
    row = {r.item: r for r in env.check_machine()}["memory (RAM)"]
    assert row.status == env.OK and row.found == env.gib(64 * env.GiB)


def test_a_python_that_is_not_the_courses_venv_is_named(tmp_path):
    """`python -m gptoss_edu doctor` in a fresh terminal runs the machine's Python: the table says whose rows they are."""
    assert env.check_venv(tmp_path, sys.prefix) is None  # no .venv (a conda environment): nothing to say
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    row = env.check_venv(tmp_path, str(tmp_path / ".venv"))
    assert (row.status, row.found) == (OK, ".venv")
    row = env.check_venv(tmp_path, "/usr")
    assert row.status == WARN and row.found == "/usr"
    assert f"run {tmp_path / '.venv'}/bin/python -m gptoss_edu doctor" in row.meaning


def test_a_package_no_pin_covers_is_named():
    """pip chose its version: the row says so (as a CUDA torch's open ranges once did), and still passes."""
    # Pins made from what is installed, so that the test holds in any environment, drifted or not.
    found = env._closure(("dev",))[0]
    pins = dict(found)
    n = len(found)
    rows = {r.item: r for r in env.check_dependencies(pins)}
    assert rows["pinned versions"].found == f"{n} of {n} as pinned" and "without a pin" not in rows["pinned versions"].meaning
    six = found["six"]
    assert six == metadata.version("six")
    rows = {r.item: r for r in env.check_dependencies({k: v for k, v in pins.items() if k != "six"})}
    row = rows["pinned versions"]
    assert row.status == OK and row.found == f"{n - 1} of {n} as pinned"
    assert row.meaning.endswith(f"without a pin (the versions pip chose): six {six}")


def test_pins_ignore_environment_markers_and_comments(tmp_path):
    (tmp_path / "constraints.txt").write_text("pywin32==311; sys_platform == 'win32'\nnumpy==2.4.6  # why\n")
    # (plus the Triton that a CUDA build of torch requires, read from torch itself)
    assert env.read_pins(tmp_path) == {"pywin32": "311", "numpy": "2.4.6"} | env.read_pins(tmp_path / "nothing")


def test_the_minimum_itself_is_accepted():
    import torch

    torch_package = next(p for p in env.PACKAGES if p.dist == "torch")
    at_minimum = torch.__version__.split("+")[0]
    assert env.check_package(torch_package, {}, {"torch": at_minimum}, gpu=False).status == OK


def test_a_package_without_version_metadata_is_not_called_too_old(monkeypatch):
    # conda or system packages import fine without pip metadata: an unknown version is not below the minimum.
    def no_metadata(name):
        raise env.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(env.metadata, "version", no_metadata)
    row = env.check_package(Package("torch", "torch", "course", "every model", "nothing runs"), {}, {"torch": "2.0"},
                            gpu=False)
    assert row.found == "present (version unknown)" and row.status != FAIL


def test_damaged_or_missing_tokenizer_files_fail(tmp_path, monkeypatch):
    from gptoss_edu.tokenizer import DATA_ENV_VAR, data_dir

    for name in ("r50k_base.tiktoken", "o200k_base.tiktoken"):
        (tmp_path / name).write_bytes((data_dir() / name).read_bytes())
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert env.check_data().status == env.OK
    (tmp_path / "o200k_base.tiktoken").write_bytes((data_dir() / "o200k_base.tiktoken").read_bytes()[:1000])
    row = env.check_data()
    assert row.status == env.FAIL and row.found == "damaged o200k_base.tiktoken"
    assert f"GPTOSS_EDU_DATA={tmp_path} chose this folder" in row.meaning  # not "git checkout": it is elsewhere
    (tmp_path / "r50k_base.tiktoken").unlink()
    row = env.check_data()
    assert row.found == "missing r50k_base.tiktoken" and "GPTOSS_EDU_DATA" in row.meaning
    monkeypatch.delenv(DATA_ENV_VAR)
    monkeypatch.setattr("gptoss_edu.tokenizer.data_dir", lambda: tmp_path)  # the repository's own data/, say
    assert "git checkout -- data/" in env.check_data().meaning


def test_notebook_00_names_a_kernel_that_is_not_the_courses_python(tmp_path):
    """A JupyterHub's default kernel is another Python: a bare ModuleNotFoundError said nothing of that."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "00_welcome.ipynb").read_text())
    first = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    # -S: no site-packages, so no gptoss_edu: as a Python the course was never installed in
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # gpu_check.sh sets it to the repository
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", first], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert proc.returncode != 0
    assert f"FAIL: this kernel runs {sys.executable}, which has no gptoss_edu: it is not the course's Python" in proc.stderr
    assert "Change Kernel" in proc.stderr


def test_a_cache_that_already_holds_gpt_oss_20b_needs_no_room_and_a_read_only_one_is_named(tmp_path, monkeypatch):
    """A teacher's shared, full, read-only cache was told "0.0 GiB WARN: 12 uses the small checkpoint", though 12
    uses the copy there; a cache no one may write was told "room to download"."""
    import json

    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snap = cache / "models--openai--gpt-oss-20b" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (cache / "models--openai--gpt-oss-20b" / "refs").mkdir()
    (cache / "models--openai--gpt-oss-20b" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)  # set, it would be the variable the advice names
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00000-of-00001.safetensors"}}))
    row = _machine_row(monkeypatch, "free disk (HF cache)", free=0)
    assert row.status == WARN and "small checkpoint" in row.meaning  # a shard missing: not there yet
    (snap / "model-00000-of-00001.safetensors").write_bytes(b"")
    row = _machine_row(monkeypatch, "free disk (HF cache)", free=0)
    assert (row.found, row.status) == ("gpt-oss-20b already there", OK) and "nothing to download" in row.meaning
    assert "uses" not in row.meaning  # which model 12 runs is the GPU row's to say
    (snap / "config.json").unlink()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == cache else real_access(p, mode))
    row = _machine_row(monkeypatch, "free disk (HF cache)")
    assert row.status == WARN and row.found == f"{cache} is read-only for you" and "set HF_HOME" in row.meaning


def _broken_modules(folder: Path) -> None:
    """Modules that are installed but do not import, each in its own way."""
    for name, body in {"broken_lib_xyz": "raise OSError('libfoo.so.1: cannot open shared object file')",
                       "crashing_lib_xyz": "import os\nos._exit(3)",
                       "slow_lib_xyz": "import time\ntime.sleep(60)"}.items():
        (folder / f"{name}.py").write_text(body + "\n")


def test_import_problems_names_each_package_that_does_not_import_and_why(tmp_path, monkeypatch):
    """A package can be installed (pip's metadata is there) and still fail to import: doctor said OK for it."""
    _broken_modules(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert env.import_problems(["json", "broken_lib_xyz", "safetensors"]) == {
        "broken_lib_xyz": "OSError: libfoo.so.1: cannot open shared object file"}
    # One that ends Python is named, and the ones after it are not blamed.
    assert env.import_problems(["json", "crashing_lib_xyz", "safetensors"]) == {
        "crashing_lib_xyz": "importing it ended Python (exit status 3)"}
    assert env.import_problems(["json", "slow_lib_xyz"], timeout=3) == {"slow_lib_xyz": "importing it took over 3 s"}
    # What this process imported already imports: it is not tried again.
    monkeypatch.setitem(sys.modules, "broken_lib_xyz", object())
    assert env.import_problems(["broken_lib_xyz"]) == {}


@pytest.mark.usefixtures("course_venv")
@pytest.mark.parametrize("dist, role, status, fix", [
    ("torch", "course", FAIL, "make clean-venv, then make lab"),
    ("triton", "kernels", WARN, "make clean-venv, then make lab"),
    ("tiktoken", "course", FAIL, "-m pip install --force-reinstall -c "),
    ("pytest", "test", WARN, "-m pip install --force-reinstall -c ")])
def test_an_installed_package_that_does_not_import_is_a_failure_with_a_fix(dist, role, status, fix):
    pkg = next(p for p in env.PACKAGES if p.dist == dist)
    assert pkg.role == role
    row = env.check_package(pkg, {}, {}, gpu=False, import_problem="OSError: libfoo.so.1: cannot open")
    assert row.status == status and row.found == env._installed(pkg)  # the version pip knows
    assert row.meaning.startswith(f"installed, but import {pkg.module} fails (OSError: libfoo.so.1: cannot open), so ")
    assert fix in row.meaning and pkg.without.split(":")[0] in row.meaning


def test_doctor_with_a_torch_that_does_not_import_says_so_and_fails(tmp_path):
    """A torch whose import raises (a missing shared library) stopped the doctor itself with a traceback."""
    import subprocess

    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise OSError('libtorch_cpu.so: cannot open shared object file')\n")
    proc = subprocess.run([sys.executable, "-m", "gptoss_edu", "doctor"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{env.REPO}"}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    torch_row = next(line for line in proc.stdout.splitlines() if line.startswith("torch "))
    assert "FAIL" in torch_row and "import torch fails (OSError: libtorch_cpu.so: cannot open" in torch_row
    gpu_row = next(line for line in proc.stdout.splitlines() if line.startswith("GPU "))
    assert "unknown" in gpu_row and "torch does not import" in gpu_row
    assert "environment: FAIL: torch" in proc.stdout


def test_the_environment_check_does_not_import_triton_into_the_notebook():
    """Triton imported before TRITON_INTERPRET is set keeps its own library compiled for a GPU in that process."""
    import subprocess

    code = ("import sys; from gptoss_edu.env import check_environment; report = check_environment(); "
            "print(report['triton'].status, 'triton' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=env.REPO,
                          env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    assert proc.returncode == 0, proc.stderr
    status, imported = proc.stdout.split()
    assert imported == "False" and status in (OK, WARN)  # its import was tried elsewhere


def test_an_install_older_than_the_kernels_folder_is_a_fail(monkeypatch):
    """An editable install made before the kernels moved maps gptoss_kernels onto a folder with no package."""
    assert env.check_course_packages().status == OK
    real = env.importlib.util.find_spec
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: None if name == "gptoss_kernels"
                        else real(name, *a))
    row = env.check_course_packages()
    assert row.status == FAIL and "make lab reinstalls it" in row.meaning
    report = env.check_environment()
    assert not report.ok and "course packages" in report.summary()


def test_an_unknown_mplbackend_is_named_instead_of_advising_a_reinstall(monkeypatch):
    """MPLBACKEND from another project made import matplotlib fail, and doctor said to reinstall matplotlib."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MPLBACKEND": "foo"})
    problem = child.stderr.strip().splitlines()[-1]
    assert "backend" in problem, problem
    pkg = next(p for p in env.PACKAGES if p.dist == "matplotlib")
    monkeypatch.setenv("MPLBACKEND", "foo")
    row = env.check_package(pkg, {}, {}, gpu=False, import_problem=problem)
    assert row.status == FAIL and "MPLBACKEND=foo is not a backend" in row.meaning and "reinstall" not in row.meaning
    monkeypatch.delenv("MPLBACKEND")
    assert "--force-reinstall" in env.check_package(pkg, {}, {}, gpu=False, import_problem=problem).meaning


def test_two_course_folders_mixed_by_pythonpath_are_a_fail(monkeypatch, tmp_path):
    """An older clone on PYTHONPATH gave gptoss_edu from one folder and gptoss_kernels from another: doctor said OK."""
    from importlib.machinery import ModuleSpec

    real = env.importlib.util.find_spec
    other = tmp_path / "old-clone" / "kernels" / "gptoss_kernels" / "__init__.py"
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: ModuleSpec(name, None, origin=str(other))
                        if name == "gptoss_kernels" else real(name, *a))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "old-clone" / "kernels"))
    row = env.check_course_packages()
    assert row.status == FAIL and row.found == "from two course folders", row
    assert f"gptoss_kernels from {tmp_path / 'old-clone'}" in row.meaning and "PYTHONPATH=" in row.meaning
    beside = Path(env.__file__).resolve().parent.parent / "gptoss_kernels" / "__init__.py"  # an installed wheel
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: ModuleSpec(name, None, origin=str(beside))
                        if name == "gptoss_kernels" else real(name, *a))
    assert env.check_course_packages().status == OK


def test_a_python_other_than_the_course_s_is_the_reason_the_kernels_are_missing(monkeypatch, tmp_path):
    """`python3 -m gptoss_edu doctor` from the course folder: gptoss_kernels is missing because this Python
    is not the .venv, not because an install is old; `make lab` would mend nothing."""
    real = env.importlib.util.find_spec
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: None if name == "gptoss_kernels"
                        else real(name, *a))
    course = tmp_path / "course"  # a course folder with a .venv, whether or not this checkout has one (conda)
    (course / ".venv").mkdir(parents=True)
    (course / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    venv = env.check_venv(repo=course, prefix=str(tmp_path))
    assert venv is not None and venv.status == WARN
    monkeypatch.setattr(env, "check_venv", lambda: venv)
    rows = {row.item: row for row in env.check_environment().rows}
    assert rows["course packages"].status == FAIL
    assert "older than its files" not in rows["course packages"].meaning
    assert "see the environment row" in rows["course packages"].meaning


def test_native_windows_gets_a_row_that_sends_it_to_wsl(monkeypatch):
    """The README sends Windows users to WSL 2; notebook 00's doctor, where they look, said nothing of it."""
    assert "system" not in {r.item for r in env.check_machine()}  # Linux, macOS, WSL 2: no row
    monkeypatch.setattr(env, "_native_windows", lambda: True)
    row = env.check_machine()[0]
    assert (row.item, row.status) == ("system", env.WARN)
    assert row.found.startswith("Windows") and "WSL 2" in row.meaning


def test_the_machines_own_python_without_the_course_is_sent_to_make_lab(monkeypatch):
    """`python3 -m gptoss_edu doctor` before make lab: "older than its files", pip installs Debian refuses, and a
    "0 of 0 as pinned" OK."""
    monkeypatch.setattr(env, "course_installed", lambda: False)
    monkeypatch.setattr(env, "check_venv", lambda: None)  # no .venv yet
    real = env.importlib.util.find_spec
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: None if name == "gptoss_kernels"
                        else real(name, *a))
    pins = env.read_pins()
    monkeypatch.setattr(env, "_installed", lambda pkg: None if pkg.dist in ("safetensors", "torch")
                        else pins[env._normal(pkg.dist)])
    monkeypatch.setattr(env, "_closure", lambda extras: ({}, set(), set()))
    rows = {row.item: row for row in env.check_environment().rows}
    assert rows["course packages"].meaning.startswith("the course is not installed in this Python: make lab installs "
                                                      "it into .venv"), rows["course packages"]
    fix = "the course is not installed in this Python: make lab installs it, with its packages, into .venv"
    assert rows["safetensors"] == Check("safetensors", "0.8.0", "missing", FAIL,
                                        f"checkpoints cannot be read or written: {fix}")
    assert rows["torch"].meaning == f"nothing runs: {fix}"
    assert not any("pip install" in row.meaning for row in rows.values())
    assert rows["pinned versions"] == Check("pinned versions", "constraints.txt", "nothing to compare", WARN, fix)
    pytest_package = next(p for p in env.PACKAGES if p.dist == "pytest")
    monkeypatch.setattr(env, "_installed", lambda pkg: "1.0.0")  # another version, as the machine's own may hold
    assert env.check_package(pytest_package, pins, {}, gpu=False, elsewhere=fix).meaning == (
        f"not the tested version; {fix}")
    # With a .venv beside it, the fix is to run the doctor with that Python.
    venv = Check("environment", ".venv", "/usr", WARN, "not the course's .venv")
    assert env.elsewhere_fix(venv) == (f"this Python is not the course's (see the environment row): run "
                                   f"{env.REPO / '.venv' / 'bin' / 'python'} -m gptoss_edu doctor")
    monkeypatch.setattr(env, "course_installed", lambda: True)
    assert env.elsewhere_fix(None) is None  # a conda environment the course is installed in: its own fixes


@pytest.mark.usefixtures("course_venv")
def test_every_failing_package_row_says_what_to_run(monkeypatch):
    """An older-than-the-minimum row said only "upgrade it"; pip install -U torch fetches PyPI's CUDA build."""
    pins = env.read_pins()
    torch_package = next(p for p in env.PACKAGES if p.dist == "torch")
    monkeypatch.setattr(env, "_installed", lambda pkg: "2.4.1")
    row = env.check_package(torch_package, pins, {"torch": "2.5"}, gpu=False)
    assert row == Check("torch", pins["torch"], "2.4.1", FAIL,
                        "older than 2.5, the oldest the course accepts: make clean-venv, then make lab")
    transformers = next(p for p in env.PACKAGES if p.dist == "transformers")
    row = env.check_package(transformers, pins, {"transformers": "5.19"}, gpu=False)
    assert row.status == FAIL and row.meaning.endswith(
        f"oldest the course accepts: {sys.executable} -m pip install -c {env.REPO / 'constraints.txt'} "
        f"transformers=={pins['transformers']}")
    row = env.check_package(transformers, {}, {"transformers": "5.19"}, gpu=False)  # no pin: the minimum
    assert row.meaning.endswith("install -c " + str(env.REPO / "constraints.txt") + " 'transformers>=5.19'")


def test_a_conda_environment_is_told_to_reinstall_the_pins_into_itself(monkeypatch, tmp_path):
    """make clean-venv refuses VENV=$CONDA_PREFIX, and a plain make lab builds a second environment."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "my env"))
    monkeypatch.setattr(env, "course_installed", lambda: True)
    here = shlex.quote(str(tmp_path / "my env"))
    assert env._remake() == f"rm -f {shlex.quote(str(tmp_path / 'my env' / '.installed'))}, then make VENV={here} lab"
    assert env._remake("test").endswith(f"make VENV={here} test")
    torch_package = next(p for p in env.PACKAGES if p.dist == "torch")
    monkeypatch.setattr(env, "_installed", lambda pkg: "2.12.0")
    row = env.check_package(torch_package, {"torch": "2.13.0"}, {}, gpu=False)
    assert row.status == WARN and row.meaning.endswith(f"make VENV={here} lab")
    # What only the tests need: make test, into the same environment (clean-venv refuses it).
    real = env.metadata.version
    monkeypatch.setattr(env.metadata, "version", lambda name: "1.0.0" if env._normal(name) == "pytest" else real(name))
    rows = {r.item: r for r in env.check_dependencies(env.read_pins())}
    assert rows["test dependencies"].meaning.endswith(f"make test needs them (rm -f "
                                                      f"{shlex.quote(str(tmp_path / 'my env' / '.installed'))}, "
                                                      f"then make VENV={here} test)"), rows["test dependencies"]
    assert rows["pinned versions"].meaning.startswith(f"pytest 1.0.0 (tested ")
    assert f"the tests passed with the pins (rm -f " in rows["pinned versions"].meaning
    row = env.check_package(torch_package, {"torch": "2.13.0"}, {}, gpu=False, import_problem="libcudart.so.12")
    assert row.meaning.endswith(f"make the environment {here} again (a conda one: conda env remove -p {here}, then "
                                "the README's conda steps)"), row  # clean-venv refuses it; make lab would skip it
    monkeypatch.setattr(sys, "prefix", str(env.REPO / ".venv"))
    assert env._remake() == env._rebuild() == "make clean-venv, then make lab"


def test_openai_s_reference_model_has_a_row_and_its_own_install_command(monkeypatch):
    """The Makefile installs gpt-oss for the tests (--no-deps: it declares Python >= 3.12); doctor never looked."""
    pins = env.read_pins()
    assert pins["gpt-oss"] == re.search(r"^GPT_OSS_REF := gpt-oss==(\S+)", (env.REPO / "Makefile").read_text(),
                                        re.M).group(1)
    package = next(p for p in env.PACKAGES if p.dist == "gpt-oss")
    assert env.check_package(package, pins, {}, gpu=False).status == OK  # the tests import it
    monkeypatch.setattr(env, "_installed", lambda pkg: None)
    row = env.check_package(package, pins, {}, gpu=False)
    assert row == Check("gpt-oss", pins["gpt-oss"], "missing", WARN,
                        "the tests against OpenAI's reference model cannot run ("
                        f"{sys.executable} -m pip install --no-deps --ignore-requires-python "
                        f"gpt-oss=={pins['gpt-oss']})")


def test_commands_stay_whole_in_a_course_folder_with_a_space(monkeypatch, tmp_path):
    """A course in "My Drive": the pasted command split at the space."""
    course = tmp_path / "My Courses" / "gpt-oss"
    (course / ".venv").mkdir(parents=True)
    (course / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    monkeypatch.setattr(env, "REPO", course)
    monkeypatch.setattr(sys, "executable", str(course / ".venv/bin/python"))
    assert shlex.split(env._pip_install("tiktoken", "0.14.0")) == [
        str(course / ".venv/bin/python"), "-m", "pip", "install", "-c", str(course / "constraints.txt"),
        "tiktoken==0.14.0"]
    meaning = env.check_venv(course, "/usr").meaning
    command = meaning.split(": run ")[1].split(" (or")[0]
    assert shlex.split(command) == [str(course / ".venv/bin/python"), "-m", "gptoss_edu", "doctor"], meaning


@pytest.mark.parametrize("found, requires, wanted, status", [
    ("3.10.12", ">=3.11", ">=3.11", FAIL), ("3.11.0", ">=3.11", ">=3.11", OK), ("3.11.0", ">=3.11.0", ">=3.11.0", OK),
    ("3.13.1", ">=3.11", ">=3.11", OK), ("3.11.9", ">=3.12", ">=3.12", FAIL), ("3.11.9", None, ">=3.11", OK),
    ("3.10.12", None, ">=3.11", FAIL)])
def test_python_is_checked_against_the_courses_requires_python(monkeypatch, found, requires, wanted, status):
    """The minimum comes from the installed course's metadata; without a Requires-Python there, 3.11 (pyproject's)."""
    monkeypatch.setattr(env.platform, "python_version", lambda: found)
    monkeypatch.setattr(env.metadata, "metadata", lambda dist: {"Requires-Python": requires})
    row = env.check_python()
    assert (row.item, row.wanted, row.found, row.status) == ("python", wanted, found, status)
    assert row.meaning == ("supported" if status == OK else f"the course needs Python {wanted[2:]} or newer")


def test_python_without_the_course_installed_is_checked_against_3_11(monkeypatch):
    def not_installed(dist):
        raise env.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(env.metadata, "metadata", not_installed)
    monkeypatch.setattr(env.platform, "python_version", lambda: "3.11.2")
    assert (env.check_python().wanted, env.check_python().status) == (">=3.11", OK)
    monkeypatch.setattr(env.platform, "python_version", lambda: "3.10.12")
    assert env.check_python().status == FAIL


@pytest.mark.parametrize("value, says_yes", [("1", True), ("TRUE", True), ("True", True), ("yes", True), ("ON", True),
                                             ("on", True), ("0", False), ("false", False), ("no", False), ("", False),
                                             (None, False)])
def test_env_flag_reads_yes_and_no_in_any_case(monkeypatch, value, says_yes):
    if value is None:
        monkeypatch.delenv("GPTOSS_EDU_FLAG_XYZ", raising=False)
    else:
        monkeypatch.setenv("GPTOSS_EDU_FLAG_XYZ", value)
    assert env.env_flag("GPTOSS_EDU_FLAG_XYZ") is says_yes


SPELLINGS = ["1", " 1", "1 ", "TRUE", "True", "true", "yes", "YES", "Y", "y", "on", "ON", "0", "false", "no", "n",
             "off", "", "2", "t", "yes please"]


@pytest.mark.parametrize("value", SPELLINGS)
def test_env_flag_reads_a_value_as_huggingface_hub_does(monkeypatch, value):
    # hub.py tells offline from online with it: it must agree with the library that goes online or not.
    from huggingface_hub import constants

    monkeypatch.setenv("GPTOSS_EDU_FLAG_XYZ", value)
    assert env.env_flag("GPTOSS_EDU_FLAG_XYZ") is constants._is_true(value), repr(value)


@pytest.mark.parametrize("value", SPELLINGS)
def test_triton_interpret_flag_reads_a_value_as_triton_does(monkeypatch, value):
    # The doctor warns that Triton would interpret on a GPU machine: only when Triton itself would.
    from triton import knobs

    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert env.triton_interpret_flag() is bool(knobs.runtime.interpret), repr(value)


def test_a_version_packaging_cannot_read_is_compared_by_its_numbers():
    """'2.13_cuda' is no PEP 440 version: its release numbers still match 2.13.0, and "unknown" is not called too old."""
    assert env._version("2.13_cuda") is None and env._version("unknown") is None  # the fallback is what is tested
    assert env._same_release("2.13_cuda", "2.13.0") is True
    assert env._same_release("2.14_cuda", "2.13.0") is False
    assert env._older("unknown", "2.5") is False
    assert env._older("2.4_cuda", "2.5") is True


def test_pins_allow_spaces_around_the_equals_signs(tmp_path):
    (tmp_path / "constraints.txt").write_text("numpy == 2.3.5\n")
    assert env.read_pins(tmp_path) == {"numpy": "2.3.5"} | env.read_pins(tmp_path / "nothing")


def test_a_valid_mplbackend_does_not_hide_a_broken_matplotlib(monkeypatch):
    """MPLBACKEND=agg is a backend matplotlib knows: a missing library is still a broken install, to reinstall."""
    pkg = next(p for p in env.PACKAGES if p.dist == "matplotlib")
    monkeypatch.setenv("MPLBACKEND", "agg")
    row = env.check_package(pkg, {}, {}, gpu=False, import_problem="ImportError: libfreetype.so.6 missing")
    assert row.status == FAIL and "not a backend" not in row.meaning
    assert "import matplotlib fails (ImportError: libfreetype.so.6 missing)" in row.meaning
    assert "--force-reinstall" in row.meaning


def test_a_version_without_numbers_is_not_called_untested(monkeypatch):
    """A version with no release number ("dev", a build from source) cannot be compared with the pin: no warning."""
    pkg = Package("safetensors", "safetensors", "course", "checkpoints", "no checkpoints")
    monkeypatch.setattr(env, "_installed", lambda pkg: "dev")
    row = env.check_package(pkg, {"safetensors": "0.8.0"}, {"safetensors": "0.7"}, gpu=False)
    assert (row.found, row.status, row.meaning) == ("dev", OK, "checkpoints")


@pytest.mark.parametrize("cores, status", [(1, WARN), (2, OK), (16, OK)])
def test_two_cpu_cores_are_enough(monkeypatch, cores, status):
    monkeypatch.setattr(env, "cpu_cores", lambda: cores)
    row = _machine_row(monkeypatch, "CPU cores")
    assert (row.found, row.status) == (str(cores), status)
    assert row.meaning == ("every notebook runs on a CPU" if status == OK else "one core: notebooks run, slowly")


def test_the_tables_columns_line_up_under_their_headers():
    """Each column is as wide as its widest cell, the header's included (narrow rows left the header sticking out)."""
    narrow = EnvironmentReport([Check("GPU", "x", "none", WARN, "CPU only")], [])
    assert narrow.table().splitlines() == ["item  wanted  found  status  meaning",
                                           "----  ------  -----  ------  -------",
                                           "GPU   x       none   WARN    CPU only"]
    wide = EnvironmentReport([Check("memory (RAM)", ">=4.0 GiB", "16.0 GiB", OK, "enough")],
                             [Check("GPU", "x", "none", WARN, "CPU only")])
    assert wide.table().splitlines() == ["item          wanted     found     status  meaning",
                                         "------------  ---------  --------  ------  -------",
                                         "memory (RAM)  >=4.0 GiB  16.0 GiB  OK      enough",
                                         "GPU           x          none      WARN    CPU only"]


def test_the_html_table_escapes_what_the_rows_say():
    """A meaning that says pip install "numpy<2.4" must not open an HTML tag in the notebook."""
    report = EnvironmentReport([Check("triton", "3.6.0", "3.6.0", WARN, 'install "numpy<2.4" & retry')], [])
    page = report._repr_html_()
    assert "install &quot;numpy&lt;2.4&quot; &amp; retry" in page and "numpy<2.4" not in page


@pytest.mark.parametrize("n, listed", [(3, "p0; p1; p2"), (4, "p0; p1; p2; p3"), (5, "p0; p1; p2; p3 ...")])
def test_up_to_four_problems_are_listed_whole(n, listed):
    assert env._listed([f"p{i}" for i in range(n)]) == listed


def test_a_venv_reached_through_a_symlink_is_the_courses_own(tmp_path):
    """.venv a link to the environment (or the Python started through a link): the same folder, not another Python."""
    real = tmp_path / "envs" / "gptoss"
    real.mkdir(parents=True)
    (real / "pyvenv.cfg").write_text("home = /usr/bin\n")
    course = tmp_path / "course"
    course.mkdir()
    (course / ".venv").symlink_to(real, target_is_directory=True)
    assert env.check_venv(course, str(real)).status == OK
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert env.check_venv(course, str(tmp_path / "link")).status == OK
    assert env.check_venv(course, str(tmp_path)).status == WARN
