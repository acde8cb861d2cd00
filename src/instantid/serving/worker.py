"""The worker: takes queued jobs from the store in order and runs them on the engine, one at a time."""

from __future__ import annotations

import logging
import os
import socket
import threading

from ..errors import InstantIDError
from .engine import Engine, JobCancelled
from .jobs import Job, JobStore
from .schemas import JobRequest

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, store: JobStore, engine: Engine, ttl_s: float, name: str | None = None,
                 poll_s: float = 0.5) -> None:
        self.store, self.engine, self.ttl_s, self.poll_s = store, engine, ttl_s, poll_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"instantid-worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """A job was submitted in this process: look now instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.expire(self.ttl_s)
                job = self.store.claim_next(self.name)
            except Exception:  # a locked or briefly unavailable database: try again at the next poll
                logger.exception("job store unavailable")
                job = None
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run(job)

    def run(self, job: Job) -> None:
        def on_step(step: int, total: int) -> None:
            if self.store.progress(job.id, step, total):
                raise JobCancelled()

        try:
            request = JobRequest.model_validate(job.request)  # as accepted: validated again, never reshaped
            images, parameters = self.engine.generate(request, self.store.inputs_dir(job.id), on_step)
            paths = self.engine.save_pngs(images, parameters, self.store.outputs_dir(job.id))
            self.store.finish(job.id, len(paths), parameters)
        except JobCancelled:
            self.store.fail(job.id, "cancelled by the client", status="cancelled")
        except InstantIDError as err:  # the inputs' fault, said in one line (without the server's folders)
            self.store.fail(job.id, str(err).replace(f"{self.store.inputs_dir(job.id)}{os.sep}", ""))
        except Exception as err:  # our fault: logged in full, the client gets the kind of failure
            logger.exception("job %s failed", job.id)
            self.store.fail(job.id, f"internal error ({type(err).__name__}); see the server log")


