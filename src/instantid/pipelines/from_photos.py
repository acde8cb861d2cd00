"""The library entry: face photos + prompt in, images out. Runs face analysis, then the pipeline.

`generate_from_photos` is what `instantid generate` (and the service and UI) call: every generation
parameter defaults from `instantid.params`, so the same inputs give the same images from the library and
from the command line.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..errors import UsageError
from ..face.types import FaceAnalyzer
from ..params import INTERPOLATION_WEIGHTS, job_value, resolve_call, seeded_generator
from .condition import FaceCondition, as_face_condition, check_embedding_size
from .results import GenerationResult, concat_images, result_parameters

logger = logging.getLogger(__name__)


def _check_flux_options(controls, prompt_weighting: bool, face_detail: str) -> None:
    """What the FLUX family does not offer (yet), refused before any step runs."""
    refused = [name for name, asked in (("extra ControlNets (--canny/--depth/--openpose)", bool(controls)),
                                        ("prompt weighting", prompt_weighting),
                                        ("the face-detail pass", face_detail != "off")) if asked]
    if refused:
        raise UsageError(f"the FLUX family does not support {', '.join(refused)}; leave them out for FLUX models")


def _series(condition: FaceCondition, interpolate: FaceCondition | None, weights, yaw) -> list[tuple[str, FaceCondition]]:
    """(label, condition) per variant: one plain, or an identity-interpolation / head-pose series."""
    from .request import check_series
    from .variations import interpolate_embeddings, turn_head

    check_series(interpolate is not None, weights, yaw)
    if interpolate is not None:
        weights = [float(w) for w in weights]
        mixed = interpolate_embeddings(condition.embedding, interpolate.embedding, weights)
        return [(f"w{w:.2f}", replace(condition, embedding=e)) for w, e in zip(weights, mixed)]
    if yaw:
        return [(f"yaw{d:+g}", replace(condition, kps=turn_head(condition.kps, d))) for d in yaw]
    return [("", condition)]


def generate_from_photos(pipe, face_photos, prompt: str, *, analyzer: FaceAnalyzer | None = None, pose_photo=None,
                         kps=None, negative_prompt: str | None = None, style: str | None = None, styles_file=None,
                         prompt_weighting: bool = False, controls: Sequence = (), interpolate=None,
                         weights: Sequence[float] = INTERPOLATION_WEIGHTS, yaw: Sequence[float] | None = None,
                         face_index: int | None = None, face_detail: str | None = None,
                         face_detail_strength: float | None = None, **kwargs) -> GenerationResult:
    """Images of the person in `face_photos` (several photos of one person: embeddings averaged).

    face_photos: paths, PIL images or arrays (analysed with `analyzer`), or a FaceCondition already made
        by `face_condition` (front ends analyse first, so a faceless photo fails before any model loads).
    pose_photo: take the keypoints (head position and pose) from this photo; kps: or from 10 numbers in
        output pixels.
    style / styles_file: a style preset (pipelines/styles.py); prompt_weighting: compel syntax.
    controls: conditions.ExtraControl per extra ControlNet the pipeline holds beside IdentityNet, in order.
    interpolate (photos or a FaceCondition) with `weights`, or `yaw` (degrees): a series, one image per value.
    face_index: in group photos, the N-th largest face of each photo (0 = largest).
    face_detail ("off", "auto", "on") / face_detail_strength: repaint small faces after generation
        (pipelines/face_detail.py). These per-job knobs and `style` default from params.JOB_PARAMS (None = its
        default).
    Generation parameters (`instantid.params`: num_inference_steps, guidance_scale,
    controlnet_conditioning_scale, ip_adapter_scale, control_guidance_start/end, seed, width, height,
    num_images_per_prompt, negative_face_noise) default from that table and are range-checked. `seed` makes the generator
    (a fresh one per variant, so every variant starts from the same noise); a `generator` keyword wins.
    Other keywords go to the pipeline call as they are (output_type, callback_on_step_end, ...).
    """
    from .face_detail import checked_options, detail_images
    from .styles import get_style

    from ..models.architectures import family_of_pipeline
    from ..models.face_paths import check_face_path, for_family

    family = family_of_pipeline(pipe)
    values, kwargs, seed = resolve_call(kwargs, family=family)  # seed None: the caller's `generator` is used
    style = style or job_value("style")  # a custom style's name (styles_file) is checked by get_style below
    face_index = job_value("face_index", face_index)
    face_detail, face_detail_strength = checked_options(job_value("face_detail", face_detail),
                                                        face_detail_strength, values["num_inference_steps"])
    if family == "flux":
        _check_flux_options(controls, prompt_weighting, face_detail)
    condition = as_face_condition(face_photos, analyzer, pose_photo, face_index=face_index)
    backend = analyzer.name if analyzer is not None else condition.backend
    check_face_path(family, backend)
    check_embedding_size(condition.embedding, pipe, backend)
    if interpolate is not None:
        interpolate = as_face_condition(interpolate, analyzer)
        check_embedding_size(interpolate.embedding, pipe, backend)
    width, height = condition.output_size(values.pop("width"), values.pop("height"))
    if kps is not None:
        condition = condition.with_kps(kps, (width, height))
    series = _series(condition, interpolate, weights, yaw)
    prompt, negative_prompt = get_style(style, styles_file).apply(prompt, negative_prompt)
    control_images = [control.condition_image((width, height)) for control in controls]

    call = dict(values)
    if controls:
        # IdentityNet first (it is the one that sees the face tokens), then the extra ControlNets.
        call["controlnet_conditioning_scale"] = [values["controlnet_conditioning_scale"], *[c.scale for c in controls]]
        call["control_guidance_start"] = [values["control_guidance_start"], *[c.start for c in controls]]
        call["control_guidance_end"] = [values["control_guidance_end"], *[c.end for c in controls]]
    if prompt_weighting:
        from .prompts import weighted_prompt_kwargs

        call.update(weighted_prompt_kwargs(pipe, prompt, negative_prompt))
    else:
        call.update(prompt=prompt, negative_prompt=negative_prompt or None)
    call.update(kwargs)  # max_output_pixels too: the pipeline call applies the output cap and the NaN check

    batches, labels, passes = [], [], []
    for label, variant in series:
        kps_image = variant.kps_image(width, height)
        if seed is not None:  # every variant starts from the same noise
            call["generator"] = seeded_generator(seed)
        call[getattr(pipe, "control_image_argument", "image")] = [kps_image, *control_images] if controls else kps_image
        output = pipe(image_embeds=for_family(family, variant.embedding), width=width, height=height, **call)
        generated = output.images
        images, detailed = detail_images(pipe, generated, [(variant.embedding, variant.scaled_kps(width, height))],
                                         mode=face_detail, strength=face_detail_strength, prompt=prompt,
                                         negative_prompt=negative_prompt, seed=seed, values=call)
        batches.append(images if detailed else generated)
        labels += [label] * len(generated)
        passes += detailed
    parameters = result_parameters(
        prompt, negative_prompt, seed, {"width": width, "height": height, **values}, detail_passes=passes,
        style=style, prompt_weighting=prompt_weighting, control_scales=[c.scale for c in controls],
        scheduler=type(pipe.scheduler).__name__, family=family, face_backend=backend,
        kps=np.asarray(condition.kps, dtype=float).round(2).tolist(), pose_size=list(condition.pose_size),
        face_index=face_index, face_detail=face_detail, face_detail_strength=face_detail_strength)
    if interpolate is not None:
        parameters["interpolation_weights"] = [float(w) for w in weights]
    if yaw:
        parameters["yaw"] = [float(d) for d in yaw]
    return GenerationResult(images=concat_images(batches), parameters=parameters, condition=condition,
                            labels=labels)
