"""The embedded default: SQLite (WAL, synchronous=FULL) in the state folder, blobs in its `jobs/` folder.

Several processes on one host may share it (the Ray Serve replicas do): every writing transaction is
BEGIN IMMEDIATE, so claims are serialised. It must not live on a network file system (SQLite's locking
is not reliable there); across hosts use PostgreSQL (postgres.py).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from .base import DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS, SCHEMA_V1, SCHEMA_V2, JobStore
from .blobs import FolderBlobs

_TYPES = {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}


class SqliteStore(JobStore):
    kind = "sqlite"
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"
    FOR_UPDATE = ""  # BEGIN IMMEDIATE already holds the database's write lock
    MIGRATIONS = (SCHEMA_V1.format(**_TYPES), SCHEMA_V2.format(**_TYPES))

    def __init__(self, state_dir: str | Path, lease_s: float = DEFAULT_LEASE_S,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, blobs=None, migrate: bool = True) -> None:
        self.root = Path(state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.sqlite3"
        self._local = threading.local()
        super().__init__(blobs or FolderBlobs(self.root), lease_s, max_attempts)
        if migrate:
            self.migrate()

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # autocommit mode; transactions are explicit (BEGIN IMMEDIATE) where several statements must agree
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an accepted job survives a power cut, not just a crash
            self._local.db = db
        return db

    @contextmanager
    def _session(self):
        yield self._connect()

    @contextmanager
    def _transaction(self):
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _exec(self, db, sql: str, params=()):
        return db.execute(sql.format(now=self.NOW), params)

    def _lock_queue(self, db) -> None:
        pass

    def _table_exists(self, db, name: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def describe(self) -> str:
        return f"sqlite {self.db_path}"

    # the local layout, for the UI's gallery (it shows files)
    @property
    def jobs_dir(self) -> Path:
        return self.blobs.jobs_dir

    def image_path(self, job_id: str, index: int) -> Path:
        from .base import output_name

        return self.blobs.path(job_id, output_name(index))
