"""Request and response shapes. The generation knobs come from params.GENERATION_PARAMS (names, types,
ranges, help), so the API validates exactly what the CLI does."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ..params import FACE_DETAIL_MODES, FACE_DETAIL_STRENGTH, FACE_DETAIL_THRESHOLD, GENERATION_PARAMS
from ..pipelines.conditions import CONDITION_KINDS
from ..pipelines.schedulers import SCHEDULERS
from ..pipelines.styles import BUILTIN_STYLES
from .limits import Limits

MAX_PROMPT_CHARS = Limits.max_prompt_chars
MAX_FACE_INDEX = 31  # the N-th largest face of a group photo; more faces than that are not a portrait
FILE_FIELDS = ("face", "pose", *CONDITION_KINDS)


def _knob_fields() -> dict:
    fields = {}
    for param in GENERATION_PARAMS:
        fields[param.name] = (Optional[param.type], Field(
            None, ge=param.min, le=param.max, description=f"{param.help} (default {param.default})"))
    for kind in CONDITION_KINDS.values():
        fields[f"{kind.name}_scale"] = (Optional[float], Field(
            None, ge=0.0, le=5.0, description=f"strength of the {kind.name} ControlNet (default {kind.default_scale}); "
                                              f"needs a '{kind.name}' photo and a server started with --controlnet {kind.name}"))
    return fields


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not ignored

    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="what to generate")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="what to avoid")
    style: str = Field("none", description="style preset: " + ", ".join(BUILTIN_STYLES),
                       json_schema_extra={"enum": list(BUILTIN_STYLES)})
    scheduler: Optional[str] = Field(None, description="sampler for this job: " + ", ".join(SCHEDULERS)
                                     + " (default: the server's --scheduler, else the base model's)",
                                     json_schema_extra={"enum": list(SCHEDULERS)})
    loras: Optional[str] = Field(None, max_length=1000, description=(
        "LoRAs loaded at server start, by name, with scales: 'NAME:SCALE,NAME:SCALE' (a bare NAME is 1.0; "
        "LoRAs not named are off; '' = none). Default: the server's --lora scales. Names: GET /v1/options"))
    face_index: int = Field(0, ge=0, le=MAX_FACE_INDEX,
                            description="in group photos, use the N-th largest face of each face photo (0 = largest)")
    face_detail: str = Field("off", description=(
        f"repaint the face after generation: auto = when its long side is below {FACE_DETAIL_THRESHOLD} px, "
        "on = always, off"), json_schema_extra={"enum": list(FACE_DETAIL_MODES)})
    face_detail_strength: Optional[float] = Field(None, gt=0.0, le=1.0, description=(
        f"how much of the face the detail pass repaints, in (0, 1] (default {FACE_DETAIL_STRENGTH}); it needs "
        "num_inference_steps x strength >= 1"))

    @model_validator(mode="after")
    def _check(self):
        if self.style not in BUILTIN_STYLES:
            raise ValueError(f"unknown style '{self.style}'; choose one of: {', '.join(BUILTIN_STYLES)}")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler '{self.scheduler[:64]}'; choose one of: {', '.join(SCHEDULERS)}")
        if self.face_detail not in FACE_DETAIL_MODES:
            raise ValueError(f"face_detail must be one of {', '.join(FACE_DETAIL_MODES)}, got '{self.face_detail[:64]}'")
        start = self.control_guidance_start if self.control_guidance_start is not None else 0.0
        end = self.control_guidance_end if self.control_guidance_end is not None else 1.0
        if start >= end:
            raise ValueError(f"control_guidance_start ({start}) must be below control_guidance_end ({end})")
        return self


GenerationFields = create_model("GenerationFields", __base__=_Common, **_knob_fields())


GenerationJSON = create_model(
    "GenerationJSON", __base__=GenerationFields,
    __doc__="The JSON form of POST /v1/generations: the multipart fields, photos as base64 strings.",
    face=(list[str], Field(..., min_length=1, description="face photos of one person, base64 (embeddings averaged)")),
    pose=(Optional[str], Field(None, description="photo whose face keypoints set pose and placement, base64")),
    **{kind: (Optional[str], Field(None, description=f"photo for the {kind} ControlNet, base64"))
       for kind in CONDITION_KINDS},
)


def multipart_schema() -> dict:
    """The multipart form's schema: the same fields, photos as binary parts (`face` repeated)."""
    schema = GenerationJSON.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    properties = dict(schema["properties"])
    properties["face"] = {"type": "array", "items": binary, "minItems": 1, "description": properties["face"]["description"]}
    for name in FILE_FIELDS[1:]:
        properties[name] = {**binary, "description": properties[name].get("description", "")}
    return {"type": "object", "properties": properties, "required": schema["required"], "additionalProperties": False}


class Progress(BaseModel):
    step: int
    total: int


class JobView(BaseModel):
    id: str
    status: str = Field(..., description="queued | running | done | failed | cancelled")
    attempts: int = Field(0, description="how many times a worker claimed the job (more than 1: a worker died or "
                                         "hung and its lease expired)")
    progress: Progress
    queue_position: Optional[int] = Field(None, description="jobs ahead of this one (0 = next); null unless queued")
    error: Optional[str] = None
    parameters: dict = Field(..., description="the request's values, and once done the full parameters used")
    images: list[str] = Field(..., description="result URLs, in order")
    url: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class FaceView(BaseModel):
    bbox: list[float]
    kps: list[list[float]]
    score: float
    used: bool = Field(..., description="the face InstantID conditions on (the largest)")


class FacesView(BaseModel):
    width: int
    height: int
    backend: str
    faces: list[FaceView]


class LoraView(BaseModel):
    name: str = Field(..., description="what the `loras` field calls it")
    scale: float = Field(..., description="its scale when a request has no `loras` field")


class OptionsView(BaseModel):
    schedulers: list[str]
    default_scheduler: Optional[str] = Field(None, description="--scheduler; null: the base model's own")
    loras: list[LoraView] = Field(..., description="LoRAs loaded at start (--lora)")
    controlnets: list[str] = Field(..., description="extra ControlNets loaded (--controlnet): requests may send KIND photos")
    styles: list[str]
    face_detail: list[str]
