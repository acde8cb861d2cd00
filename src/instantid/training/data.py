"""The training dataset: prepared items -> image, keypoint image and face embedding tensors, in
aspect-ratio buckets, in a deterministic order that resumes exactly.

Every photo is resized to cover its bucket and cropped around its face (a centre crop would cut the
face out of tall portraits). The keypoint image is drawn at the photo's original resolution and goes
through the very same resize and crop, so points and photo stay aligned.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ImageReadError, LimitError
from ..face.image import load_at_least
from ..face.keypoints import draw_kps
from .errors import TrainingDataError
from .prepare import MANIFEST, read_dataset_info
from .references import pick_reference

logger = logging.getLogger(__name__)

Size = tuple[int, int]  # (width, height)


@dataclass(frozen=True)
class TrainingItem:
    """One usable image of a prepared dataset (a manifest.jsonl row)."""

    id: str
    image: Path
    caption: str
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    kps: np.ndarray  # [5, 2], pixels of the original image
    embedding_file: Path
    identity: str | None = None  # person label, for paired references

    @property
    def face_centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass(frozen=True)
class PreparedDataset:
    items: list[TrainingItem]
    backend: str
    embedding_dim: int
    skipped_rows: Counter  # reason -> manifest rows left out

    @property
    def num_items(self) -> int:
        return len(self.items)


def read_prepared_dataset(data_dir: str | Path) -> PreparedDataset:
    """The usable items of a `prepare-data` folder, sorted by id; unreadable rows are counted and skipped."""
    data_dir = Path(data_dir)
    info = read_dataset_info(data_dir)
    items, skipped = [], Counter()
    with (data_dir / MANIFEST).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            item, reason = _parse_row(line, data_dir)
            if item is None:
                skipped[reason] += 1
                logger.warning("%s line %d skipped: %s", MANIFEST, number, reason)
            else:
                items.append(item)
    if not items:
        raise TrainingDataError(f"{data_dir / MANIFEST} has no usable rows ({dict(skipped) or 'empty'}); "
                                "run `instantid prepare-data` on images with faces and captions")
    return PreparedDataset(sorted(items, key=lambda i: i.id), info["backend"], int(info["embedding_dim"]), skipped)


def _parse_row(line: str, data_dir: Path) -> tuple[TrainingItem | None, str]:
    try:
        row = json.loads(line)
        kps = np.asarray(row["kps"], dtype=np.float32)
        item = TrainingItem(str(row["id"]), Path(row["image"]), str(row["caption"]), int(row["width"]),
                            int(row["height"]), tuple(float(v) for v in row["bbox"]), kps,
                            data_dir / row["embedding"], row.get("identity"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, "unreadable_row"
    if kps.shape != (5, 2) or len(item.bbox) != 4 or item.width <= 0 or item.height <= 0:
        return None, "unreadable_row"
    if not item.embedding_file.is_file():
        return None, "missing_embedding"
    if not item.image.is_file():
        return None, "missing_image"
    return item, ""


# ---- aspect-ratio buckets -----------------------------------------------------------------------

def make_buckets(resolution: int, step: int, max_aspect_ratio: float) -> list[Size]:
    """(width, height) pairs, multiples of `step`, of about resolution^2 pixels (never more), with
    aspect ratios from 1/max_aspect_ratio to max_aspect_ratio. Always holds the square."""
    side = resolution // step * step
    buckets = {(side, side)}
    for width in range(step, 4 * resolution + 1, step):
        height = (resolution * resolution // width) // step * step
        if height >= step and 1 / max_aspect_ratio <= width / height <= max_aspect_ratio:
            buckets.add((width, height))
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[Size]) -> Size:
    """The bucket whose aspect ratio is closest (in log space, so 2:1 and 1:2 are equally far from 1:1)."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


# ---- resize and crop around the face -------------------------------------------------------------

