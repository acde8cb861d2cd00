"""img2img / inpainting `strength` checks: no model needed, so front ends run them before anything loads."""

from __future__ import annotations

import math

from ..errors import StrengthError


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
