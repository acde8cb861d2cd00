"""Face swap: put the person from face photo(s) into a target photo, changing only the face.

1. find the target face (face analysis) and build a soft mask around it (an ellipse grown from the face
   box, feathered by a Gaussian blur: exactly 0 beyond the blur);
2. crop around the mask with some context and resize the crop to a working size (long side 1024 for SDXL,
   multiples of 64), where the model works best whatever the photo's size;
3. inpaint the crop: the face photo's identity, placed at the target face's keypoints;
4. paste back: alpha-blend the result with the feathered mask, so every pixel where the mask is 0 keeps
   its original value exactly.

The helpers of each step are small pure functions; `swap_face` ties them together. `swap_whole_image`
is the img2img variant: the whole target repainted at `strength`, the identity at the target's face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from ..errors import EmbeddingError, NoFaceError
from ..face.choice import report_choice
from ..face.image import describe_source, load_image
from ..face.keypoints import draw_kps
from ..face.small_faces import detect_faces
from ..face.types import Face, FaceAnalyzer
from .from_photos import FaceCondition, face_condition
from .sizing import default_output_size

DEFAULT_PROMPT = "a photo of a person, natural skin, detailed face"
WORKING_SIDE = 1024  # long side of the crop the model paints (SDXL's native size)
SIZE_MULTIPLE = 64
MASK_GROW = 1.3  # the mask ellipse is the face box grown by this (forehead, chin, cheeks)
FEATHER = 0.12  # blur radius as a fraction of the face box's larger side
CROP_CONTEXT = 2.0  # crop side = this times the mask's larger side, so the model sees head and shoulders
DEFAULT_STRENGTH = 0.85  # < 1 keeps some of the target's lighting and shape under the new face


# ---- pure helpers


def face_mask(image_size: tuple[int, int], bbox, grow: float = MASK_GROW, feather: float = FEATHER) -> np.ndarray:
    """A float32 HxW mask in [0, 1]: 1 on an ellipse around the face box grown by `grow`, fading to 0 over
    `feather` x the face size, exactly 0 beyond."""
    width, height = image_size
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if grow <= 0 or feather < 0:
        raise ValueError(f"grow must be > 0 and feather >= 0, got grow={grow}, feather={feather}")
    face_side = max(x2 - x1, y2 - y1)
    hard = np.zeros((height, width), dtype=np.float32)
    centre = (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))
    axes = (max(1, int(round((x2 - x1) * grow / 2))), max(1, int(round((y2 - y1) * grow / 2))))
    cv2.ellipse(hard, centre, axes, 0, 0, 360, 1.0, -1)
    radius = int(math.ceil(feather * face_side))
    if radius == 0:
        return hard
    # A finite Gaussian kernel: the soft edge reaches exactly `radius` px beyond the ellipse, no further.
    soft = cv2.GaussianBlur(hard, (2 * radius + 1, 2 * radius + 1), radius / 2, borderType=cv2.BORDER_CONSTANT)
    # Drop the kernel's invisible far tail (a clean boundary for "unchanged" pixels) and its rounding
    # below 1 inside (fully replaced pixels).
    soft[soft < 1e-3] = 0.0
    soft[soft > 1 - 1e-3] = 1.0
    return soft


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x1, y1, x2, y2), end exclusive, holding every pixel where `mask` > 0."""
    rows, cols = np.nonzero(mask > 0)
    if rows.size == 0:
        raise ValueError("the mask is empty")
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def crop_box(bounds: tuple[int, int, int, int], image_size: tuple[int, int],
             context: float = CROP_CONTEXT) -> tuple[int, int, int, int]:
    """A square-ish crop around `bounds` with `context` x its larger side, inside the image, that always
    contains `bounds`."""
    width, height = image_size
    x1, y1, x2, y2 = bounds
    side = max(x2 - x1, y2 - y1) * max(context, 1.0)
    crop_w, crop_h = min(width, int(math.ceil(side))), min(height, int(math.ceil(side)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - crop_w / 2, 0), width - crop_w)))
    top = int(round(min(max(cy - crop_h / 2, 0), height - crop_h)))
    left, top = min(left, x1), min(top, y1)  # rounding must not cut the mask
    right, bottom = max(left + crop_w, x2), max(top + crop_h, y2)
    return left, top, min(right, width), min(bottom, height)


