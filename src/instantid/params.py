"""Generation parameters, declared once: name in the pipeline call, CLI flag, default, range, help.

The CLI (and any other front end) derives its options from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str  # keyword of the pipeline call
    flag: str  # command-line flag
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None

    def parse(self, text: str):
        """Convert and range-check a command-line value (argparse `type=`)."""
        import argparse

        try:
            value = self.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{self.flag} must be a{'n integer' if self.type is int else ' number'}, got {text!r}")
        try:
            return self.check(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    def check(self, value):
        """Range-check a value from any front end: NaN and infinities are refused (NaN passes every `<`
        comparison, so a plain range check would let it through to an all-black image)."""
        import math
        import numbers

        from .errors import UsageError

        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UsageError(f"{self.flag} must be a{'n integer' if self.type is int else ' number'}, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{self.flag} must be a finite number, got {value}")
        if self.type is int and not float(value).is_integer():
            raise UsageError(f"{self.flag} must be an integer, got {value}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise UsageError(f"{self.flag} must be between {self.min} and {self.max}, got {value}")
        return value


GENERATION_PARAMS: tuple[Param, ...] = (
    Param("num_inference_steps", "--steps", int, 30, "denoising steps", 1, 500),
    Param("guidance_scale", "--guidance-scale", float, 5.0,
          "classifier-free guidance; 3-4 avoids over-saturation, 0-1.5 with LCM", 0.0, 50.0),
    Param("controlnet_conditioning_scale", "--identitynet-scale", float, 0.8,
          "IdentityNet strength (identity and keypoint placement)", 0.0, 5.0),
    Param("ip_adapter_scale", "--adapter-scale", float, 0.8, "image adapter strength (identity detail)", 0.0, 5.0),
    Param("control_guidance_start", "--control-start", float, 0.0,
          "fraction of the steps at which IdentityNet starts acting", 0.0, 1.0),
    Param("control_guidance_end", "--control-end", float, 1.0,
          "fraction of the steps at which IdentityNet stops acting (lower = freer pose/style)", 0.0, 1.0),
    Param("seed", "--seed", int, 0, "random seed; the same seed and inputs give the same image", 0, 2**63 - 1),
    Param("width", "--width", int, None,
          "output width (default: the face/pose photo's, long side capped at 1280, multiple of 64)", 64, 4096),
    Param("height", "--height", int, None, "output height (default: as for width)", 64, 4096),
    Param("num_images_per_prompt", "--num-images", int, 1, "images to generate", 1, 64),
    Param("negative_face_noise", "--negative-face-noise", float, 0.0,
          "noise in the CFG negative face embedding against burned, over-saturated faces (0 = released "
          "behaviour; try 0.35)", 0.0, 5.0),
)

PARAMS_BY_NAME = {p.name: p for p in GENERATION_PARAMS}
