"""Inpainting: the stock (SDXL or SD1.5) ControlNet inpainting pipeline plus InstantIDMixin.

Only the white part of `mask_image` is repainted, with the face from `image_embeds` placed at the
keypoints of `control_image`. The stock pipeline re-decodes the whole picture, so pixels outside the mask
change slightly; repaint.paste_back puts the original pixels back exactly.
"""

from __future__ import annotations

from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionXLControlNetInpaintPipeline

from .img2img import StrengthCheckedMixin
from .instantid import InstantIDMixin


class StableDiffusionXLInstantIDInpaintPipeline(StrengthCheckedMixin, InstantIDMixin,
                                                StableDiffusionXLControlNetInpaintPipeline):
    """InstantID inpainting.

    >>> pipe = StableDiffusionXLInstantIDInpaintPipeline.from_pipe(text_to_image_pipe)
    >>> out = pipe(prompt, image=photo, mask_image=mask, control_image=kps_image, strength=0.9,
    ...            image_embeds=face.embedding).images[0]
    """

    default_strength = 0.9999  # the stock default: repaint the masked part fully


class StableDiffusionInstantIDInpaintPipeline(StrengthCheckedMixin, InstantIDMixin,
                                              StableDiffusionControlNetInpaintPipeline):
    """SD1.5 counterpart of StableDiffusionXLInstantIDInpaintPipeline."""

    default_strength = 1.0  # the stock SD1.5 default


def inpaint_pipeline_for(pipe):
    """An inpainting pipeline sharing `pipe`'s modules, of `pipe`'s architecture (SDXL or SD1.5)."""
    from ..models.architectures import SDXL, family_of_pipeline

    cls = (StableDiffusionXLInstantIDInpaintPipeline if family_of_pipeline(pipe) == SDXL
           else StableDiffusionInstantIDInpaintPipeline)
    return pipe if isinstance(pipe, cls) else cls.from_pipe(pipe)
