# Sourced by gpu.sh and bench.sh (from the repo root): make diffusers and src/ importable.
# The GPU machine has no diffusers and no network: install the wheels carried in .whl/.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "$(basename "$0"): diffusers is not importable by $PYTHON and there is no .whl/ to install it from" >&2
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
