"""Face tokens and cross-attention keys/values computed once per call: same output, bit for bit."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from instantid.face.keypoints import draw_kps
from instantid.models.call_cache import constant_input_modules, constant_inputs_computed_once
from shared_fixtures import load_parity_pipeline

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])


@pytest.fixture(scope="module")
def pipe():
    return load_parity_pipeline(scale=0.8)


def latents(pipe, cache: bool, **overrides):
    pipe.compute_constant_inputs_once = cache
    try:
        call = dict(prompt="a person", image_embeds=pipe.embedding, image=draw_kps((64, 64), KPS),
                    num_inference_steps=3, guidance_scale=2.0, output_type="latent",
                    generator=torch.Generator("cpu").manual_seed(0))
        call.update(overrides)
        return pipe(**call).images
    finally:
        pipe.compute_constant_inputs_once = True


@pytest.mark.parametrize("overrides", [{}, {"guidance_scale": 1.0}, {"control_guidance_end": 0.5},
                                       {"num_images_per_prompt": 2}, {"ip_adapter_scale": 0.0}])
def test_cached_call_is_bit_identical(pipe, overrides):
    assert torch.equal(latents(pipe, True, **overrides), latents(pipe, False, **overrides))


def test_each_constant_input_is_computed_once_per_call(pipe, monkeypatch):
    modules = constant_input_modules(pipe.unet, pipe.controlnets)
    cross_attentions = sum(1 for m in pipe.unet.modules() if getattr(m, "is_cross_attention", False))
    assert pipe.unet.encoder_hid_proj in modules
    assert len(modules) >= 1 + 4 * cross_attentions  # projection + to_k/to_v + to_k_ip/to_v_ip
    from instantid.pipelines import instantid as mixin_module

    seen = {}

    @contextmanager
    def recording(modules_arg):
        with constant_inputs_computed_once(modules_arg) as counts:
            seen.update(counts=counts)
            yield counts

    monkeypatch.setattr(mixin_module, "constant_inputs_computed_once", recording)
    latents(pipe, True, num_inference_steps=3)
    counts = seen["counts"]
    # 3 steps: every module computes once and reuses twice (IdentityNet's too: its tokens are one tensor).
    assert counts["computed"] > 0
    assert counts["reused"] == 2 * counts["computed"]


def test_modules_are_restored_and_edits_invalidate(pipe):
    linear = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with torch.no_grad(), constant_inputs_computed_once([linear]) as counts:
        first = linear(x)
        assert linear(x) is first
        x.mul_(2)  # an in-place edit changes the tensor's version: computed again
        assert not torch.equal(linear(x), first)
        assert linear(torch.randn(1, 4)).shape == (1, 3)
    assert counts == {"computed": 3, "reused": 1}
    assert "forward" not in linear.__dict__
    with constant_inputs_computed_once([linear]):  # gradients on: never cached
        y = torch.randn(2, 4)
        assert linear(y) is not linear(y)
