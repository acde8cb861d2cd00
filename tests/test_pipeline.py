"""Behaviour of the InstantID pipeline on the tiny random fixture: every input matters, nothing leaks."""

import numpy as np
import pytest
import torch

from instantid.errors import EmbeddingError
from instantid.face.keypoints import draw_kps
from shared_fixtures import load_parity_pipeline, require_parity_fixture

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])


@pytest.fixture(scope="module")
def pipe():
    return load_parity_pipeline(scale=0.8)


def run(pipe, **overrides):
    call = dict(prompt="a person", image_embeds=pipe.embedding, image=draw_kps((64, 64), KPS),
                num_inference_steps=2, guidance_scale=2.0, controlnet_conditioning_scale=1.0,
                output_type="latent", generator=torch.Generator("cpu").manual_seed(0))
    call.update(overrides)
    return pipe(**call).images


@pytest.fixture(scope="module")
def baseline(pipe):
    return run(pipe)


def test_same_seed_reproduces_exactly(pipe, baseline):
    assert torch.equal(run(pipe), baseline)


@pytest.mark.parametrize("change", [
    {"image_embeds": "other"},
    {"ip_adapter_scale": 0.0},
    {"controlnet_conditioning_scale": 0.0},
    {"image": "moved"},
    {"control_guidance_end": 0.5},
    {"generator": "other-seed"},
])
def test_each_input_changes_the_output(pipe, baseline, change):
    key, value = next(iter(change.items()))
    if value == "other":
        value = np.random.default_rng(1).normal(size=pipe.embedding.shape).astype(np.float32) * 20
    elif value == "moved":
        value = draw_kps((64, 64), KPS + [8, 4])
    elif value == "other-seed":
        value = torch.Generator("cpu").manual_seed(1)
    out = run(pipe, **{key: value})
    assert (out - baseline).abs().max() > 1e-3, f"changing {key} did not change the output"


