"""The HTTP API (FastAPI): submit, poll, download, cancel, face analysis, probes and metrics.

Every client mistake is a 4xx with {"error": {"code", "message"}}; the handlers only validate and talk
to the job store; generation happens in the worker (service.py / ray_app.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import InstantIDError
from .errors import ApiError
from .limits import Limits
from .metrics import Metrics
from .schemas import FILE_FIELDS, ErrorBody, FacesView, GenerationJSON, JobView, OptionsView, multipart_schema
from .submissions import SUFFIX, accept, describe, queue_full
from .security import OPEN_PATHS, authorized
from .store import Job, StoreUnavailable, valid_job_id

logger = logging.getLogger(__name__)

_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422, 429)}
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large", 415: "unsupported_media_type", 422: "invalid_request"}


def _error_response(err: ApiError, metrics: Metrics) -> JSONResponse:
    metrics.errors.labels(err.code).inc()
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by Content-Length and while streaming.

    Past the limit it answers 413 itself and tells the app the client left (so the app stops reading);
    whatever the app sends afterwards is dropped.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    def _too_large(self) -> JSONResponse:
        return JSONResponse(ApiError(413, "body_too_large", f"the request body is over {self.limit} bytes").body(),
                            status_code=413)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large()(scope, receive, send)
        seen, refused, started = 0, False, False

        async def limited_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not started:
                refused = True
                await self._too_large()(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def create_app(service, api_key: str | None = None, cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The API over `service` (LocalService or RayService): its store, engine (face analysis) and limits."""
    from contextlib import asynccontextmanager

    store, limits = service.store, service.limits
    metrics = Metrics(store)
    scratch = Path(tempfile.mkdtemp(prefix="requests-", dir=store.root))

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.stop()
            shutil.rmtree(scratch, ignore_errors=True)

    app = FastAPI(title="InstantID", version=__version__, lifespan=lifespan,
                  description="Identity-preserving image generation from face photos. See docs/serving.md.")

    # ---- errors: one JSON shape for all of them

    @app.exception_handler(ApiError)
    async def _api_error(request, err: ApiError):
        return _error_response(err, metrics)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, err: StarletteHTTPException):
        code = _HTTP_CODES.get(err.status_code, f"http_{err.status_code}")
        return _error_response(ApiError(err.status_code, code, str(err.detail)), metrics)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, err: RequestValidationError):
        return _error_response(ApiError(422, "invalid_request", describe(err.errors())), metrics)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, err: ClientDisconnect):  # the client left (or BodyLimit answered 413 already)
        return Response(status_code=400)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request, err: StoreUnavailable):  # database restarting or out of reach: retry, not 500
        logger.warning("%s %s: %s", request.method, request.url.path, err)
        return _error_response(ApiError(503, "store_unavailable", f"the job store ({store.kind}) is unreachable "
                                        "(restarting or out of reach); nothing was changed, retry in a few seconds",
                                        {"Retry-After": str(limits.retry_after_s)}), metrics)

    @app.exception_handler(Exception)
    async def _internal(request, err: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error_response(ApiError(500, "internal", f"internal error ({type(err).__name__})"), metrics)

    # ---- middleware: auth, body size, CORS (off unless configured)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path not in OPEN_PATHS and not authorized(request.headers.get("authorization"), api_key):
            return _error_response(ApiError(401, "unauthorized", "missing or wrong API key; send "
                                            "`Authorization: Bearer KEY`", {"WWW-Authenticate": "Bearer"}), metrics)
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    # ---- jobs

    def view(job: Job) -> dict:
        base = f"/v1/generations/{job.id}"
        parameters = job.parameters or _queued_parameters(job.request)
        return JobView(id=job.id, status=job.status, attempts=job.attempts,
                       progress={"step": job.step, "total": job.total},
                       queue_position=store.queue_position(job), error=job.error, parameters=parameters,
                       images=[f"{base}/images/{n}" for n in range(job.images)], url=base).model_dump()

    def find(job_id: str) -> Job:
        job = store.get(job_id) if valid_job_id(job_id) else None
        if job is None:
            raise ApiError(404, "job_not_found", f"no job '{job_id[:64]}' (ids are 32 hex characters; finished jobs "
                                                 f"expire after {limits.result_ttl_s:g} s)")
        return job

    @app.post("/v1/generations", status_code=202, response_model=JobView, responses=_ERRORS,
              summary="submit a generation job",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": multipart_schema()},
                  "application/json": {"schema": GenerationJSON.model_json_schema(ref_template="#/components/schemas/{model}")},
              }}})
    async def submit(request: Request):
        if store.queued_count() >= limits.queue_size:  # cheap early answer before reading any upload
            raise queue_full(limits)
        fields, files = await _read_body(request, limits)
        job = await run_in_threadpool(accept, service, fields, files)
        service.wake()
        return JSONResponse(view(job), status_code=202, headers={"Location": f"/v1/generations/{job.id}"})

    @app.get("/v1/generations/{job_id}", response_model=JobView, responses=_ERRORS, summary="a job's status")
    def status(job_id: str):
        return view(find(job_id))

    @app.delete("/v1/generations/{job_id}", response_model=JobView, responses=_ERRORS,
                summary="cancel a queued job, or a running one at its next step")
    def cancel(job_id: str):
        job = find(job_id)
        if job.status in ("done", "failed", "cancelled"):
            raise ApiError(409, "job_finished", f"job {job_id} is already {job.status}")
        return view(store.cancel(job_id))

    @app.get("/v1/generations/{job_id}/images/{n}", responses={200: {"content": {"image/png": {}}}, **_ERRORS},
             response_class=Response, summary="result image n (PNG with a `parameters` text chunk)")
    def image(job_id: str, n: int):
        job = find(job_id)
        if job.status != "done":
            raise ApiError(409, "job_not_done", f"job {job_id} is {job.status}; images exist once it is done")
        if not 0 <= n < job.images:
            raise ApiError(404, "image_not_found", f"job {job_id} has images 0 to {job.images - 1}, not {n}")
        return Response(store.image(job, n), media_type="image/png")

    @app.post("/v1/faces", response_model=FacesView, responses=_ERRORS, summary="face analysis only",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                                     "additionalProperties": False, "properties": {
                                                         "image": {"type": "string", "format": "binary"}}}},
                  "application/json": {"schema": {"type": "object", "required": ["image"],
                                                  "additionalProperties": False, "properties": {
                                                      "image": {"type": "string", "description": "base64"}}}},
              }}})
    async def faces(request: Request):
        fields, files = await _read_body(request, limits, file_fields=("image",), text_fields=())
        if list(files) != ["image"] or len(files["image"]) != 1:
            raise ApiError(422, "missing_field", "send exactly one photo in the 'image' field")
        return await run_in_threadpool(_analyse, service.engine, files["image"][0], scratch, limits)

    @app.get("/v1/options", response_model=OptionsView, responses=_ERRORS,
             summary="this server's choices: schedulers, LoRAs (by name), extra ControlNets, styles")
    def options():
        return _options(service.engine)

    # ---- probes and metrics

    @app.get("/healthz", summary="the process is alive")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="models are loaded and jobs run", responses={503: {"model": ErrorBody}})
    def readyz():
        reason = service.not_ready()
        if reason:
            return JSONResponse(ApiError(503, "not_ready", reason).body(), status_code=503)
        return {"status": "ready", "store": store.kind, "blobs": store.blobs.kind}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _queued_parameters(request: dict) -> dict:
    """A waiting job's parameters: its request's values (JobRequest.parameters)."""
    from .schemas import UnreadableRequest, stored_request

    try:
        return stored_request(request).parameters()
    except UnreadableRequest as err:  # the worker fails it with this message
        return {"error": str(err)}


