"""Horizontal scaling without Ray: two plain `instantid serve --store postgresql://...` processes, each with its
own state folder, sharing nothing but the database, are one service: either accepts, either runs, either
serves the result; a SIGKILLed one costs only a lease; a graceful stop hands the running job back."""

from __future__ import annotations

import signal

import pytest
import requests

from ray_cluster import wait_until
from serve_server import Server, submit, wait_for

pytestmark = pytest.mark.slow

LEASE_S = 2


def test_two_servers_are_one_service(postgres, photos, tmp_path):
    from instantid.serving.store import StoreConfig, open_store

    url = postgres.new_database()
    args = ("--store", url, "--lease-seconds", str(LEASE_S), "--queue-size", "8")
    servers = [Server(tmp_path / name, *args) for name in ("a", "b")]
    store = open_store(StoreConfig(state_dir=str(tmp_path / "probe"), url=url))
    try:
        for server in servers:
            server.wait()
        # accepted by one, followed and downloaded from the other
        jobs = [(submit(servers[i % 2].url, [photos["astronaut"]], seed=i).json()["id"], servers[(i + 1) % 2])
                for i in range(4)]
        for job_id, other in jobs:
            job = wait_for(other.url, job_id)
            assert job["status"] == "done" and requests.get(other.url + job["images"][0], timeout=10).ok

        def running_on(job_id):
            job = store.get(job_id)
            if job.status == "running" and job.step >= 1:
                pid = int(job.worker.split(":")[1])
                return next(s for s in servers if s.process.pid == pid)
            return None

        # SIGKILL mid-job: the other server finishes it once its lease expires, exactly once
        job_id = submit(servers[0].url, [photos["grace_hopper"]], seed=9, num_inference_steps=60).json()["id"]
        victim = wait_until(lambda: running_on(job_id), 120, "the job running")
        victim.kill()
        survivor = servers[1 - servers.index(victim)]
        job = wait_for(survivor.url, job_id, timeout=120)
        assert job["status"] == "done" and job["attempts"] == 2
        assert [c["outcome"] for c in store.claims_of(job_id)] == ["expired", "done"]
        assert requests.get(survivor.url + job["images"][0], timeout=10).ok

        # graceful stop (SIGTERM) mid-job: the job is handed back (lease released, the attempt not counted) and
        # waits in its place for the next worker
        long_job = submit(survivor.url, [photos["astronaut"]], num_inference_steps=500).json()["id"]
        wait_until(lambda: running_on(long_job) is survivor, 120, "the long job running")
        survivor.stop()
        assert survivor.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
        assert [c["outcome"] for c in store.claims_of(long_job)] == ["released"]
        job = store.get(long_job)
        assert job.status == "queued" and job.attempts == 0 and job.lease_id is None
    finally:
        for server in servers:
            server.stop()
        store.close()
