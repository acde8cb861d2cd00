"""Inpainting: the stock SDXL ControlNet inpainting pipeline plus InstantIDMixin.

Only the white part of `mask_image` is repainted, with the face from `image_embeds` placed at the
keypoints of `control_image`. The stock pipeline re-decodes the whole picture, so pixels outside the mask
change slightly; face_swap.paste_back puts the original pixels back exactly.
"""

from __future__ import annotations

from diffusers import StableDiffusionXLControlNetInpaintPipeline

from .img2img import check_strength_and_steps
from .instantid import InstantIDMixin


class StableDiffusionXLInstantIDInpaintPipeline(InstantIDMixin, StableDiffusionXLControlNetInpaintPipeline):
    """InstantID inpainting.

    >>> pipe = StableDiffusionXLInstantIDInpaintPipeline.from_pipe(text_to_image_pipe)
    >>> out = pipe(prompt, image=photo, mask_image=mask, control_image=kps_image, strength=0.9,
    ...            image_embeds=face.embedding).images[0]
    """

    control_image_argument = "control_image"
    default_strength = 0.9999  # the stock defaults: repaint the masked part fully
    default_steps = 50

    def __call__(self, *args, **kwargs):
        check_strength_and_steps(kwargs, self.default_strength, self.default_steps)
        return super().__call__(*args, **kwargs)
