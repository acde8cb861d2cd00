"""The library entry: face photos + prompt in, images out. Runs face analysis, then the pipeline.

`generate_from_photos` is what `instantid generate` (and the service and UI) call: every generation
parameter defaults from `instantid.params`, so the same inputs give the same images from the library and
from the command line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import EmbeddingError, FaceTooSmallError, ImageReadError, NoFaceError, UsageError
from ..face.choice import report_choice, warn_if_different_people
from ..face.keypoints import average_embeddings, draw_kps, scale_kps
from ..face.small_faces import check_usable, detect_faces
from ..face.types import Face, FaceAnalyzer
from ..params import INTERPOLATION_WEIGHTS, resolve_call, seeded_generator
from .results import GenerationResult, concat_images
from .sizing import default_output_size

logger = logging.getLogger(__name__)


@dataclass
class FaceCondition:
    """What InstantID conditions on: one (averaged) raw embedding and the keypoints to place the face at."""

    embedding: np.ndarray
    kps: np.ndarray  # [5, 2] in the pose image's pixels
    pose_size: tuple[int, int]  # (width, height) of the image the keypoints come from
    faces: list[Face] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # reference photos without a usable face

    @property
    def backend(self) -> str | None:
        return self.faces[0].backend if self.faces else None

    def output_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """The output size, decided here for every entry: explicit sizes win; otherwise the pose image's
        size, capped (see sizing.py)."""
        if width and height:
            return width, height
        auto_w, auto_h = default_output_size(self.pose_size)
        return width or auto_w, height or auto_h

    def scaled_kps(self, width: int, height: int) -> np.ndarray:
        """The keypoints in the pixels of a (width, height) output."""
        return scale_kps(self.kps, self.pose_size, (width, height))

    def kps_image(self, width: int, height: int) -> Image.Image:
        """The keypoint image redrawn at (width, height), so points stay round at any output size."""
        return draw_kps((width, height), self.scaled_kps(width, height))

    def with_kps(self, numbers, size: tuple[int, int]) -> "FaceCondition":
        """The same identity placed at explicit keypoints: 10 numbers (left eye, right eye, nose, left and
        right mouth corner; x,y each) in pixels of an output of `size` (width, height)."""
        kps = np.asarray(numbers, np.float32)
        if kps.size != 10 or not np.isfinite(kps).all():
            raise UsageError(f"--kps needs 10 numbers (5 x,y points), got {kps.size}")
        kps = kps.reshape(5, 2)
        if (kps < 0).any() or (kps[:, 0] >= size[0]).any() or (kps[:, 1] >= size[1]).any():
            raise UsageError(f"--kps points must lie inside the {size[0]}x{size[1]} output")
        return replace(self, kps=kps, pose_size=tuple(size))


def _name(photo) -> str:
    return os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else f"<{type(photo).__name__}>"


def face_condition(face_photos: Sequence, analyzer: FaceAnalyzer, pose_photo=None,
                   face_index: int = 0) -> FaceCondition:
    """Analyse reference photos (embeddings averaged) and a pose photo (keypoints; default: first reference).

    A reference photo without a face, unreadable, or whose face is too small (face/small_faces.py) is reported
    by name and skipped; if none is left, NoFaceError lists them all. Nothing is chosen silently: the face
    used in a group photo is logged, and photos that look like different people are warned about
    (face/choice.py).
    """
    from ..face.image import image_size

    if analyzer is None:
        raise UsageError("face photos need a face analyzer: pass analyzer=get_face_analyzer(...)")
    if isinstance(face_photos, (str, Path, Image.Image, np.ndarray)):
        face_photos = [face_photos]
    faces, sizes, skipped, names = [], [], [], []
    for photo in face_photos:
        try:
            found = detect_faces(analyzer, photo)  # looks closer for small faces (face/small_faces.py)
            size = image_size(photo)
        except ImageReadError as err:
            skipped.append(f"{_name(photo)}: {err}")
            continue
        if len(found) <= face_index:
            skipped.append(f"{_name(photo)}: no face" + (f" #{face_index}" if face_index else ""))
            continue
        try:
            faces.append(check_usable(found[face_index], _name(photo)))
        except FaceTooSmallError as err:
            skipped.append(str(err))
            continue
        report_choice(found, face_index, _name(photo))  # group photos: say which face (face/choice.py)
        sizes.append(size)
        names.append(_name(photo))
    warn_if_different_people(faces, names)
    if skipped:
        logger.warning("skipped reference photos: %s", "; ".join(skipped))
    if not faces:
        raise NoFaceError(
            "no usable face in the reference photos (" + "; ".join(skipped) + "). "
            "Use photos where the face is clearly visible, frontal and not tiny."
        )
    condition = FaceCondition(embedding=average_embeddings([f.embedding for f in faces]), kps=np.asarray(faces[0].kps),
                              pose_size=sizes[0], faces=faces, skipped=skipped)
    return with_pose_from(condition, analyzer, pose_photo) if pose_photo is not None else condition


def as_face_condition(face_photos, analyzer: FaceAnalyzer | None, pose_photo=None, face_index: int = 0) -> FaceCondition:
    """`face_photos` analysed, or returned as is when it is already a FaceCondition (then with the keypoints
    of `pose_photo`, if given)."""
    if isinstance(face_photos, FaceCondition):
        return with_pose_from(face_photos, analyzer, pose_photo) if pose_photo is not None else face_photos
    return face_condition(face_photos, analyzer, pose_photo, face_index=face_index)


def with_pose_from(condition: FaceCondition, analyzer: FaceAnalyzer | None, pose_photo) -> FaceCondition:
    """`condition` with its keypoints taken from the largest face of `pose_photo`."""
    from ..face.image import image_size

    if analyzer is None:
        raise UsageError("a pose photo needs a face analyzer: pass analyzer=get_face_analyzer(...)")
    pose_faces = detect_faces(analyzer, pose_photo)
    if not pose_faces:
        raise NoFaceError(f"no face found in the pose photo {_name(pose_photo)}; it supplies the keypoints")
    report_choice(pose_faces, 0, f"the pose photo {_name(pose_photo)}", flag=None)
    return replace(condition, kps=np.asarray(pose_faces[0].kps), pose_size=image_size(pose_photo))


def _check_flux_options(controls, prompt_weighting: bool, face_detail: str) -> None:
    """What the FLUX family does not offer (yet), refused before any step runs."""
    refused = [name for name, asked in (("extra ControlNets (--canny/--depth/--openpose)", bool(controls)),
                                        ("prompt weighting", prompt_weighting),
                                        ("the face-detail pass", face_detail != "off")) if asked]
    if refused:
        raise UsageError(f"the FLUX family does not support {', '.join(refused)}; leave them out for FLUX models")


def check_embedding_size(embedding, pipe, backend: str | None = None) -> None:
    """The one check that a face backend's embeddings fit the loaded adapter (antelopev2 512-d, dlib 128-d)."""
    from ..models.architectures import embedding_size_problem

    problem = embedding_size_problem(np.asarray(embedding).shape[-1], pipe.face_embedding_dim,
                                     f"the '{backend}' face backend gives" if backend else "the face embedding has")
    if problem:
        raise EmbeddingError(problem)


