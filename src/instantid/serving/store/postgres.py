"""The job store for several hosts: PostgreSQL through psycopg 3 and its connection pool.

Any number of API processes and workers on any number of hosts share it. Claiming is
`SELECT ... FOR UPDATE SKIP LOCKED` (each queued job goes to exactly one claimer, and claimers never
wait on each other); the queue-size check of a submission holds a transaction-level advisory lock so two
API processes cannot both accept the last free place. Connections come from a psycopg_pool pool that
checks a connection before handing it out, so a database restart or a dropped connection costs the
statements in flight (StoreUnavailable: the API answers 503, the worker retries) and nothing else.
Credentials come from the URL, the PG* environment variables or ~/.pgpass (libpq's rules) and are never
logged or shown: `describe()` is the URL without its password.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .base import DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS, SCHEMA_V1, SCHEMA_V2, JobStore, redact, translated
from .blobs import DatabaseBlobs

_TYPES = {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"}
# the blobs live in the database by default (DatabaseBlobs); the running-lease index keeps reaping cheap
_BLOBS = """;
CREATE TABLE blobs (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data BYTEA NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, name)
)
"""
_LEASE_INDEX = ";\nCREATE INDEX jobs_running_leases ON jobs(lease_until) WHERE status='running'\n"

# One lock id for "the queue" and schema migrations (pg_advisory_xact_lock takes a bigint).
_QUEUE_LOCK = 0x1D5E4F0B


class PostgresStore(JobStore):
    kind = "postgresql"
    NOW = "extract(epoch from clock_timestamp())::double precision"
    FOR_UPDATE = " FOR UPDATE SKIP LOCKED"
    MIGRATIONS = (SCHEMA_V1.format(**_TYPES) + _BLOBS, SCHEMA_V2.format(**_TYPES) + _LEASE_INDEX)

    def __init__(self, url: str, state_dir: str | Path, lease_s: float = DEFAULT_LEASE_S,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, blobs=None, pool_size: int = 8,
                 connect_timeout_s: float = 3.0, migrate: bool = True) -> None:
        import psycopg
        import psycopg_pool
        from psycopg.rows import dict_row

        self.url = url
        self.root = Path(state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._errors = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)
        self.pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=connect_timeout_s,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, int(connect_timeout_s))},
            check=psycopg_pool.ConnectionPool.check_connection, reconnect_timeout=3600, name="instantid-store")
        with translated(self._errors, self.describe):
            self.pool.open(wait=False)
        super().__init__(blobs or DatabaseBlobs(self, self.root / "staging"), lease_s, max_attempts)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()
                raise

    @contextmanager
    def _session(self):
        with translated(self._errors, self.describe), self.pool.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self):
        with translated(self._errors, self.describe), self.pool.connection() as conn, conn.transaction():
            yield conn

    def _exec(self, db, sql: str, params=()):
        return db.execute(sql.format(now=self.NOW).replace("?", "%s"), params)

    def _lock_queue(self, db) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_QUEUE_LOCK,))

    def _table_exists(self, db, name: str) -> bool:
        return db.execute("SELECT to_regclass(%s) AS t", (name,)).fetchone()["t"] is not None

    def describe(self) -> str:
        return f"postgresql {redact(self.url)}" if "://" in self.url else "postgresql (connection string)"

    def close(self) -> None:
        self.pool.close()
