"""Training building blocks without a training run: adapter export round trip, buckets, crops, batch
order, checkpoint rotation, option checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instantid.models.adapter import (
    adapter_state_dict_from_unet,
    copy_adapter_into_unet_,
    load_adapter_state_dict,
    resampler_state_dict_to_diffusers,
    resampler_state_dict_to_released,
    save_adapter_state_dict,
)
from instantid.models.architectures import released_adapter_shapes
from instantid.testing.tiny import build_tiny_instantid, random_adapter_state_dict
from instantid.training.args import num_tokens, parse_args
from instantid.training.checkpoints import list_checkpoints, rotate_checkpoints
from instantid.training.data import BucketBatchSampler, make_buckets, nearest_bucket, plan_crop
from instantid.training.errors import TrainingConfigError
from test_training_helpers import one_torch_thread  # noqa: F401 (fixture)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from diffusers import ControlNetModel

    from instantid import StableDiffusionXLInstantIDPipeline

    paths = build_tiny_instantid(tmp_path_factory.mktemp("tiny"), embedding_dim=128)
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
        paths.base, controlnet=ControlNetModel.from_pretrained(paths.identitynet))
    return pipe


def _random_adapter(unet, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return random_adapter_state_dict(released_adapter_shapes(unet, embedding_dim=128, resampler_width=64))


def _assert_same(a, b):
    assert set(a) == set(b)
    for part in a:
        assert set(a[part]) == set(b[part]), part
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}/{key}"


# ---- released layout <-> diffusers --------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_adapter_export_round_trips_exactly_through_the_pipeline_loader(tiny_pipe, tmp_path, suffix):
    original = _random_adapter(tiny_pipe.unet, seed=1)
    tiny_pipe.load_ip_adapter_instantid(original)
    exported = adapter_state_dict_from_unet(tiny_pipe.unet)
    _assert_same(exported, original)  # every released key name and value comes back

    path = save_adapter_state_dict(exported, tmp_path / f"ip-adapter{suffix}")
    _assert_same(load_adapter_state_dict(path), original)
    tiny_pipe.load_ip_adapter_instantid(path)  # and diffusers' loader reads the file back
    _assert_same(adapter_state_dict_from_unet(tiny_pipe.unet), original)


def test_resampler_key_conversion_is_its_own_inverse(tiny_pipe):
    released = _random_adapter(tiny_pipe.unet, seed=2)["image_proj"]
    diffusers_names = resampler_state_dict_to_diffusers(released)
    assert "layers.0.attn.to_k.weight" in diffusers_names and "layers.0.0.to_kv.weight" not in diffusers_names
    back = resampler_state_dict_to_released(diffusers_names)
    assert set(back) == set(released) and all(torch.equal(back[k], released[k]) for k in released)


def test_copy_into_unet_keeps_the_parameter_objects(tiny_pipe):
    tiny_pipe.load_ip_adapter_instantid(_random_adapter(tiny_pipe.unet, seed=3))
    params_before = [id(p) for p in tiny_pipe.unet.encoder_hid_proj.parameters()]
    target = _random_adapter(tiny_pipe.unet, seed=4)
    copy_adapter_into_unet_(tiny_pipe.unet, target)
    assert [id(p) for p in tiny_pipe.unet.encoder_hid_proj.parameters()] == params_before
    _assert_same(adapter_state_dict_from_unet(tiny_pipe.unet), target)


# ---- buckets, crops, batch order ----------------------------------------------------------------

def test_buckets_cover_aspect_ratios_within_the_pixel_budget():
    buckets = make_buckets(1024, 64, 2.0)
    assert (1024, 1024) in buckets and (832, 1216) in buckets and (1216, 832) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 ** 2 and 0.5 <= w / h <= 2 for w, h in buckets)
    assert make_buckets(1024, 64, 1.0) == [(1024, 1024)]
    assert nearest_bucket(3000, 2000, buckets)[0] > nearest_bucket(3000, 2000, buckets)[1]
    assert nearest_bucket(500, 500, buckets) == (1024, 1024)


def test_crop_follows_the_face_and_stays_inside():
    tall = plan_crop((1000, 3000), (1024, 1024), face_centre=(500, 300))  # face near the top of a tall photo
    assert tall.resized == (1024, 3072) and tall.left == 0 and tall.top == 0
    low = plan_crop((1000, 3000), (1024, 1024), face_centre=(500, 2900))
    assert low.top == 3072 - 1024
    middle = plan_crop((1000, 3000), (1024, 1024), face_centre=(500, 1500))
    assert middle.top == 1536 - 512


def test_batches_are_deterministic_full_single_bucket_and_sharded():
    bucket_of = ["a"] * 5 + ["b"] * 3 + ["c"]
    sampler = BucketBatchSampler(bucket_of, batch_size=2, seed=7)
    epoch0 = sampler.all_batches(0)
    assert epoch0 == BucketBatchSampler(bucket_of, 2, seed=7).all_batches(0)
    assert epoch0 != sampler.all_batches(1)  # reshuffled per epoch
    assert all(len(b) == 2 and len({bucket_of[i] for i in b}) == 1 for b in epoch0)
    assert set(i for b in epoch0 for i in b) == set(range(9))  # nothing dropped
    shards = [BucketBatchSampler(bucket_of, 2, seed=7, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(epoch0 + epoch0[: len(epoch0) % 2]) // 2
    assert list(shards[0]) + list(shards[1]) != [] and list(shards[0])[0] != list(shards[1])[0]
    shards[0].set_epoch(0, skip=1)
    assert list(shards[0]) == sampler.all_batches(0)[0::2][1:]


# ---- checkpoints and options --------------------------------------------------------------------

def test_rotation_keeps_the_newest(tmp_path):
    for step in (5, 10, 15, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-notes").mkdir()
    removed = rotate_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["checkpoint-5", "checkpoint-10"]
    assert [step for step, _ in list_checkpoints(tmp_path)] == [15, 20]  # rotated once the newest is complete
    assert rotate_checkpoints(tmp_path, keep=None) == []


def test_a_checkpoint_still_being_written_is_never_the_latest(tmp_path):
    from instantid.training.checkpoints import partial_checkpoint_dir, resolve_resume

    (tmp_path / "checkpoint-4").mkdir()
    partial_checkpoint_dir(tmp_path / "checkpoint-8").mkdir()  # a run killed while saving step 8
    assert resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-4"


def _options(tmp_path, *extra):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "manifest.jsonl").touch()
    return ["--data_dir", str(data), "--output_dir", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize("extra, message", [
    (["--text_dropout", "1.5"], "--text_dropout is a probability"),
    (["--resampler_width", "100"], "multiple of 64"),
    (["--max_aspect_ratio", "0.5"], "--max_aspect_ratio must be >= 1"),
    (["--train_batch_size", "0"], "--train_batch_size must be > 0"),
    (["--resume_from_checkpoint", "/nowhere/checkpoint-3"], "is not a folder"),
    (["--validation_prompt", "a", "--validation_prompt", "b", "--validation_prompt", "c"], "--num_validation_items"),
])
def test_contradictory_options_are_refused_with_the_flag_named(tmp_path, extra, message):
    with pytest.raises(TrainingConfigError, match=message):
        parse_args(_options(tmp_path, *extra))


def test_missing_dataset_names_the_command_to_run(tmp_path):
    with pytest.raises(TrainingConfigError, match="instantid prepare-data"):
        parse_args(["--data_dir", str(tmp_path / "nothing"), "--output_dir", str(tmp_path)])


def test_default_options_train_what_the_released_pipeline_loads(tmp_path):
    """With no options, a fresh adapter on SDXL has the shapes of InstantX/InstantID's ip-adapter.bin
    (shared/reference/official-format.md) and is written under its name; one epoch is the default run."""
    from diffusers import UNet2DConditionModel

    from instantid.testing.architectures import full_sdxl_unet_config
    from instantid.training.checkpoints import ADAPTER_FILES
    from instantid.training.loop import StepPlan

    args = parse_args(_options(tmp_path))
    with torch.device("meta"):
        unet = UNet2DConditionModel(**full_sdxl_unet_config())
    shapes = released_adapter_shapes(unet, embedding_dim=512, resampler_width=args.resampler_width,
                                     num_tokens=num_tokens(args, "sdxl"))
    proj = shapes["image_proj"]
    assert proj["latents"] == (1, 16, 1280) and proj["proj_in.weight"] == (1280, 512)
    assert proj["proj_out.weight"] == (2048, 1280) and proj["layers.0.0.to_kv.weight"] == (2560, 1280)
    assert proj["layers.3.1.1.weight"] == (5120, 1280) and "layers.4.0.to_q.weight" not in proj
    assert shapes["ip_adapter"]["1.to_k_ip.weight"] == (640, 2048)  # the first cross-attention, 640 wide
    assert ADAPTER_FILES[args.adapter_format] == "ip-adapter.bin"
    plan = StepPlan.from_args(args, batches_per_epoch=7)
    assert plan.max_train_steps == 7 and plan.position(7) == (1, 0, 7)


def test_eight_bit_adam_without_bitsandbytes_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    with pytest.raises(TrainingConfigError, match="pip install bitsandbytes"):
        parse_args(_options(tmp_path, "--use_8bit_adam"))


def test_fresh_adapter_is_reproducible_and_starts_from_the_unets_keys(tiny_pipe):
    from instantid.models.architectures import cross_attention_modules
    from instantid.training.model import fresh_adapter_state_dict

    unet = tiny_pipe.unet
    first = fresh_adapter_state_dict(unet, 128, 64, 16, torch.Generator().manual_seed(0))
    _assert_same(first, fresh_adapter_state_dict(unet, 128, 64, 16, torch.Generator().manual_seed(0)))
    position, attn = next(iter(cross_attention_modules(unet).items()))
    assert torch.equal(first["ip_adapter"][f"{position}.to_k_ip.weight"], attn.to_k.weight)
    assert first["image_proj"]["proj_in.weight"].shape == (64, 128)
    assert np.isclose(float(first["image_proj"]["norm_out.weight"].mean()), 1.0)


def test_condition_dropout_uses_the_cfg_negatives():
    from instantid.training.conditioning import drop_conditions

    text = {"text_states": torch.ones(3, 4, 2), "pooled_text": torch.ones(3, 5)}
    empty = {"text_states": torch.zeros(1, 4, 2), "pooled_text": torch.zeros(1, 5)}
    faces = torch.ones(3, 8)
    dropped_text, dropped_faces = drop_conditions(text, faces, torch.tensor([True, False, False]),
                                                   torch.tensor([False, False, True]), empty)
    assert dropped_text["text_states"][0].abs().sum() == 0 and dropped_text["text_states"][1:].eq(1).all()
    assert dropped_text["pooled_text"][0].abs().sum() == 0
    assert dropped_faces[2].abs().sum() == 0 and dropped_faces[:2].eq(1).all()


@pytest.mark.parametrize("name", ["accelerate_1gpu", "accelerate_8gpu_ddp", "accelerate_8gpu_deepspeed_zero2"])
def test_shipped_accelerate_configs_parse(name):
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert config.mixed_precision == "bf16"
    assert config.num_processes == (1 if name == "accelerate_1gpu" else 8)
    if "deepspeed" in name:
        assert config.deepspeed_config["zero_stage"] == 2


def test_tensorboard_is_optional_and_gets_the_validation_images(caplog):
    from types import SimpleNamespace

    from PIL import Image

    from instantid.training import train as train_module
    from instantid.training.validate import log_images

    if not train_module.tensorboard_available():
        with caplog.at_level("WARNING"):
            assert train_module.tracker_name(SimpleNamespace(report_to="auto")) is None
        assert "pip install tensorboard" in caplog.text
    assert train_module.tracker_name(SimpleNamespace(report_to="none")) is None

    logged = []
    writer = SimpleNamespace(add_image=lambda tag, image, step, dataformats: logged.append((tag, image.shape, step)))
    accelerator = SimpleNamespace(trackers=[SimpleNamespace(name="tensorboard", writer=writer)])
    cases = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    log_images(accelerator, [Image.new("RGB", (8, 4))] * 2, cases, 7)
    assert logged == [("validation/00", (4, 8, 3), 7), ("validation/01", (4, 8, 3), 7)]
