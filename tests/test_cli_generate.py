"""`instantid generate` end to end: tiny random weights with real photos, and clear failures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from instantid.cli import main


@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    # One tiny build for the module, in a temporary cache (not the user's ~/.cache).
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_tiny_generate_writes_png_with_metadata(photos, tiny_cache, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["generate", "--tiny", "--face", str(photos["astronaut"]), "--prompt", "a test portrait",
                 "--seed", "3", "--steps", "2", "--out", str(out)])
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = Image.open(out)
    assert image.size == (128, 128)
    params = json.loads(image.text["parameters"])
    assert params["prompt"] == "a test portrait" and params["seed"] == 3 and params["num_inference_steps"] == 2
    assert params["face_backend"] == "dlib" and params["tiny"] is True
    # Same seed, same inputs: same image.
    again = tmp_path / "again.png"
    assert main(["generate", "--tiny", "--face", str(photos["astronaut"]), "--prompt", "a test portrait",
                 "--seed", "3", "--steps", "2", "--out", str(again)]) == 0
    assert Image.open(again).tobytes() == image.tobytes()


def test_several_faces_pose_and_images(photos, tiny_cache, tmp_path, capsys):
    outdir = tmp_path / "many/"
    code = main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--face", str(photos["tom_hanks"]),
                 "--pose", str(photos["astronaut"]), "--prompt", "x", "--steps", "1", "--num-images", "2",
                 "--width", "64", "--height", "128", "--out", str(outdir) + "/"])
    assert code == 0
    written = sorted(outdir.glob("*.png"))
    assert len(written) == 2 and all(Image.open(p).size == (64, 128) for p in written)


@pytest.mark.slow
def test_in_a_pipe_one_line_per_stage_and_no_progress_bars(photos, tiny_cache, tmp_path):
    """Logs and pipes get no progress bars (no carriage returns, no escape codes): one line per long stage."""
    out = tmp_path / "piped.png"
    done = subprocess.run([sys.executable, "-m", "instantid", "generate", "--tiny", "--face", str(photos["astronaut"]),
                           "--prompt", "x", "--steps", "3", "--face-detail", "on", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    # the detail pass runs on a derived (from_pipe) pipeline: it must keep the no-bars choice too
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr and "%|" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.count("loading models ...") == 1 and done.stderr.count("generating ...") == 1, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"wrote {out}"


def test_photo_without_face_is_a_clear_error(tiny_cache, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 160, 200)).save(blank)
    assert main(["generate", "--tiny", "--face", str(blank), "--prompt", "x", "--out", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable face") and "blank.png" in err


def test_without_tiny_and_offline_fails_fast_with_what_to_download(photos, monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(["generate", "--face", str(photos["astronaut"]), "--face-backend", "dlib", "--prompt", "x",
                 "--out", str(tmp_path / "o.png")])
    assert code == 1
    err = capsys.readouterr().err
    assert "InstantX/InstantID" in err and "hf download" in err


def test_antelopev2_missing_is_reported_before_any_model_loads(photos, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("INSTANTID_FACE_MODELS", raising=False)
    code = main(["generate", "--face", str(photos["astronaut"]), "--face-models", str(tmp_path / "none"),
                 "--prompt", "x", "--out", str(tmp_path / "o.png")])
    assert code == 1
    assert "antelopev2" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "0", "between"), ("--adapter-scale", "abc", "number"), ("--control-end", "1.5", "between")])
def test_out_of_range_values_are_refused(flag, value, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["generate", "--tiny", "--face", "x.jpg", "--prompt", "x", flag, value, "--out", str(tmp_path / "o.png")])
    assert message in capsys.readouterr().err


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "example:" in capsys.readouterr().out


def test_tiny_with_canny_lora_style_and_weighted_prompt(photos, tiny_cache, tmp_path, capsys):
    from instantid.testing.tiny import build_tiny_lora, tiny_instantid_cached

    lora = build_tiny_lora(tiny_instantid_cached(embedding_dim=128).base, tmp_path / "style.safetensors")
    out = tmp_path / "styled.png"
    code = main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "a (scientist:1.3)",
                 "--prompt-weighting", "--style", "film-noir", "--canny", str(photos["astronaut"]),
                 "--lora", f"{lora}:0.6", "--steps", "1", "--out", str(out)])
    assert code == 0
    params = json.loads(Image.open(out).text["parameters"])
    assert params["style"] == "film-noir" and params["prompt"].startswith("film noir still of a (scientist:1.3)")
    assert params["loras"] == [[str(lora), 0.6]] and params["control_scales"] == [0.3]


def test_bad_lora_file_is_a_clear_error(photos, tiny_cache, tmp_path, capsys):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    code = main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "x",
                 "--lora", str(bogus), "--out", str(tmp_path / "o.png")])
    assert code == 1 and "could not be loaded as a LoRA" in capsys.readouterr().err


def test_interpolation_series_and_contact_sheet(photos, tiny_cache, tmp_path, capsys):
    out = tmp_path / "mix.png"
    code = main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--interpolate", str(photos["tom_hanks"]),
                 "--weights", "0,0.5,1", "--prompt", "x", "--steps", "1", "--out", str(out)])
    assert code == 0
    written = {p.name for p in tmp_path.glob("mix_*.png")}
    assert written == {"mix_w0.00.png", "mix_w0.50.png", "mix_w1.00.png", "mix_sheet.png"}
    ends = [np.asarray(Image.open(tmp_path / f"mix_w{w}.png")) for w in ("0.00", "1.00")]
    assert (ends[0] != ends[1]).any()
    assert json.loads(Image.open(tmp_path / "mix_w0.50.png").text["parameters"])["variant"] == "w0.50"


def test_head_pose_series(photos, tiny_cache, tmp_path, capsys):
    code = main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--yaw=-20,20", "--prompt", "x",
                 "--steps", "1", "--out", str(tmp_path / "pose.png")])
    assert code == 0
    assert {p.name for p in tmp_path.glob("pose_*.png")} == {"pose_yaw-20.png", "pose_yaw+20.png", "pose_sheet.png"}


def test_explicit_keypoints_reach_identitynet(photos, tiny_cache, tmp_path, capsys, monkeypatch):
    from instantid.face.keypoints import draw_kps

    calls = spy_on_pipeline_calls(monkeypatch)
    numbers = [30, 40, 90, 40, 60, 70, 38, 95, 82, 95]
    out = tmp_path / "kps.png"
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", ",".join(map(str, numbers)),
                 "--prompt", "x", "--steps", "1", "--out", str(out)]) == 0
    (call,) = calls
    expected = np.asarray(draw_kps((128, 128), np.reshape(numbers, (5, 2))))
    assert np.array_equal(np.asarray(call["image"]), expected)  # what IdentityNet was conditioned on
    params = json.loads(Image.open(out).text["parameters"])
    assert params["width"] == 128 and params["kps"] == np.reshape(numbers, (5, 2)).tolist()
    # without --kps the photo's keypoints are used: a different condition image
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "x", "--steps", "1",
                 "--out", str(tmp_path / "photo_kps.png")]) == 0
    assert not np.array_equal(np.asarray(calls[1]["image"]), expected)
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", "1,2,3", "--prompt", "x",
                 "--out", str(out)]) == 1
    assert "10 numbers" in capsys.readouterr().err
    far = ",".join(map(str, numbers)).replace("90", "900")
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", far,
                 "--prompt", "x", "--out", str(out)]) == 1
    assert "inside the 128x128 output" in capsys.readouterr().err
    assert len(calls) == 2  # the refused runs never called the pipeline


def test_contradicting_options_are_refused(photos, tmp_path, capsys):
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--control-start", "0.6",
                 "--control-end", "0.4", "--prompt", "x", "--out", str(tmp_path / "o.png")]) == 1
    assert "must be below --control-end" in capsys.readouterr().err


def test_memory_and_speed_switches_take_effect_on_the_pipeline(photos, tiny_cache, tmp_path, monkeypatch):
    import torch

    pipes = spy_on_loaded_pipelines(monkeypatch)
    out = tmp_path / "switches.png"
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "x", "--steps", "1",
                 "--vae-tiling", "--vae-slicing", "--channels-last", "--out", str(out)]) == 0
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "x", "--steps", "1",
                 "--out", str(tmp_path / "plain.png")]) == 0
    switched, plain = pipes
    assert switched.vae.use_tiling and switched.vae.use_slicing
    assert not plain.vae.use_tiling and not plain.vae.use_slicing
    for module in (switched.unet, switched.controlnet, switched.vae):
        weight = next(p for p in module.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert not weight.is_contiguous()  # really re-laid out, not trivially both
    weight = next(p for p in plain.unet.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    assert Image.open(out).size == (128, 128)


def test_cli_and_library_entry_give_bit_identical_images(photos, tiny_cache, tmp_path):
    from instantid.face import get_face_analyzer
    from instantid.pipelines.from_photos import generate_from_photos
    from instantid.pipelines.loading import load_pipeline
    from instantid.testing.tiny import tiny_instantid_cached

    out = tmp_path / "cli.png"
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--face", str(photos["tom_hanks"]),
                 "--pose", str(photos["astronaut"]), "--prompt", "a portrait", "--seed", "11", "--steps", "2",
                 "--style", "watercolor", "--out", str(out)]) == 0
    cli_image = Image.open(out)
    cli_params = json.loads(cli_image.text["parameters"])

    analyzer = get_face_analyzer("dlib")
    tiny = tiny_instantid_cached(embedding_dim=analyzer.embedding_dim)
    pipe = load_pipeline(tiny.base, tiny.identitynet, tiny.adapter, device="cpu")
    # --tiny's own defaults (128x128, 4 steps) are the CLI's; everything else is the library's default
    result = generate_from_photos(pipe, [photos["grace_hopper"], photos["tom_hanks"]], "a portrait",
                                  analyzer=analyzer, pose_photo=photos["astronaut"], seed=11, num_inference_steps=2,
                                  width=128, height=128, style="watercolor")
    assert np.array_equal(np.asarray(cli_image.convert("RGB")), np.asarray(result.image))
    assert {k: cli_params[k] for k in result.parameters} == json.loads(json.dumps(result.parameters))
    assert cli_params["ip_adapter_scale"] == cli_params["controlnet_conditioning_scale"] == 0.8


# ---- spies


def spy_on_loaded_pipelines(monkeypatch, on_load=None) -> list:
    """Every pipeline `instantid generate` loads (the library's load_pipeline of its LoadOptions), as loaded."""
    import instantid.pipelines.loading as loading

    pipes, load = [], loading.load_pipeline

    def spy(*args, **kwargs):
        pipe = load(*args, **kwargs)
        if args and isinstance(args[0], loading.LoadOptions):
            pipes.append(on_load(pipe) if on_load else pipe)
        return pipe

    monkeypatch.setattr(loading, "load_pipeline", spy)
    return pipes


def spy_on_pipeline_calls(monkeypatch) -> list:
    """The keywords of every call of a pipeline `instantid generate` loads (the pipeline still runs)."""
    calls = []

    def record_calls(pipe):
        class Spy(type(pipe)):
            def __call__(self, *call_args, **call_kwargs):
                calls.append(call_kwargs)
                return super().__call__(*call_args, **call_kwargs)

        pipe.__class__ = Spy
        return pipe

    spy_on_loaded_pipelines(monkeypatch, on_load=record_calls)
    return calls
