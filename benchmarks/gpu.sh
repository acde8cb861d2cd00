#!/usr/bin/env bash
# Full-size SDXL InstantID speed/memory benchmark (random fp16 weights, no network).
# Run from the repo root: `bash benchmarks/gpu.sh` on a GPU (< 8 min on one H100), or
# `bash benchmarks/gpu.sh --small` for the tiny architecture on CPU. Extra args go to gpu_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# The GPU machine has no diffusers and no network: install the wheels carried in .whl/.
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "gpu.sh: diffusers is not importable by $PYTHON and there is no .whl/ to install it from" >&2
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" benchmarks/gpu_bench.py "$@"
