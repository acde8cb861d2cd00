"""Training data at scale, measured on this machine: preparation throughput on Ray Data with 1 and 2 workers
(and the folder format's process pool for comparison), the training loader's samples/s from shards vs the
folder format, and peak memory of each. The photos are the packaged ones, augmented (random crop, mirror,
colour) to `--photos` samples.

    python -m benchmarks.data_scale --photos 1000 --out /tmp/data-scale --json benchmarks/data_scale_cpu.json

Every stage runs in its own process so its peak memory (resident, the process and its children, Ray's
workers included) is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def make_photos(root: Path, count: int, seed: int = 0) -> Path:
    """`count` captioned photos: the packaged ones, randomly cropped, mirrored and colour-shifted."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps

    from instantid.face.samples import sample_photo

    rng = np.random.default_rng(seed)
    bases = []
    for name, box in (("astronaut", None), ("grace_hopper", None), ("tom_hanks", None),
                      ("t1", (0.55, 0.0, 0.95, 0.45))):
        photo = Image.open(sample_photo(name)).convert("RGB")
        if box:
            w, h = photo.size
            photo = photo.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)))
        scale = 320 / max(photo.size)
        bases.append((name, photo.resize((round(photo.width * scale), round(photo.height * scale)))))
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        name, photo = bases[n % len(bases)]
        w, h = photo.size
        left, top = rng.uniform(0, 0.08) * w, rng.uniform(0, 0.05) * h
        image = photo.crop((round(left), round(top), round(w - rng.uniform(0, 0.08) * w), h))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image = ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))).enhance(
            rng.uniform(0.8, 1.2))
        image.save(root / f"{n:06d}.jpg", quality=90)
        (root / f"{n:06d}.txt").write_text(f"a photo of {name.replace('_', ' ')}")
    return root


class PeakMemory:
    """Peak resident memory of this process and its children, sampled every 0.1 s. `renice`: Ray starts its
    workers at nice 15, which on a machine shared with other jobs starves them against the folder format's
    process pool (nice 0); the benchmark puts them at 0 so both compete alike (needs root)."""

    def __init__(self, renice: bool = False):
        import psutil

        self.renice = renice
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self.process, *self.process.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                    if self.renice and proc.nice() > 0:
                        proc.nice(0)
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


SIZES = {"min_image_size": 96, "min_face_size": 24}


def stage_ray(photos: str, out: str, workers: int) -> dict:
    import ray

    from instantid.training.prepare import PrepareOptions
    from instantid.training.prepare_shards import ShardOptions, prepare_shards

    with PeakMemory(renice=True) as memory:
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        report = prepare_shards(photos, out, PrepareOptions(workers=workers, progress=False, **SIZES),
                                ShardOptions(shard_size=100))
        seconds = time.perf_counter() - started
        ray.shutdown()
    return {"samples": report.samples, "seconds": seconds, "ray_start_seconds": ray_start,
            "photos_per_s": report.samples / seconds, "photos_per_s_after_ray_start": report.samples / (seconds - ray_start),
            "peak_rss_gib": memory.peak / 2**30}


def stage_folder(photos: str, out: str, workers: int) -> dict:
    from instantid.training.prepare import PrepareOptions, prepare_dataset

    with PeakMemory() as memory:
        started = time.perf_counter()
        report = prepare_dataset(photos, out, PrepareOptions(workers=workers, progress=False, **SIZES))
        seconds = time.perf_counter() - started
    return {"samples": report.usable, "seconds": seconds, "photos_per_s": report.usable / seconds,
            "peak_rss_gib": memory.peak / 2**30}


def stage_loader(data: str, kind: str, workers: int, resolution: int, batch_size: int) -> dict:
    """One epoch of the training loader (decode, resize, face-centred crop, keypoint image), no model."""
    import torch

    from instantid.training.data import (BucketBatchSampler, InstantIDDataset, collate, make_buckets,
                                         read_prepared_dataset)
    from instantid.training.shards import read_index, shard_urls
    from instantid.training.stream import ShardStream, make_loader

    torch.set_num_threads(1)
    buckets = make_buckets(resolution, 64, 2.0)
    with PeakMemory() as memory:
        started = time.perf_counter()
        samples = 0
        if kind == "folder":
            dataset = InstantIDDataset(read_prepared_dataset(data).items, buckets)
            sampler = BucketBatchSampler(dataset.bucket_of, batch_size, seed=0)
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
            for batch in loader:
                samples += len(batch["caption"])
        else:
            stream = ShardStream(shard_urls(data, read_index(data)), buckets, batch_size, seed=0, num_workers=workers)
            epochs_done = set()
            for batch in make_loader(stream, workers):
                worker, epoch, _ = batch["stream"]
                if epoch > 0:
                    epochs_done.add(worker)
                    if len(epochs_done) == max(1, workers):
                        break
                    continue
                samples += len(batch["caption"])
        seconds = time.perf_counter() - started
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds, "peak_rss_gib": memory.peak / 2**30}


def in_process(function, *args) -> dict:
    """Run one stage in a fresh process (spawn): its own peak memory, no state shared with the others."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:  # not daemonic: may fork
        return pool.submit(function, *args).result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000, help="augmented photos to prepare (default 1000)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/instantid-data-scale"))
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--resolution", type=int, default=512, help="training resolution for the loader (default 512)")
    args = parser.parse_args(argv)
    photos = args.out / "photos"
    if not photos.is_dir():
        make_photos(photos, args.photos)
    results = {"photos": args.photos, "cpus": os.cpu_count(), "machine": platform.machine(),
               "load_average_at_start": os.getloadavg()}
    for workers in (1, 2):
        results[f"ray_{workers}_workers"] = in_process(stage_ray, str(photos), str(args.out / f"shards{workers}"), workers)
        print(f"Ray Data, {workers} worker(s):", results[f"ray_{workers}_workers"], flush=True)
    results["folder_2_processes"] = in_process(stage_folder, str(photos), str(args.out / "folder"), 2)
    print("folder format, 2 processes:", results["folder_2_processes"], flush=True)
    for kind, data in (("folder", args.out / "folder"), ("shards", args.out / "shards2")):
        for workers in (0, 2):
            key = f"loader_{kind}_{workers}_workers"
            results[key] = in_process(stage_loader, str(data), kind, workers, args.resolution, 2)
            print(f"loader, {kind}, {workers} workers:", results[key], flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
