#!/usr/bin/env bash
# Everything a GPU has to answer for this repository, in one run: the kernel, static-decode and
# sampling tests on the GPU (bf16 included, CUDA graphs recorded and replayed, draws made there),
# a terminal chat with the shipped tiny checkpoint on the Triton path (loaded in bf16, as notebook 12
# loads gpt-oss-20b), then the gpt-oss-20b benchmark. Meant for a lent GPU machine whose Python
# already has torch, triton, transformers and pytest, with this repository copied but not
# installed. Each step has a time limit; logs, a summary and the benchmark's JSON (written after
# every path) go to $OUT.
#
#   OUT=gpu-check bash benchmarks/gpu_check.sh            # limits: tests 150 s, chat 60 s, benchmark the rest
#   STEPS=benchmark BENCH_S=540 OUT=/tmp/x bash benchmarks/gpu_check.sh -- --paths triton triton+graph
#
# The benchmark gets what is left of TOTAL_S (575 s, under the 10 minutes one command may take on
# a lent machine) once the steps before it are done, at least 120 s; BENCH_S fixes it instead.
# STEPS (default "tests chat benchmark") runs only some, to split a run in two.
# STEPS=notebooks runs notebooks 10 and 12 on the GPU (their GPU branches; notebook 12 on the tiny
# checkpoint, since the machine cannot download gpt-oss-20b), saving the executed copies under
# $OUT/notebooks; the image has no Jupyter, so first run scripts/device_wheels.sh here and carry
# .whl with the tree. Give it a run of its own: its 300 s and two more files in $OUT (the device
# tool brings back eight) do not fit beside the default steps.
# Arguments after `--` go to bench_gptoss20b.py. Without a GPU the tests run in Triton's
# interpreter and the benchmark only says what it would need. The exit status is 0 only when
# every step asked for exited 0.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python3}
STEPS=" ${STEPS:-tests chat benchmark} "
for s in $STEPS; do
    case $s in
        tests | chat | notebooks | benchmark) ;;
        *) echo "unknown step '$s' in STEPS: the steps are tests, chat, notebooks, benchmark" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
: > "$OUT/summary.txt"  # this run's steps only
failed=0
[ "${1:-}" = "--" ] && shift
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# Left over from a shell that ran the CPU tests, Triton's interpreter would run every kernel on the GPU's host.
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    unset TRITON_INTERPRET
fi

# Without an install of the course: its packages from the tree (gptoss_kernels lives in kernels/).
export PYTHONPATH="$PWD:$PWD/kernels${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| triton', triton.__version__, '| cuda', torch.cuda.is_available())"
    "$PY" -c "import transformers; print('transformers', transformers.__version__)" 2>/dev/null || echo "no transformers"
} 2>&1 | tee "$OUT/machine.txt"

step() {  # step NAME SECONDS COMMAND...: run it under a limit, keep its log, record its exit status
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s)"
    local t0=$SECONDS
    # Ctrl-C at the limit, not SIGTERM: pytest then still prints the failures it has seen, the chat and the
    # benchmark stop as they do for a user; whatever is still running 5 s later is killed.
    timeout -s INT --kill-after=5 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]} note=""
    case $rc in 124 | 137) note=" (time limit)" ;; esac  # 137: still running 5 s after the limit, killed
    echo "$name: exit $rc after $((SECONDS - t0)) s$note" | tee -a "$OUT/summary.txt"
    [ "$rc" = 0 ] || failed=1
}

if [[ $STEPS == *" tests "* ]]; then
    # The CUDA-graph tests first, so a limit reached while Triton compiles does not cut them; the
    # ahead-of-time compile tests need no GPU (CI runs them), so they are left out here; pytest-xdist,
    # where installed, spreads the compiles over four processes.
    workers=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 4")
    step tests "${TESTS_S:-150}" "$PY" -m pytest -q -p no:cacheprovider -rs --durations=15 $workers \
        -k "not aot and not compile_for_h100 and not fit_a_consumer_gpu" tests/test_static_decode.py \
        tests/test_kernels.py tests/test_sampling.py
fi
if [[ $STEPS == *" chat "* ]]; then
    # Greedy, so a rerun on the same machine prints the same reply; Ctrl-D (end of input) quits.
    step chat "${CHAT_S:-60}" bash -c "printf 'Who is there?\nAnd what do you want?\n' | \"$PY\" -m gptoss_edu chat \
        --model data/tiny-gpt-oss --backend triton --temperature 0 --max-new-tokens 96"
    # The chat falls back to plain launches when a decode step cannot be recorded as a CUDA graph, and
    # says so: on a GPU that is a failure to report, not a detail.
    if grep -q "could not be recorded as a CUDA graph" "$OUT/chat.log"; then
        echo "chat: the decode step fell back from a CUDA graph (see chat.log)" | tee -a "$OUT/summary.txt"
        failed=1
    fi
fi
if [[ $STEPS == *" notebooks "* ]]; then
    if [ -d .whl ]; then  # Jupyter's kernel machinery, from scripts/device_wheels.sh
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    fi
    run_notebooks() {
        "$PY" scripts/execute_notebooks.py --timeout 240 --out "$OUT/notebooks" notebooks/10_triton_kernels.ipynb
        local rc10=$?
        [ "$rc10" = 130 ] && return 130  # stopped by the step's limit: notebook 12 would only be killed 5 s in
        "$PY" scripts/execute_notebooks.py --timeout 240 --out "$OUT/notebooks" \
            --set "MODEL = '$PWD/data/tiny-gpt-oss'" notebooks/12_gpt_oss_20b.ipynb && return $rc10
    }
    export -f run_notebooks
    export PY OUT
    step notebooks "${NOTEBOOKS_S:-300}" bash -c run_notebooks
fi
if [[ $STEPS == *" benchmark "* ]]; then
    left=$(( ${TOTAL_S:-575} - SECONDS ))
    step benchmark "${BENCH_S:-$(( left > 120 ? left : 120 ))}" "$PY" benchmarks/bench_gptoss20b.py \
        --json "$OUT/bench.json" "$@"
fi
cat "$OUT/summary.txt"
exit $failed
