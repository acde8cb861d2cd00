"""Face-region confinement ("enhance face region"): IdentityNet residuals and the adapter's attention output
are zero outside the region (checked where they are made); the final image only loosely (the UNet's
self-attention and convolutions spread any change across the image)."""

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.face.keypoints import draw_kps
from instantid.pipelines.face_region import (
    IdentityRegion,
    RegionError,
    array_mask,
    box_mask,
    check_box,
    check_disjoint,
    mask_shape,
    region_grid,
    snap_box,
)

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])
SIZE = 64  # output pixels; the tiny VAE halves it: 32x32 latents, grid 4 px
BOX = (16, 16, 48, 56)


@pytest.fixture(scope="module")
def pipe(tiny_pipe):
    return tiny_pipe


@pytest.fixture(scope="module")
def embedding():
    return np.random.default_rng(0).normal(size=128).astype(np.float32) * 3


def run(pipe, embedding, **overrides):
    call = dict(prompt="a person", image_embeds=embedding, image=draw_kps((SIZE, SIZE), KPS), width=SIZE,
                height=SIZE, num_inference_steps=2, guidance_scale=2.0, output_type="latent",
                generator=torch.Generator().manual_seed(0))
    call.update(overrides)
    return pipe(**call).images


def inside_cells(shape, box=BOX, size=(SIZE, SIZE)):
    """Boolean [h, w] grid: True where a cell of a map of `shape` lies inside `box` (pixels of `size`)."""
    h, w = shape
    inside = torch.zeros(h, w, dtype=torch.bool)
    x1, y1, x2, y2 = (int(v * s / full) for v, s, full in zip(box, (w, h, w, h), (*size, *size)))
    inside[y1:y2, x1:x2] = True
    return inside


# ---- pure geometry


@pytest.mark.parametrize("box, message", [
    ((-4, 0, 32, 32), "outside the 64x64 image"),
    ((0, 0, 65, 32), "outside"),
    ((20, 10, 20, 30), "empty"),
    ((20, 30, 40, 10), "empty"),
    ((1, 2, 3), "four numbers"),
    (("a", 0, 1, 1), "four numbers"),
    ((0, 0, float("nan"), 4), "non-finite"),
])
def test_bad_boxes_are_refused_clearly(box, message):
    with pytest.raises(RegionError, match=message):
        check_box(box, (64, 64))


def test_boxes_snap_to_the_grid_and_tiny_ones_are_refused():
    assert snap_box((15, 17, 47.9, 50), 4) == (16, 16, 48, 52)
    with pytest.raises(RegionError, match="smaller than the model's 32-px grid"):
        snap_box((100, 100, 110, 140), 32)


def test_grid_is_the_coarsest_unet_resolution(pipe):
    assert region_grid(pipe) == 4  # tiny: VAE /2, two UNet levels; SDXL: 8 * 4 = 32


def test_masks_from_boxes_arrays_and_images_agree():
    shape = mask_shape((64, 64), 2)
    assert shape == (128, 128)
    from_box = box_mask((16, 16, 48, 56), (64, 64), shape)
    pixels = np.zeros((64, 64), np.uint8)
    pixels[16:56, 16:48] = 255
    assert torch.equal(array_mask(pixels, shape), from_box)
    assert torch.equal(array_mask(Image.fromarray(pixels), shape), from_box)
    with pytest.raises(RegionError, match="empty"):
        array_mask(np.zeros((64, 64)), shape)
    with pytest.raises(RegionError, match=r"\[0, 1\]"):
        array_mask(np.full((64, 64), 2.0), shape)


def test_overlapping_regions_are_refused():
    shape = (32, 32)
    a, b = box_mask((0, 0, 40, 64), (64, 64), shape), box_mask((32, 0, 64, 64), (64, 64), shape)
    with pytest.raises(RegionError, match="regions 0 and 1 overlap"):
        check_disjoint([a, b])
    check_disjoint([a, box_mask((40, 0, 64, 64), (64, 64), shape)])  # touching is fine


@pytest.mark.parametrize("size, vae, levels", [((1024, 768), 8, 3), ((64, 64), 2, 2), ((896, 1152), 8, 3)])
def test_adapter_masks_stay_exactly_zero_or_one_at_every_attention_resolution(size, vae, levels):
    # diffusers downsamples ip_adapter_masks bicubically inside each attention layer; on our grid and
    # with boxes snapped to the coarsest resolution, that gives exact 0/1 (no ringing into other regions).
    from diffusers.image_processor import IPAdapterMaskProcessor

    grid = vae * 2 ** (levels - 1)
    box = snap_box((size[0] * 0.3, size[1] * 0.2, size[0] * 0.7, size[1] * 0.9), grid)
    mask = box_mask(box, size, mask_shape(size, vae))
    for level in range(levels):
        h, w = size[1] // vae // 2**level, size[0] // vae // 2**level
        down = IPAdapterMaskProcessor.downsample(mask[None], 1, h * w, 1)[0, :, 0].reshape(h, w)
        assert torch.equal(down, inside_cells((h, w), box, size).float())


