"""Identity conditioning confined to regions of the image ("enhance face region", multi-identity).

Both InstantID paths become regional with stock parts, nothing re-implemented:
- adapter: diffusers' IP-Adapter attention processors take `ip_adapter_masks` (through
  `cross_attention_kwargs`), one mask per face "image" fed to the adapter; each face's attention output
  is multiplied by its mask before it is added;
- IdentityNet: one ControlNet pass per region (that region's face tokens, keypoint image and scale),
  each pass's residuals multiplied by the region mask resized to the residual's resolution, then summed;
  `regional_conditioning` prepares those per-region inputs (models/identitynet.py IdentityNetRegion) and
  the mixin hands them to IdentityNetModel for the call.

One region holding the call's own face is "enhance face region"; several regions, each with its own
face, is multi-identity (multi_identity.py builds those).

Exactness. Masks live on a grid of MASK_CELLS_PER_LATENT cells per latent pixel, and boxes are snapped
to the UNet's coarsest resolution (`region_grid`, 32 px for SDXL). Then every resize of a mask is
exactly 0 or 1 per cell: area-averaging for IdentityNet residuals, and diffusers' bicubic downsampling
for the adapter (its four taps fall inside one block when the factor is 4 or more). So a region's face
tokens reach no residual or adapter output outside that region, bit for bit.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import RegionError, UsageError
from ..face.keypoints import check_kps, draw_kps
from ..models.adapter_scales import per_face_scales
from ..models.identitynet import FaceTokens, IdentityNetRegion
from ..params import REGION_SCALE
from .boxes import Box, check_box  # noqa: F401  (check_box: part of this module's API)

MASK_CELLS_PER_LATENT = 4  # >= 4 keeps diffusers' bicubic mask downsampling exact on block-aligned masks




@dataclass(frozen=True)
class IdentityRegion:
    """One identity confined to one region of the output.

    region: a box (x1, y1, x2, y2) in output pixels, or a mask (HxW array/tensor in [0, 1], uint8 0-255,
        or PIL image) covering the output; boxes are snapped to `region_grid(pipe)`.
    embedding: raw face embedding; None = the call's `image_embeds`.
    kps: [5, 2] keypoints in output pixels for this region's IdentityNet image; None = the call's image.
    scale: multiplies both `controlnet_conditioning_scale` and `ip_adapter_scale` inside the region.
    """

    region: Any
    embedding: Any = None
    kps: Any = None
    scale: float = REGION_SCALE.default


# ---- geometry: pure functions


def region_grid(pipe) -> int:
    """Pixels per cell of the UNet's coarsest resolution: box edges snap to multiples of this."""
    levels = len(pipe.unet.config.block_out_channels)
    return int(pipe.vae_scale_factor) * 2 ** (levels - 1)


def snap_box(box: Box, grid: int, what: str = "region") -> tuple[int, int, int, int]:
    """Box edges rounded to the nearest multiple of `grid`; two boxes sharing an edge still share it."""
    snapped = tuple(int(math.floor(v / grid + 0.5)) * grid for v in box)  # halves round up, always
    if snapped[2] <= snapped[0] or snapped[3] <= snapped[1]:
        raise RegionError(f"{what} {tuple(round(v, 1) for v in box)} is smaller than the model's {grid}-px grid; "
                          f"make it at least {grid} px wide and high")
    return snapped  # type: ignore[return-value]


def mask_shape(size: tuple[int, int], vae_scale_factor: int) -> tuple[int, int]:
    """(rows, cols) of the mask grid for an output of `size` (width, height)."""
    width, height = size
    return (height // vae_scale_factor * MASK_CELLS_PER_LATENT, width // vae_scale_factor * MASK_CELLS_PER_LATENT)


def box_mask(box: tuple[int, int, int, int], size: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """A 0/1 mask of `shape` (rows, cols) that is 1 inside `box` (output pixels of an image of `size`)."""
    rows, cols = shape
    sx, sy = cols / size[0], rows / size[1]
    x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (sx, sy, sx, sy)))
    mask = torch.zeros(shape)
    mask[y1:y2, x1:x2] = 1.0
    return mask


