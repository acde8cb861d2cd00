"""Throughput of `instantid serve --store postgresql://...` with 1, 2 and 4 tiny replicas, and the job store's
own cost per job (numbers for docs/serving.md). Bounded and loopback only.

    PYTHONPATH=src:tests/serving python benchmarks/serve_scale_bench.py [--jobs 24] [--replicas 1 2 4]
        [--mode ray|processes] [--out benchmarks/serve_scale_bench.json]

1. For each N: a throw-away PostgreSQL (instantid.testing.postgres), and either the API with N tiny replicas on
   a local Ray instance (--mode ray) or N plain servers sharing the database (--mode processes); `--jobs` jobs (64x64, `--steps` steps) submitted by 4 client threads as fast as the queue takes
   them (a 429 is retried after its Retry-After), each followed to its PNG. Jobs per second (first submission
   to last result) and p50/p95/p99 time-to-result (submission to PNG downloaded).
2. Store overhead, no model: enqueue, claim, one progress write per step, finish with the PNG(s) in the
   database, on the same PostgreSQL; per job, with a tiny PNG and with an SDXL-sized one (1.5 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from instantid.face.samples import sample_photo
from instantid.testing.postgres import TempPostgres
from serve_server import Server, submit


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run_load(url: str, photo: Path, jobs: int, steps: int) -> dict:
    results, lock = [], threading.Lock()
    seeds = iter(range(jobs))

    def client():
        session = requests.Session()
        while True:
            with lock:
                seed = next(seeds, None)
            if seed is None:
                return
            start = time.perf_counter()
            for _ in range(600):  # bounded: a 429 waits for its Retry-After
                answer = submit(url, [photo], seed=seed, num_inference_steps=steps)
                if answer.status_code != 429:
                    break
                time.sleep(float(answer.headers.get("Retry-After", 1)) / 5)
            answer.raise_for_status()
            job_id = answer.json()["id"]
            for _ in range(6000):
                job = session.get(f"{url}/v1/generations/{job_id}", timeout=30).json()
                if job["status"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            assert job["status"] == "done", job
            session.get(url + job["images"][0], timeout=30).raise_for_status()
            with lock:
                results.append((start, time.perf_counter(), job["attempts"]))

    begin, load_before = time.perf_counter(), os.getloadavg()[0]
    with ThreadPoolExecutor(4) as pool:
        for running in [pool.submit(client) for _ in range(4)]:
            running.result()  # a client's failure fails the run: no partial numbers
    assert len(results) == jobs, f"{len(results)} of {jobs} jobs finished"
    end = max(r[1] for r in results)
    latencies = [r[1] - r[0] for r in results]
    return {"jobs": len(results), "seconds": round(end - begin, 2), "jobs_per_s": round(len(results) / (end - begin), 3),
            "p50_s": round(percentile(latencies, 50), 3), "p95_s": round(percentile(latencies, 95), 3),
            "p99_s": round(percentile(latencies, 99), 3), "max_attempts": max(r[2] for r in results),
            "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def store_overhead(url: str, steps: int, png_bytes: int, jobs: int = 40) -> dict:
    from instantid.serving.store import StoreConfig, open_store

    store = open_store(StoreConfig(state_dir=tempfile.mkdtemp(prefix="bench-state-"), url=url))
    photo, png = os.urandom(60_000), os.urandom(png_bytes)
    timings = {"enqueue": [], "claim": [], "progress": [], "finish": []}
    try:
        for _ in range(jobs):
            t0 = time.perf_counter()
            job_id = store.stage({"face_0.jpg": photo})
            store.enqueue(job_id, {"values": {}, "prompt": "p", "faces": ["face_0.jpg"]}, 10_000)
            t1 = time.perf_counter()
            job = store.claim_next("bench")
            t2 = time.perf_counter()
            for step in range(steps):
                store.progress(job, step + 1, steps)
            t3 = time.perf_counter()
            assert store.finish(job, [png], {"seed": 0})
            t4 = time.perf_counter()
            for key, seconds in zip(timings, (t1 - t0, t2 - t1, (t3 - t2) / steps, t4 - t3)):
                timings[key].append(seconds)
    finally:
        store.close()
    medians = {f"{key}_ms": round(statistics.median(values) * 1000, 2) for key, values in timings.items()}
    medians["per_job_ms"] = round(medians["enqueue_ms"] + medians["claim_ms"] + steps * medians["progress_ms"]
                                  + medians["finish_ms"], 1)
    return {"steps": steps, "png_bytes": png_bytes, **medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--mode", choices=("ray", "processes"), default="ray",
                        help="replicas as Ray Serve replicas (--ray --replicas N), or as N plain `serve --store` "
                             "processes sharing the database")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    photo = sample_photo("astronaut")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "note": "shared machine; client, API, replicas and "
                                                                  "PostgreSQL all on it"},
              "job": {"size": "64x64", "steps": args.steps, "model": "--tiny"}, "load": [], "store": []}
    with TempPostgres() as pg:
        for replicas in args.replicas:
            folder, url = Path(tempfile.mkdtemp(prefix="bench-")), pg.new_database()
            if args.mode == "ray":
                servers = [Server(folder / "state", "--store", url, "--ray", "--replicas", str(replicas),
                                  "--queue-size", "32")]
            else:  # N plain servers sharing the database: the client talks to the first
                servers = [Server(folder / f"state{i}", "--store", url, "--queue-size", "32") for i in range(replicas)]
            try:
                for server in servers:
                    server.wait(timeout=600)
                run_load(servers[0].url, photo, 2 * replicas, args.steps)  # warm-up
                result = {"replicas": replicas, "mode": args.mode,
                          **run_load(servers[0].url, photo, args.jobs, args.steps)}
            finally:
                for server in servers:
                    server.stop()
            print(json.dumps(result), flush=True)
            report["load"].append(result)
        for steps, png_bytes in ((args.steps, 20_000), (30, 1_500_000)):
            result = store_overhead(pg.new_database(), steps, png_bytes)
            print(json.dumps(result), flush=True)
            report["store"].append(result)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
