"""Odd input through the Python API: typed project errors (never ZeroDivisionError, IndexError or a raw library
exception), or the right result."""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from huge_photo import HUGE_SIDE
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
    from instantid.pipelines.output_check import finite_images

    with pytest.raises(GenerationError, match="NaN"):
        finite_images(np.full((1, 8, 8, 3), np.nan, np.float32))
    images = finite_images(np.full((2, 8, 8, 3), 0.5, np.float32))
    assert len(images) == 2 and images[0].getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("suffix, image_format", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"),
                                                  (".webp", "WEBP")])
def test_parameters_travel_in_every_output_format(suffix, image_format, tmp_path):
    from instantid.output import read_parameters, save_with_parameters

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
    from instantid.output import output_paths

    assert [p.name for p in output_paths(str(tmp_path / "x.jpg"), 2)] == ["x_000.jpg", "x_001.jpg"]
    assert [p.name for p in output_paths(str(tmp_path / "noext"), 1)] == ["noext.png"]
    assert [p.name for p in output_paths(str(tmp_path / "dir") + "/", 1)] == ["instantid.png"]


# --- the output cap and NaN output: one check in every pipeline call, so in every library entry -----------------

@contextlib.contextmanager
def nan_decoder(pipe):
    """The pipeline's VAE decoder made to output NaN everywhere (a real NaN path through the stock call)."""
    bias = pipe.vae.decoder.conv_out.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.fill_(float("nan"))
    try:
        yield pipe
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def _face(dlib_analyzer, photos):
    return dlib_analyzer.detect(photos["astronaut"])[0]


@pytest.mark.parametrize("entry", ["pipe", "pipe_np", "generate", "swap_face", "swap_whole_image", "multi",
                                   "face_detail"])
def test_nan_output_is_a_generation_error_in_every_entry(entry, tiny_pipe, dlib_analyzer, photos):
    from instantid.pipelines.face_detail import face_detail
    from instantid.pipelines.face_region import IdentityRegion
    from instantid.pipelines.face_swap import swap_face, swap_whole_image
    from instantid.pipelines.from_photos import generate_from_photos
    from instantid.pipelines.multi_identity import generate_multi_identity

    face = _face(dlib_analyzer, photos)
    kps = np.asarray(face.kps) * 64 / 512
    runs = {
        "pipe": lambda: tiny_pipe(prompt="x", image_embeds=face.embedding, image=Image.new("RGB", (64, 64)),
                                  num_inference_steps=1, width=64, height=64),
        "pipe_np": lambda: tiny_pipe(prompt="x", image_embeds=face.embedding, image=Image.new("RGB", (64, 64)),
                                     num_inference_steps=1, width=64, height=64, output_type="np"),
        "generate": lambda: generate_from_photos(tiny_pipe, [photos["astronaut"]], "x", analyzer=dlib_analyzer,
                                                 width=64, height=64, num_inference_steps=1),
        "swap_face": lambda: swap_face(tiny_pipe, [photos["astronaut"]], photos["astronaut"], analyzer=dlib_analyzer,
                                       working_side=64, num_inference_steps=2),
        "swap_whole_image": lambda: swap_whole_image(tiny_pipe, [photos["astronaut"]], photos["astronaut"],
                                                     analyzer=dlib_analyzer, width=64, height=64,
                                                     num_inference_steps=2),
        "multi": lambda: generate_multi_identity(tiny_pipe, [IdentityRegion((0, 0, 64, 64), face.embedding, kps)],
                                                 "x", width=64, height=64, num_inference_steps=1),
        "face_detail": lambda: face_detail(tiny_pipe, Image.new("RGB", (64, 64), "grey"), face.embedding, kps,
                                           mode="on", num_inference_steps=3),
    }
    with nan_decoder(tiny_pipe), pytest.raises(GenerationError, match="contains NaN"):
        runs[entry]()


def test_latent_output_is_left_alone_and_the_pipeline_works_again_after(tiny_pipe, dlib_analyzer, photos):
    face = _face(dlib_analyzer, photos)
    call = dict(prompt="x", image_embeds=face.embedding, image=Image.new("RGB", (64, 64)), num_inference_steps=1,
                width=64, height=64)
    with nan_decoder(tiny_pipe):
        assert tiny_pipe(**call, output_type="latent").images.shape[-1] > 0  # the decoder never ran
    image = tiny_pipe(**call).images[0]  # the default PIL output, made from the float output
    assert isinstance(image, Image.Image) and image.size == (64, 64)


