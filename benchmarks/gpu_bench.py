"""Speed and memory of InstantID on full-size SDXL, against the stock diffusers pipelines.

Random fp16 weights of the real architecture (see src/instantid/testing/random_sdxl.py), so nothing is
downloaded.
Measures seconds per image (warm-up run, then the median of N timed runs) and peak GPU memory for:
- stock StableDiffusionXLPipeline and StableDiffusionXLControlNetPipeline on the same modules;
- StableDiffusionXLInstantIDPipeline with the full control window, with a half window
  (control_guidance_end=0.5) with and without skipping the idle ControlNet, a 4-step schedule,
  and with model CPU offload.
Prints a markdown table and writes JSON. `--small` runs the tiny architecture (CPU check).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

GIB = 1024**3
PROMPT = "analog film photo of a woman in a red coat, city street at night, bokeh, highly detailed"
NEGATIVE_PROMPT = "lowres, blurry, watermark, deformed, cartoon, painting"
# Five keypoints (eyes, nose, mouth corners) of a face in a 1024x1024 portrait.
FACE_KPS_1024 = np.array([[420, 440], [600, 440], [510, 550], [435, 660], [590, 660]], dtype=np.float64)
FACE_EMBEDDING_DIM = 512
# Default time budget for the whole script (the device check must end within 8 minutes): past
# SOFT_BUDGET_S each case gets one timed run; past HARD_BUDGET_S remaining cases are skipped.
SOFT_BUDGET_S = 390
HARD_BUDGET_S = 450


@dataclass(frozen=True)
class Settings:
    size: str  # "full" or "small"
    resolution: int
    steps: int
    few_steps: int
    guidance_scale: float
    runs: int
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        default_dtype = torch.float16 if device.type == "cuda" else torch.float32  # CPU half is slow
        dtype = default_dtype if args.dtype == "auto" else getattr(torch, args.dtype)
        if args.small:
            return cls("small", 128, 2, 2, 5.0, args.runs or 1, device, dtype)
        return cls("full", 1024, 30, 4, 5.0, args.runs or 3, device, dtype)


@dataclass
class Case:
    """One measured configuration: which pipeline, called with which arguments."""

    name: str
    pipeline: str  # "sdxl", "controlnet", "instantid" or "instantid_offload"
    call: dict
    skip_idle_controlnets: bool = True
    result: dict = field(default_factory=dict)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny architecture, 128x128, 2 steps (CPU check)")
    parser.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), default="auto",
                        help="auto: float16 on CUDA, float32 on CPU")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default 3; 1 with --small)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default $OUT/gpu_bench.json, else benchmarks/gpu_bench.json)")
    parser.add_argument("--soft-budget-s", type=float, default=SOFT_BUDGET_S)
    parser.add_argument("--hard-budget-s", type=float, default=HARD_BUDGET_S)
    return parser.parse_args(argv)


def json_path(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_bench.json"
    return Path(__file__).resolve().parent / "gpu_bench.json"


# ---- the inputs and the cases


def face_inputs(settings: Settings) -> dict:
    """A keypoint condition image and a face embedding (random: the weights are random too)."""
    from instantid.face.keypoints import draw_kps  # cv2/numpy/PIL only

    size = settings.resolution
    kps_image = draw_kps((size, size), FACE_KPS_1024 * size / 1024)
    embedding = torch.randn(FACE_EMBEDDING_DIM, generator=torch.Generator().manual_seed(1))
    return {"kps_image": kps_image, "embedding": embedding}


def common_call(settings: Settings) -> dict:
    return dict(prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, height=settings.resolution,
                width=settings.resolution, num_inference_steps=settings.steps,
                guidance_scale=settings.guidance_scale, output_type="np")


def stock_cases(settings: Settings, kps_image) -> list[Case]:
    """Cases run before the adapter is loaded (loading it changes the shared UNet)."""
    base = common_call(settings)
    control = dict(base, image=kps_image)
    few = dict(num_inference_steps=settings.few_steps, guidance_scale=1.0)
    return [
        Case("stock SDXL", "sdxl", base),
        Case("stock ControlNet, end 1.0", "controlnet", dict(control, control_guidance_end=1.0)),
        Case("stock ControlNet, end 0.5", "controlnet", dict(control, control_guidance_end=0.5)),
        Case(f"stock ControlNet, {settings.few_steps} steps CFG 1.0", "controlnet", dict(control, **few)),
        Case(f"stock SDXL, {settings.few_steps} steps CFG 1.0", "sdxl", dict(base, **few)),
    ]


def instantid_cases(settings: Settings, kps_image, embedding) -> list[Case]:
    face = dict(common_call(settings), image=kps_image, image_embeds=embedding, ip_adapter_scale=0.8)
    few = dict(num_inference_steps=settings.few_steps)
    return [
        Case("InstantID, end 1.0 (default)", "instantid", dict(face, control_guidance_end=1.0)),
        Case("InstantID, end 0.5, skip idle ControlNet", "instantid", dict(face, control_guidance_end=0.5)),
        Case("InstantID, end 0.5, no skip", "instantid", dict(face, control_guidance_end=0.5),
             skip_idle_controlnets=False),
        Case(f"InstantID, {settings.few_steps} steps CFG 1.0", "instantid", dict(face, guidance_scale=1.0, **few)),
        Case(f"InstantID, {settings.few_steps} steps CFG 1.5", "instantid", dict(face, guidance_scale=1.5, **few)),
        Case("InstantID, end 1.0, model CPU offload", "instantid_offload", dict(face, control_guidance_end=1.0)),
    ]


# ---- measuring


class Clock:
    """Time since the start of the script, against the budgets."""

    def __init__(self, soft_s: float, hard_s: float):
        self.start, self.soft_s, self.hard_s = time.monotonic(), soft_s, hard_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory_stats(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()  # so peak reserved reflects this case, not earlier ones
        torch.cuda.reset_peak_memory_stats(device)


def memory_stats(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / GIB, 2)}


@contextmanager
def counting_calls(module: torch.nn.Module | None) -> Iterator[list]:
    """Counts the calls of `module` (none when it is None) into the yielded one-item list."""
    count = [0]
    handle = module.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1)) if module else None
    try:
        yield count
    finally:
        if handle is not None:
            handle.remove()


def controlnet_work_marker(pipe) -> torch.nn.Module | None:
    """A submodule that runs only when the ControlNet really runs (its forward hook would also
    fire for a skipped call), to count real ControlNet runs."""
    controlnet = getattr(pipe, "controlnet", None)
    return controlnet.controlnet_cond_embedding if controlnet is not None else None


def generate(pipe, call: dict, settings: Settings) -> tuple[float, np.ndarray, int]:
    """One image: seconds from call to finished numpy image (GPU work included), the image,
    and how many times the ControlNet really ran."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    with counting_calls(controlnet_work_marker(pipe)) as controlnet_runs:
        synchronize(settings.device)
        start = time.perf_counter()
        images = pipe(**call, generator=generator).images
        synchronize(settings.device)
        elapsed = time.perf_counter() - start
    return elapsed, np.asarray(images), controlnet_runs[0]


