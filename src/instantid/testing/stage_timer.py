"""Seconds spent in each stage of a pipeline call, from forward hooks on its modules.

A stage is a set of modules: prompt encoding (the text encoders), face projection (the Resampler,
which runs inside the UNet, so the UNet time includes it), UNet, ControlNet (IdentityNet in
InstantID), VAE decode. On CUDA the hooks record CUDA events instead of synchronising, so the GPU
keeps its queue full (a sync per module would hide launch overhead) and the seconds are the GPU's.

These are the only forward hooks in the package, and they live in the testing room for that reason:
they are measurement, attached by the bench around a call it times and removed after it, never part of
generation (the pipelines run the same with or without them; tests/test_bench.py checks stages and counts).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch

STAGE_ORDER = ("prompt_encoding", "face_projection", "unet", "controlnet", "vae_decode")


def stage_modules(pipe) -> dict[str, list[torch.nn.Module]]:
    """Stage name -> the pipeline's modules whose forward calls make up that stage."""
    stages: dict[str, list[torch.nn.Module]] = defaultdict(list)
    for name in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            stages["prompt_encoding"].append(getattr(pipe, name))
    unet = pipe.unet
    if getattr(unet, "encoder_hid_proj", None) is not None:
        stages["face_projection"].append(unet.encoder_hid_proj)
    stages["unet"].append(unet)
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is not None:
        stages["controlnet"].append(controlnet)  # a MultiControlNetModel counts as one
    # vae.decode() is not forward(): time the two modules it calls (also per tile with tiling).
    stages["vae_decode"] += [m for m in (getattr(pipe.vae, "post_quant_conv", None), pipe.vae.decoder) if m is not None]
    return dict(stages)


def controlnet_work_marker(pipe) -> torch.nn.Module | None:
    """A submodule that runs only when the ControlNet really runs (the ControlNet's own hook also
    fires when a skipped call returns zeros), to count real ControlNet runs."""
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is None:
        return None
    nets = getattr(controlnet, "nets", [controlnet])
    return nets[0].controlnet_cond_embedding


class StageTimer:
    """Accumulates seconds and call counts per stage while `attached(pipe)` is active."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.controlnet_runs = 0
        self._events: list[tuple[str, object, object]] = []  # CUDA: (stage, start event, end event)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.controlnet_runs = 0
        self._events.clear()

    def _now(self):
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @contextmanager
    def attached(self, pipe) -> Iterator["StageTimer"]:
        handles = []
        for stage, modules in stage_modules(pipe).items():
            for module in modules:
                started: list = []  # a stack: a module may be re-entered (nested calls)

                def before(_module, _args, _started=started):
                    _started.append(self._now())

                def after(_module, _args, _output, _stage=stage, _started=started):
                    start, end = _started.pop(), self._now()
                    if self.device.type == "cuda":
                        self._events.append((_stage, start, end))
                    else:
                        self.seconds[_stage] += end - start
                    self.calls[_stage] += 1

                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after))
        marker = controlnet_work_marker(pipe)
        if marker is not None:
            handles.append(marker.register_forward_hook(lambda *_: self._count_controlnet_run()))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _count_controlnet_run(self) -> None:
        self.controlnet_runs += 1

    def snapshot(self) -> dict[str, float]:
        """Seconds per stage since reset (on CUDA, after the GPU has finished the call)."""
        if self._events:
            torch.cuda.synchronize(self.device)
            for stage, start, end in self._events:
                self.seconds[stage] += start.elapsed_time(end) / 1000.0
            self._events.clear()
        return {stage: round(self.seconds[stage], 4) for stage in STAGE_ORDER if stage in self.seconds}
