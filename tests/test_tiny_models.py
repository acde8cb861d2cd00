"""The tiny-model builder writes the released InstantID layout, loadable by stock diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import load_file

from instantid.models.architectures import cross_attention_modules, released_adapter_shapes
from instantid.testing.architectures import full_identitynet_config, full_sdxl_unet_config
from instantid.testing.tiny import build_tiny_instantid, save_adapter_safetensors, tiny_instantid_cached

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout here, inside it on some machines.
FIXTURE = next(
    (p for p in (REPO / "shared", REPO.parent / "shared") if p.is_dir()), REPO / "shared"
) / "fixtures/official-parity"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason="official-parity fixture absent")


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    return build_tiny_instantid(tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory):
    return build_tiny_instantid(tmp_path_factory.mktemp("tiny_sd15"), arch="sd15")


def load_adapter(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def shapes(tensors):
    return {k: tuple(v.shape) for k, v in tensors.items()}


def kps_image(size):
    from PIL import Image

    return Image.new("RGB", (size, size), (40, 200, 90))


def test_sdxl_layout_matches_unet(tiny_sdxl):
    for sub in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder_2/config.json",
                "tokenizer_2/tokenizer.json", "scheduler/scheduler_config.json"):  # fmt: skip
        assert (tiny_sdxl.base / sub).is_file(), sub
    assert (tiny_sdxl.identitynet / "config.json").is_file()
    assert (tiny_sdxl.identitynet / "diffusion_pytorch_model.safetensors").is_file()

    adapter = load_adapter(tiny_sdxl.adapter)
    assert set(adapter) == {"image_proj", "ip_adapter"}
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl.base, subfolder="unet")
    cross = cross_attention_modules(unet)
    expected_keys = {f"{i}.to_{kv}_ip.weight" for i in cross for kv in "kv"}
    assert set(adapter["ip_adapter"]) == expected_keys
    assert all(name.endswith("attn2.processor") == (i in cross)
               for i, name in enumerate(unet.attn_processors))  # fmt: skip
    for i, attn in cross.items():
        for kv in "kv":
            assert adapter["ip_adapter"][f"{i}.to_{kv}_ip.weight"].shape == attn.to_k.weight.shape
    image_proj = adapter["image_proj"]
    assert image_proj["latents"].shape == (1, 16, 128)
    assert image_proj["proj_in.weight"].shape == (128, 512)
    assert image_proj["proj_out.weight"].shape == (unet.config.cross_attention_dim, 128)
    assert all(torch.isfinite(t).all() for t in image_proj.values())


@needs_fixture
def test_sdxl_matches_official_fixture(tiny_sdxl):
    ours, official = load_adapter(tiny_sdxl.adapter), load_adapter(FIXTURE / "ip-adapter.bin")
    for part in ("image_proj", "ip_adapter"):
        assert list(ours[part]) == list(official[part]), part
        assert shapes(ours[part]) == shapes(official[part]), part
    configs = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
               "text_encoder_2/config.json", "scheduler/scheduler_config.json",
               "tokenizer/tokenizer.json", "tokenizer_2/tokenizer.json"]  # fmt: skip
    for sub in configs:
        ours_cfg = json.loads((tiny_sdxl.base / sub).read_text())
        official_cfg = json.loads((FIXTURE / "base" / sub).read_text())
        for version_key in ("_diffusers_version", "transformers_version"):
            ours_cfg.pop(version_key, None), official_cfg.pop(version_key, None)
        assert ours_cfg == official_cfg, sub
    ours_cn = json.loads((tiny_sdxl.identitynet / "config.json").read_text())
    official_cn = json.loads((FIXTURE / "ControlNetModel/config.json").read_text())
    ours_cn.pop("_diffusers_version"), official_cn.pop("_diffusers_version")
    assert ours_cn == official_cn


def test_identitynet_zero_convs_are_randomised(tiny_sdxl):
    weights = load_file(tiny_sdxl.identitynet / "diffusion_pytorch_model.safetensors")
    zero_conv_keys = [k for k in weights if k.startswith(("controlnet_down_blocks", "controlnet_mid_block"))]
    assert zero_conv_keys
    assert all(weights[k].abs().max() > 0 for k in zero_conv_keys)


def test_embedding_dim_sets_proj_in(tmp_path):
    paths = build_tiny_instantid(tmp_path, embedding_dim=128)
    image_proj = load_adapter(paths.adapter)["image_proj"]
    assert image_proj["proj_in.weight"].shape == (128, 128)


def test_stock_sdxl_controlnet_pipeline_runs(tiny_sdxl):
    identitynet = ControlNetModel.from_pretrained(tiny_sdxl.identitynet)
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(tiny_sdxl.base, controlnet=identitynet)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(
        "a photo of a person",
        image=kps_image(64),
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="latent",
    ).images
    # The tiny VAE has 2 levels: latents are half the image size (the fixture's too).
    assert latents.shape == (1, 4, 32, 32)
    assert torch.isfinite(latents).all()


def test_diffusers_ip_adapter_loader_accepts_adapter(tiny_sdxl):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl.base)
    pipe.load_ip_adapter(
        str(tiny_sdxl.adapter.parent), subfolder="", weight_name=tiny_sdxl.adapter.name,
        image_encoder_folder=None,
    )  # fmt: skip
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(projection, IPAdapterPlusImageProjection)
    tokens = projection(torch.randn(1, 1, 512))
    assert tokens.shape == (1, 16, pipe.unet.config.cross_attention_dim)


def test_stock_sd15_controlnet_pipeline_runs(tiny_sd15):
    adapter = load_adapter(tiny_sd15.adapter)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd15.base, subfolder="unet")
    assert unet.config.addition_embed_type is None
    assert len(adapter["ip_adapter"]) == 2 * len(cross_attention_modules(unet))
    assert adapter["image_proj"]["proj_out.weight"].shape[0] == unet.config.cross_attention_dim

    identitynet = ControlNetModel.from_pretrained(tiny_sd15.identitynet)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(tiny_sd15.base, controlnet=identitynet)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(
        "a photo of a person",
        image=kps_image(64),
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="latent",
    ).images
    # The tiny VAE has 2 levels: latents are half the image size (the fixture's too).
    assert latents.shape == (1, 4, 32, 32)
    assert torch.isfinite(latents).all()


def all_tensors(paths):
    adapter = load_adapter(paths.adapter)
    tensors = {f"adapter/{part}/{k}": v for part in adapter for k, v in adapter[part].items()}
    for weights in [*paths.base.glob("*/*.safetensors"), *paths.identitynet.glob("*.safetensors")]:
        folder = weights.parent.name
        tensors.update({f"{folder}/{k}": v for k, v in load_file(weights).items()})
    return tensors


def test_same_seed_same_tensors(tmp_path, tiny_sdxl):
    torch.manual_seed(123)
    global_rng_before = torch.get_rng_state()
    first, again = all_tensors(tiny_sdxl), all_tensors(build_tiny_instantid(tmp_path / "again"))
    assert torch.equal(torch.get_rng_state(), global_rng_before)  # the builder forks the RNG
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)

    other_seed = all_tensors(build_tiny_instantid(tmp_path / "other", seed=1))
    assert not torch.equal(first["adapter/image_proj/latents"], other_seed["adapter/image_proj/latents"])
    assert not torch.equal(first["unet/conv_in.weight"], other_seed["unet/conv_in.weight"])


def test_fp16_build(tmp_path):
    paths = build_tiny_instantid(tmp_path, dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in all_tensors(paths).values())


def test_safetensors_adapter_variant(tmp_path, tiny_sdxl):
    adapter = load_adapter(tiny_sdxl.adapter)
    save_adapter_safetensors(adapter, tmp_path / "ip-adapter.safetensors")
    flat = load_file(tmp_path / "ip-adapter.safetensors")
    assert set(flat) == {f"{part}.{k}" for part in adapter for k in adapter[part]}
    assert torch.equal(flat["image_proj.latents"], adapter["image_proj"]["latents"])


def test_full_size_sdxl_on_meta_device():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**full_sdxl_unet_config())
        identitynet = ControlNetModel(**full_identitynet_config())
    assert len(unet.attn_processors) == 140
    released = released_adapter_shapes(unet)
    assert len(released["ip_adapter"]) == 140
    assert set(released["ip_adapter"]) == {f"{i}.to_{kv}_ip.weight" for i in range(1, 140, 2) for kv in "kv"}
    assert {released["ip_adapter"][f"{i}.to_k_ip.weight"][1] for i in range(1, 140, 2)} == {2048}
    assert {released["ip_adapter"][f"{i}.to_k_ip.weight"][0] for i in range(1, 140, 2)} == {640, 1280}
    image_proj = released["image_proj"]
    assert image_proj["proj_in.weight"] == (1280, 512)
    assert image_proj["proj_out.weight"] == (2048, 1280)
    assert image_proj["latents"] == (1, 16, 1280)
    assert image_proj["layers.3.0.to_kv.weight"] == (2560, 1280)
    assert image_proj["layers.3.1.1.weight"] == (5120, 1280)
    assert len(image_proj) == 7 + 4 * 11
    expected_identitynet = {
        "block_out_channels": (320, 640, 1280), "transformer_layers_per_block": (1, 2, 10),
        "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048, "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816, "conditioning_channels": 3,
        "conditioning_embedding_out_channels": (16, 32, 96, 256),
        "controlnet_conditioning_channel_order": "rgb", "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    }  # fmt: skip
    for key, value in expected_identitynet.items():
        got = identitynet.config[key]
        assert (tuple(got) if isinstance(got, list) else got) == value, key


def test_cached_build_is_reused(tmp_path):
    first = tiny_instantid_cached(embedding_dim=128, cache_dir=tmp_path)
    stamp = first.adapter.stat().st_mtime_ns
    again = tiny_instantid_cached(embedding_dim=128, cache_dir=tmp_path)
    assert again == first and again.adapter.stat().st_mtime_ns == stamp
    assert load_adapter(again.adapter)["image_proj"]["proj_in.weight"].shape == (128, 128)
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name]  # no staging left behind
