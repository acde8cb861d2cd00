"""The worker: claims queued jobs from the store in order and runs them on the engine, one at a time.

A claimed job carries a lease (store/base.py): the worker renews it at each step and from a keeper thread
between steps, stops a job whose lease it lost (another attempt owns it; nothing of this one is kept), and
on shutdown lets a running job finish for a short grace period, then hands it back to the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from ..errors import InstantIDError
from .engine import Engine, JobCancelled
from .schemas import JobRequest, UnreadableRequest, stored_request
from .store import Job, JobStore, LeaseLost, StoreUnavailable

logger = logging.getLogger(__name__)


class HandedBack(Exception):
    """Raised from the step callback when the worker stops: the job goes back to the queue."""


def input_names(request: JobRequest) -> list[str]:
    """The stored photo names a job reads."""
    return [*request.faces, *([request.pose] if request.pose else []), *request.controls.values()]


class LeaseKeeper:
    """Renews a job's lease every third of the lease time while the engine works between steps."""

    def __init__(self, store: JobStore, job: Job) -> None:
        self.store, self.job = store, job
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job.id[:8]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.store.lease_s / 3):
            try:
                self.store.renew(self.job)
            except LeaseLost:
                self.lost.set()
                return
            except StoreUnavailable as err:  # keep working; the finishing write checks the lease anyway
                logger.warning("could not renew the lease of job %s: %s", self.job.id, err)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)


class Worker:
    def __init__(self, store: JobStore, engine: Engine, ttl_s: float, name: str | None = None,
                 poll_s: float = 0.5, grace_s: float = 5.0, housekeeping_s: float = 10.0) -> None:
        self.store, self.engine, self.ttl_s, self.poll_s = store, engine, ttl_s, poll_s
        self.grace_s, self.housekeeping_s = grace_s, housekeeping_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._hand_back = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"instantid-worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Claim nothing more; a running job may finish within grace_s, else it is handed back to the queue."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return
        self._thread.join(self.grace_s)
        if self._thread.is_alive():
            self._hand_back.set()
            self._thread.join(timeout if timeout is not None else 30)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """A job was submitted in this process: look now instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        last_housekeeping = 0.0
        while not self._stop.is_set():
            job = None
            try:
                if time.monotonic() - last_housekeeping >= self.housekeeping_s:
                    last_housekeeping = time.monotonic()
                    self.store.expire(self.ttl_s)
                job = self.store.claim_next(self.name)
            except StoreUnavailable as err:  # database restarting or out of reach: try again at the next poll
                logger.warning("%s", err)
            except Exception:  # e.g. a locked SQLite database: try again at the next poll
                logger.exception("job store error")
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run(job)

    def run(self, job: Job) -> None:
        keeper = LeaseKeeper(self.store, job)

        def on_step(step: int, total: int) -> None:
            if self._hand_back.is_set():
                raise HandedBack()
            if keeper.lost.is_set():
                raise LeaseLost(job.id)
            try:
                cancelled = self.store.progress(job, step, total)
            except StoreUnavailable as err:  # no progress shown for now; the keeper and the finish retry
                logger.warning("progress of job %s not recorded: %s", job.id, err)
                return
            if cancelled:
                raise JobCancelled()

        try:
            request = stored_request(job.request)  # as accepted (or as a release before JobRequest stored it)
            with self.store.blobs.local_inputs(job.id, input_names(request)) as folder:
                try:
                    images, parameters = self.engine.generate(request, folder, on_step)
                except InstantIDError as err:  # the inputs' fault, said in one line (without the server's folders)
                    self._settle(job, "fail", str(err).replace(f"{folder}{os.sep}", ""))
                    return
            with tempfile.TemporaryDirectory(prefix="outputs-") as scratch:
                paths = self.engine.save_pngs(images, parameters, Path(scratch))
                pngs = [path.read_bytes() for path in paths]
            if self._settle(job, "finish", pngs, parameters) is False:
                logger.warning("job %s: this attempt's lease expired before it finished; its outputs are "
                               "discarded (another attempt owns the job)", job.id)
        except UnreadableRequest as err:
            self._settle(job, "fail", str(err))
        except JobCancelled:
            self._settle(job, "fail", "cancelled by the client", status="cancelled")
        except LeaseLost:
            logger.warning("job %s: lease lost (expired while it ran); stopped, nothing of this attempt is kept", job.id)
        except HandedBack:
            if self._settle(job, "release"):
                logger.warning("job %s handed back to the queue (worker stopping)", job.id)
        except Exception as err:  # our fault: logged in full, the client gets the kind of failure
            logger.exception("job %s failed", job.id)
            self._settle(job, "fail", f"internal error ({type(err).__name__}); see the server log")
        finally:
            keeper.stop()

    def _settle(self, job: Job, action: str, *args, **kwargs):
        """finish / fail / release, retried while the store is unreachable (for up to twice the lease time:
        after that the job has gone back to the queue anyway). None when the store stayed unreachable."""
        deadline = time.monotonic() + max(30.0, 2 * self.store.lease_s)
        delay = 0.2
        while True:
            try:
                return getattr(self.store, action)(job, *args, **kwargs)
            except StoreUnavailable as err:
                if time.monotonic() > deadline:
                    logger.error("job %s: gave up recording its end (%s); its lease will expire and it runs again",
                                 job.id, err)
                    return None
                logger.warning("job %s: %s", job.id, err)
                time.sleep(delay)
                delay = min(2.0, delay * 2)
