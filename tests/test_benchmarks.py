"""The GPU benchmark and the GPU check script, run end to end on the CPU (--smoke: a tiny model,
kernels in Triton's interpreter): they must work before a GPU session spends time on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["triton", "triton+graph", "torch", "transformers"]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRITON_INTERPRET": "1", **env}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=full_env, timeout=600)


@pytest.mark.slow
def test_benchmark_smoke_runs_every_path(tmp_path):
    out = tmp_path / "bench.json"
    done = run([sys.executable, "benchmarks/bench_gptoss20b.py", "--smoke", "--json", str(out)])
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert list(data["results"]) == PATHS and not data["skipped"]
    for name, r in data["results"].items():
        assert r["prefill_tokens_per_s"] > 0, name
        assert set(r["decode"]) == {"16", "40"} and all(v > 0 for v in r["decode"].values()), name
    # The graph path's static step computes what model(ids, cache) does (float32 on the CPU).
    assert data["results"]["triton+graph"]["static_decode_max_diff"] < 1e-4
    # transformers picks its experts' code by version and device: the record says which one ran.
    assert data["versions"]["transformers experts"] in done.stdout
    for name in PATHS[1:]:  # every path ran the same weights as the triton one
        line = next(l for l in done.stdout.splitlines() if l.startswith(f"same weights check: last prefill logits, {name} "))
        assert float(line.split("max |diff| ")[1].split()[0]) < 1e-4, line


def test_benchmark_without_a_gpu_says_what_it_needs():
    if __import__("torch").cuda.is_available():
        pytest.skip("there is a GPU here: the benchmark would run for real")
    done = run([sys.executable, "benchmarks/bench_gptoss20b.py"])
    assert done.returncode == 0 and "No CUDA GPU here" in done.stdout and "12.8 GiB" in done.stdout
    # Asked for figures (gpu_check.sh's --json) where torch sees no GPU: a failure, not a pass that measured nothing.
    done = run([sys.executable, "benchmarks/bench_gptoss20b.py", "--json", str(ROOT / ".no-gpu-bench.json")])
    assert done.returncode == 1 and "No CUDA GPU here" in done.stdout and not (ROOT / ".no-gpu-bench.json").exists()


@pytest.mark.slow
def test_gpu_check_keeps_logs_summary_and_json_and_reports_a_time_limit(tmp_path):
    # The tests and the chat are stood in for by a Python that waits for Ctrl-C and says it got one: a real
    # pytest stopped 1 s in is still importing torch, whose import of NumPy swallows a Ctrl-C that lands there.
    # Everything else (the machine's line, the benchmark) is the real Python.
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
case "$1 $2" in "-m pytest" | "-m gptoss_edu")
    for a in "$@"; do case $a in tests/*) [ -e "$a" ] || {{ echo "no file $a" >&2; exit 4; }};; esac; done
    exec {sys.executable} -c 'import time
print("started", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    print("KeyboardInterrupt: stopped at the limit", flush=True)
    raise SystemExit(2)';;
esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    out = tmp_path / "check"
    done = run(["bash", "benchmarks/gpu_check.sh", "--", "--smoke", "--paths", "torch"],
               OUT=str(out), PYTHON=str(python), TESTS_S="1", CHAT_S="1")
    assert done.returncode == 1, done.stdout + done.stderr  # some step failed
    summary = (out / "summary.txt").read_text()
    assert "tests: exit 124" in summary and "chat: exit 124" in summary and "(time limit)" in summary
    assert "benchmark: exit 0" in summary
    assert "torch" in (out / "machine.txt").read_text()
    assert list(json.loads((out / "bench.json").read_text())["results"]) == ["torch"]
    assert "decode@16 tok/s" in (out / "benchmark.log").read_text()
    # Stopped with Ctrl-C, not killed: what ran before the limit is still reported.
    for step in ("tests", "chat"):
        log = (out / f"{step}.log").read_text()
        assert log.startswith("started") and "KeyboardInterrupt: stopped at the limit" in log, (step, log)


def test_gpu_check_runs_only_the_steps_asked_for(tmp_path):
    out = tmp_path / "check"
    (out).mkdir()
    (out / "summary.txt").write_text("tests: exit 1 after 9 s\n")  # an earlier run's line: not kept
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = run(["bash", "benchmarks/gpu_check.sh", "--", "--smoke", "--paths", "torch"], OUT=str(out),
               PYTHON=sys.executable, STEPS="benchmark", TMPDIR=str(scratch))
    assert done.returncode == 0, done.stdout + done.stderr  # every step asked for exited 0
    assert not [p for p in scratch.iterdir() if p.name.startswith("tmp.")]  # its import shim (mktemp -d) is gone
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("benchmark: exit 0") and "tests:" not in summary and not (out / "tests.log").exists()
    done = run(["bash", "benchmarks/gpu_check.sh"], OUT=str(out), PYTHON=sys.executable, STEPS="benchmarks")
    assert done.returncode == 2 and "unknown step 'benchmarks'" in done.stderr


def test_gpu_check_fails_a_chat_that_fell_back_from_its_cuda_graph(tmp_path):
    # The chat itself goes on without the graph (and exits 0); on the GPU machine that must show as a failure.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'UserWarning: the decode step could not be recorded as a CUDA graph (x)' >&2\n")
    fake.chmod(0o755)
    out = tmp_path / "check"
    done = run(["bash", "benchmarks/gpu_check.sh"], OUT=str(out), PYTHON=str(fake), STEPS="chat")
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 1 and "chat: exit 0" in summary and "fell back from a CUDA graph" in summary
    (out / "summary.txt").unlink()
    fake.write_text("#!/bin/sh\necho 'a reply'\n")
    done = run(["bash", "benchmarks/gpu_check.sh"], OUT=str(out), PYTHON=str(fake), STEPS="chat")
    assert done.returncode == 0 and "fell back" not in (out / "summary.txt").read_text()


def test_a_gpu_too_old_for_triton_skips_the_kernel_paths_with_the_reason(monkeypatch):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_gptoss20b", ROOT / "benchmarks" / "bench_gptoss20b.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "triton_gpu_problem", lambda device: "this GPU, Tesla T4, is too old")
    assert bench.kernels_skipped(torch.device("cuda"), PATHS) == {"triton": "this GPU, Tesla T4, is too old",
                                                                  "triton+graph": "this GPU, Tesla T4, is too old"}
    assert bench.kernels_skipped(torch.device("cuda"), ["torch", "triton+graph"]) == {
        "triton+graph": "this GPU, Tesla T4, is too old"}
    assert bench.kernels_skipped(torch.device("cpu"), PATHS) == {}  # --smoke: the interpreter
    monkeypatch.setattr(bench, "triton_gpu_problem", lambda device: None)
    assert bench.kernels_skipped(torch.device("cuda"), PATHS) == {}


# ---- one path failing, or the time limit, must not cost the figures already measured ----------

@pytest.fixture
def bench(monkeypatch):
    import importlib.util

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    spec = importlib.util.spec_from_file_location("bench_gptoss20b", ROOT / "benchmarks" / "bench_gptoss20b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: it parses no arguments of its own
    return module


@pytest.mark.parametrize("failure", [RuntimeError("CUDA error: an illegal memory access"), KeyboardInterrupt()])
def test_a_failing_or_interrupted_path_keeps_the_figures_before_it(bench, tmp_path, capsys, failure):
    def fail(*args, **kwargs):
        raise failure

    bench.hf_from_packed = fail  # the transformers path, after the torch one
    out = tmp_path / "bench.json"
    rc = bench.main(bench.parse_args(["--smoke", "--paths", "torch", "transformers", "--json", str(out)]))
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert rc == 1 and list(data["results"]) == ["torch"] and data["paths_requested"] == ["torch", "transformers"]
    assert data["results"]["torch"]["decode"]["16"] > 0
    if isinstance(failure, KeyboardInterrupt):  # a time limit: the file says the run was cut short
        assert data["complete"] is False and not data["errors"] and "stopped (Ctrl-C or a time limit)" in printed
    else:
        assert data["complete"] is True and data["errors"] == {"transformers": "RuntimeError: CUDA error: an "
                                                                               "illegal memory access"}
        assert "transformers  FAILED: RuntimeError: CUDA error" in printed
    assert "torch" in printed.split("path ")[-1]  # the closing table still lists what was measured


def test_a_graph_check_that_fails_after_its_timings_keeps_the_closing_report(bench, tmp_path, capsys):
    """The closing report read the check's result unconditionally: a KeyError, and no final table or JSON."""
    def fail(*args, **kwargs):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    bench.static_decode_check = fail
    out = tmp_path / "bench.json"
    rc = bench.main(bench.parse_args(["--smoke", "--paths", "triton+graph", "--json", str(out)]))
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert rc == 1 and data["complete"] is True and "triton+graph" in data["errors"]
    assert data["results"]["triton+graph"]["decode"]["16"] > 0  # its timings stand
    assert "over 8 steps: not checked (the check did not finish)" in printed and "ceiling = copy rate" in printed