def working_size(crop_size: tuple[int, int], long_side: int = WORKING_SIDE,
                 multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) the model paints a crop at: long side `long_side`, both multiples of `multiple`."""
    width, height = crop_size
    scale = long_side / max(width, height)
    return (max(multiple, int(round(width * scale / multiple)) * multiple),
            max(multiple, int(round(height * scale / multiple)) * multiple))


def paste_back(original: np.ndarray, generated: Image.Image, box: tuple[int, int, int, int],
               mask: np.ndarray) -> np.ndarray:
    """`generated` (the painted crop, any size) resized onto `box` of `original` and alpha-blended with
    `mask` (HxW of `original`). Pixels where the mask is 0 are returned unchanged, bit for bit."""
    x1, y1, x2, y2 = box
    if mask[:y1].any() or mask[y2:].any() or mask[:, :x1].any() or mask[:, x2:].any():
        raise ValueError("the mask reaches outside the pasted box; the crop must contain the whole mask")
    patch = np.asarray(generated.convert("RGB").resize((x2 - x1, y2 - y1), Image.LANCZOS), dtype=np.float32)
    alpha = mask[y1:y2, x1:x2, None].astype(np.float32)
    region = original[y1:y2, x1:x2].astype(np.float32)
    blended = np.clip(np.rint(region * (1 - alpha) + patch * alpha), 0, 255).astype(np.uint8)
    out = original.copy()
    out[y1:y2, x1:x2] = np.where(alpha > 0, blended, original[y1:y2, x1:x2])
    return out


def target_face(target: np.ndarray, analyzer: FaceAnalyzer, name: str, index: int = 0) -> Face:
    """The `index`-th largest face of the target photo, or a NoFaceError saying which photo."""
    faces = detect_faces(analyzer, target)  # looks closer for small faces (face/small_faces.py)
    if not faces:
        raise NoFaceError(f"no face found in the target photo {name}: face swap needs a visible face to replace "
                          "(frontal, not tiny)")
    if not 0 <= index < len(faces):
        raise NoFaceError(f"the target photo {name} has {len(faces)} face(s); --target-index must be 0 to "
                          f"{len(faces) - 1} (largest first), got {index}")
    report_choice(faces, index, f"the target photo {name}", "--target-index")
    return faces[index]


# ---- the pipelines


@dataclass
class FaceSwapResult:
    image: Image.Image  # the target with the new face
    mask: np.ndarray  # the feathered blend mask, HxW float32 in [0, 1]
    crop_box: tuple[int, int, int, int]  # where the model painted, in target pixels
    target_face: Face
    condition: FaceCondition  # the face photos' analysis (embedding, skipped photos)
    painted: Image.Image | None = field(default=None, repr=False)  # the model's crop, before paste-back


def _identity(face_photos, analyzer: FaceAnalyzer, pipe) -> FaceCondition:
    """The face photos' analysis (or a FaceCondition already made from them), checked against the adapter."""
    condition = face_photos if isinstance(face_photos, FaceCondition) else face_condition(face_photos, analyzer)
    if condition.embedding.shape[0] != pipe.face_embedding_dim:
        raise EmbeddingError(
            f"the '{analyzer.name}' face backend gives {condition.embedding.shape[0]}-d embeddings but the loaded "
            f"adapter takes {pipe.face_embedding_dim}-d ones; use the backend the adapter was trained with")
    return condition


def swap_face(pipe, face_photos, target_photo, *, analyzer: FaceAnalyzer, prompt: str = DEFAULT_PROMPT,
              target_index: int = 0, strength: float = DEFAULT_STRENGTH, working_side: int = WORKING_SIDE,
              grow: float = MASK_GROW, feather: float = FEATHER, context: float = CROP_CONTEXT,
              **call_kwargs) -> FaceSwapResult:
    """Replace the face in `target_photo` with the person in `face_photos` (embeddings averaged; or pass
    their FaceCondition from from_photos.face_condition).

    `pipe`: any InstantID pipeline (SDXL or SD1.5); an inpainting one is made from it (sharing its weights) if needed.
    Other keywords go to the pipeline call (`generator`, `num_inference_steps`, scales, ...).
    """
    from .img2img import check_strength
    from .inpaint import inpaint_pipeline_for

    strength = check_strength(strength)
    pipe = inpaint_pipeline_for(pipe)
    target = load_image(target_photo)
    face = target_face(target, analyzer, describe_source(target_photo), target_index)
    condition = _identity(face_photos, analyzer, pipe)  # after the target: a faceless target fails fast

    repainted = repaint_face(pipe, target, face.bbox, face.kps, condition.embedding, prompt=prompt,
                             strength=strength, working_side=working_side, grow=grow, feather=feather,
                             context=context, **call_kwargs)
    return FaceSwapResult(image=repainted.image, mask=repainted.mask, crop_box=repainted.crop_box, target_face=face,
                          condition=condition, painted=repainted.painted)