@dataclass(frozen=True)
class CropPlan:
    resized: Size  # the photo is resized to this (covering the bucket) ...
    left: int  # ... then cropped to the bucket from here
    top: int
    bucket: Size


def plan_crop(original: Size, bucket: Size, face_centre: tuple[float, float]) -> CropPlan:
    """Resize to cover `bucket`, then the bucket-sized window centred on the face, kept inside the photo."""
    (width, height), (bucket_w, bucket_h) = original, bucket
    scale = max(bucket_w / width, bucket_h / height)
    resized = (max(bucket_w, round(width * scale)), max(bucket_h, round(height * scale)))
    cx, cy = face_centre[0] * resized[0] / width, face_centre[1] * resized[1] / height
    left = int(min(max(round(cx - bucket_w / 2), 0), resized[0] - bucket_w))
    top = int(min(max(round(cy - bucket_h / 2), 0), resized[1] - bucket_h))
    return CropPlan(resized, left, top, bucket)


def apply_crop(image: Image.Image, plan: CropPlan, resample=Image.Resampling.BICUBIC) -> Image.Image:
    resized = image.resize(plan.resized, resample)
    return resized.crop((plan.left, plan.top, plan.left + plan.bucket[0], plan.top + plan.bucket[1]))


# Keypoint images are drawn at the photo's resolution up to this many pixels; beyond, at the largest
# integer reduction that fits (a huge photo's canvas would take gigabytes only to be shrunk to the bucket).
KPS_CANVAS_MAX_PIXELS = 16_000_000


