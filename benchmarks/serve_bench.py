"""Measure the API layer of `instantid serve` on the tiny model (numbers for docs/serving.md).

    PYTHONPATH=src:tests/serving python benchmarks/serve_bench.py [--out benchmarks/serve_bench.json]

1. status polling: requests/second on GET /v1/generations/{id} from 4 client threads (keep-alive);
2. API overhead: one tiny job (64x64, 2 steps) submitted and polled to done, against the same job as a
   direct library call (generate_from_photos) in this process; medians of several runs;
3. memory per queued job: server RSS and disk before/after queueing jobs behind a long-running one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from instantid.face.samples import sample_photo
from serve_server import Server, submit, wait_for


def polling_rps(url: str, job_id: str, seconds: float = 5.0, threads: int = 4) -> float:
    count = [0] * threads
    stop = time.monotonic() + seconds

    def client(i):
        session = requests.Session()
        while time.monotonic() < stop:
            session.get(f"{url}/v1/generations/{job_id}", timeout=10).raise_for_status()
            count[i] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def api_job_seconds(url: str, photo: Path, runs: int) -> list[float]:
    times = []
    for seed in range(runs):
        start = time.perf_counter()
        job_id = submit(url, [photo], seed=seed).json()["id"]
        job = wait_for(url, job_id)
        requests.get(url + job["images"][0], timeout=10).raise_for_status()
        times.append(time.perf_counter() - start)
    return times


def direct_job_seconds(photo: Path, runs: int) -> list[float]:
    import torch

    from instantid.face.dlib_backend import DlibFaceAnalyzer
    from instantid.pipelines.from_photos import generate_from_photos
    from instantid.pipelines.loading import load_pipeline
    from instantid.testing.tiny import tiny_instantid_cached

    torch.set_num_threads(1)
    from instantid.face.cache import CachedFaceAnalyzer

    analyzer = CachedFaceAnalyzer(DlibFaceAnalyzer())  # as the server has it: analysis cached by content
    analyzer.detect(photo)
    tiny = tiny_instantid_cached(embedding_dim=analyzer.embedding_dim)
    pipe = load_pipeline(tiny.base, tiny.identitynet, tiny.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    times = []
    for seed in range(runs):
        start = time.perf_counter()
        generate_from_photos(pipe, [photo], "a portrait", analyzer=analyzer, width=64, height=64,
                             num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(seed))
        times.append(time.perf_counter() - start)
    return times


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def queued_memory(url: str, process: psutil.Process, state: Path, photo: Path, jobs: int) -> dict:
    blocker = submit(url, [photo], num_inference_steps=500).json()["id"]
    wait_for(url, blocker, states=("running",))
    for _ in range(3):  # warm the request path (allocations that happen once)
        requests.delete(f"{url}/v1/generations/{submit(url, [photo]).json()['id']}", timeout=10)
    rss_before, disk_before = process.memory_info().rss, disk_bytes(state)
    ids = [submit(url, [photo], seed=s).json()["id"] for s in range(jobs)]
    rss_after, disk_after = process.memory_info().rss, disk_bytes(state)
    for job_id in [blocker, *ids]:
        requests.delete(f"{url}/v1/generations/{job_id}", timeout=10)
    return {"jobs": jobs, "rss_bytes_per_job": (rss_after - rss_before) / jobs,
            "disk_bytes_per_job": (disk_after - disk_before) / jobs, "photo_bytes": photo.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    photo = sample_photo("grace_hopper")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        server = Server(state, "--queue-size", "200")
        try:
            server.wait()
            process = psutil.Process(server.process.pid)
            first = wait_for(server.url, submit(server.url, [photo]).json()["id"])
            results = {"polling_rps_4_threads": polling_rps(server.url, first["id"])}
            api = api_job_seconds(server.url, photo, args.runs)
            results["queued"] = queued_memory(server.url, process, state, photo, 100)
        finally:
            server.stop()
    direct = direct_job_seconds(photo, args.runs)
    results.update(api_job_median_s=statistics.median(api), direct_job_median_s=statistics.median(direct),
                   api_overhead_s=statistics.median(api) - statistics.median(direct), runs=args.runs,
                   cpu_count=psutil.cpu_count(), note="tiny model, 64x64, 2 steps, OMP_NUM_THREADS=1")
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
