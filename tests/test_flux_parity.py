"""The FLUX InstantID pipeline reproduces InfiniteYou's pipeline (shared/fixtures/infiniteyou-parity).

Measured (torch 2.13 CPU, diffusers 0.42.1, one thread, float32): final latents within 3.8e-6 of every case
(defaults 9.5e-7, scale06_end05 7.2e-7, no_kps 1.4e-6, true_cfg 3.8e-6, start01_scale09 9.5e-7); the
Resampler's tokens within 1.1e-6. The tolerance is the fixture README's 1e-3.
"""

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from shared_fixtures import infiniteyou_case_names, load_infiniteyou_pipeline, require_infiniteyou_fixture

TOLERANCE = 1e-3  # max abs difference of the final latents, from the fixture's README


@pytest.fixture(scope="module")
def parity():
    fixture = require_infiniteyou_fixture()
    return fixture, load_infiniteyou_pipeline()


def run_case(fixture, pipe, name, embedding=None, **overrides):
    """One case called exactly as issue 20's drop-in usage writes it (the fixture's RNG protocol: one
    generator for the control image's posterior sample, then the noise)."""
    case = json.loads((fixture / "cases.json").read_text())[name]
    kps_image = None if case["control_image"].startswith("black") else Image.open(fixture / "kps.png")
    call = dict(controlnet_conditioning_scale=case["controlnet_conditioning_scale"],
                control_guidance_start=case["control_guidance_start"], control_guidance_end=case["control_guidance_end"],
                guidance_scale=case["guidance_scale"], num_inference_steps=case["num_inference_steps"],
                height=case["height"], width=case["width"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                output_type="latent", true_cfg_scale=case.get("true_guidance_scale", 1.0),
                negative_prompt=case.get("negative_prompt"))
    call.update(overrides)
    return pipe(case["prompt"], image_embeds=pipe.embedding if embedding is None else embedding,
                control_image=kps_image, **call).images


def test_resampler_reproduces_their_tokens(parity):
    fixture, pipe = parity
    tokens = pipe.face_tokens(pipe.embedding)
    expected = np.load(fixture / "resampler_out.npy")
    assert tokens.shape == expected.shape  # sizes read from the weights: 8 tokens of width 32
    assert np.abs(tokens.numpy() - expected).max() < 1e-4


@pytest.mark.parametrize("case_name", infiniteyou_case_names() or ["fixture-absent"])
def test_latents_match_their_pipeline(parity, case_name):
    fixture, pipe = parity
    latents = run_case(fixture, pipe, case_name)
    expected = np.load(fixture / f"latents_{case_name}.npy")
    assert latents.shape == expected.shape
    difference = float(np.abs(latents.numpy() - expected).max())
    print(f"{case_name}: max abs latent difference {difference:.3g}")
    assert difference < TOLERANCE


def test_idle_steps_skipped_bit_identically(parity):
    """Outside the control window IdentityNet does not run, and the latents are the same bits."""
    fixture, pipe = parity
    runs = []  # the network's first layer runs only when IdentityNet really runs
    handle = pipe.controlnet.x_embedder.register_forward_pre_hook(lambda *_: runs.append(1))
    try:
        skipped = run_case(fixture, pipe, "scale06_end05")
        skipped_runs = len(runs)
        pipe.skip_idle_steps = False
        runs.clear()
        full = run_case(fixture, pipe, "scale06_end05")
    finally:
        pipe.skip_idle_steps = True
        handle.remove()
    assert (skipped_runs, len(runs)) == (6, 12)  # window 0-0.5 of 12 steps: steps 6-11 idle
    assert torch.equal(skipped, full)


def test_face_matters_and_guidance_is_infusenets(parity):
    """Guards against a pipeline that ignores the face tokens or feeds IdentityNet the DiT's guidance."""
    fixture, pipe = parity
    expected = np.load(fixture / "latents_no_kps.npy")
    other = torch.randn(512, generator=torch.Generator().manual_seed(1))
    other_face = run_case(fixture, pipe, "no_kps", embedding=other / other.norm())
    dit_guidance = run_case(fixture, pipe, "no_kps", identitynet_guidance=4.0)
    assert np.abs(other_face.numpy() - expected).max() > 0.05
    assert np.abs(dit_guidance.numpy() - expected).max() > 0.05


def test_concurrent_calls_keep_their_own_face(parity):
    """The face tokens are per call (a context variable; calls on the same weights also take one lock): two
    pipelines sharing IdentityNet and the DiT (each with
    its own scheduler, which diffusers keeps per pipeline), run in two threads with two faces, get what each gets alone."""
    import copy

    from instantid import FluxInstantIDPipeline

    fixture, pipe = parity
    twin = FluxInstantIDPipeline.from_pipe(pipe, scheduler=copy.deepcopy(pipe.scheduler))
    twin.load_ip_adapter_instantid(fixture / "image_proj_model.bin")
    twin.set_progress_bar_config(disable=True)
    assert twin.controlnet is pipe.controlnet and twin.transformer is pipe.transformer
    other = torch.randn(512, generator=torch.Generator().manual_seed(2))
    faces = [pipe.embedding, (other / other.norm()).numpy()]
    alone = [run_case(fixture, pipe, "no_kps", embedding=face, num_inference_steps=4) for face in faces]
    results = [None, None]

    def worker(index):
        results[index] = run_case(fixture, (pipe, twin)[index], "no_kps", embedding=faces[index], num_inference_steps=4)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not torch.equal(alone[0], alone[1])
    for got, want in zip(results, alone):
        assert got is not None and torch.equal(got, want)


def test_saved_components_are_stock(parity, tmp_path):
    """What the pipeline saves loads in any diffusers install: the declared models save as the stock classes."""
    fixture, pipe = parity
    pipe.controlnet.save_pretrained(tmp_path / "controlnet")
    assert json.loads((tmp_path / "controlnet" / "config.json").read_text())["_class_name"] == "FluxControlNetModel"
    assert pipe.config.controlnet[1] == "FluxControlNetModel" and pipe.config.transformer[1] == "FluxTransformer2DModel"
