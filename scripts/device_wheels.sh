#!/usr/bin/env bash
# Wheels that let a lent GPU machine execute notebooks. Its image (Python 3.12, torch, triton,
# transformers, matplotlib, pytest, ...) has no Jupyter, and it cannot download: this fetches,
# here, nbclient, ipykernel and ipywidgets with what they need that the image lacks, at the
# versions of constraints.txt, into .whl/ (ignored by git). benchmarks/gpu_check.sh installs them
# when its "notebooks" step runs; the device tool must carry .whl with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .whl
"$PY" -m pip download --quiet --dest .whl --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -c <(grep -v -e '^#' -e '^torch==' -e '^triton==' constraints.txt) nbclient ipykernel ipywidgets
# The image has these already (its package list, 2026-11-17); a second copy would shadow its own.
for name in attrs packaging psutil pygments python_dateutil typing_extensions; do
    rm -f .whl/"$name"-*.whl
done
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/"
