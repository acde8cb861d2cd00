"""torch.compile of the UNet and IdentityNet: no more graphs and recompilations than the stock diffusers
SDXL ControlNet pipeline with diffusers' own IP-Adapter, over calls that change every per-call input,
and the same output as without compiling."""

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from instantid.face.keypoints import draw_kps
from shared_fixtures import load_parity_pipeline, require_parity_fixture

pytestmark = pytest.mark.slow  # ~1-2 min on 2 CPU cores: dynamo traces the tiny UNet and ControlNet

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])
BACKEND = "eager"  # dynamo's graph capture (what recompiles) without a code generator: cheap on a CPU


def calls(embedding):
    """Three calls changing the seed, prompt, face, both scales and the control window (first: end 0.5)."""
    rng = np.random.default_rng(0)
    faces = [embedding.reshape(-1), *(rng.normal(size=embedding.size).astype(np.float32) * 20 for _ in range(2))]
    changes = [("a person", 0.8, 1.0, 0.5), ("a smiling person in a park", 0.5, 0.7, 1.0), ("an old person", 0.3, 0.9, 0.8)]
    for seed, (face, (prompt, adapter_scale, identitynet_scale, end)) in enumerate(zip(faces, changes)):
        yield face, adapter_scale, dict(
            prompt=prompt, image=draw_kps((64, 64), KPS), num_inference_steps=4, guidance_scale=2.0,
            controlnet_conditioning_scale=identitynet_scale, control_guidance_end=end, output_type="latent",
            generator=torch.Generator("cpu").manual_seed(seed))


def graphs_per_call(run_calls) -> list[int]:
    """Graphs dynamo has compiled after each call (a graph compiled after the first call is a recompilation)."""
    torch._dynamo.reset()
    counters.clear()
    seen = []
    for _ in run_calls():
        seen.append(counters["stats"]["unique_graphs"])
    return seen


def stock_pipeline():
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from instantid.models.adapter import load_adapter_state_dict

    fixture = require_parity_fixture()
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        fixture / "base", controlnet=ControlNetModel.from_pretrained(fixture / "ControlNetModel"))
    pipe.load_ip_adapter(load_adapter_state_dict(fixture / "ip-adapter.bin"), subfolder=None, weight_name=None,
                         image_encoder_folder=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_compiled_instantid_recompiles_no_more_than_stock_and_matches_eager():
    instantid = load_parity_pipeline()

    def run_instantid():
        for face, adapter_scale, call in calls(instantid.embedding):
            yield instantid(image_embeds=face, ip_adapter_scale=adapter_scale, **call).images

    eager = list(run_instantid())
    instantid.unet.compile(backend=BACKEND)
    instantid.identitynet.compile(backend=BACKEND)
    compiled = []
    ours = graphs_per_call(lambda: (compiled.append(out) or out for out in run_instantid()))

    stock = stock_pipeline()

    def run_stock():
        for face, adapter_scale, call in calls(instantid.embedding):
            stock.set_ip_adapter_scale(adapter_scale)
            face = torch.from_numpy(face).reshape(1, 1, 1, -1)
            yield stock(ip_adapter_image_embeds=[torch.cat([torch.zeros_like(face), face])], **call).images

    stock.unet.compile(backend=BACKEND)
    stock.controlnet.compile(backend=BACKEND)
    theirs = graphs_per_call(run_stock)

    assert ours[0] > 0, "nothing was compiled"
    assert ours[0] <= theirs[0], f"graphs in the first call: InstantID {ours}, stock {theirs}"
    assert ours[-1] - ours[0] <= theirs[-1] - theirs[0], f"recompilations after the first call: InstantID {ours}, stock {theirs}"
    for got, expected in zip(compiled, eager):
        assert (got - expected).abs().max() <= 1e-4
    assert len(compiled) == 3
