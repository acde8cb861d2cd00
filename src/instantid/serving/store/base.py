"""What every job store shares: the job row, the errors, and the queue and lease logic written once in SQL.

A job store is a SQL database (SQLite on one host, PostgreSQL across hosts) plus a blob store for the
photos and result PNGs (blobs.py). The SQL here is written once with `?` parameters and `{now}` (the
database's clock, so that hosts with skewed clocks agree on leases); each dialect says how to connect,
how to begin a writing transaction and how to lock the row it claims.

Leases: claiming a job gives it a random lease id and a deadline (`lease_until`). The worker renews it
while it works (each step, and every few seconds from a keeper thread); a job whose deadline passed is
queued again with its attempt count (or failed after `max_attempts`). Every write a worker makes about its
job names the lease it holds, so a worker whose lease expired can neither renew, fail nor finish it: a job
is claimed at least once and finished exactly once. Each claim is a row of `claims` (who, which attempt,
how it ended): the per-replica metrics and the tests' "never claimed twice" check read it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields

from ...errors import InstantIDError

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
DEFAULT_LEASE_S = 30.0
# A job whose lease expired this many times (its worker died or hung each time) is failed, not retried:
# a job that kills its worker must not kill workers forever.
DEFAULT_MAX_ATTEMPTS = 3
# Staged submissions that never became jobs (the API died between upload and queueing) are removed after this.
ORPHAN_AGE_S = 600.0


# The schema's history, written once for both dialects ({serial}: the auto-numbered key, {real}: a float).
# Version 1 is the store from before versioning (IF NOT EXISTS: such a database is adopted as version 1).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    seq {serial},
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    parameters TEXT,
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    images INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created {real} NOT NULL,
    started {real},
    finished {real}
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq)
"""

# Leases and the claims log. A job left running by a server from before leases expires at once.
SCHEMA_V2 = """
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
ALTER TABLE jobs ADD COLUMN lease_until {real};
UPDATE jobs SET lease_until=0 WHERE status='running';
CREATE TABLE claims (
    lease_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    claimed {real} NOT NULL,
    ended {real},
    outcome TEXT
);
CREATE INDEX claims_by_job ON claims(job_id)
"""


class QueueFull(Exception):
    pass


class StoreUnavailable(InstantIDError):
    """The database or blob store cannot be reached now (restarting, network down). Retry later; the
    message names the store without credentials."""


class SchemaTooNew(InstantIDError):
    """The database was migrated by a newer instantid; this one refuses to touch it."""


class LeaseLost(Exception):
    """This worker's claim on the job expired (another attempt owns it now): drop the work."""


@dataclass
class Job:
    seq: int
    id: str
    status: str
    request: dict
    parameters: dict | None
    step: int
    total: int
    error: str | None
    images: int
    attempts: int
    cancel_requested: bool
    worker: str | None
    created: float
    started: float | None
    finished: float | None
    lease_id: str | None = None
    lease_until: float | None = None

    @classmethod
    def from_row(cls, row) -> "Job":
        present = set(row.keys())  # a row from before a migration lacks the newer columns
        data = {f.name: row[f.name] for f in fields(cls) if f.name in present}
        data["request"] = json.loads(data["request"])
        data["parameters"] = json.loads(data["parameters"]) if data["parameters"] else None
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)


def new_job_id() -> str:
    """128 random bits: ids are unguessable, so a job's results are reachable only by whoever got its id."""
    return secrets.token_hex(16)


def valid_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def output_name(index: int) -> str:
    return f"outputs/{index}.png"