def keypoint_image(item: TrainingItem, plan: CropPlan) -> Image.Image:
    """IdentityNet's condition: drawn at the original resolution (reduced for huge photos, see
    KPS_CANVAS_MAX_PIXELS), then resized and cropped like the photo."""
    reduce = max(1, math.ceil(math.sqrt(item.width * item.height / KPS_CANVAS_MAX_PIXELS)))
    size = (max(1, item.width // reduce), max(1, item.height // reduce))
    kps = np.asarray(item.kps, dtype=np.float64) * [size[0] / item.width, size[1] / item.height]
    return apply_crop(draw_kps(size, kps), plan, Image.Resampling.BILINEAR)


def to_tensor(image: Image.Image, normalise: bool) -> torch.Tensor:
    """PIL RGB -> [3, H, W] float32, in [-1, 1] (VAE input) or [0, 1] (ControlNet condition, as pipelines feed it)."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return array * 2.0 - 1.0 if normalise else array


# ---- the dataset ---------------------------------------------------------------------------------

class InstantIDDataset(torch.utils.data.Dataset):
    """Items -> dicts of tensors. With a feature cache, cached latents / text embeddings replace decoding."""

    def __init__(self, items: list[TrainingItem], buckets: list[Size], latent_cache=None, text_cache=None,
                 references=None):
        self.items = items
        self.references = references  # (ReferenceMode, IdentityGroups, seed) for --reference other / mixed:P
        self.bucket_of = [nearest_bucket(item.width, item.height, buckets) for item in items]
        self.latent_cache = latent_cache
        self.text_cache = text_cache

    def __len__(self) -> int:
        return len(self.items)

    def reference_index(self, index: int) -> int:
        """Whose embedding conditions item `index` (`--reference`): a function of (seed, index) only, so it is
        the same in every epoch, process and resumed run."""
        if self.references is None:
            return index
        mode, groups, seed = self.references
        return pick_reference(mode, groups, index, np.random.default_rng([seed, 6, index]))

    def crop_plan(self, index: int) -> CropPlan:
        item = self.items[index]
        return plan_crop((item.width, item.height), self.bucket_of[index], item.face_centre)

    def __getitem__(self, index: int) -> dict:
        item, plan = self.items[index], self.crop_plan(index)
        reference = self.items[self.reference_index(index)]
        example = {"index": index, **conditions(item, plan, np.load(reference.embedding_file))}
        if self.latent_cache is not None:
            example["latents"] = self.latent_cache.load(item.id)
        else:
            example["pixel_values"] = self.pixel_values(index)
        if self.text_cache is not None:
            example.update(self.text_cache.load(item.id))
        return example

    def pixel_values(self, index: int) -> torch.Tensor:
        item = self.items[index]
        return cropped_pixels(item.image, (item.width, item.height), self.crop_plan(index), str(item.image))


def cropped_pixels(source, size: Size, plan: CropPlan, name: str) -> torch.Tensor:
    """The photo (a path, or a shard's image bytes) resized and cropped to its bucket. Only the resized size is
    needed, so large photos are decoded at a reduced size (face.image.load_at_least), never whole."""
    try:
        rgb, full = load_at_least(source, max(plan.resized))
    except (ImageReadError, LimitError) as err:  # changed on disk since prepare-data accepted it
        raise TrainingDataError(f"{name}: {err}; rerun prepare-data into a new folder") from None
    if full != tuple(size):
        raise TrainingDataError(f"{name} is {full[0]}x{full[1]} now, not the {size[0]}x{size[1]} "
                                "prepare-data saw; rerun prepare-data into a new folder")
    return to_tensor(apply_crop(Image.fromarray(rgb), plan), normalise=True)


def conditions(record, plan: CropPlan, embedding: np.ndarray) -> dict:
    """Everything but the pixels for one record (a TrainingItem or a shard sample): caption, keypoint image,
    face embedding, SDXL time ids. One builder for both storage formats."""
    return {
        "caption": record.caption,
        "kps_image": to_tensor(keypoint_image(record, plan), normalise=False),
        "face_embedding": torch.from_numpy(np.asarray(embedding, dtype=np.float32).reshape(-1)),
        # SDXL's micro-conditioning, (height, width) order as in diffusers
        "time_ids": torch.tensor([record.height, record.width, plan.top, plan.left, plan.bucket[1], plan.bucket[0]],
                                 dtype=torch.float32),
    }


def collate(examples: list[dict]) -> dict:
    """Stack tensors, keep captions as a list. Every example of a batch shares one bucket."""
    batch = {"caption": [e["caption"] for e in examples], "index": [e["index"] for e in examples]}
    for key in examples[0]:
        if key not in batch:
            batch[key] = torch.stack([e[key] for e in examples])
    return batch


# ---- batches: bucket by bucket, deterministic per (seed, epoch), sharded across processes ----------

class BucketBatchSampler(torch.utils.data.Sampler):
    """Full batches of one bucket each, shuffled by (seed, epoch) the same way on every process;
    process `rank` takes every `num_replicas`-th batch. A bucket's last batch is filled up with
    repeats of its own items, and the batch list with repeats of its first batches, so every
    process gets the same number of full batches. `set_epoch(epoch, skip)` resumes mid-epoch."""

    def __init__(self, bucket_of: list, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0):
        self.bucket_of, self.batch_size, self.seed = bucket_of, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def all_batches(self, epoch: int) -> list[list[int]]:
        """Every process's batches of `epoch`, in order (process r takes r, r + num_replicas, ...)."""
        rng = np.random.default_rng([self.seed, epoch])
        members: dict = {}
        for index, bucket in enumerate(self.bucket_of):
            members.setdefault(bucket, []).append(index)
        batches = []
        for bucket in sorted(members):
            order = [members[bucket][i] for i in rng.permutation(len(members[bucket]))]
            padded = order + [order[i % len(order)] for i in range(-len(order) % self.batch_size)]
            batches += [padded[i:i + self.batch_size] for i in range(0, len(padded), self.batch_size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches + batches[: -len(batches) % self.num_replicas]

    def __len__(self) -> int:
        return len(self.all_batches(self.epoch)) // self.num_replicas

    def __iter__(self):
        mine = self.all_batches(self.epoch)[self.rank::self.num_replicas]
        yield from mine[self.skip:]
