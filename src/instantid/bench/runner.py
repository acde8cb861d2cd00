"""Interleaved measurement: round after round, every case once per round (A B C A B C ...), so
slow drifts of a shared machine (other jobs, thermal limits) hit all cases alike. The first
`warmup` rounds are not counted (kernel selection, allocator growth, oneDNN primitive caches).

Each run records wall seconds and the process's CPU seconds. On a CPU shared with other jobs, with
one torch thread, CPU seconds count the work done whatever the waits for a core (with several
threads they also count OpenMP spin-waits, so they help less)."""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import ExitStack
from typing import Callable

import numpy as np
import torch

from .adapter_switch import face_adapter_detached
from .cases import Case
from .memory import PeakMemory
from .settings import BenchSettings
from ..pipelines.speed import enable_offload
from ..testing.stage_timer import StageTimer

logger = logging.getLogger(__name__)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    def __init__(self, pipes: dict, settings: BenchSettings) -> None:
        self.pipes = pipes
        self.settings = settings
        self.device = settings.torch_device
        self.memory = PeakMemory(self.device)
        self.timer = StageTimer(self.device)
        self._offload_owner: str | None = None

    def run_once(self, case: Case) -> dict:
        """One call of the case's pipeline: seconds, per-stage seconds, ControlNet runs, peak memory."""
        pipe = self.pipes[case.pipeline]
        for attribute, value in case.attributes.items():
            setattr(pipe, attribute, value)
        if self.settings.options.offload and self._offload_owner != case.pipeline:
            enable_offload(pipe, self.device)  # shared modules: hook them for this pipeline
            self._offload_owner = case.pipeline
        with ExitStack() as stack:
            if case.pipeline != "instantid":
                stack.enter_context(face_adapter_detached(pipe.unet))
            stack.enter_context(self.timer.attached(pipe))
            self.timer.reset()
            self.memory.reset()
            generator = torch.Generator("cpu").manual_seed(self.settings.seed)
            _synchronize(self.device)
            start, cpu_start = time.perf_counter(), time.process_time()
            images = pipe(**case.call, generator=generator).images
            _synchronize(self.device)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        images = np.asarray(images)
        return {"seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4), "stages": self.timer.snapshot(),
                "controlnet_runs": self.timer.controlnet_runs if case.pipeline != "sdxl" else None,
                "images": int(images.shape[0]), "nan_in_output": bool(np.isnan(images).any()),
                **self.memory.read()}

    def run(self, cases: list[Case], on_run: Callable[[Case, dict, bool], None] | None = None) -> None:
        """warmup + runs rounds over all cases; timed runs go into each case's `runs`."""
        for round_index in range(self.settings.warmup + self.settings.runs):
            warm_up = round_index < self.settings.warmup
            for case in cases:
                record = self.run_once(case)
                if not warm_up:
                    case.runs.append(record)
                if on_run is not None:
                    on_run(case, record, warm_up)


def summarize(case: Case) -> dict:
    """Medians over the timed runs (seconds, seconds per image, each stage) and peak memory."""
    runs = case.runs
    if not runs:
        return {}
    seconds = [r["seconds"] for r in runs]
    cpu_seconds = [r["cpu_seconds"] for r in runs]
    images = runs[0]["images"]
    stages = sorted({s for r in runs for s in r["stages"]})
    summary = {
        "median_s": round(statistics.median(seconds), 3),
        "median_s_per_image": round(statistics.median(seconds) / images, 3),
        "seconds": seconds,
        "median_cpu_s": round(statistics.median(cpu_seconds), 3),
        "cpu_seconds": cpu_seconds,
        "images": images,
        "stage_median_s": {s: round(statistics.median(r["stages"].get(s, 0.0) for r in runs), 3) for s in stages},
        "controlnet_runs": runs[-1]["controlnet_runs"],
        "nan_in_output": any(r["nan_in_output"] for r in runs),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
    }
    for key in ("cuda_peak_allocated_gib", "cuda_peak_reserved_gib"):
        if key in runs[0]:
            summary[key] = max(r[key] for r in runs)
    return summary
