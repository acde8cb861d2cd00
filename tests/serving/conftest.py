"""One `instantid serve --tiny` process shared by the API, bad-input and property-based tests."""

from __future__ import annotations

import pytest

from serve_server import QUEUE_SIZE, Server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    pytest.importorskip("fastapi")
    server = Server(tmp_path_factory.mktemp("serve") / "state", "--queue-size", str(QUEUE_SIZE))
    try:
        server.wait()
        yield server
    finally:
        server.stop()