def test_adapter_scale_applies_to_one_call_only(pipe, baseline):
    scales_before = [list(p.scale) for p in pipe.unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    run(pipe, ip_adapter_scale=0.0)
    scales_after = [list(p.scale) for p in pipe.unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    assert scales_after == scales_before == [[0.8]] * len(scales_before)
    assert torch.equal(run(pipe), baseline)


def first_cross_attention(net):
    return next(m for m in net.modules() if getattr(m, "is_cross_attention", False))


def test_identitynet_sees_face_tokens_not_text(pipe):
    from diffusers import ControlNetModel

    from instantid.models.identitynet import IdentityNetModel

    # the plain ControlNetModel the fixture loads became IdentityNet, sharing its parameters
    assert isinstance(pipe.controlnet, IdentityNetModel) and isinstance(pipe.controlnet, ControlNetModel)
    seen = []
    hook = first_cross_attention(pipe.controlnet).register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        run(pipe, num_inference_steps=1)
    finally:
        hook.remove()
    with torch.no_grad():
        emb = torch.from_numpy(pipe.embedding).reshape(1, 1, -1)
        expected = pipe.face_projection(torch.cat([torch.zeros_like(emb), emb]))
    assert seen and seen[0].shape == expected.shape  # [negative, positive] x 16 tokens, not 77 text tokens
    assert torch.allclose(seen[0], expected, atol=1e-6)


def test_plain_controlnet_becomes_identitynet_sharing_its_weights():
    from diffusers import ControlNetModel

    from instantid import StableDiffusionXLInstantIDPipeline

    fixture = require_parity_fixture()
    plain = ControlNetModel.from_pretrained(fixture / "ControlNetModel")
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(fixture / "base", controlnet=plain)
    shared = dict(pipe.controlnet.named_parameters())
    assert all(shared[name] is param for name, param in plain.named_parameters())  # the same tensors, no copy
    assert type(plain) is ControlNetModel  # the caller's module is left as it was


def test_saved_pipeline_is_in_the_stock_format_and_loads_back(pipe, tmp_path, baseline):
    import json

    from instantid import StableDiffusionXLInstantIDPipeline
    from instantid.models.identitynet import IdentityNetModel

    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["controlnet"] == ["diffusers", "ControlNetModel"]
    assert json.loads((tmp_path / "controlnet" / "config.json").read_text())["_class_name"] == "ControlNetModel"
    loaded = StableDiffusionXLInstantIDPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.controlnet, IdentityNetModel)
    loaded.load_ip_adapter_instantid(require_parity_fixture() / "ip-adapter.bin", scale=0.8)
    loaded.set_progress_bar_config(disable=True)
    loaded.embedding = pipe.embedding
    assert torch.equal(run(loaded), baseline)


def test_zero_residual_shapes_match_a_real_run():
    # What a skipped step returns must have the shapes of a real run, odd latent sizes included.
    from instantid.testing.architectures import full_identitynet_config
    from instantid.models.controlnet_skip import IdleSkippingControlNetModel

    with torch.device("meta"):
        net = IdleSkippingControlNetModel(**full_identitynet_config())
        net.skip_idle_steps = False
        for height, width in ((128, 128), (13, 9), (24, 40)):
            sample = torch.zeros(2, 4, height, width)
            cond = torch.zeros(2, 3, height * 8, width * 8)
            text = {"text_embeds": torch.zeros(2, 1280), "time_ids": torch.zeros(2, 6)}
            down, mid = net(sample, 1, torch.zeros(2, 77, 2048), cond, added_cond_kwargs=text, return_dict=False)
            zero_down, zero_mid = net.zero_residuals(sample)
            assert [d.shape for d in down] == [z.shape for z in zero_down] and mid.shape == zero_mid.shape


def test_prompt_batch_and_several_images(pipe):
    out = run(pipe, prompt=["a", "b"], num_images_per_prompt=2, num_inference_steps=1)
    assert out.shape[0] == 4 and torch.isfinite(out).all()


def test_no_cfg_batch(pipe):
    out = run(pipe, guidance_scale=1.0, num_inference_steps=1)
    assert out.shape[0] == 1


@pytest.mark.parametrize("bad, message", [
    (None, "required"),
    (np.zeros(100, np.float32), "512-d"),
    (np.full(512, np.nan, np.float32), "NaN"),
    ("not numbers", "array of numbers"),
])
def test_bad_embeddings_are_refused_clearly(pipe, bad, message):
    with pytest.raises(EmbeddingError, match=message):
        run(pipe, image_embeds=bad)


def test_output_size_defaults_to_capped_condition_size(pipe):
    latents = run(pipe, image=draw_kps((100, 70), KPS), num_inference_steps=1)
    # 100x70 -> 64x64 output; the fixture's VAE halves it
    assert latents.shape[-2:] == (32, 32)


def test_controlnet_is_not_run_outside_its_window_and_output_is_identical(pipe):
    # Count real IdentityNet runs: its keypoint encoder runs only when the network does (a skipped step
    # returns zeros without entering it).
    runs = []
    hook = pipe.controlnet.controlnet_cond_embedding.register_forward_hook(lambda *a: runs.append(1))
    try:
        skipped = run(pipe, num_inference_steps=4, control_guidance_end=0.5)
        ran_with_skip = len(runs)
        pipe.skip_idle_steps = False
        runs.clear()
        full = run(pipe, num_inference_steps=4, control_guidance_end=0.5)
        ran_without_skip = len(runs)
    finally:
        pipe.skip_idle_steps = True
        hook.remove()
    assert torch.equal(skipped, full)  # zero residuals change nothing, bit for bit
    assert ran_without_skip == 4  # one run per step
    assert ran_with_skip == 2 < ran_without_skip  # only the steps inside the window ran


def test_half_precision_pipeline_accepts_float32_embeddings(pipe):
    # Embeddings arrive as float32 numpy from the face backends; a float16/bfloat16 model must take them.
    pipe.to(torch.bfloat16)
    try:
        out = run(pipe, num_inference_steps=1)
    finally:
        pipe.to(torch.float32)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_assigning_a_plain_controlnet_afterwards_is_refused_clearly(pipe):
    from diffusers import ControlNetModel

    from instantid.errors import UsageError

    identitynet = pipe.controlnet
    pipe.controlnet = ControlNetModel.from_config(identitynet.config)  # bypasses the pipeline's registration
    try:
        with pytest.raises(UsageError, match="not IdentityNet"):
            run(pipe, num_inference_steps=1)
    finally:
        pipe.register_modules(controlnet=identitynet)
    assert pipe.controlnet is identitynet
