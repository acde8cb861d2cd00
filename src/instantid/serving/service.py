"""One process serving: the engine loads in the background (/readyz says when), one worker runs the queue."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .engine import Engine
from .limits import Limits
from .store import JobStore
from .worker import Worker

logger = logging.getLogger(__name__)


class LocalService:
    """The store, the engine (face analysis now, the pipeline once loaded) and one worker in this process."""

    def __init__(self, store: JobStore, engine: Engine, limits: Limits,
                 on_load_error: Callable[[BaseException], None] | None = None) -> None:
        self.store, self.engine, self.limits = store, engine, limits
        self.worker = Worker(store, engine, limits.result_ttl_s)
        self.load_error: str | None = None
        self._on_load_error = on_load_error

    def start(self) -> None:
        # No recovery step: a job left running by a dead process goes back to the queue when its lease expires
        # (a live lease, another process's running job, is never taken over).
        threading.Thread(target=self._load, name="instantid-load", daemon=True).start()

    def _load(self) -> None:
        try:
            self.engine.load()
        except BaseException as err:  # the server cannot do its job: say why, then stop
            self.load_error = f"{type(err).__name__}: {err}"
            logger.error("could not load the models: %s", err)
            if self._on_load_error:
                self._on_load_error(err)
            return
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def not_ready(self) -> str | None:
        """None when jobs run; else why not."""
        unreachable = store_problem(self.store)
        if unreachable:
            return unreachable
        if self.load_error:
            return f"model load failed: {self.load_error}"
        if not self.engine.loaded:
            return "loading models"
        if not self.worker.alive:
            return "worker stopped"
        return None

    def wake(self) -> None:
        self.worker.wake()


def store_problem(store: JobStore) -> str | None:
    """None when the job store and its blob store answer; else what is wrong (no credentials)."""
    from .store import StoreUnavailable

    try:
        store.ping()
    except StoreUnavailable as err:
        logger.warning("%s", err)
        return f"the job store ({store.kind}) is unreachable; retry later"
    try:
        store.blobs.ping()
    except Exception as err:
        logger.warning("blob store %s unreachable: %s", store.blobs.describe(), err)
        return f"the blob store ({store.blobs.kind}) is unreachable; retry later"
    return None
