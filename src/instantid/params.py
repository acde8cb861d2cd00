"""Generation parameters, declared once: name in the pipeline call, CLI flag, default, range or choices, help.

The library entry (`generate_from_photos` and the swap / multi-identity entries) takes its defaults and
range checks from this table through `resolve`; the CLI options, the service's request schema and the UI's
controls are derived from it (GENERATION_PARAMS, and JOB_PARAMS for the per-job knobs beside them). So the
same inputs give the same image whichever way they come in.

This module imports nothing heavy: front ends build their parsers from it in milliseconds.
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
    min_open: bool = False  # the minimum itself is refused: (min, max]
    choices: tuple | None = None  # a choice among names instead of a number

    def parse(self, text: str):
        """Convert and range-check a command-line value (argparse `type=`)."""
        import argparse

        if self.choices is not None:
            try:
                return self.check(text)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        try:
            value = self.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{self.flag} must be a{'n integer' if self.type is int else ' number'}, got {text!r}")
        try:
            return self.check(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    def check(self, value, label: str | None = None):
        """Range-check a value from any front end, the one validator of a table row: NaN and infinities are
        refused (NaN passes every `<` comparison, so a plain range check would let it through to an all-black
        image). Errors name `label` (default: the CLI flag; the service names its field)."""
        import math
        import numbers

        from .errors import UsageError

        label = label or self.flag
        if self.choices is not None:
            if value not in self.choices:
                raise UsageError(f"{label} must be one of {', '.join(map(str, self.choices))}, got {str(value)[:64]!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UsageError(f"{label} must be a{'n integer' if self.type is int else ' number'}, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"{label} must be a finite number, got {value}")
        if self.type is int and not float(value).is_integer():
            raise UsageError(f"{label} must be an integer, got {value}")
        too_low = self.min is not None and (value <= self.min if self.min_open else value < self.min)
        if too_low or (self.max is not None and value > self.max):
            if self.max is None:
                span = f"{'>' if self.min_open else '>='} {self.min:g}"
            else:
                span = f"in ({self.min}, {self.max}]" if self.min_open else f"between {self.min} and {self.max}"
            raise UsageError(f"{label} must be {span}, got {value}")
        return value

    def label(self, field_names: bool) -> str:
        """What an error calls this row: its field name (the service, the library) or its CLI flag."""
        return self.name if field_names else self.flag


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
    Param("true_cfg_scale", "--true-cfg-scale", float, 1.0,
          "FLUX only: true classifier-free guidance with the negative prompt, an extra DiT pass per step when > 1 "
          "(1 = off, InfiniteYou's default; try 4 with a --negative-prompt)", 1.0, 20.0),
)

# Model families: the table's defaults are SDXL's; a family overrides some and takes only its own knobs.
# FLUX's are InfiniteYou's (30 steps, distilled guidance 3.5, IdentityNet at 1.0 over the whole run).
FAMILY_DEFAULTS = {"flux": {"num_inference_steps": 30, "guidance_scale": 3.5, "controlnet_conditioning_scale": 1.0,
                            "control_guidance_start": 0.0, "control_guidance_end": 1.0}}
FAMILY_ONLY = {"ip_adapter_scale": ("sdxl", "sd15"), "negative_face_noise": ("sdxl", "sd15"), "true_cfg_scale": ("flux",)}
FAMILIES = ("sdxl", "sd15", "flux")
FAMILY_SIZE_MULTIPLE = {"flux": 16}  # FLUX packs 2x2 patches of an 8x-downsampled latent


def family_skip(family: str | None) -> frozenset:
    """The table's parameters that do not apply to `family` (None: the SDXL / SD1.5 table as before)."""
    family = family or "sdxl"
    return frozenset(name for name, families in FAMILY_ONLY.items() if family not in families)


def family_default(name: str, family: str | None):
    return FAMILY_DEFAULTS.get(family or "sdxl", {}).get(name, PARAMS_BY_NAME[name].default)

PARAMS_BY_NAME = {p.name: p for p in GENERATION_PARAMS}
# Identity interpolation series (`interpolate=` / --interpolate): one image per weight, 0 = the first identity.
INTERPOLATION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)

MAX_FACE_INDEX = 31  # the N-th largest face of a group photo; more faces than that are not a portrait

