"""img2img: the stock (SDXL or SD1.5) ControlNet img2img pipeline plus InstantIDMixin.

The face goes in as in text-to-image; `image` is the starting picture and `strength` how much of it is
repainted (0 keeps it, 1 ignores it). IdentityNet's keypoint image is the stock `control_image`.
"""

from __future__ import annotations

import math

from diffusers import StableDiffusionControlNetImg2ImgPipeline, StableDiffusionXLControlNetImg2ImgPipeline

from ..errors import StrengthError
from .instantid import InstantIDMixin


def check_strength(strength) -> float:
    """`strength` as a float in (0, 1], or a StrengthError saying what it means."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise StrengthError(f"strength must be a number in (0, 1], got {strength!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise StrengthError(f"strength must be in (0, 1] (how much of the input image is repainted: small keeps "
                            f"it, 1 ignores it), got {strength}")
    return value


def check_strength_and_steps(call: dict, default_strength: float, default_steps: int) -> None:
    """Check `strength` in a call's keywords (in place, as a float), and that it leaves at least one step:
    the stock pipelines run int(num_inference_steps * strength) steps."""
    strength = call["strength"] = check_strength(call.get("strength", default_strength))
    steps = call.get("num_inference_steps", default_steps)
    if isinstance(steps, int) and int(steps * strength) < 1:
        raise StrengthError(f"strength {strength} with {steps} step(s) leaves no denoising step "
                            f"(the pipeline runs int(steps x strength)); use at least {math.ceil(1 / strength)} "
                            "steps or a higher strength")


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
