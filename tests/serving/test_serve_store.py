"""The job store on its own, one suite run on SQLite and on PostgreSQL: order, bounded queue, cancel, leases
(renewal, expiry, attempts, the finishing write's lease check), hand-back, concurrent claimers, expiry, schema
versions. No server, no model."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

import pytest

from database import execute
from instantid.serving.store import (QueueFull, SchemaTooNew, StoreConfig, StoreUnavailable, open_store,
                                     valid_job_id)


def _submit(store, queue_size: int = 100) -> str:
    job_id = store.stage({"face_0.png": b"photo"})
    store.enqueue(job_id, {"values": {}, "prompt": "p", "faces": ["face_0.png"]}, queue_size)
    return job_id


def _blob_ids(store) -> set[str]:
    """Job ids that have blobs, wherever the store keeps them."""
    if store.blobs.kind == "folder":
        return {p.name for p in store.blobs.jobs_dir.iterdir()}
    return {row["job_id"] for row in execute(store, "SELECT DISTINCT job_id FROM blobs")}


def _backdate_uploads(store, seconds: float) -> None:
    """Make every upload look `seconds` old, as if its process died that long ago: the folders' times, and the
    blob rows' creation time where the blobs live in the database."""
    then = time.time() - seconds
    roots = [store.blobs.staging_root] + ([store.blobs.jobs_dir] if store.blobs.kind == "folder" else [])
    for root in roots:
        for folder in root.iterdir() if root.exists() else ():
            os.utime(folder, (then, then))
    if store.blobs.kind == "database":
        execute(store, "UPDATE blobs SET created = created - ?", (seconds,))


@pytest.fixture
def open_(store_config):
    opened = []

    def make(**changes):
        store = open_store(dataclasses.replace(store_config, **changes))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_order_positions_and_bounded_queue(open_):
    store = open_()
    ids = [_submit(store, queue_size=3) for _ in range(3)]
    assert all(valid_job_id(i) for i in ids) and len(set(ids)) == 3
    assert [store.queue_position(store.get(i)) for i in ids] == [0, 1, 2]
    with pytest.raises(QueueFull):
        _submit(store, queue_size=3)
    assert _blob_ids(store) == set(ids)  # the refused one left no photos behind
    job = store.claim_next("w")
    assert job.id == ids[0] and job.attempts == 1 and job.lease_id and job.status == "running"  # oldest first
    assert store.queue_position(store.get(ids[1])) == 0
    assert store.blobs.get(ids[0], "inputs/face_0.png") == b"photo"
    assert store.counts() == {"queued": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}


def test_cancel_queued_and_running(open_):
    store = open_()
    running, queued = _submit(store), _submit(store)
    job = store.claim_next("w")
    assert store.cancel(queued).status == "cancelled"
    assert store.cancel(running).cancel_requested
    assert store.progress(job, 1, 10) is True  # the worker learns it at its next step
    assert store.fail(job, "cancelled by the client", status="cancelled")
    assert store.get(running).status == "cancelled"


def test_finish_writes_outputs_with_the_status(open_):
    store = open_()
    job_id = _submit(store)
    job = store.claim_next("w")
    assert store.progress(job, 2, 4) is False and store.get(job_id).step == 2
    assert store.image(store.get(job_id), 0) is None
    assert store.finish(job, [b"png0", b"png1"], {"seed": 1})
    done = store.get(job_id)
    assert (done.status, done.images, done.parameters, done.step) == ("done", 2, {"seed": 1}, 4)
    assert [store.image(done, n) for n in range(2)] == [b"png0", b"png1"]
    assert [c["outcome"] for c in store.claims_of(job_id)] == ["done"]
    assert store.claim_stats() == {"w": {"claimed": 1, "done": 1}}


# What submissions.accept stored as a job's request before JobRequest (release 1342bbf): the table's values under
# "values", each ControlNet as [photo, scale], LoRA scales as {name: scale}.
OLD_SHAPE = {"values": {"num_inference_steps": 4, "guidance_scale": 5.0, "controlnet_conditioning_scale": 0.8,
                        "ip_adapter_scale": 0.8, "control_guidance_start": 0.0, "control_guidance_end": 1.0, "seed": 3,
                        "width": 128, "height": 128, "num_images_per_prompt": 1, "negative_face_noise": 0.0},
             "prompt": "a portrait", "negative_prompt": "", "style": "neon", "faces": ["face_0.png"], "pose": None,
             "controls": {"canny": ["canny.png", 0.5]}, "scheduler": "euler_a", "loras": {"sketch": 0.7, "other": 0.0},
             "face_index": 1, "face_detail": "auto", "face_detail_strength": 0.5}


