"""Odd input through the command line: every mistake is one `error:` line (exit 1) or an argparse usage error
(exit 2), never a traceback, and is refused before any model loads (the `no_model_loads` fixture fails the
test if one starts)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huge_photo import HUGE_SIDE
from PIL import Image

from instantid.cli import main

LONG_NAME = "x" * 300


def refused(argv, capsys, *words, code=1) -> str:
    """Run the CLI; assert it refuses with `code`, one line on stderr naming `words`, and no traceback."""
    if code == 2:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    else:
        assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 1:  # one error line (libraries may log their own chatter around it)
        assert [line for line in err.splitlines() if line.startswith("error: ")], err
        assert err.count("error: ") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


@pytest.fixture
def face(photos) -> str:
    return str(photos["astronaut"])


@pytest.fixture
def gen(face, tmp_path):
    """generate's argv with a valid face, prompt and --out, plus the options of the case."""
    def build(*options, out=None):
        return ["generate", "--tiny", "--face", face, "--prompt", "x", "--out", str(out or tmp_path / "o.png"),
                *options]
    return build


@pytest.fixture
def odd_files(tmp_path):
    """A FIFO, a symlink loop, a folder, an empty file, a plain file, and a styles file of each broken kind."""
    files = {"fifo": tmp_path / "pipe.jpg", "loop": tmp_path / "loop.jpg", "folder": tmp_path / "folder.jpg",
             "empty": tmp_path / "empty.jpg", "plain": tmp_path / "plain.txt"}
    os.mkfifo(files["fifo"])
    os.symlink(tmp_path / "loop2.jpg", files["loop"])
    os.symlink(files["loop"], tmp_path / "loop2.jpg")
    files["folder"].mkdir()
    files["empty"].write_bytes(b"")
    files["plain"].write_text("just text\n")
    for name, text in {"styles_text": "not json {", "styles_list": "[1, 2]", "styles_noprompt": '{"a": {"x": 1}}',
                       "styles_badneg": '{"a": {"prompt": "{prompt}", "negative_prompt": 3}}'}.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(text)
    return files


# --- generate: option values, styles, series, keypoints (all before any model) -----------------------

@pytest.mark.parametrize("options, words", [
    (["--style", "nope"], ["unknown style 'nope'", "watercolor"]),
    (["--styles-file", "missing.json"], ["styles file not found"]),
    (["--interpolate", "FACE", "--weights", "0,1.5"], ["--weights must lie in [0, 1]", "1.5"]),
    (["--interpolate", "FACE", "--weights", "-0.1"], ["[0, 1]"]),
    (["--interpolate", "FACE", "--yaw=10"], ["either --interpolate or --yaw"]),
    (["--yaw=200"], ["--yaw angles", "200"]),
    (["--kps", "1,2,3"], ["(10 numbers)"]),
    (["--control-start", "0.9", "--control-end", "0.1"], ["must be below --control-end"]),
    (["--prompt", "p" * 10_001], ["10001 characters", "limit"]),
    (["--width", "4096", "--height", "4096"], ["4096x4096", "output cap", "--max-pixels", "INSTANTID_MAX_OUTPUT_PIXELS"]),
    (["--width", "1024", "--height", "1024", "--num-images", "2"], ["output cap"]),
    (["--lora", "missing/style.safetensors"], ["--lora file missing/style.safetensors not found"]),
    (["--lora", "./nowhere"], ["not found"]),
    (["--lora", "LORA:nan"], ["finite"]),
    (["--pose", "missing.jpg"], ["--pose photo not found"]),
    (["--canny", "missing.jpg"], ["--canny photo not found"]),
    (["--device", "tpu9"], ["unknown device 'tpu9'"]),
    (["--device", "cuda:x"], ["unknown device"]),
    (["--device", "meta"], ["not supported"]),
])
def test_generate_option_mistakes_are_refused_before_any_model(options, words, gen, face, tmp_path, capsys,
                                                               no_model_loads):
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    options = [str(lora) + ":nan" if o == "LORA:nan" else face if o == "FACE" else o for o in options]
    refused(gen(*options), capsys, *words)


