"""Where the photos and result PNGs of jobs live: a job's blobs are named `inputs/face_0.jpg`,
`outputs/0.png`, ... under its id.

- `FolderBlobs`: STATE/jobs/ID/... on the local disk (the SQLite default; one host).
- `DatabaseBlobs`: a table in the PostgreSQL job store (the default with --store postgresql://...): every
  host reaches it, and a job's outputs are written in the same transaction that marks it done.
- `FsspecBlobs`: any fsspec URL (`s3://bucket/prefix`, `gs://...`, `file:///shared/mount`; --blobs).

The checks before a job is queued (face detection) and the engine read photos from local files, so the
non-folder stores keep a local copy of a submission under STATE/staging/ID/ until it is queued, and the
worker downloads a job's inputs into a temporary folder while it runs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_old_folders(root: Path, keep: Callable[[list[str]], set[str]], age_s: float) -> None:
    if not root.is_dir():
        return
    cutoff = time.time() - age_s
    candidates = []
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                candidates.append(folder.name)
        except FileNotFoundError:
            pass
    known = keep(candidates) if candidates else set()
    for name in candidates:
        if name not in known:
            shutil.rmtree(root / name, ignore_errors=True)


class Blobs:
    """Staging through a local folder; subclasses store the blobs somewhere every host reaches."""

    def __init__(self, staging_root: Path) -> None:
        self.staging_root = Path(staging_root)

    # ---- the API's side: a submission is checked from local files, then queued

    def stage(self, job_id: str, files: dict[str, bytes]) -> None:
        self.put(job_id, files)
        for name, data in files.items():
            _write_synced(self.staging_root / job_id / name, data)

    def staged_dir(self, job_id: str) -> Path:
        return self.staging_root / job_id / "inputs"

    def unstage(self, job_id: str) -> None:
        shutil.rmtree(self.staging_root / job_id, ignore_errors=True)

    # ---- the worker's side

    @contextmanager
    def local_inputs(self, job_id: str, names: list[str]) -> Iterator[Path]:
        """A local folder holding the job's input photos while the block runs."""
        with tempfile.TemporaryDirectory(prefix=f"job-{job_id[:8]}-", dir=self.staging_root) as folder:
            for name in names:
                data = self.get(job_id, f"inputs/{name}")
                if data is None:
                    raise FileNotFoundError(f"input photo {name} of job {job_id} is missing from the blob store")
                Path(folder, name).write_bytes(data)
            yield Path(folder)

    # ---- storage (subclasses)

    def put(self, job_id: str, files: dict[str, bytes], db=None) -> None:
        raise NotImplementedError

    def get(self, job_id: str, name: str) -> bytes | None:
        raise NotImplementedError

    def delete(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self.unstage(job_id)

    def remove_orphans(self, known: Callable[[list[str]], set[str]], age_s: float) -> None:
        """Remove the blobs of submissions that never became jobs (`known` says which ids are jobs)."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - age_s
        for folder in self.staging_root.iterdir():  # local copies (and temp folders) of a dead process
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                pass

    def describe(self) -> str:
        raise NotImplementedError

    def ping(self) -> None:
        """Raise unless the blob store answers (for /readyz and --check-store)."""


class FolderBlobs(Blobs):
    """STATE/jobs/ID/inputs/..., STATE/jobs/ID/outputs/N.png (fsynced): the single-host default."""

    kind = "folder"

    def __init__(self, root: Path) -> None:
        super().__init__(Path(root) / "staging")
        self.jobs_dir = Path(root) / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str, name: str) -> Path:
        return self.jobs_dir / job_id / name

    def stage(self, job_id: str, files: dict[str, bytes]) -> None:
        self.put(job_id, files)

    def staged_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id / "inputs"

    def unstage(self, job_id: str) -> None:
        pass

    @contextmanager
    def local_inputs(self, job_id: str, names: list[str]) -> Iterator[Path]:
        yield self.staged_dir(job_id)

    def put(self, job_id: str, files: dict[str, bytes], db=None) -> None:
        for name, data in files.items():
            _write_synced(self.path(job_id, name), data)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.path(job_id, name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)

    def remove_orphans(self, known, age_s: float) -> None:
        super().remove_orphans(known, age_s)
        _remove_old_folders(self.jobs_dir, known, age_s)

    def describe(self) -> str:
        return f"folder {self.jobs_dir}"


class DatabaseBlobs(Blobs):
    """Blobs in the PostgreSQL job store's `blobs` table."""

    kind = "database"

    def __init__(self, store, staging_root: Path) -> None:
        super().__init__(staging_root)
        self.store = store

    def put(self, job_id: str, files: dict[str, bytes], db=None) -> None:
        if db is None:
            with self.store._transaction() as db:
                return self.put(job_id, files, db)
        for name, data in files.items():
            self.store._exec(db, "INSERT INTO blobs (job_id, name, data, created) VALUES (?, ?, ?, {now}) "
                                 "ON CONFLICT (job_id, name) DO UPDATE SET data=EXCLUDED.data", (job_id, name, data))

    def get(self, job_id: str, name: str) -> bytes | None:
        with self.store._session() as db:
            row = self.store._exec(db, "SELECT data FROM blobs WHERE job_id=? AND name=?", (job_id, name)).fetchone()
        return bytes(row["data"]) if row else None

    def delete(self, job_ids: list[str]) -> None:
        super().delete(job_ids)
        with self.store._session() as db:
            for job_id in job_ids:
                self.store._exec(db, "DELETE FROM blobs WHERE job_id=?", (job_id,))

    def remove_orphans(self, known, age_s: float) -> None:
        super().remove_orphans(known, age_s)
        with self.store._session() as db:
            self.store._exec(db, "DELETE FROM blobs b WHERE created < {now}-? AND NOT EXISTS "
                                 "(SELECT 1 FROM jobs j WHERE j.id=b.job_id)", (age_s,))

    def describe(self) -> str:
        return f"table blobs in {self.store.describe()}"

    def ping(self) -> None:
        self.store.ping()


class FsspecBlobs(Blobs):
    """Blobs at an fsspec URL: URL/ID/inputs/..., URL/ID/outputs/N.png."""

    kind = "fsspec"

    def __init__(self, url: str, staging_root: Path) -> None:
        import fsspec

        super().__init__(staging_root)
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def _key(self, job_id: str, name: str = "") -> str:
        return f"{self.root}/{job_id}/{name}".rstrip("/")

    def put(self, job_id: str, files: dict[str, bytes], db=None) -> None:
        for name, data in files.items():
            self.fs.makedirs(self._key(job_id, name).rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(self._key(job_id, name), data)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._key(job_id, name))
        except FileNotFoundError:
            return None

    def delete(self, job_ids: list[str]) -> None:
        super().delete(job_ids)
        for job_id in job_ids:
            try:
                self.fs.rm(self._key(job_id), recursive=True)
            except FileNotFoundError:
                pass

    def remove_orphans(self, known, age_s: float) -> None:
        super().remove_orphans(known, age_s)
        cutoff = time.time() - age_s
        candidates = []
        for entry in self.fs.ls(self.root, detail=True):
            job_id = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            modified = self._modified(self._key(job_id, "inputs"))
            if modified is not None and modified < cutoff:
                candidates.append(job_id)
        ids = known(candidates) if candidates else set()
        self.delete([job_id for job_id in candidates if job_id not in ids])

    def _modified(self, key: str) -> float | None:
        try:
            return self.fs.modified(key).timestamp()
        except (FileNotFoundError, NotImplementedError, IsADirectoryError, OSError):
            try:  # object stores have no folders: the first input's time
                first = self.fs.ls(key, detail=False)[0]
                return self.fs.modified(first).timestamp()
            except Exception:
                return None

    def describe(self) -> str:
        from .base import redact

        return f"fsspec {redact(self.url)}"

    def ping(self) -> None:
        self.fs.ls(self.root)