def test_a_job_queued_before_the_upgrade_is_read_after_it(open_):
    from instantid.serving.schemas import UnreadableRequest, stored_request

    store = open_()
    job_id = store.stage({"face_0.png": b"photo", "canny.png": b"edges"})
    store.enqueue(job_id, OLD_SHAPE, 100)
    request = stored_request(store.claim_next("w").request)  # what the worker runs
    assert (request.faces, request.pose, request.controls, request.canny_scale) == (["face_0.png"], None,
                                                                                      {"canny": "canny.png"}, 0.5)
    assert request.parameters() | {k: v for k, v in OLD_SHAPE["values"].items()} == request.parameters()
    assert (request.prompt, request.style, request.scheduler, request.loras, request.face_index, request.face_detail,
            request.face_detail_strength) == ("a portrait", "neon", "euler_a", "sketch:0.7", 1, "auto", 0.5)
    assert stored_request(request.model_dump(mode="json")) == request  # today's shape reads as itself
    with pytest.raises(UnreadableRequest, match="bogus: unknown field"):
        stored_request({**OLD_SHAPE, "values": {**OLD_SHAPE["values"], "bogus": 1}})


def test_lease_expiry_requeues_then_fails_and_a_stale_attempt_cannot_finish(open_):
    store = open_(lease_s=0.3, max_attempts=2)
    job_id = _submit(store)
    first = store.claim_next("a")
    time.sleep(0.45)  # "a" died: no renewal
    assert store.reap_expired() == [job_id]
    assert store.get(job_id).status == "queued" and store.get(job_id).attempts == 1
    second = store.claim_next("b")
    assert second.id == job_id and second.attempts == 2
    # the first attempt wakes up: it can neither renew, report progress nor finish
    with pytest.raises(Exception, match=job_id):
        store.renew(first)
    assert store.finish(first, [b"stale"], {}) is False
    assert store.fail(first, "x") is False
    assert store.image(store.get(job_id), 0) is None
    time.sleep(0.45)  # "b" died too: attempts used up
    assert store.reap_expired() == []
    job = store.get(job_id)
    assert job.status == "failed" and "lease expired 2 times" in job.error and job.attempts == 2
    assert store.finish(second, [b"late"], {}) is False
    assert [(c["worker"], c["attempt"], c["outcome"]) for c in store.claims_of(job_id)] == [
        ("a", 1, "expired"), ("b", 2, "expired")]
    assert store.attempt_counts() == {2: 1}


def test_renewal_keeps_the_lease_and_a_live_lease_is_never_taken_over(open_):
    store = open_(lease_s=60)
    job_id = _submit(store)
    job = store.claim_next("a")
    deadline = store.get(job_id).lease_until
    # an hour passes (the deadline is moved back rather than waited for), and the worker renews before any reaper
    execute(store, "UPDATE jobs SET lease_until = lease_until - 3600 WHERE id=?", (job_id,))
    store.renew(job)
    assert store.get(job_id).lease_until >= deadline  # renewing set the deadline a full lease ahead again
    other = open_(lease_s=60)  # a second process starting on the same store takes nothing over
    assert other.reap_expired() == [] and other.claim_next("b") is None
    assert store.finish(job, [b"png"], {})
    assert store.get(job_id).attempts == 1


def test_release_hands_the_job_back_in_its_place(open_):
    store = open_()
    first, second = _submit(store), _submit(store)
    job = store.claim_next("a")
    assert store.release(job)
    back = store.get(first)
    assert back.status == "queued" and back.attempts == 0 and store.queue_position(back) == 0
    assert store.finish(job, [b"png"], {}) is False  # the released attempt cannot finish any more
    again = store.claim_next("b")
    assert again.id == first and again.attempts == 1 and second != first
    assert [c["outcome"] for c in store.claims_of(first)] == ["released", None]


def test_concurrent_claimers_take_each_job_once(open_):
    store = open_()
    ids = [_submit(store) for _ in range(24)]
    taken: dict[str, list[str]] = {}

    errors = []

    def claimer(name: str) -> None:
        mine = open_()  # each claimer its own store object (its own connections), as separate processes
        try:
            while (job := mine.claim_next(name)) is not None:
                taken.setdefault(name, []).append(job.id)
                assert mine.finish(job, [b"png"], {})
        except BaseException as err:  # a thread's failure must fail the test, with its reason
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    claimed = [job_id for jobs in taken.values() for job_id in jobs]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    for job_id in ids:
        assert len(store.claims_of(job_id)) == 1 and store.get(job_id).status == "done"