def _options(engine) -> dict:
    from ..params import JOB_PARAMS_BY_NAME

    return {"schedulers": list(JOB_PARAMS_BY_NAME["scheduler"].choices), "default_scheduler": engine.default_scheduler,
            "loras": [{"name": lora.name, "scale": lora.scale} for lora in engine.loras],
            "controlnets": list(engine.control_kinds), "styles": list(JOB_PARAMS_BY_NAME["style"].choices),
            "face_detail": list(JOB_PARAMS_BY_NAME["face_detail"].choices)}


async def _read_body(request: Request, limits: Limits, file_fields=FILE_FIELDS, text_fields=None):
    """(text fields, {file field: [bytes, ...]}) from a multipart form or a JSON object with base64 photos."""
    from .uploads import decode_base64

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields, files = {}, {}
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=limits.max_faces + len(file_fields), max_fields=64)
        except ApiError:
            raise
        except Exception as err:  # starlette's parser: malformed multipart, too many parts
            raise ApiError(400, "bad_multipart", f"the multipart body could not be read: {getattr(err, 'detail', err)}")
        for name, value in form.multi_items():
            if name in file_fields:
                if not isinstance(value, UploadFile):
                    raise ApiError(422, "expected_file", f"'{name}' must be a file part, not a text field")
                data = await value.read()
                files.setdefault(name, []).append(data)
            elif isinstance(value, UploadFile):
                raise ApiError(422, "unexpected_file", f"'{name}' is not a file field; files go in "
                                                       + ", ".join(file_fields))
            elif name in fields:
                raise ApiError(422, "repeated_field", f"'{name}' is given more than once")
            else:
                fields[name] = value
    elif content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {err}")
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_json", "the JSON body must be an object")
        for name, value in body.items():
            if name in file_fields:
                values = value if name == "face" and isinstance(value, list) else [value]
                if name == "face" and not isinstance(value, list):
                    raise ApiError(422, "invalid_field", "'face' must be a list of base64 strings")
                files[name] = [decode_base64(v, name) for v in values]
            else:
                fields[name] = value
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"send multipart/form-data or application/json, not '{content_type or 'nothing'}'")
    if text_fields is not None:
        unknown = sorted(set(fields) - set(text_fields))
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    return fields, files


def _analyse(engine, data: bytes, scratch: Path, limits: Limits) -> dict:
    from ..face.image import image_size
    from .uploads import check_photo

    kind = check_photo(data, "image", limits)
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=SUFFIX.get(kind, ".img")) as handle:
        handle.write(data)
        handle.flush()
        try:
            found = engine.faces(handle.name)
            width, height = image_size(handle.name)
        except InstantIDError as err:
            raise ApiError(422, "bad_photo", str(err).replace(handle.name, "image"))
    return {"width": width, "height": height, "backend": engine.analyzer.name,
            "faces": [{"bbox": [float(v) for v in f.bbox], "kps": [[float(x), float(y)] for x, y in f.kps],
                       "score": float(f.score), "used": i == 0} for i, f in enumerate(found)]}
