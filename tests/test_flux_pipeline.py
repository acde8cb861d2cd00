"""The FLUX InstantID pipeline on the tiny random FLUX family: knobs, declared components, clear refusals."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.errors import CheckpointError, EmbeddingError, LimitError, UsageError


def unit(seed: int, dim: int = 512) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def latents(pipe, **kwargs):
    call = dict(prompt="a portrait", image_embeds=unit(0), num_inference_steps=3, height=64, width=48,
                generator=torch.Generator("cpu").manual_seed(0), output_type="latent")
    call.update(kwargs)
    return pipe(**call).images


def test_declared_components(tiny_flux_pipe):
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    from instantid.models.flux_identitynet import FluxIdentityNetModel, FluxIdentityTransformer2DModel

    pipe = tiny_flux_pipe
    assert isinstance(pipe.controlnet, FluxIdentityNetModel) and isinstance(pipe.controlnet, FluxControlNetModel)
    assert isinstance(pipe.transformer, FluxIdentityTransformer2DModel)
    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    # sizes read from the weights
    assert pipe.face_tokens(unit(0)).shape == (1, 8, pipe.controlnet.config.joint_attention_dim)


def test_no_control_image_is_a_black_one(tiny_flux_pipe):
    black = Image.new("RGB", (48, 64))
    assert torch.equal(latents(tiny_flux_pipe), latents(tiny_flux_pipe, control_image=black))


def test_knobs_change_the_output(tiny_flux_pipe):
    base = latents(tiny_flux_pipe)
    kps = np.zeros((64, 48, 3), np.uint8)
    kps[20:30, 10:20] = 255
    changed = {
        "face": latents(tiny_flux_pipe, image_embeds=unit(1)),
        "scale": latents(tiny_flux_pipe, controlnet_conditioning_scale=0.3),
        "window": latents(tiny_flux_pipe, control_guidance_end=0.5),
        "guidance": latents(tiny_flux_pipe, guidance_scale=5.0),
        "true_cfg": latents(tiny_flux_pipe, true_cfg_scale=3.0, negative_prompt="blurry"),
        "keypoints": latents(tiny_flux_pipe, control_image=Image.fromarray(kps)),
        "identitynet_guidance": latents(tiny_flux_pipe, identitynet_guidance=3.5),
    }
    for name, value in changed.items():
        assert (value - base).abs().max() > 1e-4, name
    assert torch.equal(base, latents(tiny_flux_pipe))  # same seed, same inputs, same output


def test_images_and_default_size(tiny_flux_pipe):
    images = tiny_flux_pipe("a portrait", image_embeds=unit(0), num_inference_steps=2,
                            control_image=Image.new("RGB", (100, 70)),
                            generator=torch.Generator("cpu").manual_seed(0)).images
    assert images[0].size == (96, 64)  # the control image's size in multiples of 16


@pytest.mark.parametrize("embedding, message", [
    (unit(0) * 25, "unit-norm"),  # antelopev2's raw embedding: InstantID SDXL's face path
    (unit(0, 128), "128-d face embeddings but the adapter takes 512-d"),
    (np.full(512, np.nan, np.float32), "NaN"),
])
def test_sdxl_face_path_embeddings_refused(tiny_flux_pipe, embedding, message):
    with pytest.raises(EmbeddingError, match=message):
        latents(tiny_flux_pipe, image_embeds=embedding)


def test_bad_call_arguments(tiny_flux_pipe):
    with pytest.raises(UsageError, match="multiple of 16"):
        latents(tiny_flux_pipe, width=56)
    with pytest.raises(UsageError, match="IP-Adapter"):
        latents(tiny_flux_pipe, ip_adapter_image_embeds=[torch.zeros(1, 1, 512)])
    with pytest.raises(LimitError, match="output cap for flux"):
        latents(tiny_flux_pipe, width=4096, height=4096)
    with pytest.raises(EmbeddingError, match="required"):
        latents(tiny_flux_pipe, image_embeds=None)


def test_checkpoints_of_the_other_family_refused(tiny_flux_pipe, tiny_flux_paths, tmp_path):
    from instantid.testing.tiny import tiny_instantid_cached
    from instantid.models.adapter import load_adapter_state_dict

    sdxl = tiny_instantid_cached(cache_dir=tmp_path / "tiny")
    with pytest.raises(CheckpointError, match="SDXL/SD1.5 InstantID face adapter"):
        tiny_flux_pipe.load_ip_adapter_instantid(sdxl.adapter)
    with pytest.raises(CheckpointError, match="InfiniteYou's FLUX face projection"):
        load_adapter_state_dict(tiny_flux_paths.adapter)
    assert tiny_flux_pipe.face_tokens(unit(0)).shape[1] == 8  # the loaded projection is untouched


def test_bad_projection_files_refused(tiny_flux_pipe, tiny_flux_paths, tmp_path):
    from instantid.testing.tiny_flux import random_resampler_state_dict

    wide = tmp_path / "wide.bin"
    torch.save({"image_proj": random_resampler_state_dict(output_dim=64)}, wide)
    with pytest.raises(CheckpointError, match="64-d tokens but this FLUX IdentityNet takes 32-d"):
        tiny_flux_pipe.load_ip_adapter_instantid(wide)

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps({"image_proj": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused to load"):
        tiny_flux_pipe.load_ip_adapter_instantid(evil)
    nan = tmp_path / "nan.bin"
    state = torch.load(tiny_flux_paths.adapter, weights_only=True)
    state["image_proj"]["proj_in.weight"][0, 0] = float("nan")
    torch.save(state, nan)
    with pytest.raises(CheckpointError, match="NaN"):
        tiny_flux_pipe.load_ip_adapter_instantid(nan)
    assert tiny_flux_pipe.face_tokens(unit(0)).shape[-1] == 32


def test_projection_required(tiny_flux_paths):
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline

    pipe = FluxInstantIDPipeline.from_pretrained(
        tiny_flux_paths.base, controlnet=FluxControlNetModel.from_pretrained(tiny_flux_paths.identitynet))
    with pytest.raises(CheckpointError, match="load_ip_adapter_instantid"):
        latents(pipe)
