"""Face swap: put the person from face photo(s) into a target photo, changing only the face.

`swap_face` finds the target face (face/choice.pick_face) and repaints it with the identity
(repaint.repaint_face: mask, crop, inpaint, paste back; every pixel outside the mask kept exactly). `swap_whole_image`
is the img2img variant: the whole target repainted at `strength`, the identity at the target's face.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..face.choice import pick_face
from ..face.image import DEFAULT_DETECT_MAX_SIDE, describe_source, image_size, load_at_least, load_image
from ..face.keypoints import draw_kps
from ..face.types import Face, FaceAnalyzer
from ..models.architectures import family_of_pipeline
from ..params import SWAP_PROMPT, SWAP_STRENGTH, resolve_call
from .condition import FaceCondition, as_face_condition, check_embedding_size
from .repaint import CROP_CONTEXT, FEATHER, MASK_GROW, WORKING_SIDE, check_swap_values, repaint_face
from .results import GenerationResult, result_parameters
from .sizing import default_output_size

DEFAULT_PROMPT = SWAP_PROMPT
DEFAULT_STRENGTH = SWAP_STRENGTH["face"]
# The output size comes from the target (or the working size); one image per call.
_NOT_SWAP_PARAMS = frozenset({"width", "height", "num_images_per_prompt"})


def target_face(target: np.ndarray, analyzer: FaceAnalyzer, name: str, index: int = 0) -> Face:
    """The `index`-th largest face of the target photo (face/choice.pick_face), errors naming the photo."""
    return pick_face(analyzer, target, index, what=f"the target photo {name}", flag="--target-index",
                     need=": face swap needs a visible face to replace (frontal, not tiny)")


# ---- the pipelines


def _identity(face_photos, analyzer: FaceAnalyzer, pipe) -> FaceCondition:
    """The face photos' analysis (or a FaceCondition already made from them), checked against the adapter."""
    condition = as_face_condition(face_photos, analyzer)
    check_embedding_size(condition.embedding, pipe, analyzer.name if analyzer is not None else condition.backend)
    return condition


def swap_face(pipe, face_photos, target_photo, *, analyzer: FaceAnalyzer, prompt: str = DEFAULT_PROMPT,
              target_index: int = 0, strength: float = DEFAULT_STRENGTH, working_side: int = WORKING_SIDE,
              grow: float = MASK_GROW, feather: float = FEATHER, context: float = CROP_CONTEXT,
              **call_kwargs) -> GenerationResult:
    """Replace the face in `target_photo` with the person in `face_photos` (embeddings averaged; or pass
    their FaceCondition from condition.face_condition).

    `pipe`: any InstantID pipeline (SDXL or SD1.5); an inpainting one is made from it (sharing its weights) if needed.
    Generation parameters (instantid.params: steps, scales, control window, seed) default from that table;
    other keywords go to the pipeline call (`generator`, `negative_prompt`, ...). The result's `mask`,
    `crop_box`, `target_face` and `painted` tell where and what was painted.
    """
    from .strength import check_strength
    from .inpaint import inpaint_pipeline_for

    strength = check_strength(strength)
    values, call_kwargs, seed = resolve_call(call_kwargs, skip=_NOT_SWAP_PARAMS)
    check_swap_values(target_index=target_index, working_side=working_side, grow=grow, feather=feather)
    target = load_image(target_photo)  # whole: pasted back pixel for pixel (refused above FULL_DECODE_MAX_PIXELS)
    face = target_face(target, analyzer, describe_source(target_photo), target_index)
    pipe = inpaint_pipeline_for(pipe)
    condition = _identity(face_photos, analyzer, pipe)  # after the target: a faceless target fails fast

    repainted = repaint_face(pipe, target, face.bbox, face.kps, condition.embedding, prompt=prompt,
                             strength=strength, working_side=working_side, grow=grow, feather=feather,
                             context=context, **values, **call_kwargs)
    parameters = result_parameters(prompt, call_kwargs.get("negative_prompt"), seed, values, region="face",
                                   strength=strength, target_index=target_index, working_size=working_side,
                                   mask_grow=grow, feather=feather, crop_box=list(repainted.crop_box),
                                   family=family_of_pipeline(pipe),
                                   face_backend=analyzer.name if analyzer is not None else condition.backend)
    return GenerationResult(images=[repainted.image], parameters=parameters, condition=condition,
                            mask=repainted.mask, crop_box=repainted.crop_box, target_face=face,
                            painted=repainted.painted)


def swap_whole_image(pipe, face_photos, target_photo, *, analyzer: FaceAnalyzer, prompt: str = DEFAULT_PROMPT,
                     target_index: int = 0, strength: float = SWAP_STRENGTH["image"], width: int | None = None,
                     height: int | None = None, **call_kwargs) -> GenerationResult:
    """img2img: repaint the whole target at `strength` with the person from `face_photos` at the target
    face's keypoints. Output size: the target's, capped (see sizing.py), unless given.
    Parameters as for swap_face; the result's `target_face` is the face whose place the identity takes."""
    from .img2img import img2img_pipeline_for
    from .strength import check_strength

    strength = check_strength(strength)
    values, call_kwargs, seed = resolve_call(call_kwargs, skip=_NOT_SWAP_PARAMS)
    check_swap_values(target_index=target_index)
    pipe = img2img_pipeline_for(pipe)
    auto_w, auto_h = default_output_size(image_size(target_photo))
    width, height = width or auto_w, height or auto_h
    # Only the output size is needed: large photos are decoded at a reduced size (still at least the size
    # detection works at, so faces are found as in the full photo).
    target, _ = load_at_least(target_photo, max(width, height, DEFAULT_DETECT_MAX_SIDE))
    size = (target.shape[1], target.shape[0])
    face = target_face(target, analyzer, describe_source(target_photo), target_index)
    condition = _identity(face_photos, analyzer, pipe)
    kps = np.asarray(face.kps, dtype=np.float64) * [width / size[0], height / size[1]]
    output = pipe(prompt=prompt, image=Image.fromarray(target).resize((width, height), Image.LANCZOS),
                  control_image=draw_kps((width, height), kps), image_embeds=condition.embedding,
                  strength=strength, width=width, height=height, **values, **call_kwargs)
    parameters = result_parameters(prompt, call_kwargs.get("negative_prompt"), seed,
                                   {"width": width, "height": height, **values}, region="image", strength=strength,
                                   target_index=target_index, family=family_of_pipeline(pipe),
                                   face_backend=analyzer.name if analyzer is not None else condition.backend)
    return GenerationResult(images=output.images, parameters=parameters, condition=condition, target_face=face)
