"""`instantid train --family flux` end to end on the tiny random FLUX family and real photos (dlib, 128-d):
prepare-data -> train (a few steps) -> InfiniteYou's layout -> our FLUX pipeline and generate; frozen base
files bit-identical; SIGKILL + resume = the uninterrupted run; with and without the adapter branch; the
licence-clean route (dlib + a schnell-shaped base without guidance embedding).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from instantid.testing.tiny_flux import build_tiny_flux
from instantid.training import main as train_main
from instantid.training.checkpoints import list_checkpoints
from instantid.training.prepare import PrepareOptions, prepare_dataset
from test_training_helpers import PREPARE_MIN_SIZES, one_torch_thread, training_photos  # noqa: F401 (fixtures)

STEPS, EVERY = 6, 2
RESOLUTION = 64  # tiny FLUX VAE (8x) + 2x2 packing: 4x4 image tokens
BRANCHES = {"identitynet": [], "adapter_branch": ["--adapter_branch"]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def flux_options(data, base, out, *extra, steps=STEPS):
    return ["--family", "flux", "--data_dir", str(data), "--output_dir", str(out), "--base", str(base),
            "--resolution", str(RESOLUTION), "--learning_rate", "1e-3", "--resampler_width", "64",
            "--report_to", "none", "--seed", "0", "--train_batch_size", "2", "--max_train_steps", str(steps),
            "--checkpointing_steps", str(EVERY), "--validation_steps", "0", *extra]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(training_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    assert prepare_dataset(training_photos, out, PrepareOptions(progress=False, **PREPARE_MIN_SIZES)).usable == 16
    return out


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    paths = build_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))
    return paths, tree_digest(paths.base)


@pytest.fixture(scope="module", params=sorted(BRANCHES))
def flux_run(request, data, flux, tmp_path_factory):
    paths, _ = flux
    out = tmp_path_factory.mktemp("run") / request.param
    extra = [*BRANCHES[request.param], "--validation_steps", str(STEPS), "--validation_inference_steps", "2"]
    return request.param, out, train_main(flux_options(data, paths.base, out, *extra))


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    raw = torch.load(folder / "image_proj_model.bin", weights_only=True)
    flat = {f"{part}/{k}": v for part, tensors in raw.items() for k, v in tensors.items()}
    for shard in sorted((folder / "InfuseNetModel").glob("*.safetensors")):
        flat.update({f"identitynet/{k}": v for k, v in load_file(shard).items()})
    return flat


def test_flux_training_learns_and_leaves_the_base_untouched(flux_run, flux):
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    paths, digest = flux
    branch, out, result = flux_run
    assert result.global_step == STEPS and len(result.losses) == STEPS and np.isfinite(result.losses).all()
    assert result.fixed_batch_loss_after < result.fixed_batch_loss_before, \
        (result.fixed_batch_loss_before, result.fixed_batch_loss_after)
    assert tree_digest(paths.base) == digest, "training wrote into the frozen base folder"
    pipe = result.components.pipe
    fresh = {"transformer": FluxTransformer2DModel.from_pretrained(paths.base, subfolder="transformer"),
             "vae": AutoencoderKL.from_pretrained(paths.base, subfolder="vae")}
    for name, original in fresh.items():
        trained = getattr(pipe, name).state_dict()
        for key, tensor in original.state_dict().items():
            assert torch.equal(trained[key], tensor), f"frozen {name}.{key} changed"
    branch_keys = [k for k in pipe.transformer.state_dict() if k not in fresh["transformer"].state_dict()]
    assert bool(branch_keys) == (branch == "adapter_branch")
    assert all("_ip." in k for k in branch_keys)


def test_checkpoints_are_in_infiniteyous_layout(flux_run, flux):
    paths, _ = flux
    branch, out, _ = flux_run
    assert [step for step, _ in list_checkpoints(out)] == list(range(EVERY, STEPS + 1, EVERY))
    released = torch.load(paths.adapter, weights_only=True)["image_proj"]
    for folder in [out, *(f for _, f in list_checkpoints(out))]:
        config = json.loads((folder / "InfuseNetModel" / "config.json").read_text())
        assert config["_class_name"] == "FluxControlNetModel" and config["joint_attention_dim"] == 32
        raw = torch.load(folder / "image_proj_model.bin", weights_only=True)
        assert set(raw) == ({"image_proj", "ip_adapter"} if branch == "adapter_branch" else {"image_proj"})
        image_proj = raw["image_proj"]
        # InfiniteYou's loader reads raw["image_proj"] into its Resampler: the released keys, 8 tokens
        assert set(image_proj) == set(released) and image_proj["latents"].shape == (1, 8, 64)
        assert image_proj["proj_in.weight"].shape == (64, 128)
        assert not list(folder.glob("*.safetensors")) or folder == out
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["embedding_dim"] == 128 and summary["face_backend"] == "dlib"
    assert len(list((out / "validation" / f"step-{STEPS:06d}").glob("*.png"))) == 2


def _tokens_change_output(pipe, embedding):
    kwargs = dict(prompt="a photo", width=64, height=64, num_inference_steps=2, output_type="latent")
    first = pipe(image_embeds=embedding, generator=torch.Generator().manual_seed(0), **kwargs).images
    other = pipe(image_embeds=-embedding, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert torch.isfinite(first).all()
    return float((first - other).abs().max())


def test_the_checkpoint_loads_in_our_flux_pipeline_and_generates(flux_run, flux, data):
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline
    from instantid.models.flux_face_adapter import has_face_adapter

    paths, _ = flux
    branch, out, _ = flux_run
    pipe = FluxInstantIDPipeline.from_pretrained(
        paths.base, controlnet=FluxControlNetModel.from_pretrained(out / "InfuseNetModel"))
    pipe.load_ip_adapter_instantid(out / "image_proj_model.bin")
    pipe.set_progress_bar_config(disable=True)
    assert has_face_adapter(pipe.transformer) == (branch == "adapter_branch")
    embedding = np.load(next((data / "embeddings").rglob("*.npy"))).astype(np.float32)
    embedding /= np.linalg.norm(embedding)  # the FLUX face path is unit-norm; training normalises dlib's too
    assert _tokens_change_output(pipe, embedding) > 0
    if branch == "adapter_branch":  # the branch alone (IdentityNet off) still carries the face
        assert _tokens_change_output(pipe, embedding) > 0
        image = pipe(prompt="a photo", image_embeds=embedding, width=64, height=64, num_inference_steps=2,
                     controlnet_conditioning_scale=0.0, generator=torch.Generator().manual_seed(0),
                     output_type="np").images[0]
        assert np.isfinite(image).all()
    pipe.unload_ip_adapter_instantid()
    assert not has_face_adapter(pipe.transformer)


def test_generate_command_reads_the_flux_checkpoint(flux_run, flux, training_photos, tmp_path):
    from instantid.cli import main as cli_main

    paths, _ = flux
    branch, out, _ = flux_run
    target = tmp_path / "out.png"
    code = cli_main(["generate", "--family", "flux", "--base", str(paths.base), "--identitynet",
                     str(out / "InfuseNetModel"), "--adapter", str(out / "image_proj_model.bin"), "--face-backend",
                     "dlib", "--face", str(training_photos / "astronaut_plain.jpg"), "--prompt", "an astronaut",
                     "--steps", "2", "--width", "64", "--height", "64", "--out", str(target)])
    assert code == 0 and target.is_file()


def _train_process(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "instantid", "train", *args, "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _logged_steps(out: Path) -> int:
    try:
        return sum(1 for line in (out / "losses.jsonl").read_text().splitlines() if line.endswith("}"))
    except FileNotFoundError:
        return 0


# slow: two training subprocesses, one SIGKILLed (integration); test_training_run's in-process resume is the
# quick check of resuming
@pytest.mark.slow
def test_sigkill_and_resume_equal_the_uninterrupted_run(flux_run, flux, data, tmp_path):
    paths, _ = flux
    branch, full_out, full = flux_run
    out = tmp_path / "killed"
    options = flux_options(data, paths.base, out, *BRANCHES[branch])
    process = _train_process(options)
    deadline = time.monotonic() + 600
    # step 3's loss is logged after checkpoint-2 is complete; kill mid-run, before the end
    while _logged_steps(out) < EVERY + 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[0][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert [step for step, _ in list_checkpoints(out)][-1] < STEPS
    resumed = _train_process([*options, "--resume_from_checkpoint", "latest"])
    log = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, log[-3000:]

    losses = {json.loads(line)["step"]: json.loads(line)["loss"] for line in
              (out / "losses.jsonl").read_text().splitlines() if line.endswith("}")}
    assert sorted(losses) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([losses[s] for s in range(1, STEPS + 1)], full.losses, rtol=0, atol=1e-6)
    expected, got = saved_weights(full_out), saved_weights(out)
    assert set(expected) == set(got)
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) == 0.0


def schnell_like_base(paths, folder: Path) -> Path:
    """The tiny base as FLUX.1-schnell is shaped: no guidance embedding, schnell's static-shift scheduler."""
    from diffusers import FluxTransformer2DModel

    base = folder / "schnell-base"
    shutil.copytree(paths.base, base)
    config = dict(FluxTransformer2DModel.load_config(base / "transformer"))
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        transformer = FluxTransformer2DModel(**{**config, "guidance_embeds": False})
    shutil.rmtree(base / "transformer")
    transformer.save_pretrained(base / "transformer")
    scheduler = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    scheduler.update(shift=1.0, use_dynamic_shifting=False)
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    return base


