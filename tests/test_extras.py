"""Extra ControlNets, LoRAs, style presets and weighted prompts on the tiny models."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.errors import CheckpointError
from instantid.face.keypoints import draw_kps
from instantid.pipelines.conditions import canny_image
from instantid.pipelines.styles import BUILTIN_STYLES, get_style

KPS = [[20, 25], [44, 25], [32, 38], [23, 50], [41, 50]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from instantid.testing.tiny import build_tiny_instantid, build_tiny_lora

    root = tmp_path_factory.mktemp("tiny")
    paths = build_tiny_instantid(root, embedding_dim=128)
    build_tiny_lora(paths.base, root / "lora.safetensors")
    return paths


def load(tiny, **kwargs):
    from instantid.pipelines.loading import load_pipeline

    pipe = load_pipeline(tiny.base, tiny.identitynet, tiny.adapter, device="cpu", **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, **overrides):
    call = dict(prompt="a portrait", image_embeds=np.ones(128, np.float32), image=draw_kps((64, 64), KPS),
                num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0))
    call.update(overrides)
    return pipe(**call).images


def test_extra_controlnet_sees_text_while_identitynet_sees_face_tokens(tiny, photos):
    from instantid.face import load_image

    pipe = load(tiny, controlnets=[tiny.identitynet])  # a second (random) ControlNet beside IdentityNet
    identitynet, extra = pipe.controlnets
    # What each net's cross-attention attends to (IdentityNet swaps the text for the face tokens inside).
    received = {"identitynet": [], "extra": []}
    for key, net in (("identitynet", identitynet), ("extra", extra)):
        attention = next(m for m in net.modules() if getattr(m, "is_cross_attention", False))
        attention.register_forward_pre_hook(
            lambda m, a, kw, key=key: received[key].append(kw["encoder_hidden_states"].shape), with_kwargs=True)
    canny = canny_image(load_image(photos["astronaut"]), (64, 64))
    out = generate(pipe, image=[draw_kps((64, 64), KPS), canny], controlnet_conditioning_scale=[0.8, 0.3],
                   num_inference_steps=1)
    assert torch.isfinite(out).all()
    assert received["identitynet"][0][1] == 16   # face tokens
    assert received["extra"][0][1] == 77         # text tokens


def test_extra_controlnet_is_not_run_outside_its_window(tiny, photos):
    from instantid.face import load_image
    from instantid.models.controlnet_skip import IdleSkippingControlNetModel
    from instantid.models.identitynet import IdentityNetModel

    pipe = load(tiny, controlnets=[tiny.identitynet])
    identitynet, extra = pipe.controlnets
    assert type(identitynet) is IdentityNetModel and type(extra) is IdleSkippingControlNetModel
    runs = []  # the keypoint/condition encoder runs only when the network really runs
    hook = extra.controlnet_cond_embedding.register_forward_hook(lambda *a: runs.append(1))
    canny = canny_image(load_image(photos["astronaut"]), (64, 64))
    call = dict(image=[draw_kps((64, 64), KPS), canny], controlnet_conditioning_scale=[0.8, 0.3],
                control_guidance_end=[1.0, 0.5], num_inference_steps=4)
    try:
        generate(pipe, **call)
    finally:
        hook.remove()
    # 2 of 4 steps: the extra ControlNet skips outside its own window like IdentityNet (that skipping is
    # bit-identical: test_pipeline's test_controlnet_is_not_run_outside_its_window_and_output_is_identical)
    assert len(runs) == 2


def test_lora_changes_output_and_scale_zero_is_no_lora(tiny):
    plain = generate(load(tiny))
    with_lora = generate(load(tiny, loras=[(str(tiny.root / "lora.safetensors"), 1.0)]))
    zero_lora = generate(load(tiny, loras=[(str(tiny.root / "lora.safetensors"), 0.0)]))
    assert (with_lora - plain).abs().max() > 1e-3
    assert torch.allclose(zero_lora, plain, atol=1e-6)


def test_file_that_is_not_a_lora_is_refused(tiny, tmp_path):
    bogus = tmp_path / "not-a-lora.safetensors"
    from safetensors.torch import save_file

    save_file({"some.weight": torch.zeros(3)}, bogus)
    with pytest.raises(CheckpointError, match="could not be loaded as a LoRA"):
        load(tiny, loras=[(str(bogus), 1.0)])


def test_styles_builtin_and_custom(tmp_path):
    assert len(BUILTIN_STYLES) == 9
    prompt, negative = get_style("watercolor").apply("a man", "ugly")
    assert prompt.startswith("watercolor painting of a man") and negative.startswith("ugly, ")
    assert get_style("none").apply("a man") == ("a man", "")
    custom = tmp_path / "styles.json"
    custom.write_text(json.dumps({"comic": {"prompt": "comic panel of {prompt}", "negative_prompt": "photo"}}))
    assert get_style("comic", custom).apply("a cat") == ("comic panel of a cat", "photo")
    with pytest.raises(ValueError, match="unknown style"):
        get_style("nope")
    custom.write_text(json.dumps({"bad": {"negative_prompt": "x"}}))
    with pytest.raises(ValueError, match="needs a \"prompt\""):
        get_style("bad", custom)


def test_weighted_long_prompt(tiny):
    from instantid.pipelines.prompts import weighted_prompt_kwargs

    pipe = load(tiny)
    long_prompt = "a portrait, " + "detailed " * 120
    plain = weighted_prompt_kwargs(pipe, long_prompt)
    weighted = weighted_prompt_kwargs(pipe, long_prompt.replace("a portrait", "(a portrait:1.5)"))
    assert plain["prompt_embeds"].shape[1] > 77  # no truncation at 77 tokens
    assert not torch.equal(plain["prompt_embeds"], weighted["prompt_embeds"])
    out = generate(pipe, prompt=None, **weighted, num_inference_steps=1)
    assert torch.isfinite(out).all()


def test_canny_image_is_edges_at_the_size(photos):
    from instantid.face import load_image

    edges = np.asarray(canny_image(load_image(photos["astronaut"]), (96, 64)))
    assert edges.shape == (64, 96, 3) and set(np.unique(edges)) <= {0, 255} and edges.max() == 255


def test_sd15_pipeline_is_picked_from_identitynet_and_generates(tmp_path, photos, dlib_analyzer):
    from instantid import StableDiffusionInstantIDPipeline
    from instantid.testing.tiny import build_tiny_instantid
    from instantid.pipelines.from_photos import generate_from_photos
    from instantid.pipelines.loading import load_pipeline

    sd15 = build_tiny_instantid(tmp_path, arch="sd15", embedding_dim=128)
    pipe = load_pipeline(sd15.base, sd15.identitynet, sd15.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe, StableDiffusionInstantIDPipeline)
    output = generate_from_photos(pipe, photos["grace_hopper"], "a portrait", analyzer=dlib_analyzer,
                                  width=64, height=64, num_inference_steps=2, output_type="latent",
                                  generator=torch.Generator().manual_seed(0))
    assert output.images.shape == (1, 4, 32, 32) and torch.isfinite(output.images).all()


def test_depth_annotator_missing_offline_is_clear(photos, monkeypatch, tmp_path):
    from instantid.errors import WeightsNotFoundError
    from instantid.face import load_image
    from instantid.pipelines.conditions import depth_image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="hf download"):
        depth_image(load_image(photos["astronaut"]), (64, 64), model="Intel/dpt-hybrid-midas")


def test_sd15_face_swap_and_img2img(tmp_path, photos, dlib_analyzer):
    from instantid.testing.tiny import build_tiny_instantid
    from instantid.pipelines.face_swap import swap_face, swap_whole_image
    from instantid.pipelines.loading import load_pipeline

    sd15 = build_tiny_instantid(tmp_path, arch="sd15", embedding_dim=128)
    pipe = load_pipeline(sd15.base, sd15.identitynet, sd15.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    result = swap_face(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer,
                       working_side=64, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    target = np.asarray(Image.open(photos["astronaut"]).convert("RGB"))
    outside = result.mask == 0
    assert (np.asarray(result.image)[outside] == target[outside]).all()
    assert (np.asarray(result.image)[result.mask > 0.5] != target[result.mask > 0.5]).any()
    output = swap_whole_image(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer,
                              width=64, height=64, num_inference_steps=2, strength=0.5,
                              generator=torch.Generator().manual_seed(0))
    assert output.images[0].size == (64, 64)
    assert result.parameters["family"] == output.parameters["family"] == "sd15"  # the metadata says which family
