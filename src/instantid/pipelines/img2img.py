"""img2img: the stock (SDXL or SD1.5) ControlNet img2img pipeline plus InstantIDMixin.

The face goes in as in text-to-image; `image` is the starting picture and `strength` how much of it is
repainted (0 keeps it, 1 ignores it). IdentityNet's keypoint image is the stock `control_image`.
"""

from __future__ import annotations

from diffusers import StableDiffusionControlNetImg2ImgPipeline, StableDiffusionXLControlNetImg2ImgPipeline

from .instantid import InstantIDMixin
from .strength import check_strength_and_steps


class StrengthCheckedMixin:
    """img2img and inpainting: the ControlNet image is `control_image`; `strength` is checked first."""

    control_image_argument = "control_image"
    default_strength = 0.8  # the stock defaults
    default_steps = 50

    def __call__(self, *args, **kwargs):
        check_strength_and_steps(kwargs, self.default_strength, self.default_steps)
        return super().__call__(*args, **kwargs)


class StableDiffusionXLInstantIDImg2ImgPipeline(StrengthCheckedMixin, InstantIDMixin,
                                                StableDiffusionXLControlNetImg2ImgPipeline):
    """InstantID on a starting image.

    >>> pipe = StableDiffusionXLInstantIDImg2ImgPipeline.from_pipe(text_to_image_pipe)
    >>> out = pipe(prompt, image=photo, control_image=draw_kps(photo, face.kps), strength=0.6,
    ...            image_embeds=face.embedding).images[0]
    """


class StableDiffusionInstantIDImg2ImgPipeline(StrengthCheckedMixin, InstantIDMixin,
                                              StableDiffusionControlNetImg2ImgPipeline):
    """SD1.5 counterpart of StableDiffusionXLInstantIDImg2ImgPipeline."""


def img2img_pipeline_for(pipe):
    """An img2img pipeline sharing `pipe`'s modules, of `pipe`'s architecture (SDXL or SD1.5)."""
    from ..models.architectures import SDXL, family_of_pipeline

    cls = (StableDiffusionXLInstantIDImg2ImgPipeline if family_of_pipeline(pipe) == SDXL
           else StableDiffusionInstantIDImg2ImgPipeline)
    return pipe if isinstance(pipe, cls) else cls.from_pipe(pipe)
