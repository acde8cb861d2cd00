"""One `instantid serve --tiny` process shared by the API, bad-input, options and property-based tests; it loads
one tiny LoRA at start (`--lora sketch.safetensors:0.5`), which requests choose by name."""

from __future__ import annotations

import pytest

from serve_server import LORA_SCALE, QUEUE_SIZE, Server


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory):
    """A random LoRA for the tiny base `--tiny` loads (dlib's 128-d embeddings), named "sketch"."""
    from instantid.testing.tiny import build_tiny_lora, tiny_instantid_cached

    base = tiny_instantid_cached(embedding_dim=128).base
    return build_tiny_lora(base, tmp_path_factory.mktemp("lora") / "sketch.safetensors")


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_lora):
    pytest.importorskip("fastapi")
    server = Server(tmp_path_factory.mktemp("serve") / "state", "--queue-size", str(QUEUE_SIZE),
                    "--lora", f"{tiny_lora}:{LORA_SCALE}")
    try:
        server.wait()
        yield server
    finally:
        server.stop()