def measure(case: Case, pipe, settings: Settings, clock: Clock) -> dict:
    """Warm-up run, then up to `settings.runs` timed runs (1 once past the soft budget)."""
    if hasattr(pipe, "skip_zero_scale_controlnets"):
        pipe.skip_zero_scale_controlnets = case.skip_idle_controlnets
    reset_memory_stats(settings.device)
    warmup_s, _, _ = generate(pipe, case.call, settings)  # cuDNN/cuBLAS setup, allocator growth
    seconds = []
    for _ in range(settings.runs):
        if seconds and clock.elapsed() > clock.soft_s:
            break
        elapsed, images, controlnet_runs = generate(pipe, case.call, settings)
        seconds.append(elapsed)
    return {"seconds": [round(s, 3) for s in seconds], "median_s": round(statistics.median(seconds), 3),
            "warmup_s": round(warmup_s, 3), "controlnet_runs": controlnet_runs,
            "nan_in_output": bool(np.isnan(images).any()), **memory_stats(settings.device)}


def run_cases(cases: list[Case], pipes: dict, settings: Settings, clock: Clock, report) -> None:
    for case in cases:
        if clock.elapsed() > clock.hard_s:
            case.result = {"skipped": f"time budget ({clock.hard_s:.0f} s) spent"}
        else:
            try:
                case.result = measure(case, pipes[case.pipeline], settings, clock)
            except Exception as err:  # keep measuring the other cases; the error goes in the report
                case.result = {"error": f"{type(err).__name__}: {err}"}
        print(f"[{clock.elapsed():6.1f} s] {case.name}: {case.result}", file=sys.stderr, flush=True)
        report()