@pytest.mark.parametrize("kind, words", [
    ("styles_text", ["could not be read as JSON"]), ("styles_list", ["must hold an object"]),
    ("styles_noprompt", ['needs a "prompt" string']), ("styles_badneg", ["negative_prompt", "string"]),
    ("folder", ["is a folder"]), ("fifo", ["FIFO"]),
])
def test_broken_styles_files(kind, words, gen, odd_files, capsys, no_model_loads):
    refused(gen("--style", "a", "--styles-file", str(odd_files[kind])), capsys, *words)


@pytest.mark.parametrize("flag, value", [
    ("--adapter-scale", "nan"), ("--kps", "1,2,3,4,5,6,7,8,9,nan"), ("--yaw", "nan"),
    ("--weights", "0,nan"), ("--steps", "0"), ("--num-images", "0"), ("--seed", "-1"), ("--width", "1e9"),
])
def test_nan_inf_and_out_of_range_knobs_are_usage_errors(flag, value, gen, capsys, no_model_loads):
    err = refused(gen(f"{flag}={value}"), capsys, flag if not flag.startswith(("--kps", "--yaw", "--weights")) else "",
                  code=2)
    assert "finite" in err or "between" in err or "must be" in err


@pytest.mark.parametrize("kind, words", [
    ("missing", ["no readable --face photo", "not found"]), ("fifo", ["FIFO"]), ("loop", ["symbolic-link loop"]),
    ("folder", ["is a folder"]), ("empty", ["empty (0 bytes)"]), ("device", ["character device"]),
    ("long", ["too long"]),
])
def test_unreadable_face_paths_say_what_they_are(kind, words, odd_files, tmp_path, capsys, no_model_loads):
    path = {"missing": tmp_path / "nope.jpg", "device": Path("/dev/null"), "long": tmp_path / LONG_NAME}.get(kind) \
        or odd_files[kind]
    refused(["generate", "--tiny", "--face", str(path), "--prompt", "x", "--out", str(tmp_path / "o.png")],
            capsys, *words)


def test_too_many_face_photos(face, tmp_path, capsys, no_model_loads):
    argv = ["generate", "--tiny", "--prompt", "x", "--out", str(tmp_path / "o.png")]
    for _ in range(65):
        argv += ["--face", face]
    refused(argv, capsys, "65 --face photos", "limit is 64")


# --- generate: output places -----------------------------------------------------------------------

@pytest.mark.parametrize("where, words", [
    ("name.txt", ["'.txt' is not an image format written here", ".png"]),
    ("blocker/out.png", ["it is a file, not a folder"]),
    ("blocker/", ["is a file, not a folder"]),
    ("/proc/instantid-test/out.png", ["cannot write"]),
    ("/sys/out.png", ["cannot write"]),
    (LONG_NAME + ".png", ["longer than the file system allows"]),
    (LONG_NAME + "/out.png", ["longer than the file system allows"]),
    ("/dev/null", ["not a regular file"]),
])
def test_unwritable_outputs_are_refused_before_any_model(where, words, gen, tmp_path, capsys, no_model_loads):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = where if where.startswith("/") else f"{tmp_path}/{where}"
    refused(gen(out=out), capsys, *words)


def test_full_disk_is_refused_before_any_model(gen, tmp_path, capsys, monkeypatch, no_model_loads):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1024))
    refused(gen(), capsys, "is full")


# --- generate: models named on the command line ------------------------------------------------------

def test_missing_local_base_is_not_found_not_a_hub_error(face, tmp_path, capsys, no_model_loads):
    refused(["generate", "--face", face, "--prompt", "x", "--base", "./no/base", "--out", str(tmp_path / "o.png")],
            capsys, "--base ./no/base not found")


def test_plain_text_adapter_is_not_called_a_pickle(face, odd_files, tmp_path, capsys, no_model_loads):
    refused(["generate", "--face", face, "--prompt", "x", "--adapter", str(odd_files["plain"]),
             "--out", str(tmp_path / "o.png")], capsys, "not a PyTorch checkpoint")


@pytest.mark.parametrize("config", ["[1, 2]", "not json", '"text"'])
def test_controlnet_config_that_is_not_an_object(config, face, tmp_path, capsys, no_model_loads):
    folder = tmp_path / "identitynet"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    err = refused(["generate", "--face", face, "--prompt", "x", "--identitynet", str(folder),
                   "--out", str(tmp_path / "o.png")], capsys, "config.json")
    assert "network" not in err and "Hub" not in err