def test_a_clean_run_is_marked_complete(bench, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(bench.parse_args(["--smoke", "--paths", "torch", "--json", str(out)])) == 0
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["errors"] == {} and list(data["results"]) == ["torch"]


@pytest.mark.parametrize("argv,message", [
    (["--layers", "0"], "argument --layers: must be at least 1, got 0"),  # 0 read as "not given": all 24 layers
    (["--layers", "-2"], "argument --layers: must be at least 1, got -2"),
    (["--contexts", "1024", "0"], "argument --contexts: must be at least 1, got 0"),
    (["--prompt", "0"], "argument --prompt: must be at least 1"),
    (["--decode-steps", "x"], "argument --decode-steps: 'x' is not a whole number"),
    (["--json", "{tmp}/no/such/folder/bench.json"], "there is no folder {tmp}/no/such/folder to write it in"),
    (["--json", "{tmp}"], "--json {tmp} is a folder: give the path of a file"),
])
def test_bad_arguments_are_refused_before_anything_runs(bench, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.parse_args([a.format(tmp=tmp_path) for a in argv])
    assert e.value.code == 2 and message.format(tmp=tmp_path) in capsys.readouterr().err


def test_contexts_longer_than_the_model_are_refused_before_measuring(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "copy_bandwidth", lambda *a: pytest.fail("the run started"))
    assert bench.main(bench.parse_args(["--smoke", "--contexts", "16", "4094", "--json", str(tmp_path / "b.json")])) == 2
    assert "need 4,099 positions, more than gpt-oss-tiny's context of 4,096" in capsys.readouterr().err
    assert bench.main(bench.parse_args(["--smoke", "--prompt", "4097"])) == 2
    assert not list(tmp_path.iterdir())


def test_a_json_that_cannot_be_written_leaves_no_tmp_file(bench, tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench.json, "dumps", lambda *a, **k: "{" + "x" * 100)  # then the disk fills:
    monkeypatch.setattr(bench.Path, "replace", lambda self, target: (_ for _ in ()).throw(OSError(28, "No space left")))
    args = bench.parse_args(["--smoke", "--json", str(out)])
    with pytest.raises(OSError, match="No space left"):
        bench.write_json(out, bench.bench_config(args), "cpu", {}, 1.0, {}, {}, args)
    assert list(tmp_path.iterdir()) == []


def test_a_json_that_cannot_be_saved_costs_no_path_and_no_run(bench, tmp_path, capsys, monkeypatch):
    """A save that failed mid-run was recorded as the measured path's own failure, then raised out of the run:
    the later paths never ran, and there was no closing report."""
    out = tmp_path / "bench.json"
    args = bench.parse_args(["--smoke", "--paths", "torch", "transformers", "--json", str(out)])

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench, "write_json", full)
    rc = bench.main(args)
    printed = capsys.readouterr()
    assert rc == 1 and "FAILED" not in printed.out and "Traceback" not in printed.err
    assert printed.err.count(f"could not save {out} (No space left on device)") == 2  # once in the run, once at the end
    last_table = printed.out.split("path ")[-1]
    assert "torch" in last_table and "transformers" in last_table  # both paths ran, and the closing report came


def test_a_json_folder_that_cannot_be_written_is_refused_before_anything_runs(bench, tmp_path, capsys, monkeypatch):
    real = bench.Path.write_text

    def refuse(self, *a, **k):
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(bench.Path, "write_text", refuse)
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--json", str(tmp_path / "bench.json")])
    assert e.value.code == 2 and "cannot be written there (Permission denied)" in capsys.readouterr().err


def test_the_gpu_run_refuses_triton_s_interpreter(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: True)  # as on the lent GPU machine
    assert bench.main(bench.parse_args([])) == 2
    assert "TRITON_INTERPRET is set, so the kernels would run in Triton's interpreter" in capsys.readouterr().out
    monkeypatch.setenv("TRITON_INTERPRET", "y")  # Triton's yes too
    assert bench.main(bench.parse_args([])) == 2
    assert "TRITON_INTERPRET is set" in capsys.readouterr().out


@pytest.mark.parametrize("gpu", [True, False])
def test_gpu_check_gives_the_benchmark_the_time_left_and_on_a_gpu_drops_the_interpreter(tmp_path, gpu):
    """No torch here: a stand-in Python records what each step was started with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "seen"
    fake_python = bin_dir / "python"
    fake_python.write_text(f'#!/bin/sh\necho "TRITON_INTERPRET=${{TRITON_INTERPRET:-unset}} $*" >> "{log}"\n')
    fake_python.chmod(0o755)
    if gpu:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = {"OUT": str(tmp_path / "out"), "PYTHON": str(fake_python), "STEPS": "benchmark",
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = run(["bash", "benchmarks/gpu_check.sh"], **env)
    assert done.returncode == 0, done.stdout + done.stderr
    bench = [line for line in log.read_text().splitlines() if "bench_gptoss20b.py" in line]
    assert bench and bench[0].startswith("TRITON_INTERPRET=unset" if gpu else "TRITON_INTERPRET=1")
    limit = int(done.stdout.split("== benchmark (limit ")[1].split()[0])
    assert 540 <= limit <= 575  # what is left of 575 s after the start-up
    done = run(["bash", "benchmarks/gpu_check.sh"], TOTAL_S="100", **env)
    assert "== benchmark (limit 120 s)" in done.stdout  # never less than 120 s


def test_gpu_check_stops_the_notebooks_step_when_notebook_10_was_interrupted(tmp_path):
    """execute_notebooks.py catches the step limit's SIGINT and exits 130: the step went on to start notebook 12,
    which the limit's SIGKILL then cut 5 s in."""
    log = tmp_path / "seen"
    fake_python = tmp_path / "python"
    fake_python.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\ncase "$*" in *10_triton*) exit 130 ;; esac\nexit 0\n')
    fake_python.chmod(0o755)
    done = run(["bash", "benchmarks/gpu_check.sh"], OUT=str(tmp_path / "out"), PYTHON=str(fake_python), STEPS="notebooks")
    assert done.returncode == 1, done.stdout + done.stderr
    started = [line for line in log.read_text().splitlines() if "execute_notebooks.py" in line]
    assert len(started) == 1 and "10_triton_kernels" in started[0], started
    assert "notebooks: exit 130" in (tmp_path / "out" / "summary.txt").read_text()


def test_count_decode_ops_prints_the_kernels_of_a_step():
    """The counts RESULTS.md quotes come from this script: the static step runs fewer aten ops than the eager one."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # launches recorded, not interpreted
    done = subprocess.run([sys.executable, "benchmarks/count_decode_ops.py", "--where"], cwd=ROOT, capture_output=True,
                          text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:3]}
    static, eager = (float(rows[k][2]) for k in ("static", "eager"))  # aten ops a layer
    assert 0 < static < eager
    assert float(rows["static"][4]) == float(rows["eager"][4]) > 0  # the same Triton launches a layer
    assert "gptoss_edu/static_decode.py" in done.stdout  # --where names the package's lines
