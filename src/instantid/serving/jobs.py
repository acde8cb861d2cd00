"""The durable job store: one SQLite database plus one folder per job, under the state folder.

    STATE/jobs.sqlite3        job rows (status, request, progress, parameters, timings)
    STATE/jobs/ID/inputs/     the uploaded photos, as uploaded
    STATE/jobs/ID/outputs/    0.png, 1.png, ... (with the `parameters` text chunk)
    STATE/face-cache/         face analysis by content hash (instantid.face.cache)

A job's files are written before its row, and a row is the only thing that makes a job exist, so a
crash at any point loses no accepted job and leaves at most an orphan folder (removed at start).
Several processes on one host may share a store (the Ray Serve replicas do): claiming a job is one
IMMEDIATE transaction. SQLite must not live on a network file system; see docs/serving.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
# A job that was running when the server died is queued again this many times, then marked failed
# (a job that kills the server must not kill it forever).
MAX_ATTEMPTS = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, seq);
"""


class QueueFull(Exception):
    pass


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        data = dict(row)
        data["request"] = json.loads(data["request"])
        data["parameters"] = json.loads(data["parameters"]) if data["parameters"] else None
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)


def new_job_id() -> str:
    """128 random bits: ids are unguessable, so a job's results are reachable only by whoever got its id."""
    return secrets.token_hex(16)


def valid_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class JobStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.sqlite3"
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    # ---- plumbing

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

    def _transaction(self):
        store = self

        class _Tx:
            def __enter__(self):
                self.db = store._connect()
                self.db.execute("BEGIN IMMEDIATE")
                return self.db

            def __exit__(self, kind, value, tb):
                self.db.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def inputs_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "inputs"

    def outputs_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "outputs"

    def image_path(self, job_id: str, index: int) -> Path:
        return self.outputs_dir(job_id) / f"{index}.png"

    # ---- submitting

    def queued_count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM jobs WHERE status='queued'").fetchone()[0]

    def stage(self, files: dict[str, bytes]) -> str:
        """Write a submission's photos into a new job folder (not yet a job). Returns the new job's id."""
        job_id = new_job_id()
        inputs = self.inputs_dir(job_id)
        inputs.mkdir(parents=True)
        for name, data in files.items():
            with open(inputs / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        return job_id

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def enqueue(self, job_id: str, request: dict, queue_size: int) -> Job:
        """Make a staged job exist (queued); QueueFull, and its folder removed, when `queue_size` jobs wait."""
        try:
            with self._transaction() as db:
                if db.execute("SELECT COUNT(*) FROM jobs WHERE status='queued'").fetchone()[0] >= queue_size:
                    raise QueueFull()
                db.execute("INSERT INTO jobs (id, status, request, created) VALUES (?, 'queued', ?, ?)",
                           (job_id, json.dumps(request), time.time()))
        except BaseException:
            self.discard(job_id)
            raise
        return self.get(job_id)

    # ---- reading

    def get(self, job_id: str) -> Job | None:
        row = self._connect().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def queue_position(self, job: Job) -> int | None:
        """Jobs ahead of this one (0 = next to run); None unless queued."""
        if job.status != "queued":
            return None
        return self._connect().execute("SELECT COUNT(*) FROM jobs WHERE status='queued' AND seq<?",
                                       (job.seq,)).fetchone()[0]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for status, count in self._connect().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
            counts[status] = count
        return counts

    def durations(self) -> list[float]:
        """Seconds from start to finish of the finished jobs still stored (the latency histogram)."""
        rows = self._connect().execute(
            "SELECT finished-started FROM jobs WHERE status='done' AND started IS NOT NULL")
        return [row[0] for row in rows]

    # ---- the worker's side

    def claim_next(self, worker: str) -> Job | None:
        """Take the oldest queued job (atomically: several workers may share the store)."""
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status='running', worker=?, started=?, attempts=attempts+1, step=0 "
                       "WHERE id=?", (worker, time.time(), row["id"]))
        return self.get(row["id"])

    def progress(self, job_id: str, step: int, total: int) -> bool:
        """Record progress; True when the job has been cancelled meanwhile (the worker then stops)."""
        db = self._connect()
        db.execute("UPDATE jobs SET step=?, total=? WHERE id=?", (step, total, job_id))
        row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    def finish(self, job_id: str, images: int, parameters: dict) -> None:
        self._connect().execute(
            "UPDATE jobs SET status='done', images=?, parameters=?, step=total, finished=? WHERE id=?",
            (images, json.dumps(parameters), time.time(), job_id))

    def fail(self, job_id: str, error: str, status: str = "failed") -> None:
        self._connect().execute("UPDATE jobs SET status=?, error=?, finished=? WHERE id=?",
                                (status, error, time.time(), job_id))

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is flagged and stops at its next step."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET status='cancelled', finished=?, error='cancelled by the client' "
                       "WHERE id=? AND status='queued'", (time.time(), job_id))
            db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND status='running'", (job_id,))
        return self.get(job_id)

    # ---- housekeeping

    def recover(self) -> list[str]:
        """At start (one process per store): jobs left 'running' by a dead server are queued again, or failed
        after MAX_ATTEMPTS; orphan folders of never-accepted submissions are removed. Returns the re-queued ids."""
        with self._transaction() as db:
            running = db.execute("SELECT id, attempts, cancel_requested FROM jobs WHERE status='running'").fetchall()
            requeued = []
            for row in running:
                if row["cancel_requested"]:
                    db.execute("UPDATE jobs SET status='cancelled', finished=?, error='cancelled by the client' "
                               "WHERE id=?", (time.time(), row["id"]))
                elif row["attempts"] >= MAX_ATTEMPTS:
                    db.execute("UPDATE jobs SET status='failed', finished=?, error=? WHERE id=?",
                               (time.time(), f"the server stopped while running this job {row['attempts']} times; "
                                             "not retried again", row["id"]))
                else:
                    db.execute("UPDATE jobs SET status='queued', step=0, worker=NULL WHERE id=?", (row["id"],))
                    requeued.append(row["id"])
            known = {row[0] for row in db.execute("SELECT id FROM jobs")}
        for folder in self.jobs_dir.iterdir():
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
        for job_id in requeued:  # a half-written output of the interrupted run must not add images
            shutil.rmtree(self.outputs_dir(job_id), ignore_errors=True)
        return requeued

    def expire(self, ttl_s: float) -> int:
        """Delete finished jobs (rows and files) older than ttl_s. Returns how many."""
        cutoff = time.time() - ttl_s
        with self._transaction() as db:
            ids = [row[0] for row in db.execute(
                "SELECT id FROM jobs WHERE status IN ('done','failed','cancelled') AND finished<?", (cutoff,))]
            db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
        for job_id in ids:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return len(ids)
