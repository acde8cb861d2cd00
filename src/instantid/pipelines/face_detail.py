"""Face-detail pass: repaint a small face of a generated image at the model's working size.

In full-body or wide shots the face covers few latent pixels (8 px per latent at SDXL), so it comes out
small and mushy. After generation, when the face's long side is below `threshold` (default 256 px), the
face is repainted the way face swap does it (repaint.repaint_face): a crop with context around it,
upscaled to the working size, inpainted with InstantID at a moderate `strength` with the SAME face embedding
and the keypoints mapped into the crop, and pasted back with a feathered mask. Pixels outside the mask are
returned exactly as they were.

Where the face is: the keypoints the image was generated with, not a re-detection. IdentityNet places
the face at those keypoints; a re-detection fails on stylised output (paintings, cartoons) and on the
tiny test model's noise images, and would need the face models loaded again. The face box is estimated
from the five keypoints (FACE_BOX_PER_KPS_SPAN, measured against dlib's boxes on the sample photos).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..face.keypoints import check_kps
from ..params import FACE_DETAIL_MODES, FACE_DETAIL_STRENGTH, FACE_DETAIL_THRESHOLD, JOB_PARAMS_BY_NAME

# Declared with the other parameters (instantid.params), shared with the CLI.
MODES = FACE_DETAIL_MODES
DEFAULT_THRESHOLD = FACE_DETAIL_THRESHOLD
DEFAULT_STRENGTH = FACE_DETAIL_STRENGTH
# Face box side / max(eye distance, eye-to-mouth distance): 2.1-2.8 against dlib's boxes on the sample
# photos; the keypoints' mean sits ~4% of the side below the box centre.
FACE_BOX_PER_KPS_SPAN = 2.4
KPS_MEAN_BELOW_CENTRE = 0.04
SIZE_MULTIPLE = 64


@dataclass
class FaceDetailResult:
    image: Image.Image  # the image with the face repainted, or the input unchanged
    ran: bool
    face_box: np.ndarray  # [x1, y1, x2, y2] estimated from the keypoints, image pixels
    reason: str  # why it ran or not, for logs
    repainted: object | None = field(default=None, repr=False)  # repaint.RepaintedFace when it ran


def face_box_from_kps(kps, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """A face box [x1, y1, x2, y2] around five keypoints (see FACE_BOX_PER_KPS_SPAN), clipped to
    `image_size` (width, height) when given."""
    kps = check_kps(kps, "the face-detail pass's keypoints")
    eyes = np.linalg.norm(kps[1] - kps[0])
    eyes_to_mouth = np.linalg.norm((kps[3] + kps[4]) / 2 - (kps[0] + kps[1]) / 2)
    side = max(FACE_BOX_PER_KPS_SPAN * max(eyes, eyes_to_mouth), 2.0)
    cx, cy = kps.mean(axis=0) - [0.0, KPS_MEAN_BELOW_CENTRE * side]
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    if image_size is not None:
        box = np.clip(box, 0, [image_size[0], image_size[1], image_size[0], image_size[1]])
    return box.astype(np.float32)


def check_mode(mode: str) -> str:
    return JOB_PARAMS_BY_NAME["face_detail"].check(mode, "face_detail")  # the parameter table's row


def should_run(face_box, mode: str = "auto", threshold: float = DEFAULT_THRESHOLD) -> tuple[bool, str]:
    """(run or not, why): "on" always, "off" never, "auto" when the face's long side is below `threshold`."""
    check_mode(mode)
    x1, y1, x2, y2 = (float(v) for v in face_box)
    long_side = max(x2 - x1, y2 - y1)
    if mode != "auto":
        return mode == "on", f"face-detail {mode}"
    if long_side < threshold:
        return True, f"face is {long_side:.0f} px < {threshold:.0f} px"
    return False, f"face is {long_side:.0f} px >= {threshold:.0f} px: large enough"


def detail_pipeline_for(pipe):
    """An inpainting pipeline sharing `pipe`'s modules, with IdentityNet as its only ControlNet (extra
    ControlNets such as canny or depth describe the whole image, not the crop)."""
    from .inpaint import inpaint_pipeline_for

    inpaint = inpaint_pipeline_for(pipe)
    if len(inpaint.controlnets) > 1:
        return type(inpaint).from_pipe(inpaint, controlnet=inpaint.identitynet)
    return inpaint