def test_cuda_without_cuda(gen, capsys, monkeypatch, no_model_loads):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    refused(gen("--device", "cuda"), capsys, "no usable CUDA GPU", "--device cpu")


def test_cuda_index_past_the_devices(gen, capsys, monkeypatch, no_model_loads):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    refused(gen("--device", "cuda:3"), capsys, "only 1 CUDA device")


def test_explicit_kps_outside_the_output_is_refused_before_the_pipeline(gen, capsys, no_pipeline_loads):
    refused(gen("--kps", "1,2,3,4,5,6,7,8,900,10"), capsys, "--kps points must lie inside the 128x128 output")


def test_oversized_default_height_is_capped_before_the_pipeline(gen, capsys, no_pipeline_loads):
    refused(gen("--width", "4096"), capsys, "output cap")  # 4096 x --tiny's 128: above the 512x512 tiny cap


# --- -v shows the traceback, before or after the sub-command ------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_traceback(where, gen, no_model_loads):
    from instantid.errors import UsageError

    argv = gen("--style", "nope")
    argv = ["-v", *argv] if where == "before" else [*argv, "-v"]
    with pytest.raises(UsageError, match="unknown style"):
        main(argv)


# --- faces ---------------------------------------------------------------------------------------------

def _png_with_text_bomb(path: Path) -> Path:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 20_000_000, zip=True)  # ~20 KB on disk, 20 MB inflated
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return path


def _png_with_icc_bomb(path: Path) -> Path:
    Image.new("RGB", (64, 64)).save(path, icc_profile=b"\0" * 20_000_000)
    return path


def _truncated_png_with_exif(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 4000
    Image.new("RGB", (64, 64)).save(path, exif=exif.tobytes())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2500])
    return path


def _eps_named_jpg(path: Path) -> Path:
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n")
    return path


@pytest.mark.parametrize("make, words", [
    (_png_with_text_bomb, ["metadata chunk", "safety limit"]),
    (_png_with_icc_bomb, ["metadata chunk"]),
    (_truncated_png_with_exif, ["truncated"]),
    (_eps_named_jpg, ["not an image in a format read here", "JPEG, PNG"]),
])
def test_faces_refuses_hostile_and_broken_files_before_any_model(make, words, tmp_path, capsys, monkeypatch,
                                                                 no_model_loads):
    from PIL import EpsImagePlugin

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript must never run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    path = make(tmp_path / ("photo.jpg" if make is _eps_named_jpg else "photo.png"))
    refused(["faces", str(path)], capsys, *words)


@pytest.mark.parametrize("kind, words", [
    ("missing", ["not found"]), ("fifo", ["FIFO"]), ("loop", ["symbolic-link loop"]), ("device", ["character device"]),
    ("long", ["too long"]), ("plain", ["not an image in a format read here"]),
])
def test_faces_unreadable_paths(kind, words, odd_files, tmp_path, capsys, no_model_loads):
    path = {"missing": tmp_path / "nope.jpg", "device": Path("/dev/zero"), "long": tmp_path / LONG_NAME}.get(kind) \
        or odd_files[kind]
    refused(["faces", str(path)], capsys, *words)


@pytest.mark.parametrize("target, words", [
    ("kps.txt", ["extension '.txt'", ".png"]),
    ("kps", ["extension '(none)'"]),
    ("no/such/folder/kps.png", ["does not exist", "create it first"]),
    ("blocker/kps.png", ["is a file, not a folder"]),
    ("/proc/kps.png", ["cannot write"]),
    (LONG_NAME + ".png", ["longer than the file system allows"]),
])
def test_faces_kps_out_mistakes_before_any_model(target, words, face, tmp_path, capsys, no_model_loads):
    (tmp_path / "blocker").write_text("x")
    out = target if target.startswith("/") else str(tmp_path / target)
    refused(["faces", face, "--kps-out", out], capsys, *words)


