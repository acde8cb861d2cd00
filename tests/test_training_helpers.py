"""Helpers for the training tests: a small captioned photo set from the photos shipped in packages.

Four real photos, each in four variants (as is, mirrored, cropped, colour-jittered) -> 16 items,
small (long side <= 256 px) so dlib and the tiny models stay fast. `add_bad_items` adds one of each
kind of bad input prepare-data must count and skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from instantid.face.samples import sample_photo

LONG_SIDE = 256
# name -> (sample photo, crop box (left, top, right, bottom) in fractions, or None for the whole photo)
BASE_PHOTOS = {
    "astronaut": ("astronaut", None),
    "grace_hopper": ("grace_hopper", None),
    "tom_hanks": ("tom_hanks", None),
    "t1_right": ("t1", (0.55, 0.0, 0.95, 0.45)),  # one face out of the group photo
}
PREPARE_MIN_SIZES = {"min_image_size": 96, "min_face_size": 24}
BAD_ITEM_REASONS = {"corrupt_image": 1, "missing_caption": 1, "no_face": 1}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared CPU a two-thread op waits for
    whichever thread is descheduled (measured here: 0.12 s per training step with one thread, 15 s
    with two, while other jobs ran). Import it autouse-style into a test module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def training_photos(tmp_path_factory) -> Path:
    """A folder of captioned real photos with augmented copies, plus bad items (see make_photo_folder)."""
    folder = make_photo_folder(tmp_path_factory.mktemp("src") / "photos")
    add_bad_items(folder)
    return folder


def _fit(image: Image.Image) -> Image.Image:
    scale = LONG_SIDE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def variants(photo: Image.Image) -> dict[str, Image.Image]:
    """Four deterministic augmentations that keep the face visible and detectable."""
    width, height = photo.size
    return {
        "plain": photo,
        "mirrored": ImageOps.mirror(photo),
        "cropped": _fit(photo.crop((round(width * 0.08), round(height * 0.05), round(width * 0.95), height))),
        "jittered": ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(photo).enhance(1.15))
                                       .enhance(0.85)).enhance(1.3),
    }


def make_photo_folder(root: Path) -> Path:
    """Images + .txt captions in `root` (16 items)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (sample, box) in BASE_PHOTOS.items():
        photo = Image.open(sample_photo(sample)).convert("RGB")
        if box:
            w, h = photo.size
            photo = photo.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
        photo = _fit(photo)
        for variant, image in variants(photo).items():
            image.save(root / f"{name}_{variant}.jpg", quality=92)
            (root / f"{name}_{variant}.txt").write_text(f"a photo of {name.replace('_', ' ')}, {variant}")
    return root


def add_bad_items(root: Path) -> None:
    """One corrupt image, one image without caption, one image without a face."""
    good = next(root.glob("astronaut_plain.jpg")).read_bytes()
    (root / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (root / "broken.txt").write_text("a broken file")
    Image.open(root / "grace_hopper_plain.jpg").save(root / "uncaptioned.jpg")  # no .txt beside it
    Image.new("RGB", (200, 200), (90, 140, 200)).save(root / "sky.jpg")
    (root / "sky.txt").write_text("a blue sky")


def write_table(root: Path, rows: list) -> Path:
    """A metadata.jsonl whose rows are dicts, or raw strings for unreadable rows."""
    table = root / "metadata.jsonl"
    table.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return table


def test_variants_are_distinct_images(tmp_path):
    folder = make_photo_folder(tmp_path / "photos")
    images = sorted(folder.glob("*.jpg"))
    assert len(images) == 16 and len(list(folder.glob("*.txt"))) == 16
    assert len({p.read_bytes() for p in images}) == 16
