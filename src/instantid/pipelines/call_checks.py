"""Checks of a pipeline call's arguments, before any step runs: project errors naming the argument, not a
ZeroDivisionError, IndexError or a diffusers message from deep inside. The mixin's __call__ runs
`check_call` first."""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import EmbeddingError, UsageError
from ..params import PARAMS_BY_NAME

# Raw face embeddings are small numbers (antelopev2 values within about +-5, norm ~20-30; dlib within +-1);
# anything past this is not an embedding from a face model and would saturate the face tokens.
MAX_EMBEDDING_ABS = 1e3
# Call arguments range-checked by the parameter table (params.py), scalars only: lists (one value per
# ControlNet) are checked element by element.
_TABLE_CHECKED = ("guidance_scale", "controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end",
                  "negative_face_noise")
# Counts: the table's upper bounds are the CLI's; the API only needs them positive.
_COUNTS = ("num_inference_steps", "num_images_per_prompt")


def check_call(image_embeds, ip_adapter_scale, kwargs: dict) -> None:
    """The call's knobs and counts (the embedding is checked against the adapter by face_embedding_tensor)."""
    if image_embeds is None:
        raise EmbeddingError("image_embeds (the face embedding) is required; get it from instantid.face")
    if ip_adapter_scale is not None:
        check_knob("ip_adapter_scale", ip_adapter_scale)
    for name in _TABLE_CHECKED:
        if kwargs.get(name) is not None:
            check_knob(name, kwargs[name])
    for name in _COUNTS:
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    for name in ("width", "height"):
        value = kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                  or value < 8 or value % 8):
            raise UsageError(f"{name} must be a positive multiple of 8 pixels, got {value!r}")


def check_knob(name: str, value):
    """The one check of a knob of the parameter table in a library call: a number (or a list of numbers, one per
    ControlNet / adapter) that the table's range admits; UsageError naming the keyword and the flag. Returns
    `value`."""
    param = PARAMS_BY_NAME[name]
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise UsageError(f"{name} is an empty list")
    for item in values:
        if getattr(item, "ndim", None) == 0 and hasattr(item, "item"):
            item = item.item()
        param.check(item, f"{name} ({param.flag})")
    return value


def check_embedding(image_embeds, dim: int | None = None, source: str | None = None) -> np.ndarray:
    """The one embedding validator: a real, finite face embedding of plausible values, a vector (or a few), not
    a scalar; with `dim` (the adapter's input size) also [E], [1, E] or [n, E] with E = dim (`source` names what
    gave it in that message, e.g. "the 'dlib' face backend gives"). Returns it as a numpy array."""
    if image_embeds is None:
        raise EmbeddingError("image_embeds (the face embedding) is required; get it from instantid.face")
    if hasattr(image_embeds, "detach"):  # torch tensor
        image_embeds = image_embeds.detach().cpu().float().numpy() if not image_embeds.is_complex() else \
            image_embeds.detach().cpu().numpy()
    try:
        array = np.asarray(image_embeds)
    except (TypeError, ValueError) as err:
        raise EmbeddingError(f"image_embeds must be an array of numbers, got {type(image_embeds).__name__} ({err})") from None
    if array.dtype.kind == "c":
        raise EmbeddingError("image_embeds holds complex numbers; a face embedding is real (take it from instantid.face)")
    if array.dtype.kind not in "iuf":
        raise EmbeddingError(f"image_embeds must be an array of numbers, got {type(image_embeds).__name__} of "
                             f"{array.dtype}")
    if array.ndim == 0:
        raise EmbeddingError(f"image_embeds is a single number ({array.item()!r}); pass the face's embedding vector "
                             "(e.g. face.embedding)")
    if array.size == 0:
        raise EmbeddingError("image_embeds is empty; pass the face's embedding vector")
    if not np.isfinite(array).all():
        raise EmbeddingError("image_embeds contains NaN or infinite values; recompute the face embedding")
    largest = float(np.abs(array).max())
    if largest > MAX_EMBEDDING_ABS:
        raise EmbeddingError(f"image_embeds holds values up to {largest:g}, far outside any face model's range "
                             f"(|value| <= {MAX_EMBEDDING_ABS:g}); pass the raw embedding from instantid.face")
    if dim is not None and (array.shape[-1] != dim or array.size % dim):
        from ..models.architectures import embedding_size_problem

        raise EmbeddingError(embedding_size_problem(array.shape[-1], dim, source or
                                                    f"image_embeds (shape {tuple(array.shape)}) has")
                             or f"image_embeds has shape {tuple(array.shape)}; give [E], [1, E] or [n, E] with E = {dim}")
    return array