def working_side_for(image_size: tuple[int, int]) -> int:
    """The size the model was run at: the image's long side, a multiple of SIZE_MULTIPLE."""
    return max(SIZE_MULTIPLE, int(round(max(image_size) / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def face_detail(pipe, image: Image.Image, embedding, kps, *, prompt: str = "", mode: str = "auto",
                strength: float = DEFAULT_STRENGTH, threshold: float = DEFAULT_THRESHOLD,
                working_side: int | None = None, **call_kwargs) -> FaceDetailResult:
    """Repaint the face at `kps` (image pixels) of `image` with the identity `embedding` when `mode` says
    so (see should_run). `working_side`: long side of the repainted crop (default: the image's long side,
    the size the model was run at). Other keywords go to the inpainting call (`generator`,
    `num_inference_steps`, `guidance_scale`, scales, `negative_prompt`, `negative_face_noise`, ...)."""
    from .repaint import repaint_face
    from .strength import check_strength

    strength = check_strength(strength)
    image = image.convert("RGB")
    box = face_box_from_kps(kps, image.size)
    run, reason = should_run(box, mode, threshold)
    if not run:
        return FaceDetailResult(image=image, ran=False, face_box=box, reason=reason)
    repainted = repaint_face(detail_pipeline_for(pipe), np.asarray(image), box, kps, embedding, prompt=prompt,
                             strength=strength, working_side=working_side or working_side_for(image.size),
                             **call_kwargs)
    return FaceDetailResult(image=repainted.image, ran=True, face_box=box, reason=reason, repainted=repainted)


def face_detail_all(pipe, image: Image.Image, faces: Sequence[tuple[object, object]], *, make_generator=None,
                    **kwargs) -> tuple[Image.Image, list[FaceDetailResult]]:
    """face_detail for each (embedding, kps) in `faces`, one after the other on the same image (several
    identities: each face with its own embedding). `make_generator()` gives each pass a fresh generator
    (reproducible whatever the number of faces)."""
    results = []
    for embedding, kps in faces:
        extra = {"generator": make_generator()} if make_generator is not None else {}
        result = face_detail(pipe, image, embedding, kps, **kwargs, **extra)
        image = result.image
        results.append(result)
    return image, results


# Generation values the detail pass shares with the image it repaints (same identity strength and CFG, and
# the same output cap).
SHARED_VALUES = ("num_inference_steps", "guidance_scale", "ip_adapter_scale", "controlnet_conditioning_scale",
                 "negative_face_noise", "max_output_pixels")


def checked_options(mode: str, strength: float | None, steps: int) -> tuple[str, float]:
    """(mode, strength) of a high-level entry's detail pass, checked before anything runs: the pass needs
    at least one denoising step at `steps` (strength None: DEFAULT_STRENGTH)."""
    from .strength import check_strength_and_steps

    strength = DEFAULT_STRENGTH if strength is None else strength
    if check_mode(mode) != "off":
        call = {"strength": strength}
        check_strength_and_steps(call, DEFAULT_STRENGTH, steps)
        strength = call["strength"]
    return mode, strength


def detail_images(pipe, images, faces: Sequence[tuple[object, object]], *, mode: str, strength: float, prompt: str,
                  negative_prompt: str | None, seed: int | None, values: dict) -> tuple[list, list[FaceDetailResult]]:
    """The detail pass of a high-level entry (generate_from_photos, generate_multi_identity): each generated
    image with each (embedding, kps in output pixels) face detailed as `mode` says, with the generation's
    own `values` (SHARED_VALUES) and a fresh generator from `seed` per pass."""
    if check_mode(mode) == "off":
        return list(images), []
    from ..params import seeded_generator

    shared = {k: values[k] for k in SHARED_VALUES if k in values}
    if isinstance(shared.get("controlnet_conditioning_scale"), (list, tuple)):  # IdentityNet's, of several
        shared["controlnet_conditioning_scale"] = shared["controlnet_conditioning_scale"][0]
    out, passes = [], []
    for image in images:
        if not isinstance(image, Image.Image):
            raise UsageError("the face-detail pass works on PIL images: leave output_type at 'pil'")
        image, results = face_detail_all(pipe, image, faces, prompt=prompt, negative_prompt=negative_prompt or None,
                                         mode=mode, strength=strength,
                                         make_generator=(lambda: seeded_generator(seed)) if seed is not None else None,
                                         **shared)
        out.append(image)
        passes += results
    return out, passes
