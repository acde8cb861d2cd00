#!/usr/bin/env bash
# Full-size SDXL InstantID speed/memory benchmark (random fp16 weights, no network).
# Run from the repo root: `bash benchmarks/gpu.sh` on a GPU (< 8 min on one H100), or
# `bash benchmarks/gpu.sh --small` for the tiny architecture on CPU. Extra args go to gpu_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/env.sh
exec "$PYTHON" benchmarks/gpu_bench.py "$@"