@dataclass
class RepaintedFace:
    image: Image.Image  # the whole photo with the face repainted
    mask: np.ndarray  # the feathered blend mask, HxW float32 in [0, 1]
    crop_box: tuple[int, int, int, int]  # where the model painted, in photo pixels
    painted: Image.Image = field(repr=False)  # the model's crop, before paste-back
    crop_kps: np.ndarray = field(repr=False)  # the keypoints the model was given, in the painted crop's pixels


def repaint_face(pipe, photo: np.ndarray, bbox, kps, embedding, *, prompt: str, strength: float,
                 working_side: int = WORKING_SIDE, grow: float = MASK_GROW, feather: float = FEATHER,
                 context: float = CROP_CONTEXT, **call_kwargs) -> RepaintedFace:
    """Steps 2-4 of the module docstring for the face at `bbox` / `kps` of `photo` (HxWx3 uint8): crop with
    context, resize to the working size, inpaint with `embedding` at the keypoints mapped into the crop,
    paste back with the feathered mask. `pipe` must be an inpainting pipeline (inpaint_pipeline_for)."""
    height, width = photo.shape[:2]
    mask = face_mask((width, height), bbox, grow, feather)
    box = crop_box(mask_bounds(mask), (width, height), context)
    x1, y1, x2, y2 = box
    work_w, work_h = working_size((x2 - x1, y2 - y1), working_side)
    crop = Image.fromarray(photo[y1:y2, x1:x2]).resize((work_w, work_h), Image.LANCZOS)
    # The model repaints everywhere the blend mask is non-zero.
    paint_mask = Image.fromarray(((mask[y1:y2, x1:x2] > 0) * 255).astype(np.uint8)).resize((work_w, work_h),
                                                                                           Image.NEAREST)
    crop_kps = (np.asarray(kps, dtype=np.float64) - [x1, y1]) * [work_w / (x2 - x1), work_h / (y2 - y1)]
    painted = pipe(prompt=prompt, image=crop, mask_image=paint_mask, control_image=draw_kps((work_w, work_h), crop_kps),
                   image_embeds=embedding, strength=strength, width=work_w, height=work_h, **call_kwargs).images[0]
    return RepaintedFace(image=Image.fromarray(paste_back(photo, painted, box, mask)), mask=mask, crop_box=box,
                         painted=painted, crop_kps=crop_kps)


def swap_whole_image(pipe, face_photos, target_photo, *, analyzer: FaceAnalyzer, prompt: str = DEFAULT_PROMPT,
                     target_index: int = 0, strength: float = 0.6, width: int | None = None,
                     height: int | None = None, **call_kwargs):
    """img2img: repaint the whole target at `strength` with the person from `face_photos` at the target
    face's keypoints. Output size: the target's, capped (see sizing.py), unless given.

    Returns (pipeline output, target Face, FaceCondition)."""
    from .img2img import check_strength, img2img_pipeline_for

    strength = check_strength(strength)
    pipe = img2img_pipeline_for(pipe)
    target = load_image(target_photo)
    size = (target.shape[1], target.shape[0])
    face = target_face(target, analyzer, describe_source(target_photo), target_index)
    condition = _identity(face_photos, analyzer, pipe)
    auto_w, auto_h = default_output_size(size)
    width, height = width or auto_w, height or auto_h
    kps = np.asarray(face.kps, dtype=np.float64) * [width / size[0], height / size[1]]
    output = pipe(prompt=prompt, image=Image.fromarray(target).resize((width, height), Image.LANCZOS),
                  control_image=draw_kps((width, height), kps), image_embeds=condition.embedding,
                  strength=strength, width=width, height=height, **call_kwargs)
    return output, face, condition
