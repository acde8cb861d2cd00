"""Several identities, each in its own region: what each IdentityNet pass and the adapter receive, that one
identity never reaches another's region, and that a region at scale 0 contributes nothing."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.cli import main
from instantid.errors import NoFaceError
from instantid.pipelines.face_region import IdentityRegion, RegionError
from instantid.pipelines.multi_identity import (
    expand_box,
    generate_multi_identity,
    identities_from_photos,
    place_kps_in_box,
    separate_boxes,
)

SIZE = 64  # tiny: 32x32 latents, 4-px grid
LEFT, RIGHT = (0, 8, 32, 64), (32, 8, 64, 64)
KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])


@pytest.fixture(scope="module")
def pipe(tiny_pipe):
    return tiny_pipe


def face(seed):
    return np.random.default_rng(seed).normal(size=128).astype(np.float32) * 3


def kps_in(box):
    """KPS (a face in a 64x64 frame) shrunk into the box."""
    x1, y1, x2, y2 = box
    return KPS / 64 * [(x2 - x1), (y2 - y1)] + [x1, y1]


def two(a, b, scale_b=1.0):
    return [IdentityRegion(LEFT, embedding=a, kps=kps_in(LEFT)),
            IdentityRegion(RIGHT, embedding=b, kps=kps_in(RIGHT), scale=scale_b)]


def run(pipe, identities, steps=1, **overrides):
    call = dict(num_inference_steps=steps, guidance_scale=2.0, output_type="latent",
                generator=torch.Generator().manual_seed(0))
    call.update(overrides)
    return generate_multi_identity(pipe, identities, "two people", width=SIZE, height=SIZE, **call).images


def cells(shape, box):
    h, w = shape
    inside = torch.zeros(h, w, dtype=torch.bool)
    x1, y1, x2, y2 = (int(v * s / SIZE) for v, s in zip(box, (w, h, w, h)))
    inside[y1:y2, x1:x2] = True
    return inside


@contextmanager
def inspect_call(pipe):
    """Record each IdentityNet pass (its face tokens and keypoint image), IdentityNet's summed output, what
    the UNet gets for the adapter, and the first adapter-attention layer's inputs and output, for the first
    denoising step."""
    seen = {"passes": [], "summed": [], "unet": [], "attention": []}
    net = pipe.identitynet
    cross_attention = next(m for m in net.modules() if getattr(m, "is_cross_attention", False))

    def pass_image(module, args):  # the keypoint encoder runs once per region pass
        seen["passes"].append({"controlnet_cond": args[0]})

    def pass_tokens(module, args, kwargs):  # the first cross-attention, once per pass, after the encoder
        seen["passes"][-1].setdefault("encoder_hidden_states", kwargs["encoder_hidden_states"])

    def unet_inputs(module, args, kwargs):
        seen["unet"].append((kwargs["added_cond_kwargs"]["image_embeds"][0].clone(),
                             kwargs["cross_attention_kwargs"]["ip_adapter_masks"][0].clone()))

    def attention(module, args, kwargs, out):
        seen["attention"].append((args, kwargs, out, module.processor.scale))

    layer = next(m for m in pipe.unet.modules() if hasattr(getattr(m, "processor", None), "to_k_ip"))
    handles = [net.controlnet_cond_embedding.register_forward_pre_hook(pass_image),
               cross_attention.register_forward_pre_hook(pass_tokens, with_kwargs=True),
               net.register_forward_hook(lambda module, args, out: seen["summed"].append(out)),
               pipe.unet.register_forward_pre_hook(unet_inputs, with_kwargs=True),
               layer.register_forward_hook(attention, with_kwargs=True)]
    try:
        yield seen, layer
    finally:
        for handle in handles:
            handle.remove()


def tokens(pipe, embedding):
    with torch.no_grad():
        return pipe.face_projection(torch.from_numpy(embedding).reshape(1, 1, -1))[0]


# ---- what each region receives


def test_swapping_the_photos_swaps_the_per_region_conditioning(pipe):
    a, b = face(1), face(2)
    with inspect_call(pipe) as (ab, _):
        run(pipe, two(a, b))
    with inspect_call(pipe) as (ba, _):
        run(pipe, two(b, a))
    # IdentityNet: one pass per region; its face tokens (the positive half under CFG) and keypoint image
    assert len(ab["passes"]) == len(ba["passes"]) == 2
    for seen, (first, second) in ((ab, (a, b)), (ba, (b, a))):
        for index, embedding in enumerate((first, second)):
            states = seen["passes"][index]["encoder_hidden_states"]
            assert torch.allclose(states[1], tokens(pipe, embedding), atol=1e-5)  # row 0: CFG negative
        left_kps = seen["passes"][0]["controlnet_cond"]
        assert torch.equal(left_kps, ba["passes"][0]["controlnet_cond"])  # keypoints stay with the region
        assert not torch.equal(left_kps, seen["passes"][1]["controlnet_cond"])
    # adapter: one face "image" per region, masks in the same order
    (embeds_ab, masks_ab), (embeds_ba, masks_ba) = ab["unet"][0], ba["unet"][0]
    assert embeds_ab.shape == (2, 2, 1, 128) and masks_ab.shape[:2] == (1, 2)
    assert torch.equal(embeds_ab[1, 0, 0], torch.from_numpy(a)) and torch.equal(embeds_ab[1, 1, 0], torch.from_numpy(b))
    assert torch.equal(embeds_ba[1, 0, 0], torch.from_numpy(b)) and torch.equal(embeds_ba[1, 1, 0], torch.from_numpy(a))
    assert embeds_ab[0].abs().max() == 0  # CFG negative: zeros, as for one identity
    assert torch.equal(masks_ab, masks_ba)
    grid = masks_ab.shape[-2:]
    assert torch.equal(masks_ab[0, 0] > 0, cells(grid, LEFT)) and torch.equal(masks_ab[0, 1] > 0, cells(grid, RIGHT))


def test_identity_a_never_reaches_region_b(pipe):
    # Same first step, only A's face changed: in B's region IdentityNet's summed residuals and the first
    # adapter-attention output are identical bit for bit; in A's region they change.
    b = face(2)
    with inspect_call(pipe) as (first, _):
        run(pipe, two(face(1), b))
    with inspect_call(pipe) as (second, _):
        run(pipe, two(face(3), b))
    (down_1, mid_1), (down_2, mid_2) = first["summed"][0], second["summed"][0]
    changed_in_a = []
    for r1, r2 in zip((*down_1, mid_1), (*down_2, mid_2)):
        in_b, in_a = cells(r1.shape[-2:], RIGHT), cells(r1.shape[-2:], LEFT)
        assert torch.equal(r1[..., in_b], r2[..., in_b])
        changed_in_a.append(not torch.equal(r1[..., in_a], r2[..., in_a]))
    # residuals made before IdentityNet's first cross-attention do not depend on the face tokens at all
    assert changed_in_a[-1] and sum(changed_in_a) >= 2
    out_1, out_2 = first["attention"][0][2], second["attention"][0][2]
    side = int(out_1.shape[1] ** 0.5)
    in_b, in_a = cells((side, side), RIGHT).flatten(), cells((side, side), LEFT).flatten()
    assert torch.equal(out_1[:, in_b], out_2[:, in_b])
    assert not torch.equal(out_1[:, in_a], out_2[:, in_a])


def test_a_region_at_scale_zero_contributes_nothing(pipe):
    a, b = face(1), face(2)
    with inspect_call(pipe) as (seen, layer):
        run(pipe, two(a, b, scale_b=0.0))
    down, mid = seen["summed"][0]
    for residual in (*down, mid):
        assert residual[..., cells(residual.shape[-2:], RIGHT)].abs().max() == 0
        assert residual[..., cells(residual.shape[-2:], LEFT)].abs().max() > 0
    # the adapter-attention layer: its output with the adapter minus without it, per token
    args, kwargs, with_adapter, scale_in_call = seen["attention"][0]
    assert scale_in_call == [[0.8, 0.0]]  # the call's adapter scale (0.8, params' default) x each region's scale
    saved = layer.processor.scale
    layer.processor.scale = [[0.0, 0.0]]
    try:
        without_adapter = layer(*args, **kwargs)
    finally:
        layer.processor.scale = saved
    contribution = (with_adapter - without_adapter)[1].abs().amax(-1)
    side = int(contribution.numel() ** 0.5)
    assert contribution[cells((side, side), RIGHT).flatten()].max() == 0
    assert contribution[cells((side, side), LEFT).flatten()].min() > 0


def test_scale_zero_region_equals_leaving_that_identity_out(pipe):
    # Exactly what a zero-scale region can promise: the image is the one made without that identity.
    # It is not the no-identity image inside that region: the other identity's effect spreads there
    # through the UNet's self-attention and convolutions (measured below and in docs/regions.md).
    a, b = face(1), face(2)
    with_b_off = run(pipe, two(a, b, scale_b=0.0), steps=2)
    a_only = run(pipe, two(a, b)[:1], steps=2)
    assert torch.allclose(with_b_off, a_only, atol=1e-5)
    none = run(pipe, two(a, b), steps=2, controlnet_conditioning_scale=0.0, ip_adapter_scale=0.0)
    change = (with_b_off - none)[0].abs().mean(0)
    in_b, in_a = cells(change.shape, RIGHT), cells(change.shape, LEFT)
    assert change[in_b].mean() < change[in_a].mean()


def test_bad_identity_lists_are_refused(pipe):
    a, b = face(1), face(2)
    before = run(pipe, two(a, b))
    with pytest.raises(RegionError, match="regions 0 and 1 overlap"):
        run(pipe, [IdentityRegion((0, 0, 40, 64), a, kps_in((0, 0, 40, 64))),
                   IdentityRegion((32, 0, 64, 64), b, kps_in((32, 0, 64, 64)))])
    with pytest.raises(RegionError, match="outside the 64x64 image"):
        run(pipe, [IdentityRegion((32, 0, 96, 64), a, kps_in((32, 0, 64, 64)))])
    with pytest.raises(RegionError, match="needs both an embedding and keypoints"):
        run(pipe, [IdentityRegion(LEFT, a)])
    with pytest.raises(RegionError, match="at least one"):
        run(pipe, [])
    with pytest.raises(RegionError, match="region 1 scale must be >= 0"):
        run(pipe, two(a, b, scale_b=-1.0))
    assert torch.equal(run(pipe, two(a, b)), before)  # nothing of the refused calls stayed behind


# ---- regions from photos


def test_geometry_helpers():
    assert expand_box((10, 10, 30, 30), 2.0, (100, 100)) == (0.0, 0.0, 40.0, 40.0)
    side_by_side = separate_boxes([(0, 0, 60, 50), (40, 0, 100, 50)])
    assert side_by_side == [(0, 0, 50.0, 50), (50.0, 0, 100, 50)]
    stacked = separate_boxes([(0, 0, 50, 60), (0, 40, 50, 100)])
    assert stacked == [(0, 0, 50, 50.0), (0, 50.0, 50, 100)]
    from instantid.face.types import Face

    photo_face = Face(bbox=np.array([100, 100, 200, 200], np.float32), kps=np.array(KPS * 2 + 86, np.float32),
                      score=1.0, embedding=np.zeros(128, np.float32), backend="test")
    kps = place_kps_in_box(photo_face, (64, 0, 128, 128))
    assert (kps[:, 0] > 64).all() and (kps[:, 0] < 128).all() and (kps[:, 1] < 64).all()  # top square of the box


def test_identities_from_photos_and_boxes(photos, dlib_analyzer):
    from instantid.pipelines.condition import face_condition

    identities, size = identities_from_photos([photos["grace_hopper"], photos["tom_hanks"]], dlib_analyzer,
                                              boxes=[LEFT, RIGHT], size=(SIZE, SIZE), scale=[1.0, 0.5])
    assert size == (SIZE, SIZE) and [i.scale for i in identities] == [1.0, 0.5]
    assert np.array_equal(identities[1].embedding, face_condition([photos["tom_hanks"]], dlib_analyzer).embedding)
    for identity, (x1, y1, x2, y2) in zip(identities, (LEFT, RIGHT)):
        cx, cy = identity.kps.mean(axis=0)
        assert x1 < cx < x2 and y1 < cy < y2


def test_mismatched_or_bad_regions_are_refused(photos, dlib_analyzer, tmp_path):
    faces = [photos["grace_hopper"], photos["tom_hanks"]]
    with pytest.raises(RegionError, match="2 face photos but 1 regions"):
        identities_from_photos(faces, dlib_analyzer, boxes=[LEFT], size=(SIZE, SIZE))
    with pytest.raises(RegionError, match="outside the 64x64 image"):
        identities_from_photos(faces, dlib_analyzer, boxes=[LEFT, (32, 8, 80, 64)], size=(SIZE, SIZE))
    with pytest.raises(RegionError, match="is empty"):
        identities_from_photos(faces, dlib_analyzer, boxes=[LEFT, (40, 8, 40, 64)], size=(SIZE, SIZE))
    with pytest.raises(RegionError, match="not both or neither"):
        identities_from_photos(faces, dlib_analyzer, size=(SIZE, SIZE))
    with pytest.raises(RegionError, match="2 face photos but 3 scales"):
        identities_from_photos(faces, dlib_analyzer, boxes=[LEFT, RIGHT], size=(SIZE, SIZE), scale=[1, 1, 1])
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (90, 140, 200)).save(blank)
    with pytest.raises(NoFaceError, match="blank.png"):
        identities_from_photos([faces[0], blank], dlib_analyzer, boxes=[LEFT, RIGHT], size=(SIZE, SIZE))
    with pytest.raises(NoFaceError, match="has 1 face.* but 2 face photos"):
        identities_from_photos(faces, dlib_analyzer, layout_photo=photos["astronaut"])


def test_layout_photo_gives_regions_and_poses_left_to_right(photos, dlib_analyzer, pipe):
    faces = [photos["grace_hopper"], photos["tom_hanks"]]
    identities, size = identities_from_photos(faces, dlib_analyzer, layout_photo=photos["t1"], size=(128, 96))
    assert size == (128, 96)
    (a, b) = identities
    assert a.region[0] < b.region[0] and a.region[2] <= b.region[0]  # left to right, not overlapping
    for identity in identities:
        x1, y1, x2, y2 = identity.region
        cx, cy = identity.kps.mean(axis=0)
        assert x1 < cx < x2 and y1 < cy < y2
    result = generate_multi_identity(pipe, identities, "x", width=size[0], height=size[1], num_inference_steps=1,
                                     output_type="latent")
    assert result.images.shape[-2:] == (48, 64) and result.parameters["family"] == "sdxl"


def test_multi_command(photos, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    out = tmp_path / "multi.png"
    code = main(["multi", "--tiny", "--face", str(photos["grace_hopper"]), "--face", str(photos["tom_hanks"]),
                 "--box", "0,0,64,128", "--box", "64,0,128,128", "--scale", "1", "--scale", "0.5",
                 "--prompt", "two people", "--steps", "1", "--out", str(out)])
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    assert Image.open(out).size == (128, 128)
    code = main(["multi", "--tiny", "--face", str(photos["grace_hopper"]), "--face", str(photos["tom_hanks"]),
                 "--box", "0,0,64,128", "--prompt", "x", "--out", str(tmp_path / "bad.png")])
    assert code == 1 and "error: 2 face photos but 1 regions" in capsys.readouterr().err


def test_multi_help_lists_options_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["multi", "--help"])
    text = capsys.readouterr().out
    for flag in ("--face", "--layout", "--box", "--scale", "--width", "--identitynet-scale", "--tiny"):
        assert flag in text
    assert "default 1.0" in text and "(default 0.8)" in text