# Face swap (`swap_face`, `swap_whole_image`, `instantid swap`).
SWAP_PROMPT = "a photo of a person, natural skin, detailed face"
SWAP_STRENGTH = {"face": 0.85, "image": 0.6}  # < 1 keeps some of the target's lighting and shape
SWAP_WORKING_SIDE = 1024  # long side of the crop the model paints (SDXL's native size)
SWAP_MASK_GROW = 1.3  # the mask ellipse is the face box grown by this (forehead, chin, cheeks)
SWAP_FEATHER = 0.12  # blur radius as a fraction of the face box's larger side
SWAP_PARAMS = (  # keywords of swap_face / swap_whole_image / repaint_face, options of `instantid swap`
    Param("target_index", "--target-index", int, 0, "which face of the target to replace, 0 = largest", 0,
          MAX_FACE_INDEX),
    Param("working_side", "--working-size", int, SWAP_WORKING_SIDE, "long side the face crop is painted at", 64, None),
    Param("grow", "--mask-grow", float, SWAP_MASK_GROW, "mask ellipse = the face box grown by this", 0.0, None,
          min_open=True),
    Param("feather", "--feather", float, SWAP_FEATHER, "soft mask edge, as a fraction of the face size", 0.0, None),
)
SWAP_PARAMS_BY_NAME = {p.name: p for p in SWAP_PARAMS}
# An identity's strength in its region (IdentityRegion.scale, `instantid multi --scale`): multiplies both scales.
REGION_SCALE = Param("scale", "--scale", float, 1.0, "identity strength in its region, multiplies both scales",
                     0.0, None)

# Face-detail pass (`face_detail=` of the entries, --face-detail): repaint small faces after generation.
FACE_DETAIL_MODES = ("auto", "on", "off")
FACE_DETAIL_THRESHOLD = 256  # px, long side of the face box: smaller faces are repainted in "auto"
FACE_DETAIL_STRENGTH = 0.4  # moderate: keeps the face's colours and layout, re-draws its detail

# Face analysis backend of every command that analyses faces (--face-backend; face/backend_rule.py applies it).
FACE_BACKEND_CHOICES = ("auto", "antelopev2", "dlib", "infiniteyou")
FACE_BACKEND_RULE = ("auto = antelopev2 where the released weights are used (generate, swap, multi, serve, ui; "
                     "infiniteyou, i.e. antelopev2 detection + facexlib ArcFace, for the FLUX family), dlib "
                     "elsewhere and with --tiny (offline, free); for eval, every recognizer available")


def face_backend_name(choice: str = "auto", *, released_weights: bool = False, tiny: bool = False,
                      family: str | None = None) -> str:
    """FACE_BACKEND_RULE: the backend `choice` names (as given; `auto` = the family's released face path,
    antelopev2 or for FLUX infiniteyou, where the released weights are used and not tiny random ones, else
    dlib). Kept here, beside the rule's text, so a parser can state it and a command apply it without
    importing the face libraries."""
    if choice not in FACE_BACKEND_CHOICES:
        raise ValueError(f"unknown face backend {choice!r}; choose one of {', '.join(FACE_BACKEND_CHOICES)}")
    if choice != "auto":
        return choice
    if not released_weights or tiny:
        return "dlib"
    return "infiniteyou" if family == "flux" else "antelopev2"
LORA_SCALE_RANGE = (-5.0, 5.0)  # negative scales are how "slider" LoRAs are used


def _job_params() -> tuple[Param, ...]:
    from .pipelines.schedulers import SCHEDULERS  # both plain tables: no heavy import
    from .pipelines.styles import BUILTIN_STYLES

    return (
        Param("face_index", "--face-index", int, 0,
              "in group photos, use the N-th largest face of each face photo (0 = largest)", 0, MAX_FACE_INDEX),
        Param("face_detail", "--face-detail", str, "off",
              f"repaint each face at the working size after generation: auto = when its long side is below "
              f"{FACE_DETAIL_THRESHOLD} px (full-body and wide shots), on = always, off", choices=FACE_DETAIL_MODES),
        Param("face_detail_strength", "--face-detail-strength", float, FACE_DETAIL_STRENGTH,
              "how much of the face the detail pass repaints, in (0, 1]; it needs steps x strength >= 1",
              0.0, 1.0, min_open=True),
        Param("style", "--style", str, "none", "style preset: " + ", ".join(BUILTIN_STYLES),
              choices=tuple(BUILTIN_STYLES)),
        Param("scheduler", "--scheduler", str, None, "sampler (default: the base model's, Euler for SDXL base)",
              choices=tuple(SCHEDULERS)),
        Param("lora_scale", "--lora", float, 1.0, "LoRA strength (0 = off; negative for slider LoRAs)",
              *LORA_SCALE_RANGE),
    )


