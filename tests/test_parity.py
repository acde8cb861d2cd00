"""Our pipeline reproduces the released InstantID pipeline's outputs (shared/fixtures/official-parity)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from shared_fixtures import require_parity_fixture

TOLERANCE = 1e-3  # max abs difference of the final latents, from the fixture's README


@pytest.fixture(scope="module")
def parity():
    fixture = require_parity_fixture()
    from diffusers import ControlNetModel

    from instantid import StableDiffusionXLInstantIDPipeline

    # Loaded exactly as the fixture's README shows.
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
        fixture / "base", controlnet=ControlNetModel.from_pretrained(fixture / "ControlNetModel"))
    pipe.load_ip_adapter_instantid(fixture / "ip-adapter.bin")
    pipe.set_progress_bar_config(disable=True)
    return fixture, pipe


def test_resampler_reproduces_released_output(parity):
    fixture, pipe = parity
    embedding = torch.from_numpy(np.load(fixture / "face_embedding.npy")).reshape(1, 1, -1)
    with torch.no_grad():
        tokens = pipe.face_projection(torch.cat([torch.zeros_like(embedding), embedding]))
    expected = np.load(fixture / "resampler_out.npy")
    assert tokens.shape == expected.shape
    assert np.abs(tokens.numpy() - expected).max() < 1e-4


@pytest.mark.parametrize("case_name", ["txt2img", "no_cfg_window"])
def test_latents_match_released_pipeline(parity, case_name):
    fixture, pipe = parity
    case = json.loads((fixture / "cases.json").read_text())[case_name]
    call = {k: v for k, v in case.items() if k not in ("seed", "generator", "height", "width")}
    latents = pipe(image_embeds=np.load(fixture / "face_embedding.npy"), image=Image.open(fixture / "kps.png"),
                   generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="latent", **call).images
    expected = np.load(fixture / f"latents_{case_name}.npy")
    assert latents.shape == expected.shape
    assert np.abs(latents.numpy() - expected).max() < TOLERANCE
