"""The bench's results as a markdown table (cases, stages, memory, ratios) and as JSON."""

from __future__ import annotations

from .cases import Case
from .runner import summarize
from ..testing.stage_timer import STAGE_ORDER

STAGE_LABELS = {"prompt_encoding": "prompt", "face_projection": "face proj.", "unet": "UNet",
                "controlnet": "ControlNet", "vae_decode": "VAE decode"}


def ratios(cases: list[Case]) -> dict[str, float | None]:
    """Median time ours / reference, per pair of cases with equal settings: InstantID against the
    stock ControlNet pipeline (same control window) and stock SDXL, and against itself with one
    of its speed-ups off (after / before)."""
    return {**_ratios(cases, "median_s", ""), **_ratios(cases, "median_cpu_s", " (CPU time)")}


def _ratios(cases: list[Case], key: str, suffix: str) -> dict[str, float | None]:
    medians = {c.name: summarize(c).get(key) for c in cases}
    by_pipeline_end = {(c.pipeline, c.call.get("control_guidance_end")): c.name for c in cases if "without" not in c.name}
    out = {}
    for case in cases:
        if case.pipeline != "instantid":
            continue
        end = case.call.get("control_guidance_end")
        references = [by_pipeline_end.get(("controlnet", end)), by_pipeline_end.get(("sdxl", None))]
        if "without" in case.name:  # a before/after pair: the full InstantID over this variant
            ours, references = by_pipeline_end.get(("instantid", end)), [case.name]
        else:
            ours = case.name
        for reference in references:
            if reference and ours and medians.get(ours) and medians.get(reference):
                out[f"{ours} / {reference}{suffix}"] = round(medians[ours] / medians[reference], 3)
    return out


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def markdown(env: dict, settings: dict, cases: list[Case], face: dict | None) -> str:
    stages = [s for s in STAGE_ORDER if any(s in summarize(c).get("stage_median_s", {}) for c in cases)]
    on_cuda = any("cuda_peak_allocated_gib" in summarize(c) for c in cases)
    load_end = env.get("load_average_end")
    lines = [
        f"{env['device']} ({env['cpu']}, {env['cpu_cores']} cores, {env['torch_threads']} torch threads), "
        f"torch {env['torch']}, diffusers {env['diffusers']}, {env['date']}. "
        f"Load average (1/5/15 min) at start {env['load_average_start']}, at end {load_end}.",
        "",
        f"Architecture `{settings['arch']}` ({'random weights' if settings['random_weights'] else 'real weights'}), "
        f"{settings['dtype']}, {settings['width']}x{settings['height']}, {settings['steps']} steps, CFG "
        f"{settings['guidance_scale']}, {settings['num_images']} image(s) per call, options {settings['options']}. "
        f"Cases interleaved; {settings['warmup']} warm-up round(s), then median of {settings['runs']} runs.",
        "",
        "| case | ControlNet runs | s/call (median) | s/image | runs (s) | CPU s/call (median) | "
        + " | ".join(f"{STAGE_LABELS[s]} s" for s in stages)
        + " | peak RSS GiB" + (" | CUDA peak alloc GiB | CUDA peak reserved GiB" if on_cuda else "") + " | NaN |",
        "| --- | ---: | ---: | ---: | --- | ---: | " + " | ".join("---:" for _ in stages) + " | ---:"
        + (" | ---: | ---:" if on_cuda else "") + " | --- |",
    ]
    for case in cases:
        s = summarize(case)
        if not s:
            lines.append(f"| {case.name} | — | — | — | not run | —" + " |" * (len(stages) + 2))
            continue
        runs = ", ".join(f"{v:.2f}" for v in s["seconds"])
        stage_cells = " | ".join(_seconds(s["stage_median_s"].get(st)) for st in stages)
        cuda = (f" | {s.get('cuda_peak_allocated_gib', '—')} | {s.get('cuda_peak_reserved_gib', '—')}" if on_cuda else "")
        controlnet_runs = "—" if s["controlnet_runs"] is None else s["controlnet_runs"]
        lines.append(f"| {case.name} | {controlnet_runs} | {s['median_s']:.3f} | {s['median_s_per_image']:.3f} | "
                     f"{runs} | {s['median_cpu_s']:.3f} | {stage_cells} | {s['peak_rss_gib']:.2f}{cuda} | {s['nan_in_output']} |")
    ratio_table = ratios(cases)
    if ratio_table:
        lines += ["", "| ratio (median time) | value |", "| --- | ---: |"]
        lines += [f"| {label} | {value:.3f} |" for label, value in ratio_table.items()]
    if face:
        lines += ["", f"Face analysis ({face['backend']}, {face['photo']}, {face['faces']} face(s)): first call "
                      f"{face['first_s']:.3f} s (models load), warm {face['warm_median_s']:.3f} s, "
                      f"cached repeat {face['cached_median_s'] * 1000:.2f} ms."]
    return "\n".join(lines)


def record(env: dict, settings: dict, cases: list[Case], face: dict | None, parameters: dict) -> dict:
    """JSON-ready record of the whole run."""
    def case_record(case: Case) -> dict:
        call = {k: v for k, v in case.call.items() if k not in ("image", "image_embeds", "prompt", "negative_prompt")}
        return {"name": case.name, "pipeline": case.pipeline, "call": call,
                "instantid_attributes": case.attributes or None,
                **summarize(case), "runs": case.runs}

    face_record = {k: v for k, v in (face or {}).items() if k != "embedding"} or None
    return {"environment": env, "settings": settings, "parameters": parameters, "face_analysis": face_record,
            "cases": [case_record(c) for c in cases], "ratios": ratios(cases)}