def test_faces_kps_out_as_jpeg_works(face, tmp_path, capsys):
    out = tmp_path / "kps.jpg"
    assert main(["faces", face, "--kps-out", str(out)]) == 0
    assert Image.open(out).format == "JPEG" and Image.open(out).size == (512, 512)
    assert not list(tmp_path.glob(".kps*")), "no temporary file left behind"


# --- train / prepare-data -------------------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "manifest.jsonl").write_text("")
    return folder


@pytest.mark.parametrize("options, words", [
    (["--resolution", "100000"], ["--resolution 100000 is above the 2048 limit"]),
    (["--learning_rate", "nan"], ["--learning_rate must be a finite number"]),
    (["--adam_beta1", "inf"], ["--adam_beta1 must be a finite number"]),
    (["--threads", "0"], ["--threads must be >= 1"]),
    (["--output_dir", "BLOCKER/run"], ["it is a file, not a folder"]),
    (["--output_dir", "BLOCKER"], ["is a file, not a folder"]),
    (["--output_dir", "/proc/instantid-run"], ["cannot write"]),
    (["--output_dir", LONG_NAME], ["longer than the file system allows"]),
])
def test_train_refuses_before_loading_anything(options, words, data_dir, tmp_path, capsys, no_model_loads):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    argv = ["train", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "run")]
    options = [str(blocker) + o[len("BLOCKER"):] if o.startswith("BLOCKER") else
               str(tmp_path / o) if o == LONG_NAME else o for o in options]
    refused(argv + options, capsys, *words)


def test_prepare_data_missing_source(tmp_path, capsys, no_model_loads):
    refused(["prepare-data", str(tmp_path / "nope"), str(tmp_path / "out")], capsys, "does not exist")


# --- what works must write what was asked --------------------------------------------------------------

@pytest.fixture
def tiny_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_jpeg_out_is_a_jpeg_with_parameters_and_tiny_says_what_it_ignores(gen, tmp_path, tiny_cache, capsys):
    from instantid.output import read_parameters

    out = tmp_path / "portrait.jpg"
    assert main(gen("--adapter", str(tmp_path / "mine.bin"), "--steps", "1", out=out)) == 0
    captured = capsys.readouterr()
    assert "--adapter ignored" in captured.out and f"wrote {out}" in captured.out
    assert Image.open(out).format == "JPEG" and not (tmp_path / "portrait.png").exists()
    params = read_parameters(out)
    assert params["prompt"] == "x" and params["num_inference_steps"] == 1 and params["tiny"] is True
    assert not list(tmp_path.glob(".portrait*")), "no temporary file left behind"


@pytest.fixture
def nan_pipelines(monkeypatch):
    """Every pipeline the CLI loads gets a VAE decoder that outputs NaN (a real NaN path through the stock call)."""
    import torch

    from instantid.pipelines import loading

    real = loading.load_pipeline

    def poisoned(*args, **kwargs):
        pipe = real(*args, **kwargs)
        with torch.no_grad():
            pipe.vae.decoder.conv_out.bias.fill_(float("nan"))
        return pipe

    monkeypatch.setattr(loading, "load_pipeline", poisoned)


@pytest.mark.parametrize("command", ["generate", "swap", "swap_image", "multi"])
def test_nan_output_is_an_error_not_a_black_png(command, face, tmp_path, tiny_cache, capsys, nan_pipelines):
    out, mask = tmp_path / "nan.png", tmp_path / "mask.png"
    argv = {
        "generate": ["generate", "--face", face, "--prompt", "x", "--steps", "1"],
        "swap": ["swap", "--face", face, "--target", face, "--steps", "2", "--mask-out", str(mask)],
        "swap_image": ["swap", "--face", face, "--target", face, "--steps", "2", "--region", "image"],
        "multi": ["multi", "--face", face, "--box", "0,0,128,128", "--prompt", "x", "--steps", "1"],
    }[command]
    refused(argv + ["--tiny", "--out", str(out)], capsys, "contains NaN")
    assert not out.exists() and not mask.exists()


# --- swap, multi, eval, prepare-data: the same pre-load checks ----------------------------------------------

