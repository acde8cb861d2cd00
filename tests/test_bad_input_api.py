"""Odd input through the Python API: typed project errors (never ZeroDivisionError, IndexError or a raw library
exception), or the right result."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.errors import (
    CheckpointError,
    DeviceError,
    EmbeddingError,
    GenerationError,
    ImageReadError,
    InstantIDError,
    LimitError,
    OutputPathError,
    UsageError,
)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    from instantid.testing.tiny import tiny_instantid_cached

    return tiny_instantid_cached(embedding_dim=128,
                                 cache_dir=tmp_path_factory.getbasetemp() / "xdg-cache" / "instantid" / "tiny")


# --- images given as arrays / objects ----------------------------------------------------------------

@pytest.mark.parametrize("array, words", [
    (np.zeros((0, 0, 3), np.uint8), "empty (no pixels)"),
    (np.zeros((0, 10), np.uint8), "empty (no pixels)"),
    (np.full((16, 16, 3), np.nan, np.float32), "NaN or infinite pixel"),
    (np.where(np.eye(16)[..., None] > 0, np.inf, 0.5).repeat(3, axis=2), "NaN or infinite pixel"),
    (np.zeros((8, 8, 3), np.complex64), "dtype complex64"),
    (np.zeros((8,), np.uint8), "not an image"),
    (np.zeros((2, 8, 8, 3), np.uint8), "not an image"),
    (np.array(["a", "b"]), "not an image"),
])
def test_detect_refuses_arrays_that_are_no_photo(array, words, dlib_analyzer):
    with pytest.raises(ImageReadError, match=words.replace("(", r"\(").replace(")", r"\)")):
        dlib_analyzer.detect(array)


def test_float_image_with_a_few_nan_pixels_is_refused_not_no_face(dlib_analyzer, photos):
    image = np.asarray(Image.open(photos["astronaut"]).convert("RGB"), np.float32) / 255
    image[0, 0, 0] = np.nan
    with pytest.raises(ImageReadError, match="1 NaN or infinite pixel"):
        dlib_analyzer.detect(image)
    image[0, 0, 0] = 0.5  # and the same photo without it still has its face
    assert len(dlib_analyzer.detect(image)) == 1


# --- embeddings and call arguments (pipeline) ----------------------------------------------------------

@pytest.mark.parametrize("embeds, words", [
    (0.5, "single number"),
    (np.float32(3), "single number"),
    (np.zeros((128,), np.complex64), "complex"),
    (np.full((128,), 1e30, np.float32), "far outside"),
    (np.full((128,), np.nan), "NaN"),
    (np.array([]), "empty"),
    ("a face", "array of numbers"),
    ([[1, 2], [3]], "array of numbers"),
    (torch.full((128,), float("inf")), "NaN or infinite"),
    (None, "required"),
])
def test_check_embedding(embeds, words):
    from instantid.pipelines.call_checks import check_embedding

    with pytest.raises(EmbeddingError, match=words):
        check_embedding(embeds)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(image_embeds=0.5), EmbeddingError, "single number"),
    (dict(ip_adapter_scale=float("nan")), UsageError, "finite"),
    (dict(ip_adapter_scale="0.5"), UsageError, "must be a number"),
    (dict(ip_adapter_scale=[0.5, float("inf")]), UsageError, "finite"),
    (dict(num_inference_steps=0), UsageError, "positive integer"),
    (dict(num_inference_steps=2.5), UsageError, "positive integer"),
    (dict(num_images_per_prompt=0), UsageError, "positive integer"),
    (dict(guidance_scale=float("nan")), UsageError, "finite"),
    (dict(controlnet_conditioning_scale=float("inf")), UsageError, "finite"),
    (dict(control_guidance_start=float("nan")), UsageError, "finite"),
    (dict(width=100, height=64), UsageError, "multiple of 8"),
    (dict(width=0, height=64), UsageError, "multiple of 8"),
])
def test_pipeline_call_arguments_are_typed_errors(kwargs, error, words, tiny_pipe):
    call = dict(prompt="x", image_embeds=np.ones(128, np.float32), image=Image.new("RGB", (64, 64)),
                num_inference_steps=1, width=64, height=64)
    call.update(kwargs)
    with pytest.raises(error, match=words):
        tiny_pipe(**call)


def test_a_valid_call_still_works(tiny_pipe):
    out = tiny_pipe(prompt="x", image_embeds=np.ones(128, np.float32), image=Image.new("RGB", (64, 64)),
                    num_inference_steps=1, width=64, height=64, ip_adapter_scale=np.float32(0.5), output_type="np")
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()


# --- the parameter table ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["guidance_scale", "controlnet_conditioning_scale", "ip_adapter_scale",
                                  "control_guidance_start", "control_guidance_end"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_parameter_table_refuses_nan_and_inf(name, value):
    from instantid.params import PARAMS_BY_NAME

    with pytest.raises(UsageError, match="finite"):
        PARAMS_BY_NAME[name].check(value)
    with pytest.raises(Exception, match="finite"):  # argparse's ArgumentTypeError on the command line
        PARAMS_BY_NAME[name].parse(str(value))


# --- adapter checkpoints -------------------------------------------------------------------------------

def _state(tiny_paths):
    from instantid.models.adapter import load_adapter_state_dict

    return load_adapter_state_dict(tiny_paths.adapter)


@pytest.mark.parametrize("damage, words", [
    (lambda s: s["image_proj"].update(latents=s["image_proj"]["latents"][0]), "wrong shapes"),
    (lambda s: s["image_proj"].update({"proj_in.weight": torch.zeros(3)}), "wrong shapes"),
    (lambda s: s.update(image_proj=torch.zeros(3)), "not a dict"),
    (lambda s: s.update(ip_adapter=[1, 2]), "not a dict"),
    (lambda s: s["ip_adapter"].update({"1.to_k_ip.weight": s["ip_adapter"]["1.to_k_ip.weight"].long()}),
     "not floating point"),
    (lambda s: s["image_proj"]["proj_out.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
    (lambda s: s["ip_adapter"]["1.to_v_ip.weight"].__setitem__((0, 0), float("inf")), "NaN or infinite"),
])
def test_damaged_adapters_are_refused_at_load(damage, words, tiny_paths, tmp_path):
    from instantid.models.adapter import load_adapter_state_dict

    state = _state(tiny_paths)
    damage(state)
    path = tmp_path / "damaged.bin"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=words):
        load_adapter_state_dict(path)


def test_damaged_adapter_dict_is_refused_by_the_pipeline(tiny_pipe, tiny_paths):
    state = _state(tiny_paths)
    state["image_proj"]["latents"][0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        tiny_pipe.load_ip_adapter_instantid(state)


@pytest.mark.parametrize("content, words", [
    (b"this is a text file, not weights\n", "not a PyTorch checkpoint"),
    (b"<html>404 Not Found</html>", "not a PyTorch checkpoint"),
])
def test_plain_files_are_not_called_pickles(content, words, tmp_path):
    from instantid.models.adapter import load_adapter_state_dict

    path = tmp_path / "ip-adapter.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words) as caught:
        load_adapter_state_dict(path)
    assert "pickle holds objects" not in str(caught.value)


def test_adapter_path_that_is_a_fifo(tmp_path):
    from instantid.models.adapter import load_adapter_state_dict

    os.mkfifo(tmp_path / "ip-adapter.bin")
    with pytest.raises(CheckpointError, match="FIFO"):
        load_adapter_state_dict(tmp_path / "ip-adapter.bin")


# --- ControlNet folders, face model folders -------------------------------------------------------------

@pytest.mark.parametrize("config, words", [("[1, 2, 3]", "holds a JSON list"), ("{oops", "not valid JSON"),
                                           ("", "empty")])
def test_controlnet_config_that_is_not_an_object(config, words, tmp_path):
    from instantid.pipelines.loading import load_controlnet

    (tmp_path / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match=words) as caught:
        load_controlnet(tmp_path)
    assert "Hub" not in str(caught.value)


def test_antelopev2_folder_with_invalid_onnx_files(tmp_path, photos):
    from instantid.face.antelopev2 import PACK_FILES, AntelopeV2FaceAnalyzer

    for name in PACK_FILES:
        (tmp_path / name).write_bytes(b"not an onnx model")
    with pytest.raises(CheckpointError, match="could not be loaded.*not an ONNX model"):
        AntelopeV2FaceAnalyzer(model_dir=tmp_path).detect(photos["astronaut"])


# --- draw_kps --------------------------------------------------------------------------------------------

KPS = [[30, 40], [90, 40], [60, 70], [38, 95], [82, 95]]


@pytest.mark.parametrize("size, kps, error, words", [
    ((200_000, 200_000), KPS, LimitError, "above the"),
    ((0, 128), KPS, UsageError, "positive canvas"),
    ((-5, 128), KPS, UsageError, "positive canvas"),
    ((128, 128), [[1e12, 0]] * 5, UsageError, "within"),
    ((128, 128), [["a", "b"]] * 5, UsageError, "real"),
    ((128, 128), np.ones((5, 2), np.complex64), UsageError, "real"),
    ((128, 128), [[math.nan, 1]] * 5, UsageError, "finite"),
    ((128,), KPS, UsageError, "size"),
])
def test_draw_kps_refuses_absurd_sizes_and_points(size, kps, error, words):
    from instantid.face import draw_kps

    with pytest.raises(error, match=words):
        draw_kps(size, kps)


# --- styles, interpolation, devices ----------------------------------------------------------------------

def test_unknown_style_is_a_usage_error():
    from instantid.pipelines.styles import get_style

    with pytest.raises(UsageError, match="unknown style 'nope'"):
        get_style("nope")


@pytest.mark.parametrize("weights", [[1.5], [-0.5], [math.nan]])
def test_interpolation_weights(weights):
    from instantid.pipelines.variations import interpolate_embeddings

    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        interpolate_embeddings(np.zeros(4), np.ones(4), weights)


@pytest.mark.parametrize("name, words", [("gpu", "unknown device"), ("cuda:-1", "unknown device"),
                                         ("xla", "not supported")])
def test_unknown_devices(name, words):
    from instantid.checks import check_device

    with pytest.raises(DeviceError, match=words):
        check_device(name)


def test_cpu_and_auto_are_fine():
    from instantid.checks import check_device

    assert check_device("cpu") == "cpu" and check_device("auto") == "auto"


# --- output places and writing ---------------------------------------------------------------------------

def test_full_disk_is_refused(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from instantid.checks import check_output_file

    monkeypatch.setattr(shutil, "disk_usage", lambda p: namedtuple("u", "total used free")(1, 1, 0))
    with pytest.raises(OutputPathError, match="is full"):
        check_output_file(tmp_path / "out.png")


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
    from instantid.checks import write_atomically

    target = tmp_path / "out.png"
    target.write_bytes(b"the previous image")

    def write(path: Path) -> None:
        path.write_bytes(b"half an ima")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputPathError, match="No space left"):
        write_atomically(target, write)
    assert target.read_bytes() == b"the previous image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_nan_images_are_a_generation_error_and_good_ones_convert():
    from instantid.cli.output import finite_images

    with pytest.raises(GenerationError, match="NaN"):
        finite_images(np.full((1, 8, 8, 3), np.nan, np.float32))
    images = finite_images(np.full((2, 8, 8, 3), 0.5, np.float32))
    assert len(images) == 2 and images[0].getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("suffix, image_format", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"),
                                                  (".webp", "WEBP")])
def test_parameters_travel_in_every_output_format(suffix, image_format, tmp_path):
    from instantid.cli.output import read_parameters, save_with_parameters

    path = save_with_parameters(Image.new("RGB", (32, 32), "red"), tmp_path / f"out{suffix}",
                                {"prompt": "a caf\u00e9 portrait", "seed": 3})
    assert Image.open(path).format == image_format
    assert read_parameters(path) == {"prompt": "a caf\u00e9 portrait", "seed": 3}


# --- image files --------------------------------------------------------------------------------------------

def test_large_png_is_decoded_in_strips_and_matches_a_full_decode(tmp_path, monkeypatch, photos):
    from instantid.face import image as image_module
    from instantid.face import png_strips

    big = Image.open(photos["astronaut"]).convert("RGBA").resize((1536, 1024))
    big.save(tmp_path / "big.png")
    monkeypatch.setattr(image_module, "STRIP_DECODE_ABOVE_PIXELS", 1000)
    monkeypatch.setattr(png_strips, "STRIP_BYTES", 1536 * 4 * 48)  # many strips
    small, factor = image_module.load_for_detection(tmp_path / "big.png", 512)
    # Strips shrunk one by one give exactly what shrinking the whole decoded image gives.
    np.testing.assert_array_equal(small, np.asarray(big.convert("RGB").reduce(3)))
    assert factor == pytest.approx(512 / 1536)


def test_interlaced_png_above_the_whole_decode_cap_is_refused(tmp_path, monkeypatch):
    from instantid.face import image as image_module

    Image.new("RGB", (600, 400)).save(tmp_path / "i.png", interlace=1)
    monkeypatch.setattr(image_module, "FULL_DECODE_MAX_PIXELS", 1000)
    with pytest.raises(LimitError, match="interlaced.*decoded whole"):
        image_module.load_for_detection(tmp_path / "i.png", 128)


def test_truncated_large_png_is_a_read_error(tmp_path, monkeypatch):
    from instantid.face import image as image_module

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(image_module, "STRIP_DECODE_ABOVE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="truncated"):
        image_module.load_for_detection(tmp_path / "t.png", 128)


@pytest.mark.parametrize("save", [lambda im, p: im.save(p, format="PDF"), lambda im, p: im.save(p, format="ICO"),
                                  lambda im, p: im.save(p, format="PPM")])
def test_formats_outside_the_list_are_refused(save, tmp_path):
    from instantid.face import load_image

    path = tmp_path / "photo.png"
    save(Image.new("RGB", (32, 32)), path)
    with pytest.raises(ImageReadError, match="not an image in a format read here"):
        load_image(path)


def test_webp_bmp_tiff_gif_are_read(tmp_path):
    from instantid.face import load_image

    for fmt in ("WEBP", "BMP", "TIFF", "GIF"):
        path = tmp_path / f"photo.{fmt.lower()}"
        Image.new("RGB", (32, 24), "white").save(path, format=fmt)
        assert load_image(path).shape == (24, 32, 3)


# --- training data and runs --------------------------------------------------------------------------------

def test_rejected_jsonl_lists_every_source_row_left_out(tmp_path, photos):
    from instantid.training.prepare import REJECTED, PrepareOptions, prepare_dataset

    table = tmp_path / "metadata.jsonl"
    rows = [json.dumps({"file_name": str(photos["astronaut"]), "caption": "an astronaut"}), "{not json",
            json.dumps({"file_name": "missing.jpg", "caption": "gone"}), json.dumps({"caption": "no image"}),
            json.dumps([1, 2])]
    table.write_text("\n".join(rows) + "\n")
    options = PrepareOptions(progress=False, min_image_size=0, min_face_size=0)
    for _ in range(2):  # a rerun neither loses nor duplicates them
        report = prepare_dataset(table, tmp_path / "data", options)
        rejected = [json.loads(line) for line in (tmp_path / "data" / REJECTED).read_text().splitlines()]
        assert sorted(r["reason"] for r in rejected) == ["missing_image", "unreadable_row", "unreadable_row",
                                                         "unreadable_row"]
        assert sum(report.rejected.values()) == 4 and report.usable == 1


def test_loss_log_keeps_the_latest_value_per_step_and_skips_torn_lines(tmp_path):
    from instantid.training.loss_log import LossLog, read_losses

    log = LossLog(tmp_path, fresh=True)
    for step, loss in ((1, 0.5), (2, 0.4), (3, 0.3)):
        log.append(step, loss)
    log.append(3, 0.25)  # a resume from step 2 redid step 3
    with (tmp_path / "losses.jsonl").open("a") as handle:
        handle.write('{"step": 4, "lo')  # killed mid-line
    assert read_losses(tmp_path) == {1: 0.5, 2: 0.4, 3: 0.25}
    assert read_losses(tmp_path, up_to_step=2) == {1: 0.5, 2: 0.4}
    LossLog(tmp_path).append(4, 0.2)  # the resumed run's first line is not glued to the torn one
    assert read_losses(tmp_path) == {1: 0.5, 2: 0.4, 3: 0.25, 4: 0.2}
    assert LossLog(tmp_path, fresh=True) and read_losses(tmp_path) == {}


def test_training_options_parse_and_refuse(tmp_path):
    from instantid.training.args import parse_args
    from instantid.training.errors import TrainingConfigError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.jsonl").write_text("")
    base = ["--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "run")]
    assert parse_args(base + ["--threads", "2"]).threads == 2
    with pytest.raises(TrainingConfigError) as caught:
        parse_args(base + ["--resolution", "100000", "--face_dropout", "nan", "--threads", "0"])
    message = str(caught.value)
    assert "--resolution 100000" in message and "--face_dropout must be a finite" in message and "--threads" in message


def test_all_project_errors_are_instantid_errors():
    for error in (CheckpointError, DeviceError, EmbeddingError, GenerationError, ImageReadError, LimitError,
                  OutputPathError, UsageError):
        assert issubclass(error, InstantIDError)


def test_bmp_header_claiming_a_huge_image_is_refused_without_decoding(tmp_path):
    import struct

    from instantid.face import load_image

    path = tmp_path / "bomb.bmp"
    header = b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24,
                                                                          0, 0, 2835, 2835, 0, 0)
    path.write_bytes(header + b"\0" * 64)
    with pytest.raises(ImageReadError, match="100000x100000.*decompression bombs"):
        load_image(path)


def test_deeply_nested_styles_file_is_a_usage_error(tmp_path):
    from instantid.pipelines.styles import load_styles

    path = tmp_path / "styles.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match="styles file"):
        load_styles(path)


def test_multi_image_jpeg_output_names(tmp_path):
    from instantid.cli.common import output_paths

    assert [p.name for p in output_paths(str(tmp_path / "x.jpg"), 2)] == ["x_000.jpg", "x_001.jpg"]
    assert [p.name for p in output_paths(str(tmp_path / "noext"), 1)] == ["noext.png"]
    assert [p.name for p in output_paths(str(tmp_path / "dir") + "/", 1)] == ["instantid.png"]