class JobStore:
    """The store interface the API, the UI and the workers use; subclasses supply the dialect.

    Subclasses set `NOW` (an SQL expression: seconds since the epoch on the database's clock), `FOR_UPDATE`
    (appended to the claim's SELECT), `MIGRATIONS` (schema scripts, version i+1 = MIGRATIONS[i]) and
    implement `_session()`, `_transaction()`, `_exec()`, `_lock_queue()`; `self.blobs` holds the files.
    """

    NOW: str
    FOR_UPDATE: str
    MIGRATIONS: tuple[str, ...]
    kind: str

    def __init__(self, blobs, lease_s: float = DEFAULT_LEASE_S, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.blobs = blobs
        self.lease_s, self.max_attempts = float(lease_s), int(max_attempts)
        self._reap_lock = threading.Lock()
        self._last_reap = self._last_sweep = -float("inf")

    # ---- dialect (subclasses)

    def _session(self):  # a connection in autocommit mode (context manager)
        raise NotImplementedError

    def _transaction(self):  # a connection inside one writing transaction (context manager)
        raise NotImplementedError

    def _exec(self, db, sql: str, params=()):  # run `sql` (with ? and {now}) and return the cursor
        raise NotImplementedError

    def _lock_queue(self, db) -> None:  # serialise queue-size checks between submitting processes
        raise NotImplementedError

    def describe(self) -> str:  # where the store is, without credentials
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- schema

    @property
    def schema_version(self) -> int:
        return len(self.MIGRATIONS)

    def _current_version(self, db) -> int:
        self._exec(db, "CREATE TABLE IF NOT EXISTS instantid_schema (version INTEGER NOT NULL)")
        row = self._exec(db, "SELECT MAX(version) AS v FROM instantid_schema").fetchone()
        return int(row["v"] or 0)

    def migrate(self) -> int:
        """Bring the schema to this version (forward only); refuse a database migrated by a newer instantid."""
        with self._transaction() as db:
            self._lock_queue(db)
            current = self._current_version(db)
            self._refuse_newer(current)
            for version in range(current + 1, self.schema_version + 1):
                for statement in self.MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        self._exec(db, statement)
                self._exec(db, "DELETE FROM instantid_schema")
                self._exec(db, "INSERT INTO instantid_schema (version) VALUES (?)", (version,))
        return current

    def check_schema(self) -> str:
        """For --check-store: reach the database and say how its schema compares, without changing it."""
        with self._session() as db:
            exists = self._table_exists(db, "instantid_schema")
            current = 0
            if exists:
                current = int(self._exec(db, "SELECT MAX(version) AS v FROM instantid_schema").fetchone()["v"] or 0)
        self._refuse_newer(current)
        if current == self.schema_version:
            return f"schema version {current} (current)"
        return f"schema version {current}; will be migrated to {self.schema_version} at start"

    def _table_exists(self, db, name: str) -> bool:
        raise NotImplementedError

    def _refuse_newer(self, current: int) -> None:
        if current > self.schema_version:
            raise SchemaTooNew(f"the job store {self.describe()} has schema version {current}, newer than this "
                               f"instantid's {self.schema_version}: upgrade instantid on this host (every host "
                               f"sharing the store must run the same or a newer version)")

    # ---- submitting

    def queued_count(self) -> int:
        with self._session() as db:
            return self._exec(db, "SELECT COUNT(*) AS n FROM jobs WHERE status='queued'").fetchone()["n"]

    def stage(self, files: dict[str, bytes]) -> str:
        """Store a submission's photos as inputs of a new job id (not yet a job). Returns the id."""
        job_id = new_job_id()
        self.blobs.stage(job_id, {f"inputs/{name}": data for name, data in files.items()})
        return job_id

    def inputs_dir(self, job_id: str):
        """A local folder with a staged job's photos (for the checks before queueing)."""
        return self.blobs.staged_dir(job_id)

    def discard(self, job_id: str) -> None:
        self.blobs.delete([job_id])

    def enqueue(self, job_id: str, request: dict, queue_size: int) -> Job:
        """Make a staged job exist (queued); QueueFull, and its photos removed, when `queue_size` jobs wait."""
        try:
            with self._transaction() as db:
                self._lock_queue(db)
                if self._exec(db, "SELECT COUNT(*) AS n FROM jobs WHERE status='queued'").fetchone()["n"] >= queue_size:
                    raise QueueFull()
                self._exec(db, "INSERT INTO jobs (id, status, request, created) VALUES (?, 'queued', ?, {now})",
                           (job_id, json.dumps(request)))
        except BaseException:
            self.discard(job_id)
            raise
        self.blobs.unstage(job_id)
        return self.get(job_id)

    # ---- reading

    def get(self, job_id: str) -> Job | None:
        with self._session() as db:
            row = self._exec(db, "SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def queue_position(self, job: Job) -> int | None:
        """Jobs ahead of this one (0 = next to run); None unless queued."""
        if job.status != "queued":
            return None
        with self._session() as db:
            return self._exec(db, "SELECT COUNT(*) AS n FROM jobs WHERE status='queued' AND seq<?",
                              (job.seq,)).fetchone()["n"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._session() as db:
            for row in self._exec(db, "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall():
                counts[row["status"]] = row["n"]
        return counts

    def durations(self) -> list[float]:
        """Seconds from start to finish of the finished jobs still stored (the latency histogram)."""
        with self._session() as db:
            rows = self._exec(db, "SELECT finished-started AS d FROM jobs WHERE status='done' AND started IS NOT NULL")
            return [row["d"] for row in rows.fetchall()]

    def claim_stats(self) -> dict[str, dict[str, int]]:
        """Per worker: claims, and how they ended (done, failed, cancelled, expired, released; running)."""
        stats: dict[str, dict[str, int]] = {}
        with self._session() as db:
            for row in self._exec(db, "SELECT worker, outcome, COUNT(*) AS n FROM claims GROUP BY worker, outcome"):
                entry = stats.setdefault(row["worker"], {"claimed": 0})
                entry["claimed"] += row["n"]
                entry[row["outcome"] or "running"] = entry.get(row["outcome"] or "running", 0) + row["n"]
        return stats

    def attempt_counts(self) -> dict[int, int]:
        """Stored jobs by how many times they were claimed."""
        with self._session() as db:
            rows = self._exec(db, "SELECT attempts, COUNT(*) AS n FROM jobs GROUP BY attempts").fetchall()
        return {row["attempts"]: row["n"] for row in rows}

    def claims_of(self, job_id: str) -> list[dict]:
        with self._session() as db:
            rows = self._exec(db, "SELECT * FROM claims WHERE job_id=? ORDER BY attempt", (job_id,)).fetchall()
        return [dict(row) for row in rows]

    def image(self, job: Job, index: int) -> bytes | None:
        return self.blobs.get(job.id, output_name(index))

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (for /readyz)."""
        with self._session() as db:
            self._exec(db, "SELECT 1 AS one").fetchone()

    # ---- the worker's side

    def claim_next(self, worker: str) -> Job | None:
        """Take the oldest queued job with a fresh lease; first requeue the jobs whose lease expired."""
        self._reap_now_and_then()
        lease_id = secrets.token_hex(8)
        with self._transaction() as db:
            row = self._exec(db, "SELECT id FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1" + self.FOR_UPDATE
                             ).fetchone()
            if row is None:
                return None
            self._exec(db, "UPDATE jobs SET status='running', worker=?, started={now}, attempts=attempts+1, step=0, "
                           "lease_id=?, lease_until={now}+? WHERE id=?", (worker, lease_id, self.lease_s, row["id"]))
            self._exec(db, "INSERT INTO claims (lease_id, job_id, attempt, worker, claimed) "
                           "SELECT ?, id, attempts, ?, {now} FROM jobs WHERE id=?", (lease_id, worker, row["id"]))
        return self.get(row["id"])

    def progress(self, job: Job, step: int, total: int) -> bool:
        """Record progress and renew the lease; True when the job has been cancelled meanwhile. LeaseLost when
        this attempt no longer owns the job."""
        with self._session() as db:
            row = self._exec(db, "UPDATE jobs SET step=?, total=?, lease_until={now}+? WHERE id=? AND lease_id=? "
                                 "AND status='running' RETURNING cancel_requested",
                             (step, total, self.lease_s, job.id, job.lease_id)).fetchall()
        if not row:
            raise LeaseLost(job.id)
        return bool(row[0]["cancel_requested"])

    def renew(self, job: Job) -> None:
        """Push the lease's deadline on (the keeper thread, between steps). LeaseLost when it expired."""
        with self._session() as db:
            row = self._exec(db, "UPDATE jobs SET lease_until={now}+? WHERE id=? AND lease_id=? AND status='running' "
                                 "RETURNING id", (self.lease_s, job.id, job.lease_id)).fetchall()
        if not row:
            raise LeaseLost(job.id)

    def finish(self, job: Job, pngs: list[bytes], parameters: dict) -> bool:
        """Store the result PNGs and mark the job done, if this attempt still holds the lease (else nothing is
        written and False comes back). Outputs and status change together: a result is visible only once done."""
        with self._transaction() as db:
            if not self._holds(db, job):
                return False
            self.blobs.put(job.id, {output_name(n): data for n, data in enumerate(pngs)}, db)
            self._exec(db, "UPDATE jobs SET status='done', images=?, parameters=?, step=total, finished={now}, "
                           "lease_id=NULL, lease_until=NULL WHERE id=?", (len(pngs), json.dumps(parameters), job.id))
            self._end_claim(db, job.lease_id, "done")
        return True

    def fail(self, job: Job, error: str, status: str = "failed") -> bool:
        """Mark the job failed (or cancelled) if this attempt holds it. False when the lease was lost."""
        with self._transaction() as db:
            if not self._holds(db, job):
                return False
            self._exec(db, "UPDATE jobs SET status=?, error=?, finished={now}, lease_id=NULL, lease_until=NULL "
                           "WHERE id=?", (status, error, job.id))
            self._end_claim(db, job.lease_id, status)
        return True

    def release(self, job: Job) -> bool:
        """Hand a running job back to the queue (graceful shutdown): it keeps its place and this attempt does
        not count."""
        with self._transaction() as db:
            if not self._holds(db, job):
                return False
            self._exec(db, "UPDATE jobs SET status='queued', worker=NULL, step=0, attempts=attempts-1, lease_id=NULL, "
                           "lease_until=NULL WHERE id=?", (job.id,))
            self._end_claim(db, job.lease_id, "released")
        return True

    def _holds(self, db, job: Job) -> bool:
        row = self._exec(db, "SELECT status, lease_id FROM jobs WHERE id=?" + self.FOR_UPDATE, (job.id,)).fetchone()
        return row is not None and row["status"] == "running" and row["lease_id"] == job.lease_id

    def _end_claim(self, db, lease_id: str, outcome: str) -> None:
        self._exec(db, "UPDATE claims SET outcome=?, ended={now} WHERE lease_id=?", (outcome, lease_id))

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is flagged and stops at its next step."""
        with self._transaction() as db:
            self._exec(db, "UPDATE jobs SET status='cancelled', finished={now}, error='cancelled by the client' "
                           "WHERE id=? AND status='queued'", (job_id,))
            self._exec(db, "UPDATE jobs SET cancel_requested=1 WHERE id=? AND status='running'", (job_id,))
        return self.get(job_id)

    # ---- leases and housekeeping

    def _reap_now_and_then(self) -> None:
        with self._reap_lock:
            due = time.monotonic() - self._last_reap >= min(1.0, self.lease_s / 4)
            if due:
                self._last_reap = time.monotonic()
        if due:
            self.reap_expired()

    def reap_expired(self) -> list[str]:
        """Jobs whose lease ran out (worker killed, host lost, worker hung): queued again in their old place,
        or failed after max_attempts, or cancelled if that was asked. Returns the re-queued ids."""
        requeued = []
        with self._transaction() as db:
            rows = self._exec(db, "SELECT id, attempts, cancel_requested, lease_id FROM jobs WHERE status='running' "
                                  "AND lease_until < {now}" + self.FOR_UPDATE).fetchall()
            for row in rows:
                self._end_claim(db, row["lease_id"], "expired")
                if row["cancel_requested"]:
                    self._exec(db, "UPDATE jobs SET status='cancelled', finished={now}, error='cancelled by the "
                                   "client', lease_id=NULL, lease_until=NULL WHERE id=?", (row["id"],))
                elif row["attempts"] >= self.max_attempts:
                    reason = (f"the job's lease expired {row['attempts']} times (its worker died or hung each time); "
                              "not retried again")
                    self._exec(db, "UPDATE jobs SET status='failed', finished={now}, error=?, lease_id=NULL, "
                                   "lease_until=NULL WHERE id=?", (reason, row["id"]))
                else:
                    self._exec(db, "UPDATE jobs SET status='queued', worker=NULL, step=0, lease_id=NULL, "
                                   "lease_until=NULL WHERE id=?", (row["id"],))
                    requeued.append(row["id"])
        return requeued

    def expire(self, ttl_s: float) -> int:
        """Delete finished jobs (rows, claims and files) older than ttl_s, and abandoned staged uploads.
        Returns how many jobs."""
        with self._transaction() as db:
            ids = [row["id"] for row in self._exec(
                db, "SELECT id FROM jobs WHERE status IN ('done','failed','cancelled') AND finished < {now}-?",
                (ttl_s,)).fetchall()]
            for job_id in ids:
                self._exec(db, "DELETE FROM claims WHERE job_id=?", (job_id,))
                self._exec(db, "DELETE FROM jobs WHERE id=?", (job_id,))
        if ids:
            self.blobs.delete(ids)
        with self._reap_lock:  # orphans are rare (a process died mid-upload): sweep for them now and then
            sweep = time.monotonic() - self._last_sweep >= ORPHAN_AGE_S / 4
            if sweep:
                self._last_sweep = time.monotonic()
        if sweep:
            self.blobs.remove_orphans(self._known_ids, ORPHAN_AGE_S)
        return len(ids)

    def _known_ids(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        with self._session() as db:
            marks = ",".join("?" * len(job_ids))
            return {row["id"] for row in self._exec(db, f"SELECT id FROM jobs WHERE id IN ({marks})", tuple(job_ids))}


@contextmanager
def translated(errors: tuple[type[BaseException], ...], describe):
    """Turn a driver's connection errors into StoreUnavailable naming the store (never its password)."""
    try:
        yield
    except errors as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreUnavailable(f"the job store {describe()} is unreachable ({first}); retry later") from None


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