# ---- in the pipeline


def capture_identitynet_outputs(pipe):
    outputs = []
    handle = pipe.identitynet.register_forward_hook(lambda module, args, out: outputs.append(out))
    return outputs, handle


def test_identitynet_residuals_are_zero_outside_the_region(pipe, embedding):
    outputs, handle = capture_identitynet_outputs(pipe)
    try:
        run(pipe, embedding, face_region_mask=BOX, num_inference_steps=1)
    finally:
        handle.remove()
    down, mid = outputs[0]
    for residual in (*down, mid):
        inside = inside_cells(residual.shape[-2:])
        assert residual[..., ~inside].abs().max() == 0
        assert residual[..., inside].abs().max() > 0


def ip_attention_layers(pipe):
    return [m for m in pipe.unet.modules() if hasattr(m, "processor") and hasattr(m.processor, "to_k_ip")]


def test_adapter_output_is_zero_outside_the_region(pipe, embedding):
    layer = ip_attention_layers(pipe)[0]
    seen = {}

    def keep_first_call(module, args, kwargs, out):
        seen.setdefault("call", (args, kwargs, out))  # returns None: the output is left as it is

    handle = layer.register_forward_hook(keep_first_call, with_kwargs=True)
    try:
        run(pipe, embedding, face_region_mask=BOX, num_inference_steps=1)
    finally:
        handle.remove()
    args, kwargs, with_adapter = seen["call"]
    assert kwargs["ip_adapter_masks"][0].shape[:2] == (1, 1)  # one adapter, one face
    saved = layer.processor.scale
    layer.processor.scale = [[0.0]]  # the same layer, same inputs, adapter branch off
    try:
        without_adapter = layer(*args, **kwargs)
    finally:
        layer.processor.scale = saved
    contribution = (with_adapter - without_adapter)[0].abs().amax(-1)  # per token, first batch row
    side = int(contribution.numel() ** 0.5)
    inside = inside_cells((side, side)).flatten()
    assert contribution[~inside].max() == 0
    assert contribution[inside].min() > 0


def test_output_changes_less_outside_the_region_than_inside(pipe, embedding):
    no_identity = run(pipe, embedding, controlnet_conditioning_scale=0.0, ip_adapter_scale=0.0)
    confined = run(pipe, embedding, face_region_mask=BOX)
    everywhere = run(pipe, embedding)
    inside = inside_cells(no_identity.shape[-2:])
    confined_change = (confined - no_identity)[0].abs().mean(0)
    everywhere_change = (everywhere - no_identity)[0].abs().mean(0)
    # measured: inside ~0.30, outside ~0.09 (unconfined: ~0.26 outside); not zero: self-attention mixes
    assert confined_change[~inside].mean() < 0.5 * confined_change[inside].mean()
    assert confined_change[~inside].mean() < 0.6 * everywhere_change[~inside].mean()


def test_mask_image_works_like_the_box(pipe, embedding):
    pixels = np.zeros((SIZE, SIZE), np.uint8)
    x1, y1, x2, y2 = BOX
    pixels[y1:y2, x1:x2] = 255
    by_box = run(pipe, embedding, face_region_mask=BOX, num_inference_steps=1)
    by_mask = run(pipe, embedding, face_region_mask=Image.fromarray(pixels), num_inference_steps=1)
    assert torch.equal(by_box, by_mask)


def test_bad_region_arguments_in_the_call(pipe, embedding):
    before = run(pipe, embedding, num_inference_steps=1)
    with pytest.raises(RegionError, match="outside the 64x64 image"):
        run(pipe, embedding, face_region_mask=(0, 0, 80, 40))
    with pytest.raises(RegionError, match="not both"):
        run(pipe, embedding, face_region_mask=BOX, identity_regions=[IdentityRegion(BOX)])
    with pytest.raises(RegionError, match="keypoints .* lie outside its region"):
        run(pipe, embedding, identity_regions=[IdentityRegion((0, 0, 12, 12), kps=KPS)])
    # nothing of a refused call stays behind
    assert torch.equal(run(pipe, embedding, num_inference_steps=1), before)