# ---- pipelines


def stock_pipelines(components) -> dict:
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    sdxl = StableDiffusionXLPipeline(**components.sdxl_kwargs())
    controlnet = StableDiffusionXLControlNetPipeline(**components.sdxl_kwargs(), controlnet=components.controlnet)
    return {"sdxl": sdxl, "controlnet": controlnet}


def instantid_pipeline(components):
    """The InstantID pipeline on the same modules; loading the adapter changes the shared UNet."""
    from instantid.pipelines.sdxl import StableDiffusionXLInstantIDPipeline

    pipe = StableDiffusionXLInstantIDPipeline(**components.sdxl_kwargs(), controlnet=components.controlnet)
    pipe.load_ip_adapter_instantid(components.adapter_state_dict, scale=0.8)
    return pipe


def enable_offload(pipe, device: torch.device):
    """Model CPU offload (moves every model to CPU first); the GPU is then emptied for a clean peak."""
    pipe.enable_model_cpu_offload(device=device)
    reset_memory_stats(device)
    return pipe


# ---- the report


def environment(settings: Settings, components) -> dict:
    import diffusers
    import transformers

    on_gpu = settings.device.type == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(settings.device) if on_gpu else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "architecture": settings.size,
        "dtype": str(settings.dtype).removeprefix("torch."),
        "resolution": settings.resolution,
        "steps": settings.steps,
        "few_steps": settings.few_steps,
        "guidance_scale": settings.guidance_scale,
        "timed_runs_per_case": settings.runs,
        "output_type": "np",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "sdpa": True,  # diffusers' default attention processor (AttnProcessor2_0)
        "parameters": components.parameter_counts(),
        "build_seconds": components.build_seconds,
    }


def median_of(cases: list[Case], name: str) -> float | None:
    found = [c for c in cases if c.name == name]
    return found[0].result.get("median_s") if found else None


def ratios(cases: list[Case], settings: Settings) -> dict[str, float | None]:
    """Ours / reference, per pair of cases with the same work to do."""
    few = f"{settings.few_steps} steps CFG 1.0"
    pairs = {
        "skip vs no skip (end 0.5)": ("InstantID, end 0.5, skip idle ControlNet", "InstantID, end 0.5, no skip"),
        "InstantID no skip / stock ControlNet (end 0.5)": ("InstantID, end 0.5, no skip", "stock ControlNet, end 0.5"),
        "InstantID skip / stock ControlNet (end 0.5)": ("InstantID, end 0.5, skip idle ControlNet",
                                                        "stock ControlNet, end 0.5"),
        "InstantID / stock ControlNet (end 1.0)": ("InstantID, end 1.0 (default)", "stock ControlNet, end 1.0"),
        "InstantID / stock SDXL (end 1.0)": ("InstantID, end 1.0 (default)", "stock SDXL"),
        f"InstantID / stock ControlNet ({few})": (f"InstantID, {few}", f"stock ControlNet, {few}"),
        "offload / no offload (end 1.0)": ("InstantID, end 1.0, model CPU offload", "InstantID, end 1.0 (default)"),
    }
    out = {}
    for label, (ours, reference) in pairs.items():
        a, b = median_of(cases, ours), median_of(cases, reference)
        out[label] = round(a / b, 3) if a and b else None
    return out


