"""The job store on its own: order, bounded queue, cancel, crash recovery, expiry (no server, no model)."""

from __future__ import annotations

import time

import pytest

from instantid.serving.jobs import MAX_ATTEMPTS, JobStore, QueueFull, valid_job_id


def _submit(store: JobStore, queue_size: int = 10) -> str:
    job_id = store.stage({"face_0.png": b"photo"})
    store.enqueue(job_id, {"values": {}, "prompt": "p", "faces": ["face_0.png"]}, queue_size)
    return job_id


def test_order_positions_and_bounded_queue(tmp_path):
    store = JobStore(tmp_path)
    ids = [_submit(store, queue_size=3) for _ in range(3)]
    assert all(valid_job_id(i) for i in ids) and len(set(ids)) == 3
    assert [store.queue_position(store.get(i)) for i in ids] == [0, 1, 2]
    with pytest.raises(QueueFull):
        _submit(store, queue_size=3)
    assert sorted(p.name for p in store.jobs_dir.iterdir()) == sorted(ids)  # the refused one left no folder
    assert store.claim_next("w").id == ids[0]  # oldest first
    assert store.queue_position(store.get(ids[1])) == 0


def test_cancel_queued_and_running(tmp_path):
    store = JobStore(tmp_path)
    running, queued = _submit(store), _submit(store)
    store.claim_next("w")
    assert store.cancel(queued).status == "cancelled"
    job = store.cancel(running)
    assert job.status == "running" and job.cancel_requested
    assert store.progress(running, 1, 10) is True  # the worker learns it at its next step


def test_recover_requeues_then_gives_up(tmp_path):
    store = JobStore(tmp_path)
    job_id = _submit(store)
    (tmp_path / "jobs" / "0").mkdir()  # an orphan folder (a submission that was never accepted)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = store.claim_next("w")
        assert job.id == job_id and job.attempts == attempt
        store.outputs_dir(job_id).mkdir(parents=True, exist_ok=True)
        (store.outputs_dir(job_id) / "0.png").write_bytes(b"half")
        requeued = JobStore(tmp_path).recover()  # "the server died": a new process on the same folder
        if attempt < MAX_ATTEMPTS:
            assert requeued == [job_id] and store.get(job_id).status == "queued"
            assert not store.outputs_dir(job_id).exists()  # no half-written image survives into the rerun
    job = store.get(job_id)
    assert job.status == "failed" and "stopped" in job.error
    assert not (tmp_path / "jobs" / "0").exists()


def test_expiry_removes_finished_jobs_and_files(tmp_path):
    store = JobStore(tmp_path)
    done, waiting = _submit(store), _submit(store)
    store.claim_next("w")
    store.finish(done, 0, {"prompt": "p"})
    time.sleep(0.01)
    assert store.expire(ttl_s=3600) == 0
    assert store.expire(ttl_s=0) == 1
    assert store.get(done) is None and not store.job_dir(done).exists()
    assert store.get(waiting).status == "queued" and store.job_dir(waiting).exists()
