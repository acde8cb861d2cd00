"""`instantid serve --ray --replicas 2`: two tiny-model replicas on a local Ray instance share the queue."""

from __future__ import annotations

import sqlite3

import pytest

from serve_server import Server, submit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_two_replicas_share_the_jobs(tmp_path, photos):
    pytest.importorskip("ray.serve")
    state = tmp_path / "state"
    server = Server(state, "--ray", "--replicas", "2", "--queue-size", "8")
    try:
        server.wait(timeout=400)
        # several steps each, so one replica is busy while the other claims the next job
        jobs = [submit(server.url, [photos["astronaut"]], seed=s, num_inference_steps=12).json()["id"]
                for s in range(6)]
        for job_id in jobs:
            assert wait_for(server.url, job_id, timeout=300)["status"] == "done"
    finally:
        server.stop()
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        workers = [row[0] for row in db.execute("SELECT worker FROM jobs WHERE status='done'")]
    assert len(workers) == 6 and len(set(workers)) == 2, workers
