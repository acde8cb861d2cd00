"""Request and response shapes. The generation knobs and the per-job knobs come from the parameter table
(params.GENERATION_PARAMS and params.JOB_PARAMS: names, types, ranges or choices, help). The schema parses types
and documents ranges and choices; the values are checked by the table itself (submissions.accept calls
pipelines/request.check_request, what the CLI calls), so the API refuses exactly what the CLI does.

A submission's text fields are `GenerationFields`; once accepted, the job's request is a `JobRequest` (those
fields with every default filled in, and the photos' file names in the job folder): what is stored, what a
waiting job shows and what the worker runs.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..errors import UsageError
from ..params import GENERATION_PARAMS, JOB_PARAMS, Param
from ..pipelines.conditions import CONDITION_KINDS
from .limits import Limits

MAX_PROMPT_CHARS = Limits.max_prompt_chars
FILE_FIELDS = ("face", "pose", *CONDITION_KINDS)


def _param_field(param: Param, default=None, note: str = "") -> tuple:
    """A table row as a pydantic field: its type and help, its range (or its choices, as an enum) in the schema."""
    help = param.help + (f" (default {param.default})" if param.default is not None else "") + note
    kind = str if param.choices is not None else param.type
    extra = {"enum": list(param.choices)} if param.choices is not None else \
        {"exclusiveMinimum" if param.min_open else "minimum": param.min, "maximum": param.max}
    return Optional[kind] if default is None else kind, Field(default, description=help, json_schema_extra=extra)


def _knob_fields() -> dict:
    fields = {param.name: _param_field(param) for param in GENERATION_PARAMS}
    for param in JOB_PARAMS:
        if param.name != "lora_scale":  # LoRA scales travel by name in `loras`
            fields[param.name] = _param_field(param, param.default)
    for kind in CONDITION_KINDS.values():
        note = f"; needs a '{kind.name}' photo and a server started with --controlnet {kind.name}"
        fields[kind.scale_param.name] = _param_field(kind.scale_param, note=note)
    return fields


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not ignored

    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="what to generate")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="what to avoid")
    loras: Optional[str] = Field(None, max_length=1000, description=(
        "LoRAs loaded at server start, by name, with scales: 'NAME:SCALE,NAME:SCALE' (a bare NAME is 1.0; "
        "LoRAs not named are off; '' = none). Default: the server's --lora scales. Names: GET /v1/options"))


GenerationFields = create_model("GenerationFields", __base__=_Common, **_knob_fields())


class JobRequest(GenerationFields):
    """An accepted request: every field resolved (the table's defaults, --tiny's, the LoRA scales in their
    canonical text) and the photos as file names in the job's inputs folder."""

    faces: list[str] = Field(..., min_length=1)
    pose: Optional[str] = None
    controls: dict[str, str] = Field(default_factory=dict, description="ControlNet kind -> photo file name")

    def parameters(self) -> dict:
        """What a waiting job shows: the request's values, without the server's file names."""
        return self.model_dump(exclude={"faces", "pose", "controls"})


class UnreadableRequest(UsageError):
    """A stored job's request that this version cannot read: the job fails with this message."""


def stored_request(data: dict) -> JobRequest:
    """A stored job's JobRequest, also from the shape releases before JobRequest stored (jobs queued before an
    upgrade: nothing accepted is lost): the table's values under "values", each ControlNet as [photo, scale]
    under "controls", LoRA scales as {name: scale}. UnreadableRequest naming the field otherwise."""
    from pydantic import ValidationError

    from .loras import as_text

    try:
        if "values" in data:
            old = dict(data)
            controls, loras = old.pop("controls", None) or {}, old.get("loras")
            data = {**old.pop("values"), **old, "controls": {kind: name for kind, (name, _) in controls.items()},
                    **{f"{kind}_scale": scale for kind, (_, scale) in controls.items()},
                    "loras": as_text(loras) if isinstance(loras, dict) else loras}
        return JobRequest.model_validate(data)
    except (ValidationError, TypeError, ValueError) as err:
        reason = describe(err.errors()) if isinstance(err, ValidationError) else str(err)
        raise UnreadableRequest(f"the stored request of this job cannot be read by this version ({reason}); "
                                "submit it again") from None


def describe(errors) -> str:
    """Pydantic errors as one line naming each field: "num_inference_steps: Input should be ..."."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


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
