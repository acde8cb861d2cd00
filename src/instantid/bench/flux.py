"""`instantid bench --family flux`: one case per memory profile (pipelines/memory.py) on the same components:
seconds per image (median of the timed runs), peak memory during generation (RSS; CUDA peaks on a GPU), and
how far each profile's final latents are from the full profile's (its quality cost). Profiles are measured one
after the other (each holds its own copy of the models), not interleaved. InfiniteYou's own figures for the
matching settings are printed beside ours; measuring their pipeline itself needs their code and a GPU.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..pipelines.flux_loading import DEFAULT_VARIANT
from ..pipelines.memory import PROFILES


@dataclass(frozen=True)
class FluxBenchSettings:
    profiles: tuple[str, ...] = tuple(PROFILES)
    tiny: bool = True
    base: str | None = None
    identitynet: str | None = None
    adapter: str | None = None
    variant: str = DEFAULT_VARIANT
    width: int = 128
    height: int = 128
    steps: int = 4
    runs: int = 3
    warmup: int = 1
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0


def run_flux_bench(settings: FluxBenchSettings) -> tuple[str, dict]:
    """(markdown table, JSON-able record)."""
    import torch

    from ..pipelines.flux_loading import FLUX_BASE, INFINITEYOU_REPO, load_flux_pipeline
    from ..pipelines.loading_steps import default_device
    from .environment import describe
    from .memory import PeakMemory

    for name in settings.profiles:
        if name not in PROFILES:
            from ..errors import UsageError

            raise UsageError(f"unknown memory profile {name!r}; choose among {', '.join(PROFILES)}")
    device = default_device() if settings.device == "auto" else settings.device
    dtype = None if settings.dtype == "auto" else getattr(torch, settings.dtype)
    if settings.tiny:
        from ..testing.tiny_flux import tiny_flux_cached

        tiny = tiny_flux_cached()
        models = (str(tiny.base), str(tiny.identitynet), str(tiny.adapter))
    else:
        models = (settings.base or FLUX_BASE, settings.identitynet or INFINITEYOU_REPO, settings.adapter or INFINITEYOU_REPO)
    embedding = np.random.default_rng(settings.seed).standard_normal(512).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    cases, reference = [], None
    for name in settings.profiles:
        pipe = load_flux_pipeline(*models, variant=settings.variant, device=device, dtype=dtype, memory=name)
        pipe.set_progress_bar_config(disable=True)

        def call():
            return pipe("A man, portrait, cinematic", image_embeds=embedding, width=settings.width,
                        height=settings.height, num_inference_steps=settings.steps,
                        generator=torch.Generator("cpu").manual_seed(settings.seed), output_type="latent").images

        for _ in range(settings.warmup):
            call()
        memory = PeakMemory(device)
        memory.reset()
        seconds = []
        for _ in range(settings.runs):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            latents = call()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        latents = latents.float().cpu()
        reference = latents if reference is None and name == "full" else reference
        cases.append({"profile": name, "seconds_per_image": round(statistics.median(seconds), 4),
                      "seconds": [round(s, 4) for s in seconds], **memory.read(),
                      "their_gb": PROFILES[name].their_gb, "latents": latents})
        pipe = None  # this profile's models go before the next one loads
    for case in cases:
        latents = case.pop("latents")
        case["max_abs_latent_diff_vs_full"] = (round(float((latents - reference).abs().max()), 5)
                                               if reference is not None else None)
    record = {"environment": describe(torch.device(device)), "settings": settings.__dict__ | {"models": models},
              "cases": cases}
    return markdown(cases, settings, device), record


def markdown(cases: list[dict], settings: FluxBenchSettings, device: str) -> str:
    memory_key = "cuda_peak_allocated_gib" if device.startswith("cuda") else "peak_rss_gib"
    lines = [f"FLUX memory profiles, {'tiny random' if settings.tiny else 'real'} weights, {settings.width}x"
             f"{settings.height}, {settings.steps} steps, {device}, median of {settings.runs} runs",
             "", f"| profile | s/image | peak memory GiB ({memory_key}) | InfiniteYou's figure GB | max abs latent diff vs full |",
             "| --- | --- | --- | --- | --- |"]
    for case in cases:
        theirs = case["their_gb"] if case["their_gb"] is not None else "-"
        diff = case["max_abs_latent_diff_vs_full"]
        lines.append(f"| {case['profile']} | {case['seconds_per_image']:.3f} | {case.get(memory_key, '-')} | {theirs} | "
                     f"{'-' if diff is None else diff} |")
    return "\n".join(lines)
