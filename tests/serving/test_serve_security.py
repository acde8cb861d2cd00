"""The security model: loopback by default; elsewhere only with an API key, checked on every call."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from instantid.serving.security import authorized, check_bind, is_loopback
from serve_server import Server, free_port

pytestmark = pytest.mark.slow


def test_non_loopback_without_key_refuses_to_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "instantid", "serve", "--tiny", "--host", "0.0.0.0", "--port",
                             str(free_port()), "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                               "INSTANTID_API_KEY": ""})
    assert result.returncode == 1
    assert "api key" in result.stderr.lower() and "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()  # refused before touching anything


def test_with_key_401_without_it_200_with_it(tmp_path):
    key = "s3cret-key-for-the-test"
    server = Server(tmp_path / "state", host="0.0.0.0", env={"INSTANTID_API_KEY": key})
    try:
        server.wait("/healthz")  # probes stay open: orchestrators call them without a key
        for path in ("/metrics", "/v1/generations/" + "0" * 32, "/openapi.json"):
            response = requests.get(server.url + path, timeout=10)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            wrong = requests.get(server.url + path, timeout=10, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        good = {"Authorization": f"Bearer {key}"}
        assert requests.get(server.url + "/metrics", timeout=10, headers=good).status_code == 200
        assert requests.get(server.url + "/v1/generations/" + "0" * 32, timeout=10, headers=good).status_code == 404
        # CORS is off unless configured: a browser on another origin gets no permission header
        cross = requests.get(server.url + "/metrics", timeout=10, headers={**good, "Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in {k.lower() for k in cross.headers}
    finally:
        server.stop()


def test_policy_units():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    with pytest.raises(ValueError):
        check_bind("0.0.0.0", None)
    assert authorized(None, None) and authorized("Bearer k", "k") and authorized("bearer k", "k")
    assert not authorized(None, "k") and not authorized("Bearer x", "k") and not authorized("Basic k", "k")