@pytest.mark.parametrize("command, words", [
    (["swap", "--face", "FACE", "--target", "MISSING", "--out", "OUT"], ["--target photo not found"]),
    (["swap", "--face", "FACE", "--target", "FACE", "--out", "BAD_EXT"], ["not an image format written here"]),
    (["swap", "--face", "FACE", "--target", "FACE", "--out", "OUT", "--device", "tpu"], ["unknown device"]),
    (["multi", "--face", "FACE", "--face", "MISSING", "--layout", "FACE", "--prompt", "x", "--out", "OUT"],
     ["--face photo not found"]),
    (["multi", "--face", "FACE", "--layout", "MISSING", "--prompt", "x", "--out", "OUT"], ["--layout photo not found"]),
    (["multi", "--face", "FACE", "--layout", "FACE", "--prompt", "x", "--out", "/proc/x/out.png"], ["cannot write"]),
    (["eval", "--reference", "FACE", "--generated", "FACE", "--out", "/proc/instantid-eval"], ["cannot write"]),
    (["prepare-data", "FACE", "/proc/instantid-data"], ["cannot write"]),
])
def test_other_commands_refuse_before_any_model(command, words, face, tmp_path, capsys, no_model_loads):
    names = {"FACE": face, "MISSING": str(tmp_path / "nope.jpg"), "OUT": str(tmp_path / "o.png"),
             "BAD_EXT": str(tmp_path / "o.gifx")}
    argv = [names.get(c, c) for c in command] + (["--tiny"] if command[0] in ("swap", "multi") else [])
    refused(argv, capsys, *words)


@pytest.mark.parametrize("box", ["nan,0,10,10", "0,0,inf,10"])
def test_multi_box_must_be_finite(box, face, tmp_path, capsys, no_model_loads):
    refused(["multi", "--tiny", "--face", face, "--box", box, "--prompt", "x", "--out", str(tmp_path / "o.png")],
            capsys, "four finite numbers", code=2)


def test_output_cap_can_be_raised(gen, capsys, monkeypatch, no_pipeline_loads):
    """--max-pixels and the environment variable raise the cap (then the request goes on to the pipeline)."""
    monkeypatch.setenv("INSTANTID_MAX_OUTPUT_PIXELS", str(700 * 700))
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        main(gen("--width", "640", "--height", "640"))
    monkeypatch.delenv("INSTANTID_MAX_OUTPUT_PIXELS")
    refused(gen("--width", "640", "--height", "640"), capsys, "output cap")
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        main(gen("--width", "640", "--height", "640", "--max-pixels", str(640 * 640)))


def test_memory_estimate_warns_on_the_cpu(gen, capsys, monkeypatch, no_pipeline_loads):
    from instantid import limits

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 10 * 2**20)
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        main(gen("--device", "cpu"))
    assert "needs about" in capsys.readouterr().out


# --- swap and multi: the output cap, odd numbers and files, all before any model -------------------------------

@pytest.fixture
def swap(face, tmp_path):
    def build(*options, target=None):
        return ["swap", "--tiny", "--face", face, "--target", str(target or face), "--out", str(tmp_path / "o.png"),
                *options]
    return build


@pytest.mark.parametrize("options, words", [
    (["--working-size", "1024"], ["1024x1024", "output cap", "--working-size", "--max-pixels"]),
    (["--working-size", "1024", "--max-pixels", "100"], ["0.00 MP output cap"]),
    (["--max-pixels", "-5"], ["positive whole number"]),
    (["--strength", "nan"], ["strength must be in (0, 1]"]),
    (["--mask-out", "MASK.txt"], ["--mask-out file", "extension '.txt'"]),
    (["--mask-out", "/proc/instantid/mask.png"], ["cannot write"]),
])
def test_swap_mistakes_are_refused_before_any_model(options, words, swap, tmp_path, capsys, no_model_loads):
    options = [str(tmp_path / o) if o.startswith("MASK") else o for o in options]
    refused(swap(*options), capsys, *words)


