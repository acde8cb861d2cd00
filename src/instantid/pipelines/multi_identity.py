"""Several people in one image, each with their own face photo, keypoints and region (paper, Fig. 12).

Each identity is a face_region.IdentityRegion (embedding, keypoints, region); the pipeline call's
`identity_regions` does the work (per-face adapter masks, one masked IdentityNet call per face).
This module turns photos into those: regions from boxes or from a layout photo with several people.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from ..face.choice import pick_faces
from ..face.keypoints import draw_kps, scale_kps
from ..face.types import Face, FaceAnalyzer
from ..errors import RegionError
from ..models.architectures import family_of_pipeline
from .boxes import Box, check_boxes  # noqa: F401  (check_boxes: part of this module's API)
from .face_region import IdentityRegion
from .condition import face_condition
from .results import GenerationResult, result_parameters
from .sizing import default_output_size

# A layout face's region: its box grown by this factor around its centre (head, hair, a bit of shoulders).
LAYOUT_REGION_EXPAND = 2.0
# A face placed into a box takes this fraction of the box's shorter side.
FACE_FRACTION_OF_BOX = 0.5


# ---- pure geometry


def expand_box(box, factor: float, size: tuple[int, int]) -> Box:
    """`box` grown by `factor` around its centre, clipped to an image of `size` (width, height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    return (max(0.0, cx - half_w), max(0.0, cy - half_h), min(float(size[0]), cx + half_w),
            min(float(size[1]), cy + half_h))


def separate_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Overlapping boxes cut apart at the midline between their centres, along the axis where the
    centres are further apart (people side by side are cut vertically)."""
    out = [list(b) for b in boxes]
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            a, b = out[i], out[j]
            if min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]):
                continue  # already disjoint
            (acx, acy), (bcx, bcy) = _centre(a), _centre(b)
            axis = 0 if abs(acx - bcx) >= abs(acy - bcy) else 1
            first, second = (a, b) if (acx, acy)[axis] <= (bcx, bcy)[axis] else (b, a)
            cut = ((acx, acy)[axis] + (bcx, bcy)[axis]) / 2
            first[axis + 2] = min(first[axis + 2], cut)
            second[axis] = max(second[axis], cut)
    return [tuple(b) for b in out]  # type: ignore[misc]


def place_kps_in_box(face: Face, box: Box) -> np.ndarray:
    """The face's own keypoints (its pose) moved into `box`: centred horizontally, in the top square of
    the box, the face FACE_FRACTION_OF_BOX of the box's shorter side."""
    x1, y1, x2, y2 = box
    side = min(x2 - x1, y2 - y1)
    fx1, fy1, fx2, fy2 = (float(v) for v in face.bbox)
    face_side = max(fx2 - fx1, fy2 - fy1, 1e-6)
    scale = FACE_FRACTION_OF_BOX * side / face_side
    centre = np.array([(x1 + x2) / 2, y1 + side / 2])
    return (np.asarray(face.kps, dtype=np.float64) - [(fx1 + fx2) / 2, (fy1 + fy2) / 2]) * scale + centre


def kps_overview(identities: Sequence[IdentityRegion], size: tuple[int, int]) -> Image.Image:
    """All identities' keypoints in one image (what the call's IdentityNet image shows; each face's
    IdentityNet pass gets only its own)."""
    layers = [np.asarray(draw_kps(size, identity.kps)) for identity in identities]
    return Image.fromarray(np.maximum.reduce(layers))


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# ---- photos -> identities


def identities_from_photos(face_photos: Sequence, analyzer: FaceAnalyzer, *, boxes: Sequence | None = None,
                           layout_photo=None, size: tuple[int, int] | None = None,
                           scale: float | Sequence[float] = 1.0) -> tuple[list[IdentityRegion], tuple[int, int]]:
    """One identity per face photo, placed by `boxes` (output pixels; needs `size`) or by the people in
    `layout_photo` (assigned left to right; output size defaults to the layout's, capped).

    Returns (identities, (width, height)). Raises NoFaceError for a photo without a face and RegionError
    when the numbers of photos and regions differ.
    """
    if (boxes is None) == (layout_photo is None):
        raise RegionError("give either boxes (one per face photo) or a layout photo, not both or neither")
    photos = list(face_photos)
    if not photos:
        raise RegionError("give at least one face photo")
    try:
        scales = [float(scale)] * len(photos) if np.isscalar(scale) else [float(s) for s in scale]
    except (TypeError, ValueError):
        raise RegionError(f"scale must be a number >= 0 or one per face photo, got {scale!r}") from None
    if len(scales) != len(photos):
        raise RegionError(f"{len(photos)} face photos but {len(scales)} scales; give one scale per photo")
    bad = [s for s in scales if not math.isfinite(s) or s < 0]
    if bad:
        raise RegionError(f"each identity's scale must be a finite number >= 0, got {bad[0]}")
    regions = check_boxes(boxes, len(photos), size) if boxes is not None else None  # before any face analysis
    conditions = [face_condition([photo], analyzer) for photo in photos]  # NoFaceError names the photo
    if layout_photo is not None:
        regions, kps_list, size = _layout_regions(layout_photo, analyzer, len(photos), size)
    else:
        kps_list = [place_kps_in_box(c.faces[0], box) for c, box in zip(conditions, regions)]
    identities = [IdentityRegion(region=region, embedding=c.embedding, kps=kps, scale=s)
                  for c, region, kps, s in zip(conditions, regions, kps_list, scales)]
    return identities, size


def _layout_regions(layout_photo, analyzer: FaceAnalyzer, count: int, size: tuple[int, int] | None):
    """Regions and keypoints of the `count` largest people in the layout photo, left to right, scaled
    to the output size."""
    from ..face.image import describe_source, image_size

    faces = pick_faces(analyzer, layout_photo, count, what=f"the layout photo {describe_source(layout_photo)}",
                       need="face photos were given; use a layout with one visible face per identity, or fewer photos")
    layout_size = image_size(layout_photo)
    size = size or default_output_size(layout_size)
    people = sorted(faces, key=lambda f: float(f.bbox[0] + f.bbox[2]))  # largest `count`, left to right
    sx, sy = size[0] / layout_size[0], size[1] / layout_size[1]
    boxes = [expand_box(np.asarray(f.bbox, dtype=np.float64) * [sx, sy, sx, sy], LAYOUT_REGION_EXPAND, size)
             for f in people]
    kps = [scale_kps(f.kps, layout_size, size) for f in people]
    return separate_boxes(boxes), kps, size


# ---- the call


def generate_multi_identity(pipe, identities: Sequence[IdentityRegion], prompt, *, width: int, height: int,
                            face_detail: str | None = None, face_detail_strength: float | None = None,
                            **call_kwargs) -> GenerationResult:
    """Run `pipe` with each identity confined to its region.

    Every identity needs its own `embedding` and `kps` (output pixels); regions must not overlap.
    Generation parameters (instantid.params: steps, `controlnet_conditioning_scale`, `ip_adapter_scale`,
    control window, seed, num_images_per_prompt) default from that table; each identity's `scale`
    multiplies both scales inside its region. `face_detail` ("off", "auto", "on") / `face_detail_strength`
    repaint each small face afterwards (pipelines/face_detail.py; None = params.JOB_PARAMS' default). Other
    keywords go to the pipeline call (`generator`, `negative_prompt`, ...).
    """
    from ..params import job_value, resolve_call
    from .face_detail import checked_options, detail_images

    values, call_kwargs, seed = resolve_call(call_kwargs, skip={"width", "height"})
    face_detail, face_detail_strength = checked_options(job_value("face_detail", face_detail), face_detail_strength,
                                                        values["num_inference_steps"])
    identities = list(identities)
    if not identities:
        raise RegionError("give at least one identity")
    for index, identity in enumerate(identities):
        if not isinstance(identity, IdentityRegion):
            raise RegionError(f"identity {index} must be an IdentityRegion, got {type(identity).__name__}")
        if identity.embedding is None or identity.kps is None:
            raise RegionError(f"identity {index} needs both an embedding and keypoints")
    # The call's IdentityNet image is only a picture of all faces (and sets sizes); each face's IdentityNet
    # pass gets its own keypoints. Pass a list there when the pipeline holds extra ControlNets.
    call_kwargs.setdefault(pipe.control_image_argument, kps_overview(identities, (width, height)))
    # the pipeline call applies the output cap (max_output_pixels) and refuses NaN output
    output = pipe(prompt=prompt, image_embeds=identities[0].embedding, width=width, height=height,
                  identity_regions=identities, **values, **call_kwargs)
    generated = output.images
    images, detailed = detail_images(pipe, generated, [(i.embedding, i.kps) for i in identities],
                                     mode=face_detail, strength=face_detail_strength, prompt=prompt,
                                     negative_prompt=call_kwargs.get("negative_prompt"), seed=seed,
                                     values={**values, **call_kwargs})
    parameters = result_parameters(
        prompt, call_kwargs.get("negative_prompt"), seed, {"width": width, "height": height, **values},
        detail_passes=detailed, family=family_of_pipeline(pipe),
        regions=[[float(v) for v in identity.region] if isinstance(identity.region, (tuple, list)) else "mask"
                 for identity in identities],
        scales=[float(identity.scale) for identity in identities], face_detail=face_detail,
        face_detail_strength=face_detail_strength)
    return GenerationResult(images=images if detailed else generated, parameters=parameters,
                            identities=identities)
