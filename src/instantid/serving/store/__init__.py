"""The job store: queued, running and finished jobs with their photos and results, shared by every worker.

`open_store(StoreConfig(...))` gives SQLite in the state folder (one host, the default) or PostgreSQL
(`postgresql://...`: any number of hosts), with blobs in the state folder, in PostgreSQL, or at an fsspec
URL. See base.py for the leases, docs/serving.md for the operator's view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .base import (DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS, FINAL_STATES, STATES, Job, LeaseLost, QueueFull,
                   SchemaTooNew, JobStore, StoreUnavailable, new_job_id, valid_job_id)
from .base import redact

STORE_ENV = "INSTANTID_STORE"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = ["DEFAULT_LEASE_S", "DEFAULT_MAX_ATTEMPTS", "FINAL_STATES", "STATES", "Job", "JobStore", "LeaseLost",
           "QueueFull", "SchemaTooNew", "StoreConfig", "StoreUnavailable", "new_job_id", "open_store", "redact",
           "valid_job_id"]


@dataclass(frozen=True)
class StoreConfig:
    """Everything a process needs to open the shared store (the API, each replica, --check-store)."""

    state_dir: str  # local: SQLite and its blobs when `url` is None; else face cache and staging only
    url: str | None = None  # postgresql://USER@HOST/DB (credentials from the URL, PG* variables or ~/.pgpass)
    blobs: str | None = None  # fsspec URL; None: the state folder (SQLite) or the database (PostgreSQL)
    lease_s: float = DEFAULT_LEASE_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @property
    def shared(self) -> bool:
        return self.url is not None


def store_url(given: str | None) -> str | None:
    """--store, else $INSTANTID_STORE, else None (SQLite in the state folder); checked for its scheme."""
    url = given or os.environ.get(STORE_ENV) or None
    if url is not None and not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(f"--store must be a postgresql://USER@HOST[:PORT]/DB URL, got {redact(url)!r} (leave it "
                         "out for SQLite in --state-dir)")
    return url


def open_blobs(config: StoreConfig):
    from .blobs import FsspecBlobs

    if config.blobs:
        return FsspecBlobs(config.blobs, Path(config.state_dir) / "staging")
    return None  # the store's own default


def open_store(config: StoreConfig, migrate: bool = True) -> JobStore:
    blobs = open_blobs(config)
    if config.url:
        from .postgres import PostgresStore

        return PostgresStore(config.url, config.state_dir, config.lease_s, config.max_attempts, blobs=blobs,
                             migrate=migrate)
    from .sqlite import SqliteStore

    return SqliteStore(config.state_dir, config.lease_s, config.max_attempts, blobs=blobs, migrate=migrate)
