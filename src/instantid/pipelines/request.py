"""A generation request's checks that need no model, written once: `check_request` is what `instantid generate`,
`swap` and `multi` and the service's submissions (so the UI too) call before anything loads, and the library
entries apply the same validators (check_weights, check_yaw, the table's Param.check) when called.

Errors name the CLI flag (`--guidance-scale`), or with `field_names` the field (`guidance_scale`: the service's
request field, the library's keyword).
"""

from __future__ import annotations

from ..errors import InstantIDError, UsageError
from ..params import JOB_PARAMS, JOB_PARAMS_BY_NAME, generation_values, job_value

MAX_YAW_DEGREES = 90.0  # a full profile; past it the keypoints would be behind the head


def label(name: str, field_names: bool) -> str:
    """What an error calls a request value outside the table: its field name, or its CLI flag."""
    return name if field_names else "--" + name.replace("_", "-")


def check_weights(weights, field_names: bool = True) -> list[float]:
    """Identity-interpolation weights: at least one, each in [0, 1] (0 = the first identity, 1 = the second)."""
    weights = [float(w) for w in weights]
    bad = [w for w in weights if not 0.0 <= w <= 1.0]  # NaN fails both comparisons
    if bad or not weights:
        raise UsageError(f"{label('weights', field_names)} must lie in [0, 1] (0 = the face photos' identity, 1 = "
                         f"the interpolated one), got {bad[0] if bad else 'none'}")
    return weights


def check_yaw(yaw, field_names: bool = True) -> list[float]:
    """Head-pose angles in degrees, each within a full profile either way."""
    angles = [float(d) for d in yaw]
    bad = [d for d in angles if not abs(d) <= MAX_YAW_DEGREES]
    if bad:
        raise UsageError(f"{label('yaw', field_names)} angles must lie in [-{MAX_YAW_DEGREES:g}, {MAX_YAW_DEGREES:g}] "
                         f"degrees, got {bad[0]:g}")
    return angles


def check_series(interpolate: bool, weights, yaw, field_names: bool = True) -> None:
    """An identity-interpolation series or a head-pose one, not both; their values checked."""
    if interpolate and yaw:
        raise UsageError(f"use either {label('interpolate', field_names)} or {label('yaw', field_names)}, not both")
    if interpolate:
        check_weights(weights, field_names)
    if yaw:
        check_yaw(yaw, field_names)


def check_request(given: dict, *, family: str | None = None, tiny: bool = False, skip=frozenset(), photos: int = 0,
                  styles_file=None, field_names: bool = False) -> tuple[dict, dict]:
    """Every check of a generation request that needs no model; returns (the parameter table's values, the per-job
    knobs), defaults filled in (`tiny`: --tiny's sizes and steps).

    `given` holds the request's values by the table's names (None = not given), and any of prompt,
    negative_prompt, style, face_index, face_detail, face_detail_strength, scheduler, kps, interpolate, weights
    and yaw. `photos`: how many reference photos (the limit applies when given); `styles_file`: custom presets
    the style may name."""
    from ..limits import check_photo_count, check_prompt
    from .styles import get_style

    for name in ("prompt", "negative_prompt"):
        check_prompt(given.get(name), label(name, field_names))
    if photos:
        check_photo_count(photos, label("face", field_names))
    values = generation_values(given, tiny=tiny, skip=skip, family=family, field_names=field_names)
    job = {param.name: job_value(param.name, given.get(param.name), param.label(field_names)) for param in JOB_PARAMS
           if param.name not in ("lora_scale", "style")}  # LoRA scales go with their LoRA; styles may come from a file
    job["style"] = given.get("style") or job_value("style")
    get_style(job["style"], styles_file)
    if job["face_detail"] != "off":  # the pass needs a denoising step at the generation's steps
        from .face_detail import checked_options

        try:
            checked_options(job["face_detail"], job["face_detail_strength"], values.get("num_inference_steps", 1))
        except InstantIDError as err:
            raise type(err)(f"{JOB_PARAMS_BY_NAME['face_detail_strength'].label(field_names)}: {err}") from None
    check_series(given.get("interpolate"), given.get("weights") or (), given.get("yaw"), field_names)
    if given.get("kps") is not None:
        from ..face.keypoints import check_kps  # numpy: only when keypoints are given

        check_kps(given["kps"], label("kps", field_names))
    return values, job