def markdown(env: dict, cases: list[Case], ratio_table: dict) -> str:
    lines = [
        f"## InstantID speed, {env['architecture']} architecture ({env['dtype']}, random weights)",
        "",
        f"{env['device']}, torch {env['torch']} (CUDA {env['cuda']}), diffusers {env['diffusers']}, "
        f"transformers {env['transformers']}, {env['date']}. {env['resolution']}x{env['resolution']}, "
        f"Euler; median of up to {env['timed_runs_per_case']} timed runs after one warm-up.",
        "",
        "| case | steps | CFG | ControlNet runs | s/image | timed runs | peak alloc GiB | peak reserved GiB "
        "| NaN in output |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        r = case.result
        status = r.get("error") or r.get("skipped")
        seconds = f"{r['median_s']:.3f}" if "median_s" in r else f"— ({status})"
        lines.append(
            f"| {case.name} | {case.call.get('num_inference_steps')} | {case.call.get('guidance_scale')} | "
            f"{r.get('controlnet_runs', '—') if case.pipeline != 'sdxl' else '—'} | {seconds} | {len(r.get('seconds', []))} | {r.get('peak_allocated_gib', '—')} | "
            f"{r.get('peak_reserved_gib', '—')} | {r.get('nan_in_output', '—')} |")
    lines += ["", "| ratio (time) | value |", "| --- | ---: |"]
    lines += [f"| {label} | {'—' if v is None else f'{v:.3f}'} |" for label, v in ratio_table.items()]
    return "\n".join(lines)


def case_record(case: Case) -> dict:
    call = {k: v for k, v in case.call.items() if k not in ("image", "image_embeds", "prompt", "negative_prompt")}
    return {"name": case.name, "pipeline": case.pipeline, "call": call,
            "skip_zero_scale_controlnets": case.skip_idle_controlnets if case.pipeline.startswith("instantid") else None,
            **case.result}


def main(argv=None) -> int:
    args = parse_args(argv)
    clock = Clock(args.soft_budget_s, args.hard_budget_s)
    settings = Settings.from_args(args)
    out_path = json_path(args)

    from instantid.testing.random_sdxl import build_components

    components = build_components(settings.size, settings.device, settings.dtype)
    print(f"[{clock.elapsed():6.1f} s] built {settings.size} components: {components.build_seconds}",
          file=sys.stderr, flush=True)
    env = environment(settings, components)
    inputs = face_inputs(settings)
    cases: list[Case] = []

    def report() -> None:  # after every case, so a run cut short still leaves its numbers
        out_path.parent.mkdir(parents=True, exist_ok=True)
        record = {**env, "cases": [case_record(c) for c in cases], "ratios": ratios(cases, settings)}
        out_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    pipes = stock_pipelines(components)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    stock = stock_cases(settings, inputs["kps_image"])
    cases += stock
    run_cases(stock, pipes, settings, clock, report)

    ours = instantid_cases(settings, inputs["kps_image"], inputs["embedding"])
    cases += ours
    pipes["instantid"] = instantid_pipeline(components)
    pipes["instantid"].set_progress_bar_config(disable=True)
    run_cases([c for c in ours if c.pipeline == "instantid"], pipes, settings, clock, report)

    offload_cases = [c for c in ours if c.pipeline == "instantid_offload"]
    try:  # last: it moves the shared modules to CPU and hooks them
        pipes["instantid_offload"] = enable_offload(pipes["instantid"], settings.device)
    except Exception as err:
        for case in offload_cases:
            case.result = {"error": f"enable_model_cpu_offload: {type(err).__name__}: {err}"}
    else:
        run_cases(offload_cases, pipes, settings, clock, report)

    report()
    print(markdown(env, cases, ratios(cases, settings)))
    print(f"\nJSON: {out_path}  ({clock.elapsed():.0f} s in all)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
