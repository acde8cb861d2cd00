"""End to end on tiny random bases and real photos (dlib, 128-d): prepare-data, train, resume, generate.

One SDXL-shaped run (24 steps, checkpoints every 8, keep 2) is shared by most tests; an SD1.5-shaped
run goes through the `instantid train` command with cached features and gradient checkpointing; a
two-process run goes through torchrun (gloo on CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from instantid.cli import main as cli_main
from instantid.models.adapter import check_adapter_fits_unet, load_adapter_state_dict
from instantid.testing.tiny import build_tiny_instantid
from instantid.training import main as train_main
from instantid.training.checkpoints import list_checkpoints
from instantid.training.prepare import PrepareOptions, prepare_dataset
from test_training_helpers import PREPARE_MIN_SIZES, one_torch_thread, training_photos  # noqa: F401 (fixtures)

STEPS, EVERY, KEEP = 24, 8, 2
RESOLUTION = 32  # tiny VAE: 16x16 latents (the SD1.5 run uses 48: three aspect buckets)


def common_options(data, base, out, *extra, resolution=RESOLUTION):
    return ["--data_dir", str(data), "--output_dir", str(out), "--base", str(base), "--resolution", str(resolution),
            "--learning_rate", "1e-3", "--resampler_width", "64", "--report_to", "none", "--seed", "0", *extra]


def sdxl_options(data, base, out):
    return common_options(data, base, out, "--max_train_steps", str(STEPS), "--checkpointing_steps", str(EVERY),
                          "--checkpoints_total_limit", str(KEEP), "--validation_steps", str(STEPS),
                          "--validation_inference_steps", "2")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(training_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    report = prepare_dataset(training_photos, out, PrepareOptions(progress=False, **PREPARE_MIN_SIZES))
    assert report.usable == 16
    return out


@pytest.fixture(scope="module")
def sdxl_base(tmp_path_factory):
    return build_tiny_instantid(tmp_path_factory.mktemp("tiny-sdxl"), arch="sdxl", embedding_dim=128).base


@pytest.fixture(scope="module")
def sdxl_run(data, sdxl_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "sdxl"
    return out, train_main(sdxl_options(data, sdxl_base, out))


def _weights(folder):
    adapter = next(folder.glob("ip-adapter.*"))
    state = load_adapter_state_dict(adapter)
    flat = {f"{part}/{k}": v for part, tensors in state.items() for k, v in tensors.items()}
    flat.update({f"identitynet/{k}": v for k, v in
                 load_file(folder / "ControlNetModel" / "diffusion_pytorch_model.safetensors").items()})
    return flat


def test_loss_on_a_fixed_batch_falls(sdxl_run):
    _, result = sdxl_run
    assert result.global_step == STEPS and len(result.losses) == STEPS
    assert result.fixed_batch_loss_after < 0.95 * result.fixed_batch_loss_before, \
        (result.fixed_batch_loss_before, result.fixed_batch_loss_after)


def test_only_the_adapter_and_identitynet_change(sdxl_run, sdxl_base):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    _, result = sdxl_run
    pipe = result.components.pipe
    fresh = {
        "unet": UNet2DConditionModel.from_pretrained(sdxl_base, subfolder="unet"),
        "vae": AutoencoderKL.from_pretrained(sdxl_base, subfolder="vae"),
        "text_encoder": CLIPTextModel.from_pretrained(sdxl_base, subfolder="text_encoder"),
        "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(sdxl_base, subfolder="text_encoder_2"),
    }
    checked = 0
    for name, original in fresh.items():
        trained = dict(getattr(pipe, name).named_parameters())
        for key, tensor in original.state_dict().items():
            if key in trained or name != "unet":
                assert torch.equal(trained[key] if key in trained else getattr(pipe, name).state_dict()[key], tensor), \
                    f"frozen {name}.{key} changed"
                checked += 1
    assert checked > 500
    adapter_names = [k for k, p in pipe.unet.named_parameters() if k not in fresh["unet"].state_dict()]
    assert adapter_names and all(k.startswith("encoder_hid_proj.") or "_ip." in k for k in adapter_names)
    assert all(p.requires_grad for k, p in pipe.unet.named_parameters() if k in adapter_names)

    start = ControlNetModel.from_unet(fresh["unet"], conditioning_embedding_out_channels=(16, 32)).state_dict()
    changed = [k for k, v in pipe.controlnet.state_dict().items() if not torch.equal(v, start[k])]
    assert len(changed) == len(start), "every IdentityNet tensor trains"


def test_checkpoints_are_resumable_released_format_and_rotated(sdxl_run, sdxl_base):
    from diffusers import UNet2DConditionModel

    out, _ = sdxl_run
    assert [step for step, _ in list_checkpoints(out)] == [STEPS - EVERY, STEPS]
    unet = UNet2DConditionModel.from_pretrained(sdxl_base, subfolder="unet")
    for _, folder in list_checkpoints(out):
        raw = torch.load(folder / "ip-adapter.bin", weights_only=True)
        assert set(raw) == {"image_proj", "ip_adapter"} and "layers.0.0.to_kv.weight" in raw["image_proj"]
        assert check_adapter_fits_unet(raw, unet).embedding_dim == 128
        assert (folder / "ControlNetModel" / "config.json").is_file()
        assert (folder / "optimizer.bin").is_file() and (folder / "random_states_0.pkl").is_file()
        assert not list(folder.glob("model*.safetensors")), "the frozen base must not be copied into checkpoints"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["embedding_dim"] == 128 and summary["face_backend"] == "dlib"
    assert len(list((out / "validation" / f"step-{STEPS:06d}").glob("*.png"))) == 2


def test_resuming_gives_the_weights_of_an_uninterrupted_run(sdxl_run, data, sdxl_base, tmp_path):
    out, full = sdxl_run
    resumed_out = tmp_path / "resumed"
    shutil.copytree(out / f"checkpoint-{STEPS - EVERY}", resumed_out / f"checkpoint-{STEPS - EVERY}")
    # The loss record of a run killed mid-line two steps after that checkpoint:
    lines = (out / "losses.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == STEPS
    (resumed_out / "losses.jsonl").write_text("".join(lines[:STEPS - EVERY + 2]) + lines[STEPS - EVERY + 2][:9])
    resumed = train_main(sdxl_options(data, sdxl_base, resumed_out) + ["--resume_from_checkpoint", "latest"])
    assert resumed.global_step == STEPS
    np.testing.assert_allclose(resumed.losses, full.losses[-EVERY:], rtol=0, atol=1e-6)
    # The summary covers the whole run, across the kill and the resume.
    summary = json.loads((resumed_out / "training_summary.json").read_text())
    assert summary["steps_logged"] == STEPS and summary["first_logged_step"] == 1
    np.testing.assert_allclose(summary["losses"], full.losses, rtol=0, atol=1e-6)
    expected, got = _weights(out), _weights(resumed_out)
    assert expected.keys() == got.keys()
    worst = max(float((expected[k].float() - got[k].float()).abs().max()) for k in expected)
    assert worst <= 1e-6, f"resumed weights differ by {worst}"


def test_trained_weights_load_in_the_pipeline_and_generate(sdxl_run, sdxl_base, training_photos, dlib_analyzer):
    from instantid import generate_from_photos, load_pipeline

    out, _ = sdxl_run
    pipe = load_pipeline(sdxl_base, out / "ControlNetModel", out / "ip-adapter.bin", device="cpu")
    assert pipe.face_embedding_dim == 128
    output = generate_from_photos(pipe, [training_photos / "grace_hopper_plain.jpg"], "a portrait",
                                  analyzer=dlib_analyzer, width=64, height=64, num_inference_steps=2,
                                  generator=torch.Generator().manual_seed(0), output_type="np")
    image = output.images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all() and image.std() > 0


def test_generate_command_reads_the_trained_weights(sdxl_run, sdxl_base, training_photos, tmp_path):
    out, _ = sdxl_run
    target = tmp_path / "out.png"
    code = cli_main(["generate", "--base", str(sdxl_base), "--identitynet", str(out / "ControlNetModel"),
                     "--adapter", str(out / "ip-adapter.bin"), "--face-backend", "dlib",
                     "--face", str(training_photos / "astronaut_plain.jpg"), "--prompt", "an astronaut", "--steps", "2",
                     "--width", "64", "--height", "64", "--out", str(target)])
    assert code == 0 and target.is_file()


def test_sd15_base_trains_from_the_command_line_with_cached_features(data, training_photos, tmp_path, dlib_analyzer):
    from diffusers import ControlNetModel

    from instantid import StableDiffusionInstantIDPipeline, generate_from_photos

    base = build_tiny_instantid(tmp_path / "tiny-sd15", arch="sd15", embedding_dim=128).base
    out = tmp_path / "sd15"
    code = cli_main(["train", *common_options(data, base, out, "--max_train_steps", "10", "--checkpointing_steps",
                                              "100", "--validation_steps", "10", "--validation_inference_steps", "2",
                                              "--validation_image", str(training_photos / "tom_hanks_plain.jpg"),
                                              "--validation_prompt", "a man, watercolor", "--cache_latents",
                                              "--cache_text_embeddings", "--gradient_checkpointing",
                                              "--adapter_format", "safetensors", "--text_dropout", "0.2",
                                              resolution=48)])
    assert code == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["fixed_batch_loss_after"] < summary["fixed_batch_loss_before"]
    assert len(list((out / "cache").rglob("*.pt"))) == 2 * 16
    assert [step for step, _ in list_checkpoints(out)] == [10]  # the end of training always checkpoints
    assert len(list((out / "validation" / "step-000010").glob("*-tom_hanks_plain.png"))) == 1

    pipe = StableDiffusionInstantIDPipeline.from_pretrained(
        base, controlnet=ControlNetModel.from_pretrained(out / "ControlNetModel"), safety_checker=None)
    pipe.load_ip_adapter_instantid(out / "ip-adapter.safetensors")
    output = generate_from_photos(pipe, [training_photos / "tom_hanks_plain.jpg"], "a man", analyzer=dlib_analyzer,
                                     width=64, height=64, num_inference_steps=2, output_type="np",
                                     generator=torch.Generator().manual_seed(0))
    assert np.isfinite(output.images[0]).all()


def test_fine_tuning_starts_from_the_given_weights(sdxl_run, data, sdxl_base, tmp_path):
    out, first = sdxl_run
    tuned = train_main(common_options(data, sdxl_base, tmp_path / "tuned", "--max_train_steps", "2",
                                      "--checkpointing_steps", "100", "--validation_steps", "0",
                                      "--identitynet", str(out / "ControlNetModel"),
                                      "--adapter", str(out / "ip-adapter.bin")))
    # same weights, batch and noise draws as where the first run ended
    assert tuned.fixed_batch_loss_before == pytest.approx(first.fixed_batch_loss_after, abs=1e-6)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one precision per process; a run with another one needs its state reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_mixed_precision_keeps_trained_weights_and_the_sdxl_vae_in_fp32(data, sdxl_base, tmp_path):
    result = train_main(common_options(data, sdxl_base, tmp_path / "bf16", "--max_train_steps", "2",
                                       "--mixed_precision", "bf16", "--checkpointing_steps", "100",
                                       "--validation_steps", "2", "--validation_inference_steps", "1"))
    pipe = result.components.pipe
    trained = {id(p) for p in result.components.model.parameters() if p.requires_grad}
    assert {p.dtype for p in pipe.unet.parameters() if id(p) not in trained} == {torch.bfloat16}
    assert {p.dtype for p in result.components.model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}
    assert {p.dtype for p in pipe.text_encoder_2.parameters()} == {torch.bfloat16}
    assert np.isfinite(result.losses).all() and result.fixed_batch_loss_after is not None


def test_an_adapter_for_another_embedding_size_is_refused(data, sdxl_base, tmp_path):
    from instantid.training.errors import TrainingConfigError

    released_like = build_tiny_instantid(tmp_path / "tiny512", embedding_dim=512).adapter
    with pytest.raises(TrainingConfigError, match="the dataset has 128-d face embeddings but the adapter takes 512-d"):
        train_main(common_options(data, sdxl_base, tmp_path / "x", "--max_train_steps", "1", "--adapter",
                                  str(released_like)))


def test_512d_antelopev2_data_trains_and_generates(training_photos, sdxl_base, tmp_path):
    """The released embedding size, with the fake antelopev2 pack from shared/ (plumbing, not accuracy)."""
    from instantid import generate_from_photos, get_face_analyzer, load_pipeline
    from shared_fixtures import SHARED

    pack = SHARED / "fixtures" / "fake-antelopev2"
    if not (pack / "models" / "antelopev2" / "glintr100.onnx").is_file():
        pytest.skip(f"fake antelopev2 pack not found at {pack}: it comes from the project's shared/ folder")
    data = tmp_path / "data512"
    report = prepare_dataset(training_photos, data, PrepareOptions(backend="antelopev2", face_models=str(pack),
                                                          progress=False, **PREPARE_MIN_SIZES))
    assert report.usable >= 8 and report.embedding_dim == 512
    out = tmp_path / "run512"
    result = train_main(common_options(data, sdxl_base, out, "--max_train_steps", "4", "--checkpointing_steps", "100",
                                       "--validation_steps", "0"))
    assert result.global_step == 4
    pipe = load_pipeline(sdxl_base, out / "ControlNetModel", out / "ip-adapter.bin", device="cpu")
    assert pipe.face_embedding_dim == 512
    output = generate_from_photos(pipe, [training_photos / "astronaut_plain.jpg"], "an astronaut",
                                     analyzer=get_face_analyzer("antelopev2", model_dir=pack), width=64, height=64,
                                     num_inference_steps=2, output_type="np")
    assert np.isfinite(output.images[0]).all()


# slow: two training processes through torchrun (integration); the in-process runs above are the quick checks
@pytest.mark.slow
def test_two_processes_train_together(data, sdxl_base, tmp_path):
    """Distributed data parallel on CPU (gloo) through torchrun: each process gets its own batches."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "instantid", "train", *common_options(data, sdxl_base, out, "--max_train_steps", "4",
                                                           "--checkpointing_steps", "100", "--validation_steps", "0")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 4 and summary["num_processes"] == 2
    assert (out / "ip-adapter.bin").is_file() and (out / "ControlNetModel" / "config.json").is_file()
