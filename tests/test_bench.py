"""`instantid bench` on the tiny architecture: cases, stages, memory, ratios, speed options (fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instantid.bench.adapter_switch import face_adapter_detached
from instantid.bench.memory import PeakMemory
from instantid.bench.settings import BenchSettings
from instantid.pipelines.speed import SpeedOptions
from instantid.testing.stage_timer import StageTimer
from instantid.cli import main

TINY = ["--arch", "tiny", "--size", "64", "--steps", "2", "--runs", "1", "--warmup", "0", "--threads", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", *TINY, "--control-end", "1.0", "0.5", "--compare-without", "call-constant-reuse", "idle-step-skipping",
                 "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md")])
    return code, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_cases_stages_and_ratios(tiny_run):
    code, record, table = tiny_run
    assert code == 0
    cases = {c["name"]: c for c in record["cases"]}
    assert list(cases)[:3] == ["stock SDXL", "stock ControlNet, end 1", "InstantID, end 1"]
    # Two steps: the half window runs IdentityNet once when idle steps are skipped, twice when not.
    assert cases["stock ControlNet, end 0.5"]["controlnet_runs"] == 2
    assert cases["InstantID, end 0.5"]["controlnet_runs"] == 1
    assert cases["InstantID, end 0.5, without idle-step-skipping"]["controlnet_runs"] == 2
    ours = cases["InstantID, end 1"]
    assert set(ours["stage_median_s"]) == {"prompt_encoding", "face_projection", "unet", "controlnet", "vae_decode"}
    assert "face_projection" not in cases["stock ControlNet, end 1"]["stage_median_s"]
    assert ours["median_s"] > ours["stage_median_s"]["unet"] > 0
    assert ours["peak_rss_gib"] > 0.1 and not ours["nan_in_output"]
    assert "InstantID, end 0.5 / stock ControlNet, end 0.5" in record["ratios"]
    assert "InstantID, end 1 / InstantID, end 1, without call-constant-reuse (CPU time)" in record["ratios"]
    face = record["face_analysis"]
    assert face["backend"] == "dlib" and face["faces"] == 1 and face["cached_median_s"] < face["warm_median_s"]
    assert record["settings"]["width"] == 64 and record["environment"]["torch_threads"] == 1
    assert "| InstantID, end 0.5 | 1 |" in table and "Face analysis (dlib" in table


def test_speed_options_run(tmp_path):
    out = tmp_path / "options.json"
    assert main(["bench", *TINY, "--pipelines", "controlnet", "instantid", "--control-end", "1.0", "--attention",
                 "eager", "--channels-last", "--vae-tiling", "--vae-slicing", "--num-images", "2", "--offload",
                 "--no-face-stage", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["settings"]["options"]["attention"] == "eager" and record["face_analysis"] is None
    assert all(c["images"] == 2 and not c["nan_in_output"] for c in record["cases"])


def test_contradicting_settings_are_refused(capsys):
    assert main(["bench", "--arch", "tiny", "--control-end", "1.5"]) == 1
    assert "--control-end" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--arch sdxl"):
        BenchSettings(arch="tiny", random_weights=False)
    with pytest.raises(ValueError, match="attention"):
        SpeedOptions(attention="flash")


@pytest.fixture(scope="module")
def tiny_pipes():  # the compared pipelines, as the bench builds them
    from instantid.bench.pipelines import build_components, build_pipelines

    settings = BenchSettings(arch="tiny", pipelines=("controlnet", "instantid"))
    components = build_components(settings)
    return build_pipelines(components, settings)


def _stock_latents(pipe):
    from instantid.face.keypoints import draw_kps

    kps = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])
    return pipe("a person", image=draw_kps((64, 64), kps), num_inference_steps=2, output_type="latent",
                generator=torch.Generator().manual_seed(0)).images


def test_stock_runs_on_a_unet_without_the_adapter_and_it_comes_back():
    from diffusers import StableDiffusionXLControlNetPipeline

    from instantid.testing.random_sdxl import build_components
    from instantid.pipelines.sdxl import StableDiffusionXLInstantIDPipeline

    components = build_components("small", "cpu", torch.float32)
    stock = StableDiffusionXLControlNetPipeline(**components.sdxl_kwargs(), controlnet=components.controlnet)
    stock.set_progress_bar_config(disable=True)
    never_had_adapter = _stock_latents(stock)
    ours = StableDiffusionXLInstantIDPipeline(**components.sdxl_kwargs(), controlnet=components.controlnet)
    ours.load_ip_adapter_instantid(components.adapter_state_dict)
    unet = stock.unet
    processors, projection = dict(unet.attn_processors), unet.encoder_hid_proj
    with face_adapter_detached(unet):
        assert unet.encoder_hid_proj is None
        assert not any(hasattr(p, "to_k_ip") for p in unet.attn_processors.values())
        assert torch.equal(_stock_latents(stock), never_had_adapter)
    assert unet.encoder_hid_proj is projection and dict(unet.attn_processors) == processors


def test_peak_memory_and_stage_timer_hooks(tiny_pipes):
    memory = PeakMemory("cpu")
    memory.reset()
    block = np.ones(200 * 1024**2 // 8)  # 200 MiB, touched
    peak = memory.read()
    del block
    assert peak["peak_rss_gib"] - peak["rss_at_start_gib"] > 0.15
    pipe = tiny_pipes["instantid"]
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules())
    with StageTimer().attached(pipe):
        pass
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules()) == before
