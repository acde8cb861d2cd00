"""Scale-out on Ray Serve: N replicas, each with its own pipeline and the same worker as `instantid serve`.

The API process (FastAPI under uvicorn, as without --ray) validates and queues jobs in the shared job
store; every replica runs a Worker that claims the oldest queued job from that store with a lease and
writes progress and results back. Ray Serve places the replicas (one GPU each when there are GPUs; spread
over the cluster's nodes), health-checks them and restarts dead ones. A replica that dies mid-job loses
its lease and another replica reruns the job (store/base.py); a replica shut down gracefully hands its
job back (`__del__` stops the worker).

With SQLite (the default) every replica must run on the host that holds the state folder; with
--store postgresql://... they may run on any node of a multi-host cluster (--ray-address).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Callable

from ray import serve

from .engine import Engine, EngineConfig
from .limits import Limits
from .store import JobStore, StoreConfig, open_store
from .worker import Worker

logger = logging.getLogger(__name__)

APP_NAME = "instantid"


@serve.deployment
class GenerationReplica:
    """One pipeline and one worker on the shared job store."""

    def __init__(self, config: EngineConfig, store_config: StoreConfig, ttl_s: float, poll_s: float = 0.2) -> None:
        import ray

        from ..pipelines.loading import set_loading_output

        set_loading_output(verbose=False, progress_bars=False)  # a replica's output goes to Ray's logs
        engine = Engine(config, face_cache_dir=Path(store_config.state_dir) / "face-cache")
        engine.load()
        store = open_store(store_config)
        # the node id in the name: the store's claims say which node ran what
        name = f"{socket.gethostname()}:{os.getpid()}:{ray.get_runtime_context().get_node_id()[:12]}"
        self.worker = Worker(store, engine, ttl_s, name=name, poll_s=poll_s)
        self.worker.start()

    def check_health(self) -> None:  # Ray Serve calls this; raising makes it replace the replica
        if not self.worker.alive:
            raise RuntimeError("the worker thread stopped")

    def name(self) -> str:
        return self.worker.name

    def __del__(self):
        worker = getattr(self, "worker", None)
        if worker is not None:
            worker.stop(timeout=5)


def _replica_gpus(device: str) -> int:
    """One GPU per replica when the pipelines run on CUDA (say --device cuda for a remote GPU cluster)."""
    if device == "auto":
        import torch

        return int(torch.cuda.is_available())
    return int(device.startswith("cuda"))


class RayService:
    """The API process's side of --ray: starts (or joins) Ray, deploys the replicas, reports readiness."""

    def __init__(self, store: JobStore, engine: Engine, limits: Limits, store_config: StoreConfig, *,
                 replicas: int = 1, address: str | None = None, verbose: bool = False,
                 on_load_error: Callable[[BaseException], None] | None = None) -> None:
        self.store, self.engine, self.limits, self.store_config = store, engine, limits, store_config
        self.replicas, self.address, self.verbose = replicas, address, verbose
        self.load_error: str | None = None
        self._ready = False
        self._on_load_error = on_load_error

    def start(self) -> None:
        threading.Thread(target=self._deploy, name="instantid-ray-deploy", daemon=True).start()

    def _deploy(self) -> None:
        import ray

        try:
            if not ray.is_initialized():
                if self.address:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=self.verbose)
                else:
                    # A local instance sized for this machine: logical CPUs enough for the replicas, a small
                    # object store (jobs travel through the store on disk, not through Ray objects).
                    ray.init(num_cpus=max(os.cpu_count() or 1, self.replicas), include_dashboard=False,
                             object_store_memory=100 * 2**20, log_to_driver=self.verbose)
            serve.start(proxy_location="Disabled")  # the API is ours (uvicorn), not Ray's HTTP proxy
            deployment = GenerationReplica.options(
                num_replicas=self.replicas,
                ray_actor_options={"num_cpus": 1, "num_gpus": _replica_gpus(self.engine.config.load.device)})
            serve.run(deployment.bind(self.engine.config, self.store_config, self.limits.result_ttl_s), name=APP_NAME,
                      route_prefix=None)
            self._ready = True
        except BaseException as err:
            self.load_error = f"{type(err).__name__}: {err}"
            logger.error("Ray Serve deployment failed: %s", err)
            if self._on_load_error:
                self._on_load_error(err)

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            try:
                serve.delete(APP_NAME)
                serve.shutdown()
            finally:
                ray.shutdown()

    def not_ready(self) -> str | None:
        from .service import store_problem

        unreachable = store_problem(self.store)
        if unreachable:
            return unreachable
        if self.load_error:
            return f"Ray Serve deployment failed: {self.load_error}"
        return None if self._ready else "deploying replicas on Ray Serve"

    def wake(self) -> None:
        """Replicas poll the store (every 0.2 s); nothing to signal across processes."""
