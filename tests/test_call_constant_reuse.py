"""Face tokens and cross-attention keys/values computed once per call: same output, bit for bit."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from instantid.face.keypoints import draw_kps
from instantid.models.call_constants import (
    CallConstantImageProjection,
    CallConstantLinear,
    call_constant_reuse,
)
from shared_fixtures import load_parity_pipeline

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])


@pytest.fixture(scope="module")
def pipe():
    return load_parity_pipeline(scale=0.8)


def latents(pipe, cache: bool, **overrides):
    pipe.reuse_call_constants = cache
    try:
        call = dict(prompt="a person", image_embeds=pipe.embedding, image=draw_kps((64, 64), KPS),
                    num_inference_steps=3, guidance_scale=2.0, output_type="latent",
                    generator=torch.Generator("cpu").manual_seed(0))
        call.update(overrides)
        return pipe(**call).images
    finally:
        pipe.reuse_call_constants = True


@pytest.mark.parametrize("overrides", [{}, {"guidance_scale": 1.0}, {"control_guidance_end": 0.5},
                                       {"num_images_per_prompt": 2}, {"ip_adapter_scale": 0.0}])
def test_cached_call_is_bit_identical(pipe, overrides):
    assert torch.equal(latents(pipe, True, **overrides), latents(pipe, False, **overrides))


def test_each_constant_input_is_computed_once_per_call(pipe, monkeypatch):
    # Declared at load: the face projection, to_k/to_v of every cross-attention (UNet and IdentityNet) and
    # every to_k_ip/to_v_ip.
    unet_layers = [m for m in pipe.unet.modules() if isinstance(m, CallConstantLinear)]
    cross_attentions = sum(1 for m in pipe.unet.modules() if getattr(m, "is_cross_attention", False))
    assert isinstance(pipe.unet.encoder_hid_proj, CallConstantImageProjection)
    assert len(unet_layers) == 4 * cross_attentions  # to_k/to_v + to_k_ip/to_v_ip
    assert any(isinstance(m, CallConstantLinear) for m in pipe.identitynet.modules())
    from instantid.pipelines import instantid as mixin_module

    seen = {}

    @contextmanager
    def recording():
        with call_constant_reuse() as constants:
            seen.update(counts=constants.counts)
            yield constants

    monkeypatch.setattr(mixin_module, "call_constant_reuse", recording)
    latents(pipe, True, num_inference_steps=3)
    counts = seen["counts"]
    # 3 steps: every module computes once and reuses twice (IdentityNet's too: its tokens are one tensor).
    assert counts["computed"] >= 1 + len(unet_layers)
    assert counts["reused"] == 2 * counts["computed"]


def test_outputs_are_reused_only_for_the_same_tensor_within_a_call():
    plain = torch.nn.Linear(4, 3)
    linear = CallConstantLinear.sharing(plain)
    assert linear.weight is plain.weight and linear.bias is plain.bias  # the same parameters
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert linear(x) is not linear(x)  # outside a call: a plain Linear
        with call_constant_reuse() as constants:
            first = linear(x)
            assert linear(x) is first
            assert linear(x.clone()) is not first  # another tensor (same values): computed
            assert torch.equal(first, plain(x))
        assert constants.counts == {"computed": 2, "reused": 1}
        assert linear(x) is not first  # the call is over
    with call_constant_reuse():  # gradients on: never reused
        assert linear(x) is not linear(x)


def test_unload_leaves_a_plain_unet():
    pipe = load_parity_pipeline()
    pipe.unload_ip_adapter_instantid()
    assert pipe.unet.encoder_hid_proj is None
    assert not any(isinstance(m, (CallConstantLinear, CallConstantImageProjection)) for m in pipe.unet.modules())
    assert not any(hasattr(p, "to_k_ip") for p in pipe.unet.attn_processors.values())
