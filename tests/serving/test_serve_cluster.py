"""Serving across hosts, on a real multi-node Ray cluster on this machine (`ray start --head` + `ray start
--address`, one logical CPU each, so the two tiny replicas land on different nodes), with the API on the
head (`--ray-address`) and a throw-away PostgreSQL as the store (photos and results in it). Then the faults:
a replica SIGKILLed mid-job, a burst of 4x the queue, PostgreSQL restarted under load, the API SIGKILLed and
restarted. Every check of "nothing lost, nothing twice" reads the store: the jobs, the claims log, the blobs.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from database import execute
from ray_cluster import RayCluster, wait_until
from serve_server import Server, submit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]

QUEUE = 6
LEASE_S = 3
STORE_DOWN_TIMEOUT_S = 15  # how long a client waits for the API's answer while PostgreSQL is down


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory):
    pytest.importorskip("ray.serve")
    from instantid.serving.store import StoreConfig, open_store

    url = postgres.new_database()
    ray = RayCluster(nodes=2)
    state = tmp_path_factory.mktemp("cluster") / "api-state"
    args = ("--store", url, "--ray", "--replicas", "2", "--ray-address", ray.address, "--queue-size", str(QUEUE),
            "--lease-seconds", str(LEASE_S))
    store = open_store(StoreConfig(state_dir=str(tmp_path_factory.mktemp("probe")), url=url))
    api = Server(state, *args, env=ray.env)
    context = {"ray": ray, "store": store, "args": args, "state": state, "api": api, "url": url}
    try:
        api.wait(timeout=400)
        yield context
    finally:
        context["api"].stop()
        ray.stop()
        store.close()
    # credentials never logged: the password is nowhere in the API's log
    assert postgres.password not in context["api"].log.read_text()


def _node_of(worker: str) -> str:
    return worker.rsplit(":", 1)[-1]


def _pid_of(worker: str) -> int:
    return int(worker.split(":")[1])


def _outputs(store, job_id: str) -> list[str]:
    rows = execute(store, "SELECT name FROM blobs WHERE job_id=? AND name LIKE ? ORDER BY name", (job_id, "outputs/%"))
    return [row["name"] for row in rows]


def _finished_once(store, api_url: str, job_ids: list[str]) -> None:
    """Each job done, with exactly one finishing claim, one set of outputs, and its image downloadable."""
    for job_id in job_ids:
        job = store.get(job_id)
        assert job.status == "done", (job_id, job.status, job.error)
        claims = store.claims_of(job_id)
        assert [c["outcome"] for c in claims].count("done") == 1, claims
        assert all(c["outcome"] is not None for c in claims), claims  # no claim left open
        assert _outputs(store, job_id) == [f"outputs/{n}.png" for n in range(job.images)] and job.images == 1
        image = requests.get(f"{api_url}/v1/generations/{job_id}/images/0", timeout=30)
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_replicas_on_two_nodes_each_finish_jobs(cluster, photos):
    api, store = cluster["api"], cluster["store"]
    ready = requests.get(api.url + "/readyz", timeout=10).json()
    assert ready == {"status": "ready", "store": "postgresql", "blobs": "database"}
    jobs = [submit(api.url, [photos["astronaut"]], seed=s, num_inference_steps=10).json()["id"] for s in range(6)]
    for job_id in jobs:
        assert wait_for(api.url, job_id, timeout=300)["status"] == "done"
    _finished_once(store, api.url, jobs)
    workers = {store.get(job_id).worker for job_id in jobs}
    nodes = {_node_of(w) for w in workers}
    assert len(nodes) == 2, workers  # both replicas, on two different Ray nodes, finished jobs
    probe = cluster["ray"].probe()
    assert len(probe["nodes"]) == 2 and {n[:12] for n in probe["nodes"]} == nodes
    alive = [r for r in probe["replicas"] if r["state"] == "ALIVE"]
    assert len({r["node_id"] for r in alive}) == 2
    metrics = requests.get(api.url + "/metrics", timeout=10).text
    for worker in workers:
        assert f'instantid_worker_jobs{{outcome="done",worker="{worker}"}}' in metrics


def test_burst_of_four_times_the_queue(cluster, photos):
    api, store = cluster["api"], cluster["store"]
    photo = photos["astronaut"]

    def one(seed: int) -> requests.Response:
        return submit(api.url, [photo], seed=seed, num_inference_steps=6)

    with ThreadPoolExecutor(4) as pool:  # four clients at once
        answers = list(pool.map(one, range(100, 100 + 4 * QUEUE)))
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    assert len(accepted) + len(refused) == len(answers) and refused and len(accepted) >= QUEUE
    assert all(a.headers.get("Retry-After") and a.json()["error"]["code"] == "queue_full" for a in refused)
    for job_id in accepted:
        assert wait_for(api.url, job_id, timeout=300)["status"] == "done"
    _finished_once(store, api.url, accepted)
    for job_id in accepted:  # nobody died here: each job claimed exactly once
        assert len(store.claims_of(job_id)) == 1


def test_replica_killed_mid_job_is_finished_once_by_another(cluster, photos):
    api, store, ray = cluster["api"], cluster["store"], cluster["ray"]
    job_id = submit(api.url, [photos["astronaut"]], seed=7, num_inference_steps=150).json()["id"]
    wait_until(lambda: store.get(job_id).status == "running" and store.get(job_id).step >= 2, 120, "job running")
    victim = store.get(job_id).worker
    os.kill(_pid_of(victim), signal.SIGKILL)
    job = wait_for(api.url, job_id, timeout=LEASE_S * 10 + 120)
    assert job["status"] == "done" and job["attempts"] == 2, job
    claims = store.claims_of(job_id)
    assert [c["outcome"] for c in claims] == ["expired", "done"] and claims[1]["worker"] != victim
    _finished_once(store, api.url, [job_id])
    metrics = requests.get(api.url + "/metrics", timeout=10).text
    assert "instantid_lease_expiries 1.0" in metrics and 'instantid_job_attempts{attempts="2"} 1.0' in metrics

    def replaced():  # Ray Serve starts a new replica in place of the killed one
        alive = [r for r in ray.probe()["replicas"] if r["state"] == "ALIVE"]
        return len(alive) == 2 and _pid_of(victim) not in {r["pid"] for r in alive}

    wait_until(replaced, 180, "a replacement replica", interval=3)


def test_postgres_restart_under_load(cluster, photos, postgres):
    api, store = cluster["api"], cluster["store"]
    jobs = [submit(api.url, [photos["grace_hopper"]], seed=s, num_inference_steps=8).json()["id"]
            for s in range(200, 200 + QUEUE)]
    wait_until(lambda: store.get(jobs[0]).status != "queued", 120, "the first job claimed")
    postgres.pause()
    try:
        # each answer comes within the client's timeout (requests raises past it), not after PostgreSQL is back
        for path in (f"/v1/generations/{jobs[-1]}", "/readyz"):
            answer = requests.get(api.url + path, timeout=STORE_DOWN_TIMEOUT_S)
            assert answer.status_code == 503, answer.text
        answer = submit(api.url, [photos["grace_hopper"]], seed=1, timeout=STORE_DOWN_TIMEOUT_S)
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "store_unavailable" and "retry" in error["message"]
        assert answer.headers.get("Retry-After") and postgres.password not in answer.text
    finally:
        postgres.resume()
    for job_id in jobs:
        assert wait_for(api.url, job_id, timeout=300)["status"] == "done"
    _finished_once(store, api.url, jobs)


def test_api_killed_and_restarted(cluster, photos):
    api, store = cluster["api"], cluster["store"]
    jobs = [submit(api.url, [photos["astronaut"]], seed=s, num_inference_steps=8).json()["id"]
            for s in range(300, 304)]
    api.kill()
    cluster["api"] = api = Server(cluster["state"], *cluster["args"], env=cluster["ray"].env)
    api.wait(timeout=400)
    for job_id in jobs:
        assert wait_for(api.url, job_id, timeout=300)["status"] == "done"
    _finished_once(store, api.url, jobs)
