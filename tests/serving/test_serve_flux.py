"""`instantid serve --tiny --family flux`: a real server process running FLUX jobs on the tiny family, with the
same clear refusals as SDXL's (a knob of the other family, a sampler FLUX does not use, a photo without a face)."""

from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image

from serve_server import Server, submit, wait_for

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flux_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("serve-flux") / "state", "--family", "flux")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def test_flux_job_done_with_flux_parameters(flux_server, photos):
    response = submit(flux_server.url, [photos["astronaut"]], prompt="a portrait, cinematic", seed=3,
                      true_cfg_scale=2.0, negative_prompt="blurry")
    assert response.status_code == 202, response.text
    job = wait_for(flux_server.url, response.json()["id"])
    assert job["status"] == "done", job
    png = requests.get(flux_server.url + job["images"][0], timeout=10)
    metadata = json.loads(Image.open(io.BytesIO(png.content)).text["parameters"])
    assert metadata["family"] == "flux" and metadata["true_cfg_scale"] == 2.0 and metadata["seed"] == 3
    assert metadata["guidance_scale"] == 3.5 and metadata["controlnet_conditioning_scale"] == 1.0
    assert "ip_adapter_scale" not in metadata and metadata["identitynet"] == "tiny"
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)


@pytest.mark.parametrize("fields, message", [
    ({"ip_adapter_scale": 0.5}, "does not apply to FLUX models"),
    ({"width": "72"}, "multiple of 16"),
    ({"scheduler": "euler_a"}, "flow-matching sampler"),
])
def test_flux_bad_input_clear_errors(flux_server, photos, fields, message):
    response = submit(flux_server.url, [photos["astronaut"]], **fields)
    if response.status_code == 202:  # refused when the job runs: the job fails with the message
        job = wait_for(flux_server.url, response.json()["id"])
        assert job["status"] == "failed" and message in job["error"], job
    else:
        assert response.status_code == 422 and message in response.text, response.text


def test_flux_no_face_refused(flux_server, blank):
    response = submit(flux_server.url, [blank])
    assert response.status_code == 422 and "face" in response.text
