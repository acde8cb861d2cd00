"""img2img and inpainting pipelines: the stock ones plus InstantIDMixin, with strength checked up front."""

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.errors import StrengthError
from instantid.face.keypoints import draw_kps
from instantid.pipelines.repaint import face_mask, paste_back
from instantid.pipelines.img2img import StableDiffusionXLInstantIDImg2ImgPipeline
from instantid.pipelines.inpaint import StableDiffusionXLInstantIDInpaintPipeline

SIZE = 64
KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])
FACE_BOX = (18, 16, 46, 54)


@pytest.fixture(scope="module")
def text_to_image(tiny_pipe):
    return tiny_pipe


@pytest.fixture(scope="module")
def img2img(text_to_image):
    return StableDiffusionXLInstantIDImg2ImgPipeline.from_pipe(text_to_image)


@pytest.fixture(scope="module")
def inpaint(text_to_image):
    return StableDiffusionXLInstantIDInpaintPipeline.from_pipe(text_to_image)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    smooth = rng.random((8, 8, 3)).repeat(8, 0).repeat(8, 1)  # blocks, so the VAE has something to keep
    return Image.fromarray((smooth * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def embedding():
    return np.random.default_rng(1).normal(size=128).astype(np.float32) * 3


def call(pipe, photo, embedding, **overrides):
    kwargs = dict(prompt="a person", image=photo, control_image=draw_kps((SIZE, SIZE), KPS), image_embeds=embedding,
                  num_inference_steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    kwargs.update(overrides)
    return pipe(**kwargs).images


def test_img2img_strength_changes_the_output_and_identity_reaches_identitynet(img2img, photo, embedding):
    seen = []
    attention = next(m for m in img2img.controlnet.modules() if getattr(m, "is_cross_attention", False))
    hook = attention.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape), with_kwargs=True)
    try:
        light = call(img2img, photo, embedding, strength=0.3, output_type="latent")
    finally:
        hook.remove()
    heavy = call(img2img, photo, embedding, strength=0.9, output_type="latent")
    assert light.shape == heavy.shape == (1, 4, SIZE // 2, SIZE // 2)
    assert (light - heavy).abs().max() > 1e-2
    assert seen and seen[0][1] == 16  # IdentityNet attends to the 16 face tokens, not 77 text tokens
    other_face = call(img2img, photo, embedding * -1, strength=0.9, output_type="latent")
    assert (other_face - heavy).abs().max() > 1e-3


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.5, float("nan"), "strong"])
@pytest.mark.parametrize("which", ["img2img", "inpaint"])
def test_strength_out_of_range_is_a_clear_error(request, which, strength, photo, embedding):
    pipe = request.getfixturevalue(which)
    extra = {"mask_image": Image.new("L", (SIZE, SIZE), 255)} if which == "inpaint" else {}
    with pytest.raises(StrengthError, match=r"strength must be .*\(0, 1\]"):
        call(pipe, photo, embedding, strength=strength, **extra)


def test_inpainting_then_paste_back_keeps_every_pixel_outside_the_mask(inpaint, photo, embedding):
    mask = face_mask((SIZE, SIZE), FACE_BOX, grow=1.0, feather=0.1)
    assert 0 < (mask > 0).mean() < 0.6
    painted = call(inpaint, photo, embedding, mask_image=Image.fromarray(((mask > 0) * 255).astype(np.uint8)),
                   strength=0.9)[0]
    original = np.asarray(photo)
    # the stock pipeline re-decodes the whole picture: outside the mask it is close, not equal
    assert not np.array_equal(np.asarray(painted)[mask == 0], original[mask == 0])
    result = paste_back(original, painted, (0, 0, SIZE, SIZE), mask)
    assert np.array_equal(result[mask == 0], original[mask == 0])
    assert (result[mask > 0] != original[mask > 0]).any()


def test_inpainting_takes_the_face_region_too(inpaint, photo, embedding):
    out = call(inpaint, photo, embedding, mask_image=Image.new("L", (SIZE, SIZE), 255), strength=1.0,
               num_inference_steps=2, face_region_mask=(16, 16, 48, 56), output_type="latent")
    assert out.shape == (1, 4, SIZE // 2, SIZE // 2) and torch.isfinite(out).all()
