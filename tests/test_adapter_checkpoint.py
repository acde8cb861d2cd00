"""The face adapter checkpoint: released shapes fit full-size SDXL, wrong or unsafe files are refused."""

import os

import pytest
import torch
from diffusers import UNet2DConditionModel

from instantid.errors import CheckpointError
from instantid.models.adapter import check_adapter_fits_unet, load_adapter_state_dict, resampler_shape
from instantid.models.architectures import full_sdxl_unet_config, released_adapter_shapes
from instantid.testing.tiny import build_tiny_instantid, save_adapter_safetensors


@pytest.fixture(scope="module")
def full_unet():
    with torch.device("meta"):  # the real SDXL architecture, no memory, no weights
        return UNet2DConditionModel(**full_sdxl_unet_config())


def meta_state_dict(shapes):
    return {part: {k: torch.empty(s, device="meta") for k, s in keys.items()} for part, keys in shapes.items()}


def test_released_shapes_fit_full_sdxl(full_unet):
    state_dict = meta_state_dict(released_adapter_shapes(full_unet))
    assert len(state_dict["ip_adapter"]) == 140
    shape = check_adapter_fits_unet(state_dict, full_unet)
    assert (shape.embedding_dim, shape.width, shape.heads, shape.num_tokens, shape.depth, shape.output_dim) == \
        (512, 1280, 20, 16, 4, 2048)


def test_released_state_dict_loads_into_meta_unet_through_diffusers(full_unet):
    # diffusers' own converter builds the Resampler (IP-Adapter-Plus projection) from these shapes.
    state_dict = meta_state_dict(released_adapter_shapes(full_unet))
    projection = full_unet._convert_ip_adapter_image_proj_to_diffusers(state_dict["image_proj"],
                                                                        low_cpu_mem_usage=True)
    assert projection.proj_in.in_features == 512 and projection.proj_out.out_features == 2048
    assert projection.latents.shape == (1, 16, 1280)


def test_adapter_for_another_width_is_refused(full_unet):
    shapes = released_adapter_shapes(full_unet)
    shapes["image_proj"]["proj_out.weight"] = (768, 1280)  # an SD1.5-width adapter
    with pytest.raises(CheckpointError, match="outputs 768-d face tokens.*cross-attention width is 2048"):
        check_adapter_fits_unet(meta_state_dict(shapes), full_unet)


def test_missing_and_misshapen_ip_layers_are_named(full_unet):
    shapes = released_adapter_shapes(full_unet)
    del shapes["ip_adapter"]["139.to_v_ip.weight"]
    shapes["ip_adapter"]["1.to_k_ip.weight"] = (320, 2048)
    with pytest.raises(CheckpointError) as err:
        check_adapter_fits_unet(meta_state_dict(shapes), full_unet)
    message = str(err.value)
    assert "139.to_v_ip.weight" in message and "1.to_k_ip.weight: (320, 2048)" in message


def test_not_a_resampler_is_refused():
    with pytest.raises(CheckpointError, match="not an InstantID Resampler"):
        resampler_shape({"proj.weight": torch.zeros(2, 2)})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_instantid(tmp_path_factory.mktemp("tiny"), embedding_dim=128)


def test_bin_and_safetensors_variants_load_the_same(tiny, tmp_path):
    from_bin = load_adapter_state_dict(tiny.adapter)
    save_adapter_safetensors(from_bin, tmp_path / "ip-adapter.safetensors")
    from_st = load_adapter_state_dict(tmp_path / "ip-adapter.safetensors")
    for part in ("image_proj", "ip_adapter"):
        assert from_bin[part].keys() == from_st[part].keys()
        assert all(torch.equal(from_bin[part][k], from_st[part][k]) for k in from_bin[part])
    assert resampler_shape(from_bin["image_proj"]).embedding_dim == 128


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_adapter_state_dict(tmp_path / "nope.bin")


def test_corrupt_checkpoint(tiny, tmp_path):
    truncated = tmp_path / "ip-adapter.bin"
    truncated.write_bytes(tiny.adapter.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_adapter_state_dict(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_adapter_state_dict(garbage)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/instantid-pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    evil = tmp_path / "ip-adapter.bin"
    torch.save({"image_proj": _RunsCode(), "ip_adapter": {}}, evil)
    if os.path.exists("/tmp/instantid-pwned"):
        os.remove("/tmp/instantid-pwned")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_adapter_state_dict(evil)
    assert not os.path.exists("/tmp/instantid-pwned")


def test_wrong_top_level_layout(tmp_path):
    path = tmp_path / "other.bin"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="image_proj"):
        load_adapter_state_dict(path)


def test_pipeline_refuses_adapter_for_other_base(tiny, tmp_path):
    from diffusers import ControlNetModel

    from instantid import StableDiffusionXLInstantIDPipeline

    sd15 = build_tiny_instantid(tmp_path / "sd15", arch="sd15")
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
        tiny.base, controlnet=ControlNetModel.from_pretrained(tiny.identitynet))
    with pytest.raises(CheckpointError, match="does not fit"):
        pipe.load_ip_adapter_instantid(sd15.adapter)
    pipe.load_ip_adapter_instantid(tiny.adapter)
    assert pipe.face_embedding_dim == 128