def _series(condition: FaceCondition, interpolate: FaceCondition | None, weights, yaw) -> list[tuple[str, FaceCondition]]:
    """(label, condition) per variant: one plain, or an identity-interpolation / head-pose series."""
    from .variations import interpolate_embeddings, turn_head

    if interpolate is not None and yaw:
        raise UsageError("use either interpolate (--interpolate) or yaw (--yaw), not both")
    if interpolate is not None:
        weights = [float(w) for w in weights]
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise UsageError(f"interpolation weights must be in [0, 1], got {weights}")
        mixed = interpolate_embeddings(condition.embedding, interpolate.embedding, weights)
        return [(f"w{w:.2f}", replace(condition, embedding=e)) for w, e in zip(weights, mixed)]
    if yaw:
        return [(f"yaw{d:+g}", replace(condition, kps=turn_head(condition.kps, d))) for d in yaw]
    return [("", condition)]


def generate_from_photos(pipe, face_photos, prompt: str, *, analyzer: FaceAnalyzer | None = None, pose_photo=None,
                         kps=None, negative_prompt: str | None = None, style: str = "none", styles_file=None,
                         prompt_weighting: bool = False, controls: Sequence = (), interpolate=None,
                         weights: Sequence[float] = INTERPOLATION_WEIGHTS, yaw: Sequence[float] | None = None,
                         face_index: int = 0, face_detail: str = "off", face_detail_strength: float | None = None,
                         **kwargs) -> GenerationResult:
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
        (pipelines/face_detail.py).
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
    face_detail, face_detail_strength = checked_options(face_detail, face_detail_strength,
                                                        values["num_inference_steps"])
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
        passes += [f"{'repainted' if p.ran else 'skipped'} ({p.reason})" for p in detailed]
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "style": style,
                  "prompt_weighting": prompt_weighting, "seed": seed,
                  "width": width, "height": height, **values,
                  "control_scales": [c.scale for c in controls], "scheduler": type(pipe.scheduler).__name__,
                  "family": family,
                  "face_backend": backend, "kps": np.asarray(condition.kps, dtype=float).round(2).tolist(),
                  "pose_size": list(condition.pose_size), "face_index": face_index, "face_detail": face_detail,
                  "face_detail_strength": face_detail_strength}
    if passes:
        parameters["face_detail_passes"] = passes
    if interpolate is not None:
        parameters["interpolation_weights"] = [float(w) for w in weights]
    if yaw:
        parameters["yaw"] = [float(d) for d in yaw]
    return GenerationResult(images=concat_images(batches), parameters=parameters, condition=condition,
                            labels=labels)
