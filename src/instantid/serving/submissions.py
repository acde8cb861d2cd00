"""Accepting a generation: validate every field, photo and face, then queue it. Shared by the API and the UI."""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import InstantIDError
from .errors import ApiError
from .limits import Limits
from .schemas import FILE_FIELDS, GenerationFields, JobRequest, describe
from .store import Job, QueueFull

SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def queue_full(limits: Limits) -> ApiError:
    return ApiError(429, "queue_full", f"the queue is full ({limits.queue_size} jobs waiting); retry later",
                    {"Retry-After": str(limits.retry_after_s)})


def accept(service, fields: dict, files: dict[str, list[bytes]]) -> Job:
    """Validate everything (knobs, photos, faces) before the job exists; then queue its JobRequest."""
    from ..pipelines.conditions import CONDITION_KINDS
    from .uploads import check_photo

    store, engine, limits = service.store, service.engine, service.limits
    try:
        knobs = GenerationFields.model_validate(fields)
    except ValidationError as err:
        raise ApiError(422, "invalid_field", describe(err.errors()))
    faces = files.get("face") or []
    if not faces:
        raise ApiError(422, "missing_face", "send at least one face photo in the 'face' field")
    if len(faces) > limits.max_faces:
        raise ApiError(422, "too_many_files", f"{len(faces)} face photos; at most {limits.max_faces} per request")
    for name, photos in files.items():
        if name != "face" and len(photos) > 1:
            raise ApiError(422, "too_many_files", f"'{name}' takes one photo, got {len(photos)}")
    try:  # the parameter table's own checks, as the CLI's (the schema above only parsed the types)
        values, job = engine.check_request(knobs.model_dump())
    except InstantIDError as err:
        raise ApiError(422, "invalid_field", str(err))
    if values["num_images_per_prompt"] > limits.max_images:
        raise ApiError(422, "too_many_images", f"num_images_per_prompt is {values['num_images_per_prompt']}; this "
                                               f"server allows at most {limits.max_images}")
    if values["width"] and values["height"] and values["width"] * values["height"] > limits.max_output_pixels:
        raise ApiError(422, "too_many_pixels", f"{values['width']}x{values['height']} is over this server's "
                                               f"{limits.max_output_pixels} output pixels")
    resolved = {**values, **job, "loras": _loras(engine, knobs.loras)}
    for kind in FILE_FIELDS[2:]:
        param = CONDITION_KINDS[kind].scale_param
        scale = getattr(knobs, param.name)
        try:
            scale = None if scale is None else param.check(scale, param.name)
        except InstantIDError as err:
            raise ApiError(422, "invalid_field", str(err))
        if kind in files and kind not in engine.control_kinds:
            raise ApiError(422, "controlnet_not_loaded", f"this server has no {kind} ControlNet (start it with "
                                                         f"--controlnet {kind})")
        if scale is not None and kind not in files:
            raise ApiError(422, "missing_file", f"{kind}_scale needs a '{kind}' photo")
        if kind in files:
            resolved[param.name] = param.default if scale is None else scale
    # photos: checked in memory, then staged under the job's future folder with names we choose
    named = {}
    for name, photos in files.items():
        for index, data in enumerate(photos):
            label = f"{name}_{index}" if name == "face" else name
            kind = check_photo(data, label, limits)
            named[label + SUFFIX.get(kind, ".img")] = data
    job_id = store.stage(named)
    try:
        folder = store.inputs_dir(job_id)
        face_names = sorted((n for n in named if n.startswith("face_")), key=lambda n: int(n[5:].split(".")[0]))
        pose_name = next((n for n in named if n.startswith("pose")), None)
        try:
            engine.condition([folder / n for n in face_names], folder / pose_name if pose_name else None,
                             knobs.face_index)
        except InstantIDError as err:
            raise ApiError(422, "no_face" if "face" in str(err).lower() else "bad_photo",
                           str(err).replace(f"{folder}/", ""))
        controls = {kind: next(n for n in named if n.startswith(kind)) for kind in FILE_FIELDS[2:] if kind in files}
        request = JobRequest(**{**knobs.model_dump(), **resolved}, faces=face_names, pose=pose_name,
                             controls=controls)
        return store.enqueue(job_id, request.model_dump(mode="json"), limits.queue_size)
    except QueueFull:
        raise queue_full(limits)
    except BaseException:
        store.discard(job_id)
        raise


def _loras(engine, text: str | None) -> str | None:
    """A request's LoRA scales by name (only LoRAs loaded at start), in their canonical text; None: the startup's."""
    from .loras import as_text

    try:
        return as_text(engine.lora_scales(text)) if text is not None else None
    except InstantIDError as err:
        raise ApiError(422, "lora_not_loaded" if "no LoRA" in str(err) else "invalid_field", str(err))
