"""Per-job options of `instantid serve` against the real server (tiny model, one tiny LoRA loaded at start):
scheduler, LoRA scales by name, face_index, the face-detail pass and negative_face_noise. Each is checked to
change the image, and to give the same image again for the same inputs whatever ran before."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from serve_server import LORA_SCALE, submit, wait_for

pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow


def _run(server, photos, face="astronaut", **fields):
    """(job JSON, first image as an array, the PNG's parameters) of a finished job."""
    response = submit(server.url, [photos[face]], seed=3, **fields)
    assert response.status_code == 202, response.text
    job = wait_for(server.url, response.json()["id"])
    assert job["status"] == "done", job
    png = Image.open(io.BytesIO(requests.get(server.url + job["images"][0], timeout=10).content))
    return job, np.asarray(png.convert("RGB")), json.loads(png.text["parameters"])


def test_options_endpoint(server):
    options = requests.get(f"{server.url}/v1/options", timeout=10).json()
    assert options["loras"] == [{"name": "sketch", "scale": LORA_SCALE}]
    assert "euler_a" in options["schedulers"] and options["default_scheduler"] is None
    assert options["controlnets"] == [] and options["face_detail"] == ["auto", "on", "off"]


def test_scheduler_per_job(server, photos):
    default, default_pixels, _ = _run(server, photos)
    ancestral, ancestral_pixels, png = _run(server, photos, scheduler="euler_a")
    karras, karras_pixels, _ = _run(server, photos, scheduler="dpmpp_2m_karras")
    # the same requests again, after other schedulers ran: the same pixels (nothing carried over)
    _, default_again, _ = _run(server, photos)
    _, ancestral_again, _ = _run(server, photos, scheduler="euler_a")
    assert np.array_equal(default_pixels, default_again) and np.array_equal(ancestral_pixels, ancestral_again)
    assert not np.array_equal(default_pixels, ancestral_pixels)
    assert not np.array_equal(default_pixels, karras_pixels)
    assert default["parameters"]["scheduler"] is None
    assert ancestral["parameters"]["scheduler"] == png["scheduler"] == "euler_a"
    assert ancestral["parameters"]["scheduler_class"] == "EulerAncestralDiscreteScheduler"
    assert karras["parameters"]["scheduler_class"] == "DPMSolverMultistepScheduler"


def test_lora_chosen_per_job(server, photos):
    startup, startup_pixels, png = _run(server, photos)
    assert startup["parameters"]["loras"] == png["loras"] == f"sketch:{LORA_SCALE:g}"
    _, same_scale, _ = _run(server, photos, loras=f"sketch:{LORA_SCALE}")
    off, off_pixels, _ = _run(server, photos, loras="")
    _, zero_pixels, _ = _run(server, photos, loras="sketch:0")
    stronger, stronger_pixels, _ = _run(server, photos, loras="sketch")  # a bare name is scale 1
    _, startup_again, _ = _run(server, photos)  # after other scales: the startup scale again
    assert np.array_equal(startup_pixels, same_scale) and np.array_equal(startup_pixels, startup_again)
    assert np.array_equal(off_pixels, zero_pixels) and off["parameters"]["loras"] == ""
    assert not np.array_equal(startup_pixels, off_pixels) and not np.array_equal(startup_pixels, stronger_pixels)
    assert stronger["parameters"]["loras"] == "sketch:1"


def test_queued_job_shows_its_options(server, photos):
    response = submit(server.url, [photos["astronaut"]], scheduler="ddim", loras="sketch:0.25", face_detail="auto",
                      face_detail_strength=0.5)
    parameters = response.json()["parameters"]
    assert (parameters["scheduler"], parameters["loras"], parameters["face_detail"]) == ("ddim", "sketch:0.25", "auto")
    assert wait_for(server.url, response.json()["id"])["status"] == "done"


def test_face_index_in_a_group_photo(server, photos):
    faces = requests.post(f"{server.url}/v1/faces", timeout=30, files={"image": ("t1.jpg", photos["t1"].read_bytes())})
    second = faces.json()["faces"][1]
    first_job, first_pixels, _ = _run(server, photos, face="t1")
    job, pixels, png = _run(server, photos, face="t1", face_index=1)
    assert job["parameters"]["face_index"] == png["face_index"] == 1 and first_job["parameters"]["face_index"] == 0
    # the keypoints come from the second largest face (photo pixels; no pose photo)
    assert np.allclose(job["parameters"]["kps"], second["kps"], atol=0.01)
    assert not np.allclose(first_job["parameters"]["kps"], second["kps"], atol=1)
    assert not np.array_equal(first_pixels, pixels)


def test_face_detail_pass(server, photos):
    _, plain, _ = _run(server, photos)
    job, detailed, png = _run(server, photos, face_detail="on", face_detail_strength=0.5)
    assert job["parameters"]["face_detail"] == "on" and job["parameters"]["face_detail_strength"] == 0.5
    assert png["face_detail_passes"] == ["repainted (face-detail on)"]
    assert not np.array_equal(plain, detailed)
    auto, _, _ = _run(server, photos, face_detail="auto", face_detail_strength=0.5)  # a 64 px image: a small face
    assert auto["parameters"]["face_detail_passes"][0].startswith("repainted (face is")


def test_negative_face_noise(server, photos):
    _, plain, _ = _run(server, photos)
    job, noisy, _ = _run(server, photos, negative_face_noise=0.35)
    _, noisy_again, _ = _run(server, photos, negative_face_noise=0.35)
    assert job["parameters"]["negative_face_noise"] == 0.35
    assert np.array_equal(noisy, noisy_again) and not np.array_equal(plain, noisy)