def test_expiry_removes_finished_jobs_and_their_blobs(open_):
    store = open_()
    done, waiting = _submit(store), _submit(store)
    assert store.finish(store.claim_next("w"), [b"png"], {"prompt": "p"})
    time.sleep(0.05)
    assert store.expire(ttl_s=3600) == 0
    assert store.expire(ttl_s=0) == 1
    assert store.get(done) is None and store.claims_of(done) == []
    assert _blob_ids(store) == {waiting} and store.get(waiting).status == "queued"


def test_abandoned_uploads_are_swept(open_):
    store = open_()
    kept = _submit(store)
    store.stage({"face_0.png": b"photo"})  # its process died before queueing it: never a job
    _backdate_uploads(store, 3600)  # both uploads are an hour old: only being a job keeps one
    store.expire(ttl_s=3600)
    assert _blob_ids(store) == {kept} and store.get(kept).status == "queued"
    assert not any(store.blobs.staging_root.iterdir()) if store.blobs.staging_root.exists() else True


def test_schema_versions_forward_only(open_, store_config):
    from instantid.serving.store.postgres import PostgresStore
    from instantid.serving.store.sqlite import SqliteStore

    kind = PostgresStore if store_config.url else SqliteStore

    class FirstVersion(kind):
        MIGRATIONS = kind.MIGRATIONS[:1]

    args = (store_config.url, store_config.state_dir) if store_config.url else (store_config.state_dir,)
    old = FirstVersion(*args)
    job_id = _submit(old)  # a job queued by the first version
    old.close()
    store = open_()  # migrates forward; the old job is claimable with a lease
    assert store.check_schema().endswith("(current)")
    assert store.claim_next("w").id == job_id
    execute(store, "UPDATE instantid_schema SET version=?", (store.schema_version + 1,))  # a newer instantid ran
    with pytest.raises(SchemaTooNew, match="upgrade instantid"):
        open_()


def test_postgres_unreachable_is_a_clear_error_without_the_password(postgres, tmp_path):
    from instantid.serving.store.postgres import PostgresStore

    with socket.socket() as closed:  # a port that is bound but not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://instantid:{postgres.password}@127.0.0.1:{closed.getsockname()[1]}/postgres"
        with pytest.raises(StoreUnavailable) as caught:
            PostgresStore(url, tmp_path, connect_timeout_s=1)
    message = str(caught.value)
    assert "unreachable" in message and postgres.password not in message and "instantid:***@127.0.0.1" in message


def test_postgres_store_survives_a_database_restart(postgres, tmp_path):
    store = open_store(StoreConfig(state_dir=str(tmp_path), url=postgres.new_database()))
    try:
        job_id = _submit(store)
        postgres.restart()  # every pooled connection is dropped
        deadline = time.monotonic() + 30
        while True:  # the pool replaces broken connections: at most a few StoreUnavailable, then it works
            try:
                job = store.claim_next("w")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert job.id == job_id and store.finish(job, [b"png"], {})
    finally:
        store.close()


def test_fsspec_blobs_with_postgres(postgres, tmp_path):
    shared = tmp_path / "shared"
    store = open_store(StoreConfig(state_dir=str(tmp_path / "state"), url=postgres.new_database(),
                                   blobs=f"file://{shared}"))
    try:
        job_id = _submit(store)
        job = store.claim_next("w")
        with store.blobs.local_inputs(job_id, ["face_0.png"]) as folder:
            assert (folder / "face_0.png").read_bytes() == b"photo"
        assert store.finish(job, [b"png"], {})
        assert (shared / job_id / "outputs" / "0.png").read_bytes() == b"png"
        assert store.image(store.get(job_id), 0) == b"png"
        assert store.expire(ttl_s=0) == 1 and not (shared / job_id).exists()
    finally:
        store.close()


def test_check_store_command(postgres, tmp_path, capsys, monkeypatch):
    """`instantid serve --check-store URL`: reaches the store, reports the schema, changes nothing; refuses a newer
    schema; never prints the password."""
    from instantid.cli import main

    url = postgres.new_database()
    state = str(tmp_path / "state")
    assert main(["serve", "--state-dir", state, "--check-store", url]) == 0
    out = capsys.readouterr().out
    assert "reachable, schema version 0; will be migrated to 2 at start" in out and postgres.password not in out
    store = open_store(StoreConfig(state_dir=state, url=url))
    execute(store, "UPDATE instantid_schema SET version=99")
    store.close()
    monkeypatch.setenv("INSTANTID_STORE", url)  # the variable stands in for the URL
    assert main(["serve", "--state-dir", state, "--check-store"]) == 1
    err = capsys.readouterr().err
    assert "schema version 99, newer than this instantid's 2" in err and postgres.password not in err
