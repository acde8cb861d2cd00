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


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server (instantid.testing.postgres). Where it cannot start the tests that need it
    skip, saying why; in CI (CI=true, as `.ci/run` sets it) they fail instead: CI must run them."""
    import os

    from instantid.testing.postgres import PostgresUnavailable, TempPostgres

    pytest.importorskip("psycopg", reason="psycopg is part of the `serve` extra")
    try:
        server = TempPostgres().start()
    except PostgresUnavailable as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL could not be started in CI: {err}")
        pytest.skip(f"PostgreSQL could not be started here ({str(err).splitlines()[0]}); `.ci/run` installs it")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request, tmp_path):
    """The same store tests on both stores: a StoreConfig for a fresh SQLite folder or a fresh PostgreSQL database."""
    from instantid.serving.store import StoreConfig

    if request.param == "sqlite":
        return StoreConfig(state_dir=str(tmp_path / "state"))
    url = request.getfixturevalue("postgres").new_database()
    return StoreConfig(state_dir=str(tmp_path / "state"), url=url)
