"""`instantid serve` end to end: a real uvicorn server on a loopback port, the tiny model, real photos."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from serve_server import QUEUE_SIZE, submit, wait_for

pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow


def _png_parameters(data: bytes) -> dict:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return json.loads(image.text["parameters"])


def test_submit_poll_download(server, photos):
    response = submit(server.url, [photos["astronaut"]], prompt="an astronaut in a garden", seed=7,
                      num_inference_steps=3)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == job["url"] == f"/v1/generations/{job['id']}"
    assert job["status"] in ("queued", "running") and set(job) >= {
        "id", "status", "progress", "queue_position", "error", "parameters", "images"}
    seen = []
    job = wait_for(server.url, job["id"], seen=seen)
    assert job["status"] == "done", job
    assert job["progress"] == {"step": 3, "total": 3}
    assert job["parameters"]["num_inference_steps"] == 3 and job["parameters"]["seed"] == 7
    assert len(job["images"]) == 1
    png = requests.get(server.url + job["images"][0], timeout=10)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    metadata = _png_parameters(png.content)
    assert metadata["prompt"] == "an astronaut in a garden" and metadata["seed"] == 7
    assert metadata["num_inference_steps"] == 3 and (metadata["width"], metadata["height"]) == (64, 64)
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)


def _texts(value):
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    return [value] if isinstance(value, str) else []


def test_models_named_as_given_never_a_server_path(server, photos):
    """The job JSON and the PNG name the models as the server was given them (`tiny` here; the LoRA, loaded from
    an absolute path, by its name) and hold no path of the server's."""
    response = submit(server.url, [photos["astronaut"]], seed=2)
    queued = response.json()["parameters"]
    job = wait_for(server.url, response.json()["id"])
    png = _png_parameters(requests.get(server.url + job["images"][0], timeout=10).content)
    for parameters in (job["parameters"], png):
        assert (parameters["base"], parameters["identitynet"], parameters["adapter"]) == ("tiny", "tiny", "tiny")
        assert parameters["loras"] == "sketch:0.5"
    for parameters in (queued, job["parameters"], png):
        assert [text for text in _texts(parameters) if "/" in text or "\\" in text] == []


def test_same_request_same_image(server, photos):
    """Determinism through the API: same seed and inputs, same PNG pixels."""
    images = []
    for _ in range(2):
        job = wait_for(server.url, submit(server.url, [photos["astronaut"]], seed=3).json()["id"])
        images.append(Image.open(io.BytesIO(requests.get(server.url + job["images"][0], timeout=10).content)))
    assert images[0].tobytes() == images[1].tobytes()


def test_several_faces_averaged_and_pose(server, photos):
    response = submit(server.url, [photos["astronaut"], photos["grace_hopper"]], pose=photos["t1"],
                      num_images_per_prompt=2)
    assert response.status_code == 202, response.text
    job = wait_for(server.url, response.json()["id"])
    assert job["status"] == "done", job
    assert job["parameters"]["faces"] == 2 and job["parameters"]["faces_used"] == 2
    assert job["parameters"]["pose"] is True
    assert len(job["images"]) == 2
    for url in job["images"]:
        assert _png_parameters(requests.get(server.url + url, timeout=10).content)["faces_used"] == 2


def test_json_form_with_base64(server, photos):
    body = {"face": [base64.b64encode(photos["astronaut"].read_bytes()).decode()], "prompt": "a chef",
            "style": "watercolor", "num_inference_steps": 2, "width": 64, "height": 64}
    response = requests.post(f"{server.url}/v1/generations", json=body, timeout=30)
    assert response.status_code == 202, response.text
    job = wait_for(server.url, response.json()["id"])
    assert job["status"] == "done" and job["parameters"]["style"] == "watercolor"
    assert "watercolor" in job["parameters"]["prompt"] and job["parameters"]["user_prompt"] == "a chef"


def test_cancel_queued_and_running(server, photos):
    # A long job (many steps) to cancel while it runs, and one behind it to cancel while it waits.
    running = submit(server.url, [photos["astronaut"]], num_inference_steps=500).json()
    queued = submit(server.url, [photos["astronaut"]], num_inference_steps=500).json()
    cancelled = requests.delete(f"{server.url}/v1/generations/{queued['id']}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    job = wait_for(server.url, running["id"], states=("running",))
    while job["progress"]["step"] < 1:
        job = requests.get(f"{server.url}/v1/generations/{running['id']}", timeout=10).json()
    assert requests.delete(f"{server.url}/v1/generations/{running['id']}", timeout=10).status_code == 200
    job = wait_for(server.url, running["id"])
    assert job["status"] == "cancelled" and job["progress"]["step"] < 500 and job["images"] == []
    assert wait_for(server.url, queued["id"])["status"] == "cancelled"
    again = requests.delete(f"{server.url}/v1/generations/{queued['id']}", timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_overload_gets_429_and_every_accepted_job_finishes(server, photos):
    burst = 4 * QUEUE_SIZE
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: submit(server.url, [photos["astronaut"]]), range(burst)))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) + len(refused) == burst, [r.text for r in responses if r.status_code not in (202, 429)]
    assert refused and QUEUE_SIZE <= len(accepted) <= QUEUE_SIZE + 2  # the queue, plus the ones already taken
    for response in refused:
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "queue_full"
    for job_id in accepted:
        assert wait_for(server.url, job_id)["status"] == "done"
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_faces_endpoint(server, photos):
    response = requests.post(f"{server.url}/v1/faces", timeout=30,
                             files={"image": ("t1.jpg", photos["t1"].read_bytes())})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["backend"] == "dlib" and len(result["faces"]) >= 4
    assert [face["used"] for face in result["faces"]].count(True) == 1 and result["faces"][0]["used"]
    assert len(result["faces"][0]["kps"]) == 5
    sizes = [(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in result["faces"]]
    assert sizes == sorted(sizes, reverse=True)  # the used face is the largest


def test_metrics(server):
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert "instantid_queue_depth" in text and 'instantid_jobs{state="done"}' in text
    assert "instantid_job_seconds_bucket" in text and "instantid_api_errors" in text


def test_openapi_documents_both_request_forms(server):
    spec = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    content = spec["paths"]["/v1/generations"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    properties = content["multipart/form-data"]["schema"]["properties"]
    from instantid.params import GENERATION_PARAMS

    for param in GENERATION_PARAMS:  # every knob of the table, with its range
        assert param.name in properties
    assert requests.get(f"{server.url}/docs", timeout=10).status_code == 200
