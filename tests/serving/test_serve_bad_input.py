"""Bad input to `instantid serve`: every case a 4xx JSON error naming the problem; the server stays healthy."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from serve_server import FAST

pytestmark = pytest.mark.slow


def _png(size=(64, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(photos, name="astronaut") -> bytes:
    return photos[name].read_bytes()


def _form(photos, *, faces=None, data=None, files=(), drop=()):
    """A multipart request: the astronaut as face, FAST knobs, plus/minus what the case changes."""
    fields = {"prompt": "a portrait", **FAST, **(data or {})}
    for name in drop:
        fields.pop(name, None)
    parts = [("face", ("face.png", f)) for f in (faces if faces is not None else [_photo(photos)])]
    return {"data": fields, "files": parts + list(files)}


def _json(photos, **changes):
    body = {"face": [base64.b64encode(_photo(photos)).decode()], "prompt": "a portrait", "num_inference_steps": 2,
            "width": 64, "height": 64}
    body.update(changes)
    return {"json": body}


# (name, method, path, request builder, expected status, words the error message must contain)
CASES = [
    ("zero-byte face", "post", "/v1/generations", lambda p: _form(p, faces=[b""]), 422, ["face_0", "empty"]),
    ("truncated jpeg", "post", "/v1/generations",
     lambda p: _form(p, faces=[_photo(p, "grace_hopper")[:20000]]), 422, ["face_0", "decoded"]),
    ("corrupt bytes", "post", "/v1/generations", lambda p: _form(p, faces=[b"\x89PNG\r\n\x1a\n" + b"\0" * 500]),
     422, ["face_0"]),
    ("text as photo", "post", "/v1/generations", lambda p: _form(p, faces=[b"hello, not an image"]), 422,
     ["face_0", "not an image"]),
    ("huge dimensions", "post", "/v1/generations", lambda p: _form(p, faces=[_png((8000, 8000), "1")]), 413,
     ["8000x8000", "pixels"]),
    ("decompression bomb", "post", "/v1/generations", lambda p: _form(p, faces=[_png((30000, 30000), "1")]), 413,
     ["face_0"]),
    ("no face in photo", "post", "/v1/generations", lambda p: _form(p, faces=[_png((160, 120))]), 422,
     ["no usable face", "face_0"]),
    ("no face in pose", "post", "/v1/generations", lambda p: _form(p, files=[("pose", ("p.png", _png((160, 120))))]),
     422, ["pose"]),
    ("missing face", "post", "/v1/generations",
     lambda p: _form(p, faces=[], files=[("pose", ("p.png", _photo(p)))]), 422, ["face"]),
    ("form without files", "post", "/v1/generations", lambda p: {"data": {"prompt": "a portrait"}}, 415,
     ["multipart/form-data"]),
    ("too many faces", "post", "/v1/generations", lambda p: _form(p, faces=[_photo(p)] * 9), 422, ["9", "at most"]),
    ("two pose photos", "post", "/v1/generations",
     lambda p: _form(p, files=[("pose", ("a.png", _photo(p))), ("pose", ("b.png", _photo(p)))]), 422, ["pose"]),
    ("face as text field", "post", "/v1/generations",
     lambda p: {"data": {"prompt": "x", "face": "me.jpg"}, "files": [("pose", ("a.png", _photo(p)))]}, 422,
     ["face", "file"]),
    ("prompt as file", "post", "/v1/generations",
     lambda p: _form(p, drop=["prompt"], files=[("prompt", ("prompt.txt", b"a portrait"))]), 422, ["prompt"]),
    ("steps zero", "post", "/v1/generations", lambda p: _form(p, data={"num_inference_steps": "0"}), 422,
     ["num_inference_steps", "between 1 and 500"]),
    ("steps too many", "post", "/v1/generations", lambda p: _form(p, data={"num_inference_steps": "100000"}), 422,
     ["num_inference_steps"]),
    ("steps not a number", "post", "/v1/generations", lambda p: _form(p, data={"num_inference_steps": "abc"}), 422,
     ["num_inference_steps", "integer"]),
    ("negative guidance", "post", "/v1/generations", lambda p: _form(p, data={"guidance_scale": "-1"}), 422,
     ["guidance_scale"]),
    ("nan guidance", "post", "/v1/generations", lambda p: _form(p, data={"guidance_scale": "nan"}), 422,
     ["guidance_scale"]),
    ("identitynet scale too big", "post", "/v1/generations",
     lambda p: _form(p, data={"controlnet_conditioning_scale": "9"}), 422, ["controlnet_conditioning_scale"]),
    ("control window reversed", "post", "/v1/generations",
     lambda p: _form(p, data={"control_guidance_start": "0.8", "control_guidance_end": "0.2"}), 422,
     ["control_guidance_start", "control_guidance_end"]),
    ("control end above 1", "post", "/v1/generations", lambda p: _form(p, data={"control_guidance_end": "1.5"}), 422,
     ["control_guidance_end"]),
    ("negative seed", "post", "/v1/generations", lambda p: _form(p, data={"seed": "-1"}), 422, ["seed"]),
    ("width too small", "post", "/v1/generations", lambda p: _form(p, data={"width": "16"}), 422, ["width"]),
    ("width too large", "post", "/v1/generations", lambda p: _form(p, data={"width": "5000"}), 422, ["width"]),
    ("output over pixel cap", "post", "/v1/generations",
     lambda p: _form(p, data={"width": "4096", "height": "4096"}), 422, ["4096x4096", "pixels"]),
    ("too many images", "post", "/v1/generations", lambda p: _form(p, data={"num_images_per_prompt": "10"}), 422,
     ["num_images_per_prompt", "at most"]),
    ("unknown field", "post", "/v1/generations", lambda p: _form(p, data={"sneaky": "1"}), 422,
     ["sneaky", "unknown field"]),
    ("unknown style", "post", "/v1/generations", lambda p: _form(p, data={"style": "cubism"}), 422,
     ["style", "cubism"]),
    ("oversized prompt", "post", "/v1/generations", lambda p: _form(p, data={"prompt": "x" * 2001}), 422,
     ["prompt", "2000"]),
    ("oversized negative prompt", "post", "/v1/generations",
     lambda p: _form(p, data={"negative_prompt": "x" * 2001}), 422, ["negative_prompt"]),
    ("empty prompt", "post", "/v1/generations", lambda p: _form(p, data={"prompt": ""}), 422, ["prompt"]),
    ("missing prompt", "post", "/v1/generations", lambda p: _form(p, drop=["prompt"]), 422, ["prompt", "required"]),
    ("repeated field", "post", "/v1/generations",
     lambda p: {"data": [("prompt", "a"), ("prompt", "b")], "files": [("face", ("f.png", _photo(p)))]}, 422,
     ["prompt", "more than once"]),
    ("canny without that ControlNet", "post", "/v1/generations",
     lambda p: _form(p, files=[("canny", ("c.png", _photo(p)))]), 422, ["canny", "--controlnet canny"]),
    ("canny_scale without photo", "post", "/v1/generations", lambda p: _form(p, data={"canny_scale": "0.5"}), 422,
     ["canny"]),
    ("canny_scale out of range", "post", "/v1/generations", lambda p: _form(p, data={"canny_scale": "7"}), 422,
     ["canny_scale must be between 0.0 and 5.0"]),
    ("unknown scheduler", "post", "/v1/generations", lambda p: _form(p, data={"scheduler": "warp9"}), 422,
     ["scheduler", "warp9", "euler_a"]),
    ("LoRA not loaded at start", "post", "/v1/generations", lambda p: _form(p, data={"loras": "other:0.5"}), 422,
     ["other", "available", "sketch"]),
    ("LoRA as a path", "post", "/v1/generations",
     lambda p: _form(p, data={"loras": "/etc/passwd:1"}), 422, ["no LoRA", "sketch"]),
    ("LoRA scale not a number", "post", "/v1/generations", lambda p: _form(p, data={"loras": "sketch:lots"}), 422,
     ["sketch", "number"]),
    ("LoRA scale out of range", "post", "/v1/generations", lambda p: _form(p, data={"loras": "sketch:50"}), 422,
     ["sketch", "between"]),
    ("negative face_index", "post", "/v1/generations", lambda p: _form(p, data={"face_index": "-1"}), 422,
     ["face_index"]),
    ("face_index past the faces", "post", "/v1/generations", lambda p: _form(p, data={"face_index": "9"}), 422,
     ["no usable face", "#9"]),
    ("unknown face_detail mode", "post", "/v1/generations", lambda p: _form(p, data={"face_detail": "max"}), 422,
     ["face_detail", "auto"]),
    ("face_detail leaving no step", "post", "/v1/generations",
     lambda p: _form(p, data={"face_detail": "on", "face_detail_strength": "0.4"}), 422,
     ["face_detail_strength", "step"]),
    ("face_detail_strength zero", "post", "/v1/generations",
     lambda p: _form(p, data={"face_detail_strength": "0"}), 422, ["face_detail_strength"]),
    ("negative_face_noise out of range", "post", "/v1/generations",
     lambda p: _form(p, data={"negative_face_noise": "9"}), 422, ["negative_face_noise"]),
    ("file over the size limit", "post", "/v1/generations", lambda p: _form(p, faces=[b"\0" * (11 << 20)]), 413,
     ["face_0", "bytes"]),
    ("body over the size limit", "post", "/v1/generations", lambda p: {"data": b"x" * (41 << 20),
                                                                        "headers": {"Content-Type": "application/json"}},
     413, ["body"]),
    ("chunked body over the size limit", "post", "/v1/generations",
     lambda p: {"data": (b"x" * (1 << 20) for _ in range(42)), "headers": {"Content-Type": "application/json"}},
     413, ["body"]),
    ("wrong content type", "post", "/v1/generations",
     lambda p: {"data": b"prompt=x", "headers": {"Content-Type": "text/plain"}}, 415, ["text/plain"]),
    ("no content type", "post", "/v1/generations", lambda p: {"data": b""}, 415, ["multipart/form-data"]),
    ("invalid json", "post", "/v1/generations",
     lambda p: {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, ["JSON"]),
    ("json array", "post", "/v1/generations", lambda p: {"json": [1, 2]}, 422, ["object"]),
    ("invalid base64", "post", "/v1/generations", lambda p: _json(p, face=["%%%not base64%%%"]), 422,
     ["face", "base64"]),
    ("face not a list in json", "post", "/v1/generations", lambda p: _json(p, face="abc"), 422, ["face", "list"]),
    ("json unknown field", "post", "/v1/generations", lambda p: _json(p, steps=3), 422, ["steps", "unknown"]),
    ("json wrong type", "post", "/v1/generations", lambda p: _json(p, seed=[1]), 422, ["seed"]),
    ("bad job id", "get", "/v1/generations/../../etc/passwd", lambda p: {}, 404, []),
    ("malformed job id", "get", "/v1/generations/not-an-id", lambda p: {}, 404, ["not-an-id"]),
    ("unknown job id", "get", "/v1/generations/" + "0" * 32, lambda p: {}, 404, ["0" * 32]),
    ("image of unknown job", "get", "/v1/generations/" + "0" * 32 + "/images/0", lambda p: {}, 404, ["0" * 32]),
    ("image index not a number", "get", "/v1/generations/" + "0" * 32 + "/images/x", lambda p: {}, 422, ["n"]),
    ("cancel unknown job", "delete", "/v1/generations/" + "f" * 32, lambda p: {}, 404, ["f" * 32]),
    ("faces without image", "post", "/v1/faces", lambda p: {"files": [("other", ("a.png", _png()))]}, 422, []),
    ("faces with corrupt image", "post", "/v1/faces", lambda p: {"files": [("image", ("a.png", b"nope"))]}, 422,
     ["image"]),
    ("unknown route", "get", "/v2/anything", lambda p: {}, 404, []),
    ("wrong method", "put", "/v1/generations", lambda p: {}, 405, []),
]


@pytest.mark.parametrize("name, method, path, build, status, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, photos, name, method, path, build, status, words):
    response = requests.request(method, server.url + path, timeout=60, **build(photos))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    for word in words:
        assert word.lower() in error["message"].lower(), error


def test_healthy_after_bad_input(server, photos):
    assert len(CASES) >= 30
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
    response = requests.post(f"{server.url}/v1/generations", timeout=30, **_form(photos))
    assert response.status_code == 202
    from serve_server import wait_for

    assert wait_for(server.url, response.json()["id"])["status"] == "done"
