"""Horizontal scaling without Ray: two plain `instantid serve --store postgresql://...` processes, each with its
own state folder, sharing nothing but the database, are one service: either accepts, either runs, either
serves the result; a graceful stop hands the running job back; a SIGKILLed one costs only a lease."""

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

        # graceful stop (SIGTERM) mid-job: the job is handed back (lease released) and the other one takes it
        long_job = submit(servers[0].url, [photos["astronaut"]], num_inference_steps=500).json()["id"]
        owner = wait_until(lambda: running_on(long_job), 120, "the long job running")
        survivor = servers[1 - servers.index(owner)]
        owner.stop()
        assert owner.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
        claims = store.claims_of(long_job)
        assert claims[0]["outcome"] == "released", claims
        wait_until(lambda: running_on(long_job) is survivor, 60, "the long job taken over")
        assert store.get(long_job).attempts == 1  # a hand-back does not count as an attempt
        assert requests.delete(f"{survivor.url}/v1/generations/{long_job}", timeout=10).status_code == 200
        assert wait_for(survivor.url, long_job)["status"] == "cancelled"

        # SIGKILL mid-job: the other server finishes it once its lease expires, exactly once
        restarted = Server(tmp_path / "c", *args)
        servers.append(restarted)
        restarted.wait()
        job_id = submit(survivor.url, [photos["grace_hopper"]], seed=9, num_inference_steps=60).json()["id"]
        victim = wait_until(lambda: running_on(job_id), 120, "the job running")
        victim.kill()
        alive = restarted if victim is survivor else survivor
        job = wait_for(alive.url, job_id, timeout=120)
        assert job["status"] == "done" and job["attempts"] == 2
        assert [c["outcome"] for c in store.claims_of(job_id)] == ["expired", "done"]
        assert requests.get(alive.url + job["images"][0], timeout=10).ok
    finally:
        for server in servers:
            server.stop()
        store.close()