@pytest.mark.parametrize("kwargs, words", [
    (dict(width=4096, height=4096), ["4096x4096", "output cap for sdxl", "max_output_pixels"]),
    (dict(max_output_pixels=32 * 32), ["64x64", "0.00 MP output cap"]),
    (dict(max_output_pixels="many"), ["positive whole number"]),
    (dict(max_output_pixels=0), ["positive whole number"]),
])
def test_every_pipeline_call_applies_the_output_cap(kwargs, words, tiny_pipe, monkeypatch):
    from instantid.models import identitynet

    def no_step(*args, **kwargs):
        raise AssertionError("a denoising step ran before the cap was checked")

    monkeypatch.setattr(identitynet.IdentityNetModel, "forward", no_step)
    call = dict(prompt="x", image_embeds=np.ones(128, np.float32), image=Image.new("RGB", (64, 64)),
                num_inference_steps=1, width=64, height=64)
    call.update(kwargs)
    with pytest.raises(LimitError) as caught:
        tiny_pipe(**call)
    for word in words:
        assert word in str(caught.value)


def test_library_entries_pass_the_cap_on(tiny_pipe, dlib_analyzer, photos, monkeypatch):
    """swap_face's crop, swap_whole_image's output, multi's output and the environment variable."""
    from instantid.pipelines.face_region import IdentityRegion
    from instantid.pipelines.face_swap import swap_face, swap_whole_image
    from instantid.pipelines.multi_identity import generate_multi_identity

    face = _face(dlib_analyzer, photos)
    with pytest.raises(LimitError, match="128x128"):
        swap_face(tiny_pipe, [photos["astronaut"]], photos["astronaut"], analyzer=dlib_analyzer, working_side=128,
                  num_inference_steps=2, max_output_pixels=64 * 64)
    with pytest.raises(LimitError, match="128x128"):
        swap_whole_image(tiny_pipe, [photos["astronaut"]], photos["astronaut"], analyzer=dlib_analyzer, width=128,
                         height=128, num_inference_steps=2, max_output_pixels=64 * 64)
    monkeypatch.setenv("INSTANTID_MAX_OUTPUT_PIXELS", str(64 * 64))
    with pytest.raises(LimitError, match="128x64"):
        generate_multi_identity(tiny_pipe, [IdentityRegion((0, 0, 64, 64), face.embedding, face.kps / 8)], "x",
                                width=128, height=64, num_inference_steps=1)
    monkeypatch.setenv("INSTANTID_MAX_OUTPUT_PIXELS", "nan")
    with pytest.raises(LimitError, match="not a positive number"):
        generate_multi_identity(tiny_pipe, [IdentityRegion((0, 0, 64, 64), face.embedding, face.kps / 8)], "x",
                                width=64, height=64, num_inference_steps=1)


# --- bounded loading: reduced decoding where a reduced size will do, a clear cap where the whole is needed ------

def test_load_at_least_decodes_large_jpegs_reduced(huge_jpeg):
    from instantid.face.image import load_at_least

    rgb, full = load_at_least(huge_jpeg, 2048)
    assert full == (HUGE_SIDE, HUGE_SIDE) and 2048 <= max(rgb.shape[:2]) <= HUGE_SIDE // 8 + 1 and rgb.shape[2] == 3


def test_whole_photos_are_refused_above_the_full_size_cap(huge_jpeg):
    from instantid.face.image import load_image
    from instantid.pipelines.face_swap import swap_face

    with pytest.raises(LimitError, match=f"{HUGE_SIDE}x{HUGE_SIDE}.*100 MP limit for photos worked on at full size"):
        load_image(huge_jpeg)
    with pytest.raises(LimitError, match="100 MP"):  # before any face analysis or pipeline
        swap_face(object(), [huge_jpeg], huge_jpeg, analyzer=None)


def test_swap_whole_image_reads_a_huge_target_reduced(huge_jpeg, tiny_pipe, dlib_analyzer, photos, monkeypatch):
    from instantid.pipelines import face_swap

    decoded = []
    real = face_swap.load_at_least

    def spy(source, long_side):
        rgb, full = real(source, long_side)
        decoded.append(rgb.shape)
        return rgb, full

    monkeypatch.setattr(face_swap, "load_at_least", spy)
    monkeypatch.setattr(face_swap, "load_image", lambda source: pytest.fail("the target was decoded whole"))
    result = face_swap.swap_whole_image(tiny_pipe, [photos["astronaut"]], huge_jpeg, analyzer=dlib_analyzer,
                                        width=64, height=64, num_inference_steps=2)
    assert result.images[0].size == (64, 64) and max(decoded[0][:2]) <= HUGE_SIDE // 8 + 1
    x1, _, x2, _ = result.target_face.bbox  # the enlarged astronaut, found in the reduced decode
    assert x2 - x1 > 100


