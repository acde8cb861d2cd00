#!/usr/bin/env bash
# `instantid bench` without installing the package (e.g. on the GPU machine): args go to it.
#   bash benchmarks/bench.sh --random-weights --arch sdxl --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/env.sh
exec "$PYTHON" -m instantid bench "$@"
