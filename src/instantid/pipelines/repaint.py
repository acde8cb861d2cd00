"""Repaint one face of a photo, keeping every other pixel: what face swap and the face-detail pass share.

1. a soft mask around the face (an ellipse grown from the face box, feathered by a Gaussian blur: exactly
   0 beyond the blur);
2. a crop around the mask with some context, resized to a working size (long side 1024 for SDXL,
   multiples of 64), where the model works best whatever the photo's size;
3. inpaint the crop: the identity, placed at the face's keypoints mapped into the crop;
4. paste back: alpha-blend the result with the feathered mask, so every pixel where the mask is 0 keeps
   its original value exactly.

The helpers of each step are small pure functions; `repaint_face` ties them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from ..errors import RegionError
from ..face.keypoints import draw_kps
from ..params import SWAP_FEATHER, SWAP_MASK_GROW, SWAP_PARAMS_BY_NAME, SWAP_WORKING_SIDE

# The defaults are declared with the other parameters (instantid.params), shared with the CLI.
WORKING_SIDE = SWAP_WORKING_SIDE
SIZE_MULTIPLE = 64
MASK_GROW = SWAP_MASK_GROW
FEATHER = SWAP_FEATHER
CROP_CONTEXT = 2.0  # crop side = this times the mask's larger side, so the model sees head and shoulders


def face_mask(image_size: tuple[int, int], bbox, grow: float = MASK_GROW, feather: float = FEATHER) -> np.ndarray:
    """A float32 HxW mask in [0, 1]: 1 on an ellipse around the face box grown by `grow`, fading to 0 over
    `feather` x the face size, exactly 0 beyond."""
    width, height = image_size
    x1, y1, x2, y2 = (float(v) for v in bbox)
    check_mask_shape(grow, feather)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise RegionError(f"the face box ({x1:g},{y1:g},{x2:g},{y2:g}) is empty or not finite; pass x1 < x2, y1 < y2")
    face_side = max(x2 - x1, y2 - y1)
    centre = (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))
    axes = (max(1, int(round((x2 - x1) * grow / 2))), max(1, int(round((y2 - y1) * grow / 2))))
    radius = int(math.ceil(feather * face_side))
    # Drawn and blurred in a window around the ellipse plus the blur's reach: beyond it the mask is 0 anyway
    # (the blur's zero border stands for it; the same mask to float rounding), so a 100 MP photo costs the
    # face's work, not the photo's.
    reach = radius + 2
    left, top = max(0, centre[0] - axes[0] - reach), max(0, centre[1] - axes[1] - reach)
    right, bottom = min(width, centre[0] + axes[0] + reach + 1), min(height, centre[1] + axes[1] + reach + 1)
    mask = np.zeros((height, width), dtype=np.float32)
    if right <= left or bottom <= top:
        return mask  # the face lies outside the photo
    window = np.zeros((bottom - top, right - left), dtype=np.float32)
    cv2.ellipse(window, (centre[0] - left, centre[1] - top), axes, 0, 0, 360, 1.0, -1)
    if radius > 0:
        # A finite Gaussian kernel: the soft edge reaches exactly `radius` px beyond the ellipse, no further.
        window = cv2.GaussianBlur(window, (2 * radius + 1, 2 * radius + 1), radius / 2,
                                  borderType=cv2.BORDER_CONSTANT)
        # Drop the kernel's invisible far tail (a clean boundary for "unchanged" pixels) and its rounding
        # below 1 inside (fully replaced pixels).
        window[window < 1e-3] = 0.0
        window[window > 1 - 1e-3] = 1.0
    mask[top:bottom, left:right] = window
    return mask


def check_mask_shape(grow: float, feather: float) -> None:
    """`grow` > 0 and `feather` >= 0, finite (params.SWAP_PARAMS; UsageError naming the keyword and the flag)."""
    check_swap_values(grow=grow, feather=feather)


def check_swap_values(**values) -> None:
    """Face-swap keywords by their rows of params.SWAP_PARAMS (target_index, working_side, grow, feather)."""
    for name, value in values.items():
        param = SWAP_PARAMS_BY_NAME[name]
        param.check(value, f"{name} ({param.flag})")


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x1, y1, x2, y2), end exclusive, holding every pixel where `mask` > 0."""
    rows, cols = np.nonzero(mask > 0)
    if rows.size == 0:
        raise RegionError("the face mask is empty (the face box lies outside the photo); check the face box or keypoints")
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
