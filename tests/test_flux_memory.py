"""FLUX loading, LoRAs and memory profiles on the tiny family, on the CPU: each profile's output close to full
precision. Tolerances (max abs difference of the final packed latents; the reference's max abs is about 3):
offload profiles 1e-5 (the same computation, moved: measured 0 and 1e-6); int8 weights 0.1 and fp8 weights 0.3
(measured 0.055 and 0.22 on this family, 3 steps). Quality at full size is a GPU measurement (benchmarks/)."""

import numpy as np
import pytest
import torch

from instantid.errors import CheckpointError, UsageError

TOLERANCES = {"full": 0.0, "offload": 1e-5, "group-offload": 1e-5, "8bit": 0.1, "fp8": 0.3, "8bit-offload": 0.1}


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return vector / np.linalg.norm(vector)


def latents(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe("a portrait", image_embeds=unit(0), num_inference_steps=3, height=64, width=48,
                generator=torch.Generator("cpu").manual_seed(0), output_type="latent").images


@pytest.fixture(scope="module")
def reference(tiny_flux_paths):
    from instantid.pipelines.flux_loading import load_flux_pipeline

    return latents(load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter,
                                      device="cpu"))


@pytest.mark.parametrize("profile", list(TOLERANCES))
def test_memory_profile_close_to_full_precision(tiny_flux_paths, reference, profile):
    from instantid.pipelines.flux_loading import load_flux_pipeline

    pipe = load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter,
                              device="cpu", memory=profile)
    difference = float((latents(pipe) - reference).abs().max())
    print(f"{profile}: max abs latent difference {difference:.3g}")
    assert difference <= TOLERANCES[profile]
    if profile in ("8bit", "fp8"):
        assert difference > 0  # the weights really are stored in 8 bits


def test_vae_tiling_close(tiny_flux_paths):
    """VAE tiling (the switch for large outputs) on tiles smaller than the image: close to untiled."""
    from instantid.pipelines.flux_loading import load_flux_pipeline

    pipe = load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    call = dict(image_embeds=unit(0), num_inference_steps=2, height=128, width=96, output_type="np")
    plain = pipe("a portrait", generator=torch.Generator("cpu").manual_seed(0), **call).images
    pipe.vae.enable_tiling()
    pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = 64, 8  # the tiny VAE's own tile is 128 px
    tiled = pipe("a portrait", generator=torch.Generator("cpu").manual_seed(0), **call).images
    difference = np.abs(plain - tiled)
    print(f"vae tiling: pixel difference mean {difference.mean():.3g}, max {difference.max():.3g}")
    # Tiles are blended at their seams, but a random VAE's tiles disagree much more than a trained one's: the
    # mean is the documented tolerance (measured 0.03), the max (0.5, at seams) is not a quality measure.
    assert 0 < difference.mean() < 0.1


def test_lora_on_the_flux_transformer(tiny_flux_paths, reference, tmp_path):
    from instantid.pipelines.flux_loading import load_flux_pipeline
    from instantid.testing.tiny_flux import build_tiny_flux_lora

    lora = build_tiny_flux_lora(tiny_flux_paths.base, tmp_path / "lora.safetensors")
    pipe = load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter,
                              device="cpu", loras=[(str(lora), 1.0)])
    assert float((latents(pipe) - reference).abs().max()) > 1e-3
    with pytest.raises(CheckpointError, match="LoRA"):
        load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter, device="cpu",
                           loras=[(str(tiny_flux_paths.adapter), 1.0)])


def test_loading_refusals(tiny_flux_paths, tmp_path):
    from instantid.pipelines.flux_loading import load_flux_pipeline
    from instantid.testing.tiny import tiny_instantid_cached

    with pytest.raises(UsageError, match="unknown memory profile"):
        load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter, memory="tiny")
    sdxl = tiny_instantid_cached(cache_dir=tmp_path / "tiny")
    with pytest.raises(CheckpointError, match="not a FluxControlNetModel"):
        load_flux_pipeline(tiny_flux_paths.base, sdxl.identitynet, tiny_flux_paths.adapter, device="cpu")
    with pytest.raises(UsageError, match="variant"):
        load_flux_pipeline(tiny_flux_paths.base, tiny_flux_paths.identitynet, tiny_flux_paths.adapter, variant="v2")


def test_release_layout_folders(tiny_flux_paths, tmp_path):
    """A local copy of the Hub repo (infu_flux_v1.0/<variant>/...) loads by its root folder."""
    import shutil

    from instantid.pipelines.flux_loading import resolve_flux_identitynet, resolve_flux_projection

    root = tmp_path / "InfiniteYou"
    variant = root / "infu_flux_v1.0" / "sim_stage1"
    shutil.copytree(tiny_flux_paths.identitynet, variant / "InfuseNetModel")
    shutil.copy(tiny_flux_paths.adapter, variant / "image_proj_model.bin")
    assert resolve_flux_identitynet(str(root), "sim_stage1") == variant / "InfuseNetModel"
    assert resolve_flux_projection(str(root), "sim_stage1") == variant / "image_proj_model.bin"
    assert resolve_flux_identitynet(str(variant)) == variant / "InfuseNetModel"