def test_training_images_are_decoded_reduced_and_keypoints_drawn_bounded(huge_jpeg, tmp_path, monkeypatch):
    from instantid.training import data

    embedding = tmp_path / "e.npy"
    np.save(embedding, np.zeros(128, np.float32))
    kps = np.array([[9800, 9800], [10200, 9800], [10000, 10000], [9850, 10200], [10150, 10200]], np.float32)
    item = data.TrainingItem("huge", huge_jpeg, "a photo", HUGE_SIDE, HUGE_SIDE, (9500, 9500, 10500, 10500), kps, embedding)
    dataset = data.InstantIDDataset([item], [(64, 64)])
    canvases, decoded = [], []
    real_draw, real_load = data.draw_kps, data.load_at_least
    monkeypatch.setattr(data, "draw_kps", lambda size, points: canvases.append(size) or real_draw(size, points))
    monkeypatch.setattr(data, "load_at_least",
                        lambda source, side: (lambda out: decoded.append(out[0].shape) or out)(real_load(source, side)))
    example = dataset[0]
    assert example["pixel_values"].shape == (3, 64, 64) and example["kps_image"].shape == (3, 64, 64)
    assert canvases[0][0] * canvases[0][1] <= data.KPS_CANVAS_MAX_PIXELS and max(decoded[0][:2]) <= HUGE_SIDE // 8 + 1
    assert example["kps_image"].max() > 0  # the keypoints are drawn, at the face


def test_training_image_changed_into_a_non_image_is_a_training_error(tmp_path, photos):
    from instantid.training import data
    from instantid.training.errors import TrainingDataError

    fake = tmp_path / "photo.jpg"
    fake.write_text("no longer a photo")
    embedding = tmp_path / "e.npy"
    np.save(embedding, np.zeros(128, np.float32))
    item = data.TrainingItem("x", fake, "c", 512, 512, (100, 100, 200, 200), np.full((5, 2), 150, np.float32),
                             embedding)
    with pytest.raises(TrainingDataError, match="rerun prepare-data"):
        data.InstantIDDataset([item], [(64, 64)]).pixel_values(0)


# --- odd inputs of swap, multi and the regions -----------------------------------------------------------------

@pytest.mark.parametrize("bbox, words", [
    ((np.nan, 10, 50, 50), "not finite"), ((10, 10, 10, 50), "empty"), ((50, 10, 40, 50), "empty"),
    ((500, 500, 600, 600), "face mask is empty"),
])
def test_face_mask_boxes_nan_zero_area_or_outside(bbox, words):
    from instantid.errors import RegionError
    from instantid.pipelines.repaint import crop_box, face_mask, mask_bounds

    with pytest.raises(RegionError, match=words):
        mask = face_mask((100, 100), bbox)
        crop_box(mask_bounds(mask), (100, 100))


@pytest.mark.parametrize("grow, feather, words", [
    (float("nan"), 0.1, "grow"), (0, 0.1, "grow"), (-1, 0.1, "grow"), (float("inf"), 0.1, "grow"),
    (1.3, float("nan"), "feather"), (1.3, -0.5, "feather"), (1.3, "wide", "feather"),
])
def test_swap_mask_shape_values(grow, feather, words):
    from instantid.pipelines.face_swap import swap_face

    with pytest.raises(UsageError, match=words):  # refused before the target is even read
        swap_face(object(), [], "no-such-target.jpg", analyzer=None, grow=grow, feather=feather)


@pytest.mark.parametrize("kps", [np.full((5, 2), np.nan), np.zeros((3, 2)), np.full((5, 2), np.inf)])
def test_face_detail_keypoints_nan_or_wrong_shape(kps, tiny_pipe):
    from instantid.pipelines.face_detail import face_detail

    with pytest.raises(UsageError, match="five finite"):
        face_detail(tiny_pipe, Image.new("RGB", (64, 64)), np.ones(128, np.float32), kps, mode="on")