def test_licence_clean_route_dlib_and_a_schnell_shaped_base(flux, data, training_photos, tmp_path, dlib_analyzer):
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline
    from instantid.cli import main as cli_main
    from instantid.face import get_reference_face

    paths, _ = flux
    base = schnell_like_base(paths, tmp_path)
    out = tmp_path / "clean"
    code = cli_main(["train", *flux_options(data, base, out, "--adapter_branch", steps=4)])
    assert code == 0
    assert json.loads((out / "InfuseNetModel" / "config.json").read_text())["guidance_embeds"] is False
    pipe = FluxInstantIDPipeline.from_pretrained(base, controlnet=FluxControlNetModel.from_pretrained(
        out / "InfuseNetModel"))
    pipe.load_ip_adapter_instantid(out / "image_proj_model.bin")
    pipe.set_progress_bar_config(disable=True)
    face = get_reference_face(training_photos / "grace_hopper_plain.jpg", analyzer=dlib_analyzer)
    embedding = face.embedding / np.linalg.norm(face.embedding)
    image = pipe(prompt="a portrait", image_embeds=embedding, width=64, height=64, num_inference_steps=4,
                 guidance_scale=0.0, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_flux_options_are_refused_clearly(data, flux, tmp_path):
    from instantid.training.errors import TrainingConfigError

    paths, _ = flux
    with pytest.raises(TrainingConfigError, match="--family sdxl, but .* is a flux base"):
        train_main([*flux_options(data, paths.base, tmp_path / "a"), "--family", "sdxl"])
    with pytest.raises(TrainingConfigError, match="adapter_branch is the FLUX"):
        train_main([*flux_options(data, paths.base, tmp_path / "b"), "--family", "sdxl", "--adapter_branch"])
    with pytest.raises(TrainingConfigError, match="--identitynet_layers must be > 0"):
        train_main([*flux_options(data, paths.base, tmp_path / "c"), "--identitynet_layers", "0"])


def test_infiniteyou_face_path_fine_tunes_the_released_layout(training_photos, flux, tmp_path, fake_arcface,
                                                              monkeypatch):
    """InfiniteYou's own face path (antelopev2 detection + unit-norm ArcFace, 512-d; fake packs: plumbing, not
    accuracy), fine-tuning release-shaped InfuseNetModel/ + image_proj_model.bin."""
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline
    from shared_fixtures import SHARED

    pack = SHARED / "fixtures" / "fake-antelopev2"
    if not (pack / "models" / "antelopev2" / "glintr100.onnx").is_file():
        pytest.skip(f"fake antelopev2 pack not found at {pack}: it comes from the project's shared/ folder")
    monkeypatch.setenv("INSTANTID_ARCFACE", str(fake_arcface))
    paths, _ = flux
    data = tmp_path / "data-iy"
    report = prepare_dataset(training_photos, data, PrepareOptions(backend="infiniteyou", face_models=str(pack),
                                                                   progress=False, **PREPARE_MIN_SIZES))
    assert report.usable >= 8 and report.embedding_dim == 512
    embedding = np.load(next((data / "embeddings").rglob("*.npy")))
    assert abs(float(np.linalg.norm(embedding)) - 1) < 1e-3  # InfiniteYou's unit-norm ArcFace vector
    out = tmp_path / "ft"
    result = train_main(flux_options(data, paths.base, out, "--identitynet", str(paths.identitynet), "--adapter",
                                     str(paths.adapter), steps=2))
    assert result.global_step == 2
    released = torch.load(paths.adapter, weights_only=True)["image_proj"]
    tuned = torch.load(out / "image_proj_model.bin", weights_only=True)["image_proj"]
    assert set(tuned) == set(released) and not torch.equal(tuned["proj_in.weight"], released["proj_in.weight"])
    pipe = FluxInstantIDPipeline.from_pretrained(paths.base, controlnet=FluxControlNetModel.from_pretrained(
        out / "InfuseNetModel"))
    pipe.load_ip_adapter_instantid(out / "image_proj_model.bin")
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt="a portrait", image_embeds=embedding, width=64, height=64, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert np.isfinite(image).all()


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one precision per process; a run with another one needs its state reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_bf16_with_caches_checkpointing_and_logit_normal_sampling(data, flux, tmp_path):
    paths, _ = flux
    result = train_main(flux_options(data, paths.base, tmp_path / "bf16", "--adapter_branch", "--mixed_precision",
                                     "bf16", "--gradient_checkpointing", "--cache_latents", "--cache_text_embeddings",
                                     "--weighting_scheme", "logit_normal", "--validation_steps", "2",
                                     "--validation_inference_steps", "1", steps=2))
    components = result.components
    trained = {id(p) for p in components.model.parameters() if p.requires_grad}
    assert {p.dtype for p in components.transformer.parameters() if id(p) not in trained} == {torch.bfloat16}
    assert {p.dtype for p in components.vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in components.model.parameters() if p.requires_grad} == {torch.float32}
    assert len(list((tmp_path / "bf16" / "cache").rglob("*.pt"))) == 2 * 16
    assert np.isfinite(result.losses).all() and result.fixed_batch_loss_after is not None
