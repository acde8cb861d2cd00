"""`instantid generate` end to end: tiny random weights with real photos, and clear failures."""

import json
import time

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
    start = time.monotonic()
    code = main(["generate", "--face", str(photos["astronaut"]), "--face-backend", "dlib", "--prompt", "x",
                 "--out", str(tmp_path / "o.png")])
    assert code == 1 and time.monotonic() - start < 30
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


def test_explicit_keypoints(photos, tiny_cache, tmp_path, capsys):
    kps = "30,40,90,40,60,70,38,95,82,95"
    out = tmp_path / "kps.png"
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", kps, "--prompt", "x",
                 "--steps", "1", "--out", str(out)]) == 0
    assert json.loads(Image.open(out).text["parameters"])["width"] == 128
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", "1,2,3", "--prompt", "x",
                 "--out", str(out)]) == 1
    assert "10 numbers" in capsys.readouterr().err
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--kps", kps.replace("90", "900"),
                 "--prompt", "x", "--out", str(out)]) == 1
    assert "inside the 128x128 output" in capsys.readouterr().err


def test_contradicting_options_are_refused(photos, tmp_path, capsys):
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--control-start", "0.6",
                 "--control-end", "0.4", "--prompt", "x", "--out", str(tmp_path / "o.png")]) == 1
    assert "must be below --control-end" in capsys.readouterr().err


def test_memory_and_speed_switches(photos, tiny_cache, tmp_path, capsys):
    out = tmp_path / "switches.png"
    assert main(["generate", "--tiny", "--face", str(photos["grace_hopper"]), "--prompt", "x", "--steps", "1",
                 "--vae-tiling", "--vae-slicing", "--channels-last", "--out", str(out)]) == 0
    assert Image.open(out).size == (128, 128)