def array_mask(mask, shape: tuple[int, int], what: str = "region") -> torch.Tensor:
    """A user mask (an image file, PIL image, HxW array or tensor; floats in [0, 1], bool or uint8) resized
    to `shape`. A file is read as greyscale by the project's image loader (ImageReadError when it is no image)."""
    if isinstance(mask, (str, os.PathLike)):
        from ..face.image import load_at_least

        rgb, _ = load_at_least(mask, max(shape))
        mask = Image.fromarray(rgb)
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    elif isinstance(mask, np.ndarray) and mask.dtype == np.uint8:
        mask = mask.astype(np.float32) / 255.0
    try:
        tensor = torch.as_tensor(np.asarray(mask, dtype=np.float32) if not torch.is_tensor(mask) else mask).float()
    except (TypeError, ValueError):
        raise RegionError(f"{what} must be a box x1,y1,x2,y2, or a mask (an image file, PIL image, HxW array or "
                          f"tensor), got {type(mask).__name__} {str(mask)[:40]!r}") from None
    tensor = tensor.squeeze()
    if tensor.ndim != 2:
        raise RegionError(f"{what} mask must be 2-D (height x width), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all() or tensor.min() < 0 or tensor.max() > 1:
        raise RegionError(f"{what} mask values must lie in [0, 1] (or 0-255 for uint8)")
    if tensor.max() == 0:
        raise RegionError(f"{what} mask is empty (all zero); it must cover the face")
    return F.interpolate(tensor[None, None], size=shape, mode="area")[0, 0]


def region_to_mask(region, size: tuple[int, int], grid: int, vae_scale_factor: int,
                   what: str = "region") -> torch.Tensor:
    """A box or a mask -> the mask grid (see module docstring) for an output of `size`."""
    shape = mask_shape(size, vae_scale_factor)
    if _is_box(region):
        return box_mask(snap_box(check_box(region, size, what), grid, what), size, shape)
    return array_mask(region, shape, what)


def check_disjoint(masks: Sequence[torch.Tensor]) -> None:
    """Refuse overlapping regions: where two overlap, both identities would act on the same pixels."""
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            if bool(((masks[i] > 0) & (masks[j] > 0)).any()):
                raise RegionError(f"regions {i} and {j} overlap (after snapping to the model's grid); "
                                  "give each identity its own, non-overlapping region")


def _is_box(region) -> bool:
    if isinstance(region, (Image.Image, torch.Tensor)):
        return False
    if isinstance(region, np.ndarray):
        return region.ndim == 1
    return isinstance(region, (tuple, list)) and len(region) == 4 and all(np.isscalar(v) for v in region)


# ---- the call: adapter masks and per-region IdentityNet


def as_identity_regions(face_region_mask=None, identity_regions=None) -> list[IdentityRegion]:
    """The pipeline call's two region arguments -> one list (empty when neither is given)."""
    if face_region_mask is not None and identity_regions is not None:
        raise RegionError("pass face_region_mask (one face) or identity_regions (several), not both")
    if face_region_mask is not None:
        return [IdentityRegion(region=face_region_mask)]
    regions = list(identity_regions or [])
    for index, region in enumerate(regions):
        if not isinstance(region, IdentityRegion):
            raise RegionError(f"identity_regions[{index}] must be an IdentityRegion, got {type(region).__name__}")
    return regions


@contextmanager
def regional_conditioning(pipe, call: dict, *, cfg: bool, rows: int, face_region_mask=None,
                          identity_regions=None) -> Iterator[list[IdentityNetRegion]]:
    """Within the InstantID call: confine the adapter to the regions, and yield IdentityNet's per-region
    inputs (empty without regions) for `IdentityNetModel.face_conditioning`.

    `call` holds the stock pipeline's arguments as the mixin prepared them (`ip_adapter_image_embeds`,
    `width`, `height`); it is adjusted in place before the stock call runs. `cfg`: whether the call uses
    classifier-free guidance; `rows`: images in the call (prompts x images per prompt).
    """
    regions = as_identity_regions(face_region_mask, identity_regions)
    if not regions:
        yield []
        return
    width, height = call.get("width"), call.get("height")
    if not width or not height:
        raise RegionError("regions need the output size: pass width and height")
    size, grid = (int(width), int(height)), region_grid(pipe)
    masks = [region_to_mask(r.region, size, grid, pipe.vae_scale_factor, what=f"region {i}")
             for i, r in enumerate(regions)]
    check_disjoint(masks)
    for index, (region, mask) in enumerate(zip(regions, masks)):
        _check_region(region, mask, size, index)

    embeds = call["ip_adapter_image_embeds"][0]  # [rows, 1, n, E]: the mixin's [negatives, positives]
    call["ip_adapter_image_embeds"] = [_per_region_embeds(pipe, embeds, regions, cfg)]
    attention_kwargs = dict(call.get("cross_attention_kwargs") or {})
    attention_kwargs["ip_adapter_masks"] = [torch.stack(masks)[None]]  # [1 adapter batch, k faces, h, w]
    call["cross_attention_kwargs"] = attention_kwargs

    negative = embeds[0, 0] if cfg else None  # the mixin's (zeros or noise)
    prepared = [IdentityNetRegion(mask, float(r.scale), _region_tokens(pipe, r.embedding, rows, cfg, negative),
                                  _prepared_cond(pipe, draw_kps(size, r.kps), size) if r.kps is not None else None)
                for r, mask in zip(regions, masks)]
    with per_face_scales(pipe.unet, [r.scale for r in regions]):  # this call only
        yield prepared


def _check_region(region: IdentityRegion, mask: torch.Tensor, size: tuple[int, int], index: int) -> None:
    try:
        REGION_SCALE.check(region.scale, f"region {index} scale")
    except UsageError as err:
        raise RegionError(str(err)) from None
    if region.kps is None:
        return
    kps = check_kps(region.kps, f"region {index}'s keypoints", RegionError)
    cx, cy = kps.mean(axis=0)
    row = int(np.clip(cy / size[1] * mask.shape[0], 0, mask.shape[0] - 1))
    col = int(np.clip(cx / size[0] * mask.shape[1], 0, mask.shape[1] - 1))
    if mask[row, col] <= 0:
        raise RegionError(f"region {index}'s face keypoints (centre {cx:.0f},{cy:.0f}) lie outside its region; "
                          "the face would be masked away: move the region or the keypoints")


def _per_region_embeds(pipe, embeds: torch.Tensor, regions: Sequence[IdentityRegion], cfg: bool) -> torch.Tensor:
    """The adapter input with one face "image" per region: [rows, k, n, E], negatives the call's."""
    own = embeds[-1, 0]  # the call's positive embedding [n, E]
    faces = [own if r.embedding is None else pipe.face_embedding_tensor(r.embedding)[0].to(own) for r in regions]
    lengths = {face.shape[0] for face in faces}
    if len(lengths) > 1:
        raise RegionError(f"every region's face embedding must have the same number of rows, got {sorted(lengths)}; "
                          "average several embeddings of one person into one")
    per_region = torch.stack(faces)[None].repeat(embeds.shape[0], 1, 1, 1)
    if cfg:  # the mixin's layout: [negatives, positives]; zeros or negative noise
        per_region[: embeds.shape[0] // 2] = embeds[: embeds.shape[0] // 2]
    return per_region


def _region_tokens(pipe, embedding, rows: int, cfg: bool, negative=None) -> FaceTokens | None:
    """A region's own face tokens, made and laid out as the mixin makes the call's (None: the call's;
    `negative`: the call's negative embedding [n, E], None = zeros)."""
    if embedding is None:
        return None
    proj = pipe.face_projection
    weight = next(proj.parameters())
    face = pipe.face_embedding_tensor(embedding).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        neg = torch.zeros_like(face) if negative is None else negative.reshape(face.shape).to(face)
        tokens = proj(torch.cat([neg, face]))
    return FaceTokens.for_batch(tokens[:1], tokens[1:], rows, cfg)


def _prepared_cond(pipe, image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """A region's keypoint image prepared as the stock pipeline prepares its control image ([1, 3, H, W],
    [0, 1] floats at the output size); IdentityNet repeats it over the batch."""
    width, height = size
    return pipe.control_image_processor.preprocess(image, height=height, width=width).to(torch.float32)
