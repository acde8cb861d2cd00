"""Durability: SIGKILL the server with jobs queued, running and done; a restart on the same state folder
finishes the queued ones, still serves the finished results, takes the dead server's running job back once
its lease expires, and duplicates nothing."""

from __future__ import annotations

import sqlite3

import pytest
import requests

from serve_server import Server, submit, wait_for

pytestmark = pytest.mark.slow


def test_restart_after_sigkill(tmp_path, photos):
    state = tmp_path / "state"
    first = Server(state, "--queue-size", "8", "--lease-seconds", "3")
    try:
        first.wait()
        done = wait_for(first.url, submit(first.url, [photos["astronaut"]], seed=1).json()["id"])
        assert done["status"] == "done"
        before = requests.get(first.url + done["images"][0], timeout=10).content
        long_job = submit(first.url, [photos["astronaut"]], num_inference_steps=500).json()["id"]
        queued = [submit(first.url, [photos["grace_hopper"]], seed=s).json()["id"] for s in (2, 3)]
        job = wait_for(first.url, long_job, states=("running",))
        assert job["status"] == "running"
        assert [requests.get(f"{first.url}/v1/generations/{i}", timeout=10).json()["status"] for i in queued] == [
            "queued", "queued"]
    finally:
        first.kill()

    second = Server(state, "--queue-size", "8", "--lease-seconds", "3")
    try:
        second.wait()
        # the finished result survived, byte for byte
        assert requests.get(second.url + done["images"][0], timeout=10).content == before
        # the job that was running is queued again once its lease expires, not lost (it would run once more,
        # from the start; it is first in line, so cancel it to save the test time)
        job = requests.get(f"{second.url}/v1/generations/{long_job}", timeout=10).json()
        assert job["status"] in ("queued", "running"), job
        requests.delete(f"{second.url}/v1/generations/{long_job}", timeout=10)
        assert wait_for(second.url, long_job)["status"] == "cancelled"
        for job_id in queued:
            job = wait_for(second.url, job_id)
            assert job["status"] == "done" and len(job["images"]) == 1
    finally:
        second.stop()

    # nothing duplicated: one row per accepted job, and exactly the images each job reports
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        rows = db.execute("SELECT id, status, images, attempts FROM jobs ORDER BY seq").fetchall()
    assert [row[0] for row in rows] == [done["id"], long_job, *queued]
    assert {row[0]: row[3] for row in rows}[long_job] in (1, 2)  # 2 when it started again before the cancel
    for job_id, status, images, _ in rows:
        outputs = sorted(p.name for p in (state / "jobs" / job_id / "outputs").glob("*"))
        assert outputs == [f"{n}.png" for n in range(images)]
    assert sorted(p.name for p in (state / "jobs").iterdir()) == sorted(row[0] for row in rows)
