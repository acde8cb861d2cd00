#!/usr/bin/env bash
# Full-size SDXL InstantID speed/memory benchmark on a GPU (random fp16 weights, no network), through
# `instantid bench`: 1024x1024, 30 steps, CFG 5, interleaved against the stock pipelines on the same modules.
# Run from the repo root: `bash benchmarks/gpu.sh` on a GPU, or `bash benchmarks/gpu.sh --small` for the tiny
# architecture on CPU (checks the script). Extra args go to every `instantid bench` run.
# JSON and markdown go to $OUT (if set) or benchmarks/results-gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/env.sh
ARCH=(--random-weights --arch sdxl)
if [[ "${1:-}" == "--small" ]]; then
    ARCH=(--arch tiny --steps 2); shift
fi
DEST=${OUT:-benchmarks/results-gpu}
mkdir -p "$DEST"
bench() { local name=$1; shift; "$PYTHON" -m instantid bench "${ARCH[@]}" --no-progress \
    --json "$DEST/$name.json" --markdown "$DEST/$name.md" "$@"; }
# full and half control window, with InstantID's idle-IdentityNet skipping on and off
bench windows --runs 3 --control-end 1.0 0.5 --compare-without idle-step-skipping "$@"
# a 4-step schedule at CFG 1.0 (as with LCM/Lightning LoRAs)
bench few-steps --no-face-stage --runs 3 --steps 4 --guidance-scale 1.0 --control-end 1.0 "$@"
# model CPU offload: peak VRAM against time
bench offload --no-face-stage --runs 2 --offload --pipelines instantid --control-end 1.0 "$@"