def test_region_masks_that_are_no_image(tiny_pipe, tmp_path):
    from instantid.errors import RegionError
    from instantid.pipelines.face_region import IdentityRegion

    text = tmp_path / "mask.png"
    text.write_text("a text file named like a mask\n")
    os.mkfifo(tmp_path / "fifo.png")
    call = dict(prompt="x", image_embeds=np.ones(128, np.float32), image=Image.new("RGB", (64, 64)),
                num_inference_steps=1, width=64, height=64)
    with pytest.raises(ImageReadError, match="not an image in a format read here"):
        tiny_pipe(**call, face_region_mask=str(text))
    with pytest.raises(ImageReadError, match="FIFO"):
        tiny_pipe(**call, face_region_mask=tmp_path / "fifo.png")
    with pytest.raises(RegionError, match="a box x1,y1,x2,y2, or a mask"):
        tiny_pipe(**call, identity_regions=[IdentityRegion(region={"x": 1})])
    mask = tmp_path / "real.png"
    Image.new("L", (64, 64), 255).save(mask)  # and a real mask file works
    assert tiny_pipe(**call, face_region_mask=mask).images[0].size == (64, 64)


@pytest.mark.parametrize("boxes, scale, words", [
    ([(10, 10, 10, 50)], 1.0, "empty"),
    ([(float("nan"), 0, 10, 10)], 1.0, "non-finite"),
    ([(0, 0, 200, 64)], 1.0, "outside"),
    ([(0, 0, 32, 32), (32, 0, 64, 32)], 1.0, "1 face photos but 2 regions"),
    ([(0, 0, 32, 32)], [float("nan")], "finite number >= 0"),
    ([(0, 0, 32, 32)], -1.0, "finite number >= 0"),
    ([(0, 0, 32, 32)], "strong", "scale must be a number"),
])
def test_multi_boxes_and_scales_are_refused_before_face_analysis(boxes, scale, words, photos):
    from instantid.errors import RegionError
    from instantid.pipelines.multi_identity import identities_from_photos

    class NoAnalysis:
        name = "none"

        def detect(self, image):
            raise AssertionError("faces were analysed before the refusal")

    with pytest.raises(RegionError, match=words):
        identities_from_photos([photos["astronaut"]], NoAnalysis(), boxes=boxes, size=(64, 64), scale=scale)


def test_overlapping_regions_are_a_region_error(tiny_pipe):
    from instantid.errors import RegionError
    from instantid.pipelines.face_region import IdentityRegion

    regions = [IdentityRegion((0, 0, 48, 64), scale=1.0), IdentityRegion((16, 0, 64, 64), scale=1.0)]
    with pytest.raises(RegionError, match="overlap"):
        tiny_pipe(prompt="x", image_embeds=np.ones(128, np.float32), image=Image.new("RGB", (64, 64)),
                  num_inference_steps=1, width=64, height=64, identity_regions=regions)


# --- the service's engine: the same library checks --------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from instantid.pipelines.loading import LoadOptions
    from instantid.serving.engine import Engine, EngineConfig

    config = EngineConfig(load=LoadOptions(tiny=True, device="cpu"))
    engine = Engine(config, face_cache_dir=tmp_path_factory.mktemp("face-cache"))
    engine.load()
    return engine


def test_engine_refuses_odd_values_photos_sizes_and_nan_output(engine, photos, tmp_path, monkeypatch):
    from instantid.errors import NoFaceError
    from instantid.serving.schemas import JobRequest

    with pytest.raises(UsageError, match="finite"):
        engine.check_request({"guidance_scale": float("nan")})
    with pytest.raises(UsageError):
        engine.check_request({"width": 100_000})
    os.mkfifo(tmp_path / "face.jpg")
    with pytest.raises(NoFaceError, match="FIFO"):
        engine.condition([tmp_path / "face.jpg"])
    values = engine.check_request({"num_inference_steps": 1, "width": 64, "height": 64})[0]
    request, folder = JobRequest(prompt="x", faces=[photos["astronaut"].name], **values), photos["astronaut"].parent
    monkeypatch.setenv("INSTANTID_MAX_OUTPUT_PIXELS", str(32 * 32))  # the library's cap, below the service's own
    with pytest.raises(LimitError, match="output cap"):
        engine.generate(request, folder)
    monkeypatch.delenv("INSTANTID_MAX_OUTPUT_PIXELS")
    with nan_decoder(engine.pipe), pytest.raises(GenerationError, match="contains NaN"):
        engine.generate(request, folder)
    images, _ = engine.generate(request, folder)
    assert images[0].size == (64, 64)
