"""Who may call the API: loopback by default; anywhere else only with an API key (Bearer, constant-time)."""

from __future__ import annotations

import hmac
import ipaddress
import os

from ..errors import UsageError

API_KEY_ENV = "INSTANTID_API_KEY"
# Probes for orchestrators answer without a key (they reveal only "alive" / "ready").
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere, so it is not loopback
        return False


def resolve_api_key(given: str | None) -> str | None:
    key = given if given is not None else os.environ.get(API_KEY_ENV)
    return key or None


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without a key (raised before anything loads)."""
    if not is_loopback(host) and not api_key:
        raise UsageError(f"--host {host} exposes the API beyond this machine; set an API key with --api-key or "
                         f"${API_KEY_ENV} (clients send `Authorization: Bearer KEY`), or bind to 127.0.0.1")


def authorized(header: str | None, api_key: str | None) -> bool:
    """True when no key is configured, or the Authorization header carries it (compared in constant time)."""
    if api_key is None:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())
