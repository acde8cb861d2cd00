"""load_image / load_for_detection / fit_for_detection on real photos and on broken or unusual files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from instantid.errors import ImageReadError
from instantid.face import image as image_module
from instantid.face.image import fit_for_detection, image_size, load_for_detection, load_image
from instantid.face.samples import SamplePhotoNotFoundError, sample_photo
from huge_photo import HUGE_SIDE

EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def astronaut(photos) -> np.ndarray:
    return np.asarray(Image.open(photos["astronaut"]).convert("RGB"))


# --- sources ---------------------------------------------------------------------------------


def test_path_pil_and_array_give_the_same_pixels(photos, astronaut):
    from_path = load_image(photos["astronaut"])
    from_str = load_image(str(photos["astronaut"]))
    from_pil = load_image(Image.open(photos["astronaut"]))
    from_array = load_image(astronaut)
    assert from_path.dtype == np.uint8 and from_path.shape == (512, 512, 3)
    for other in (from_str, from_pil, from_array):
        np.testing.assert_array_equal(from_path, other)


def test_array_forms(astronaut):
    grey = astronaut[:, :, 0]
    assert load_image(grey).shape == (512, 512, 3)
    np.testing.assert_array_equal(load_image(grey[:, :, None])[:, :, 1], grey)
    np.testing.assert_array_equal(load_image(astronaut.astype(np.uint16) * 257), astronaut)
    np.testing.assert_array_equal(load_image(astronaut / 255.0), astronaut)


def test_rgba_array_is_composited_on_white(astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    out = load_image(rgba)
    assert (out[:10, :10] == 255).all()
    np.testing.assert_array_equal(out[20:, 20:], astronaut[20:, 20:])


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.full((8, 8, 3), 200.0), "[0, 1]"),
        (np.zeros((8, 8, 2), np.uint8), "HxWx3"),
        (np.zeros((8, 8, 3), np.int64), "dtype"),
        (12, "file path"),
    ],
)
def test_unusable_objects_are_refused_with_the_fix(bad, words):
    with pytest.raises(ImageReadError) as caught:
        load_image(bad)
    assert words in str(caught.value)


# --- broken files ----------------------------------------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg.*empty"):
        load_image(path)


def test_zero_size_special_file_with_content_is_not_called_empty():
    # /proc files report 0 bytes but have content: not "empty", but not an image either
    with pytest.raises(ImageReadError) as caught:
        load_image("/proc/cpuinfo")
    assert "empty" not in str(caught.value) and "not an image" in str(caught.value)


def test_truncated_jpeg(tmp_path, photos):
    path = tmp_path / "cut.jpg"
    Image.open(photos["astronaut"]).convert("RGB").save(path, quality=90)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated or corrupt"):
        load_image(path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageReadError, match="notes.png is not an image"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


def test_pixel_limit_refuses_and_leaves_pillow_setting_alone(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 300)).save(path)
    before = Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(image_module, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageReadError, match="wide.png is 400x300.*decompression bombs"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS == before


def test_decoding_in_threads_never_turns_pillows_bomb_guard_off(tmp_path, photos):
    """Three threads decoding photos while a fourth watches Pillow's process-wide pixel limit: it never reads
    None (the guard off), during or after; our own limit applies to our decodes only."""
    import threading

    before = Image.MAX_IMAGE_PIXELS
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.add(Image.MAX_IMAGE_PIXELS)

    def decode():
        for _ in range(5):
            for name in ("astronaut", "grace_hopper", "t1"):
                load_image(photos[name])

    watcher = threading.Thread(target=watch)
    watcher.start()
    loaders = [threading.Thread(target=decode) for _ in range(3)]
    for thread in loaders:
        thread.start()
    for thread in loaders:
        thread.join()
    stop.set()
    watcher.join()
    assert seen == {before} and Image.MAX_IMAGE_PIXELS == before


@pytest.mark.parametrize("form", ["float_tiff", "pil_f"])
def test_float_image_holding_nan_is_refused_not_read_black(tmp_path, form):
    pixels = np.full((64, 64), 0.5, np.float32)
    pixels[10:20, 10:20] = np.nan
    source = Image.fromarray(pixels, mode="F")
    if form == "float_tiff":
        source.save(tmp_path / "nan.tif")
        source = tmp_path / "nan.tif"
    with pytest.raises(ImageReadError, match="100 NaN or infinite pixel value"):
        load_image(source)


# --- modes -----------------------------------------------------------------------------------


def test_cmyk_jpeg(tmp_path, astronaut):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(astronaut).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut).mean() < 6


def test_16_bit_png_is_rescaled_not_clipped(tmp_path, astronaut):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    path = tmp_path / "deep.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    np.testing.assert_array_equal(out[:, :, 0], grey)


def test_32_bit_integer_image_holding_16_bit_values():
    deep = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32), mode="I")
    assert load_image(deep)[0, :, 0].tolist() == [0, 128, 255]


def test_rgba_png_on_white(tmp_path, astronaut):
    rgba = Image.fromarray(astronaut).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(512)[None, :] < 256, 0, 255).astype(np.uint8).repeat(512, 0)))
    path = tmp_path / "cutout.png"
    rgba.save(path)
    out = load_image(path)
    assert (out[:, :256] == 255).all()
    np.testing.assert_array_equal(out[:, 256:], astronaut[:, 256:])


def test_palette_and_greyscale_png(tmp_path, astronaut):
    for mode in ("P", "L", "1"):
        path = tmp_path / f"{mode}.png"
        Image.fromarray(astronaut).convert(mode).save(path)
        assert load_image(path).shape == (512, 512, 3)


def test_exif_orientation_is_applied(tmp_path, astronaut):
    path = tmp_path / "rotated.jpg"
    stored = Image.fromarray(astronaut).crop((0, 0, 512, 400)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to view"
    stored.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (400, 512)
    assert image_size(path) == (512, 400)
    out = load_image(path)
    assert out.shape == (400, 512, 3)
    assert np.abs(out.astype(int) - astronaut[:400]).mean() < 6


# --- large photos ----------------------------------------------------------------------------


def test_fit_for_detection():
    big = np.zeros((3000, 1500, 3), np.uint8)
    small, factor = fit_for_detection(big, 1000)
    assert small.shape == (1000, 500, 3) and factor == pytest.approx(1 / 3)
    same, factor = fit_for_detection(big, 4000)
    assert same is big and factor == 1.0


def test_huge_jpeg_loads_downscaled(huge_jpeg):
    # 400 MP is past Pillow's own bomb limit (~179 MP): neither its warning nor its error may escape.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(huge_jpeg) == (HUGE_SIDE, HUGE_SIDE)
        small, factor = load_for_detection(huge_jpeg, 1280)
    assert small.shape == (1280, 1280, 3)
    assert factor == pytest.approx(1280 / HUGE_SIDE)


# --- sample photos ---------------------------------------------------------------------------


def test_sample_photos_exist(photos):
    for path in photos.values():
        assert path.is_file()
    with pytest.raises(ValueError, match="astronaut"):
        sample_photo("nobody")


def test_sample_photo_names_the_missing_package(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SamplePhotoNotFoundError, match="pip install scikit-image"):
        sample_photo("astronaut")