# The per-job knobs beside the generation parameters: the entries take them as keywords of their own (and a
# server applies scheduler and LoRA scales per job); `resolve` leaves them alone.
JOB_PARAMS: tuple[Param, ...] = _job_params()
JOB_PARAMS_BY_NAME = {p.name: p for p in JOB_PARAMS}

DEFAULTS = {p.name: p.default for p in GENERATION_PARAMS}
# `--tiny` runs on random tiny weights; these keep it to seconds on a CPU.
TINY_DEFAULTS = {"width": 128, "height": 128, "num_inference_steps": 4}


def split_params(kwargs: dict) -> tuple[dict, dict]:
    """(the table's parameters among `kwargs`, the other keywords)."""
    return ({k: v for k, v in kwargs.items() if k in PARAMS_BY_NAME},
            {k: v for k, v in kwargs.items() if k not in PARAMS_BY_NAME})


def resolve(given: dict | None = None, skip=frozenset(), family: str | None = None, field_names: bool = False) -> dict:
    """Every parameter of the table (less `skip` and those not for `family`): the given value, else the family's
    default (the table's); range-checked (Param.check).

    Raises UsageError naming the flag (the field with `field_names`) and the allowed range, or the contradicting
    pair."""
    from .errors import UsageError

    given = dict(given or {})
    values = {}
    not_for_family = family_skip(family)
    for param in GENERATION_PARAMS:
        if param.name in skip or param.name in not_for_family:
            if given.get(param.name) is not None:
                where = f"to {(family or 'sdxl/sd15').upper()} models" if param.name in not_for_family else "here"
                raise UsageError(f"{param.name} ({param.flag}) does not apply {where}")
            continue
        value = given.get(param.name)
        value = family_default(param.name, family) if value is None else value
        values[param.name] = None if value is None else param.type(param.check(value, param.label(field_names)))
    multiple = FAMILY_SIZE_MULTIPLE.get(family or "sdxl")
    for name in ("width", "height"):
        if multiple and values.get(name) is not None and values[name] % multiple:
            raise UsageError(f"{PARAMS_BY_NAME[name].label(field_names)} must be a multiple of {multiple} pixels for "
                             f"{family.upper()} models, got {values[name]}")
    start, end = values.get("control_guidance_start"), values.get("control_guidance_end")
    if start is not None and end is not None and start >= end:
        first, last = (PARAMS_BY_NAME[n].label(field_names) for n in ("control_guidance_start", "control_guidance_end"))
        raise UsageError(f"{first} ({start}) must be below {last} ({end})")
    return values


def generation_values(given: dict, *, tiny: bool = False, skip=frozenset(), family: str | None = None,
                      field_names: bool = False) -> dict:
    """The table's values (less `skip`) for a front end's options: given (None = not given), else TINY_DEFAULTS
    with `tiny`, else the family's defaults; checked by `resolve`. Keys of `given` outside the table are ignored."""
    chosen = {}
    for param in GENERATION_PARAMS:
        if param.name not in skip:
            value = given.get(param.name)
            chosen[param.name] = TINY_DEFAULTS.get(param.name) if value is None and tiny else value
    return resolve(chosen, skip=skip, family=family, field_names=field_names)


def job_value(name: str, value=None, label: str | None = None):
    """A per-job knob as an entry takes it: None = its default (JOB_PARAMS), else checked by its row (errors
    name `label`, default the keyword)."""
    param = JOB_PARAMS_BY_NAME[name]
    return param.default if value is None else param.check(value, label or name)


def seeded_generator(seed: int):
    """The generator a seed stands for: a CPU torch.Generator, so a seed gives the same image on any device."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def resolve_call(kwargs: dict, skip=frozenset(), family: str | None = None) -> tuple[dict, dict, int | None]:
    """Split a high-level entry's keywords: (the table's parameters resolved, less `seed`; the other pipeline
    keywords, with `generator` made from the seed unless one is given; the seed, or None when a generator was
    given)."""
    given, rest = split_params(kwargs)
    values = resolve(given, skip=skip, family=family)
    seed = values.pop("seed")
    if rest.get("generator") is None:
        rest["generator"] = seeded_generator(seed)
    else:
        seed = None
    return values, rest, seed
