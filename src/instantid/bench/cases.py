"""The measured cases: which pipeline, called with which arguments, at equal settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .settings import INSTANTID_SPEEDUPS, BenchSettings

PROMPT = "analog film photo of a woman in a red coat, city street at night, bokeh, highly detailed"
NEGATIVE_PROMPT = "lowres, blurry, watermark, deformed, cartoon, painting"
# Five keypoints (eyes, nose, mouth corners) of a face in a 1024x1024 portrait.
FACE_KPS_1024 = np.array([[420, 440], [600, 440], [510, 550], [435, 660], [590, 660]], dtype=np.float64)
ADAPTER_SCALE = 0.8
IDENTITYNET_SCALE = 0.8


@dataclass
class Case:
    """One configuration; `runs` fills in as it is measured."""

    name: str
    pipeline: str  # "sdxl", "controlnet" or "instantid"
    call: dict
    # InstantID pipeline attributes set before each run (every speed-up, on or off)
    attributes: dict = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)


def face_inputs(settings: BenchSettings, embedding_dim: int, embedding: np.ndarray | None = None) -> dict:
    """The keypoint image at the output size and a face embedding (random unless given: with
    random weights any embedding is as good as a real one)."""
    from ..face.keypoints import draw_kps

    width, height = settings.resolved_width, settings.resolved_height
    kps = FACE_KPS_1024 * np.array([width, height]) / 1024
    if embedding is None:
        embedding = torch.randn(embedding_dim, generator=torch.Generator().manual_seed(1)).numpy()
    return {"kps_image": draw_kps((width, height), kps), "embedding": embedding}


def common_call(settings: BenchSettings) -> dict:
    return dict(prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, width=settings.resolved_width,
                height=settings.resolved_height, num_inference_steps=settings.resolved_steps,
                guidance_scale=settings.guidance_scale, num_images_per_prompt=settings.num_images,
                output_type="np")


def build_cases(settings: BenchSettings, inputs: dict) -> list[Case]:
    """In the order one round runs them: stock SDXL, then per control window stock ControlNet
    and InstantID side by side."""
    base = common_call(settings)
    control = dict(base, image=inputs["kps_image"], controlnet_conditioning_scale=IDENTITYNET_SCALE)
    cases = []
    if "sdxl" in settings.pipelines:
        cases.append(Case("stock SDXL", "sdxl", base))
    for end in settings.control_ends:
        if "controlnet" in settings.pipelines:
            cases.append(Case(f"stock ControlNet, end {end:g}", "controlnet", dict(control, control_guidance_end=end)))
        if "instantid" in settings.pipelines:
            face = dict(control, control_guidance_end=end, image_embeds=inputs["embedding"],
                        ip_adapter_scale=ADAPTER_SCALE)
            speedups = {attribute: True for attribute in INSTANTID_SPEEDUPS.values()}
            speedups[INSTANTID_SPEEDUPS["idle-step-skipping"]] = settings.idle_step_skipping
            cases.append(Case(f"InstantID, end {end:g}", "instantid", face, speedups))
            for name in settings.compare_without:
                cases.append(Case(f"InstantID, end {end:g}, without {name}", "instantid", face,
                                  dict(speedups, **{INSTANTID_SPEEDUPS[name]: False})))
    return cases
