"""`instantid generate --family flux`: the FLUX family end to end on tiny random weights, offline, and its
clear refusals (the same kind as SDXL's)."""

import json

import pytest
from PIL import Image

from instantid.cli import main


@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_tiny_flux_generate_offline(photos, tiny_cache, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["generate", "--tiny", "--family", "flux", "--face", str(photos["astronaut"]), "--prompt", "a portrait",
                 "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = Image.open(out)
    assert image.size == (128, 128)
    params = json.loads(image.text["parameters"])
    assert params["family"] == "flux" and params["tiny"] is True and params["face_backend"] == "dlib"
    # FLUX defaults (InfiniteYou's), the tiny steps; no SDXL-only knobs
    assert params["guidance_scale"] == 3.5 and params["controlnet_conditioning_scale"] == 1.0
    assert params["true_cfg_scale"] == 1.0 and params["num_inference_steps"] == 4
    assert "ip_adapter_scale" not in params and "negative_face_noise" not in params
    again = tmp_path / "again.png"
    assert main(["generate", "--tiny", "--family", "flux", "--face", str(photos["astronaut"]), "--prompt", "a portrait",
                 "--out", str(again)]) == 0
    assert Image.open(again).tobytes() == image.tobytes()  # same seed and inputs, same image


def test_family_read_from_the_weights(photos, tmp_path, capsys):
    """No --family, no --tiny: IdentityNet's config says FLUX; a dlib-path tiny FLUX family on local folders."""
    from instantid.testing.tiny_flux import build_tiny_flux

    tiny = build_tiny_flux(tmp_path / "flux", embedding_dim=128)
    out = tmp_path / "auto.png"
    assert main(["generate", "--base", str(tiny.base), "--identitynet", str(tiny.identitynet), "--adapter",
                 str(tiny.adapter), "--face-backend", "dlib", "--face", str(photos["astronaut"]), "--prompt", "x",
                 "--steps", "2", "--width", "64", "--height", "64", "--true-cfg-scale", "2", "--negative-prompt",
                 "blurry", "--device", "cpu", "--out", str(out)]) == 0
    params = json.loads(Image.open(out).text["parameters"])
    assert params["family"] == "flux" and params["true_cfg_scale"] == 2.0 and params["identitynet"].endswith("InfuseNetModel")


@pytest.mark.parametrize("extra, message", [
    (["--adapter-scale", "0.5"], "does not apply to FLUX models"),
    (["--negative-face-noise", "0.3"], "does not apply to FLUX models"),
    (["--face-backend", "antelopev2"], "FLUX (InfiniteYou) weights take facexlib's unit-norm ArcFace"),
    (["--width", "72"], "multiple of 16"),
    (["--compile"], "does not support --compile"),
    (["--prompt-weighting"], "does not support prompt weighting"),
])
def test_bad_flux_input_clear_errors(photos, tiny_cache, tmp_path, capsys, extra, message):
    code = main(["generate", "--tiny", "--family", "flux", "--face", str(photos["astronaut"]), "--prompt", "x",
                 "--steps", "1", "--out", str(tmp_path / "bad.png"), *extra])
    captured = capsys.readouterr()
    assert code != 0 and message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "bad.png").exists()


def test_sdxl_refuses_the_flux_face_path_and_knobs(photos, tiny_cache, tmp_path, capsys):
    for extra, message in ((["--face-backend", "infiniteyou"], "SDXL InstantID weights take antelopev2's raw"),
                           (["--true-cfg-scale", "3"], "does not apply to SDXL")):
        code = main(["generate", "--tiny", "--face", str(photos["astronaut"]), "--prompt", "x", "--steps", "1",
                     "--out", str(tmp_path / "bad.png"), *extra])
        assert code != 0 and message in capsys.readouterr().err


def test_swap_refuses_flux(photos, tiny_cache, tmp_path, capsys):
    code = main(["swap", "--tiny", "--family", "flux", "--face", str(photos["astronaut"]), "--target",
                 str(photos["grace_hopper"]), "--out", str(tmp_path / "s.png")])
    assert code != 0 and "not available for the FLUX family" in capsys.readouterr().err
