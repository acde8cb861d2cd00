"""The check every InstantID pipeline call makes on its output, where the output is made (the mixin's
__call__): an image holding NaN/inf (float16 overflow, extreme settings) is a GenerationError, never an image
saved black. PIL images are made here from the float output, as diffusers makes them, so NaN is seen first."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import GenerationError

NAN_OUTPUT_MESSAGE = (
    "the generated image contains NaN values (it would be saved black): usually float16 overflow in the VAE or "
    "extreme settings; try --dtype float32 or bfloat16, or lower --guidance-scale / scales")


def has_non_finite(images) -> bool:
    """Whether a pipeline's float output (numpy array or torch tensor) holds NaN/inf; PIL images: False."""
    if hasattr(images, "isfinite") and hasattr(images, "detach"):  # torch
        return not bool(images.isfinite().all())
    if isinstance(images, list) and images and all(hasattr(i, "dtype") for i in images):
        return any(has_non_finite(i) for i in images)
    return isinstance(images, np.ndarray) and images.dtype.kind == "f" and not bool(np.isfinite(images).all())


def finite_images(images) -> list:
    """PIL images from a pipeline's float output (output_type="np", values in [0, 1]); GenerationError when any
    pixel is NaN/inf, which would otherwise be saved as a black image."""
    array = np.asarray(images)
    if array.dtype.kind != "f":
        return list(images)
    if has_non_finite(array):
        raise GenerationError(NAN_OUTPUT_MESSAGE)
    array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return [Image.fromarray(frame) for frame in array]


def checked_output(output, *, to_pil: bool):
    """A pipeline call's output (its dataclass, or the tuple of return_dict=False) with NaN/inf images refused:
    the one check every InstantID pipeline call (so every entry) goes through. `to_pil`: the call ran with
    output_type "np" in place of the default "pil"; the PIL images are made here, as diffusers makes them."""
    images = output[0] if isinstance(output, tuple) else output.images
    if to_pil:
        images = finite_images(images)
    elif has_non_finite(images):
        raise GenerationError(NAN_OUTPUT_MESSAGE)
    if isinstance(output, tuple):
        return (images, *output[1:])
    output.images = images
    return output