@pytest.mark.parametrize("command, options, words", [
    ("swap", ["--working-size", "0"], ["--working-size must be >= 64"]),
    ("swap", ["--target-index", "-1"], ["--target-index must be between 0 and 31"]),
    ("swap", ["--mask-grow", "nan"], ["--mask-grow must be a finite number"]),
    ("swap", ["--mask-grow", "0"], ["--mask-grow must be > 0"]),
    ("swap", ["--feather", "-1"], ["--feather must be >= 0"]),
    ("swap", ["--feather", "inf"], ["--feather must be a finite number"]),
    ("multi", ["--box", "0,0,64,64", "--scale", "-1"], ["--scale must be >= 0"]),
    ("multi", ["--box", "0,0,64,64", "--scale", "nan"], ["--scale must be a finite number"]),
])
def test_mask_and_region_scale_values_are_refused_as_options_are_read(command, options, words, swap, face, tmp_path,
                                                                       capsys, no_model_loads):
    """Rows of the parameter table (params.SWAP_PARAMS, REGION_SCALE): refused by the option parser."""
    argv = swap(*options) if command == "swap" else \
        ["multi", "--tiny", "--face", face, "--prompt", "x", "--out", str(tmp_path / "o.png"), *options]
    refused(argv, capsys, *words, code=2)


@pytest.mark.parametrize("kind, words", [
    ("fifo", ["--target photo", "FIFO"]), ("plain", ["not an image in a format read here"]),
    ("loop", ["symbolic-link loop"]), ("device", ["character device"]),
])
@pytest.mark.parametrize("region", ["face", "image"])
def test_swap_targets_that_are_no_photo(kind, words, region, swap, odd_files, capsys, no_model_loads):
    target = Path("/dev/zero") if kind == "device" else odd_files[kind]
    refused(swap("--region", region, target=target), capsys, *words)


def test_swap_face_refuses_a_target_too_big_to_paste_back_whole(swap, huge_jpeg, capsys, no_model_loads):
    refused(swap(target=huge_jpeg), capsys, f"{HUGE_SIDE}x{HUGE_SIDE}", "100 MP limit", "FULL_DECODE_MAX_PIXELS")


def test_swap_image_reads_a_huge_target_reduced(swap, huge_jpeg, tmp_path, tiny_cache, capsys, monkeypatch):
    from instantid.pipelines import face_swap

    monkeypatch.setattr(face_swap, "load_image", lambda source: pytest.fail("the target was decoded whole"))
    assert main(swap("--region", "image", "--steps", "2", target=huge_jpeg)) == 0
    assert Image.open(tmp_path / "o.png").size == (128, 128)


@pytest.mark.parametrize("options, words", [
    (["--box", "0,0,64,64", "--width", "1024", "--height", "1024"], ["1024x1024", "output cap", "--max-pixels"]),
    (["--box", "10,10,10,50"], ["region 0", "is empty"]),
    (["--box", "0,0,500,64"], ["lies outside the 128x128 image"]),
    (["--box", "0,0,64,64", "--box", "64,0,128,64"], ["1 face photos but 2 regions"]),
    (["--box", "0,0,64,64", "--width", "128"], ["give both --width and --height"]),
    (["--box", "0,0,64,64", "--scale", "1", "--scale", "1"], ["1 --face photos but 2 --scale values"]),
    (["--layout", "PLAIN"], ["not an image in a format read here"]),
    (["--layout", "PLAIN", "--width", "128", "--height", "128"], ["not an image in a format read here"]),
    (["--layout", "FIFO"], ["--layout photo", "FIFO"]),
])
def test_multi_mistakes_are_refused_before_any_model(options, words, face, odd_files, tmp_path, capsys,
                                                     no_model_loads):
    options = [str(odd_files[o.lower()]) if o in ("PLAIN", "FIFO") else o for o in options]
    refused(["multi", "--tiny", "--face", face, "--prompt", "x", "--out", str(tmp_path / "o.png"), *options],
            capsys, *words)


def test_swap_and_multi_output_cap_can_be_raised(swap, face, tmp_path, capsys, no_pipeline_loads):
    """With --max-pixels the same requests go on to the pipeline (which the fixture stops)."""
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        main(swap("--working-size", "1024", "--max-pixels", str(1024 * 1024)))
    with pytest.raises(AssertionError, match="pipeline was loaded"):
        main(["multi", "--tiny", "--face", face, "--box", "0,0,512,512", "--width", "640", "--height", "640",
              "--prompt", "x", "--out", str(tmp_path / "o.png"), "--max-pixels", str(640 * 640)])
