"""Optional precomputation: VAE latents and caption embeddings, encoded once before training.

Each item's features go to `OUT/cache/<kind>-<fingerprint>/ab/<id>.pt`; the fingerprint covers
everything the features depend on (base model, resolution, buckets), so changing those never reuses
stale files. The main process fills the cache first; the others then only read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from .conditioning import encode_captions, encode_images

logger = logging.getLogger(__name__)


class FeatureCache:
    """Tensors (or dicts of tensors) per item id, one file each, written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, item_id: str) -> Path:
        return self.folder / item_id[:2] / f"{item_id}.pt"

    def has(self, item_id: str) -> bool:
        return self.path(item_id).is_file()

    def save(self, item_id: str, value) -> None:
        path = self.path(item_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(value, partial)
        partial.replace(path)  # readers never see half a file

    def load(self, item_id: str):
        return torch.load(self.path(item_id), map_location="cpu", weights_only=True)


def cache_for(output_dir: str | os.PathLike, kind: str, **depends_on) -> FeatureCache:
    fingerprint = hashlib.sha1(json.dumps(depends_on, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return FeatureCache(Path(output_dir) / "cache" / f"{kind}-{fingerprint}")


def fill_latent_cache(dataset, cache: FeatureCache, vae, batch_size: int, progress: bool = True) -> int:
    """Encode every item not cached yet (same-bucket batches); returns how many were encoded."""
    from tqdm.auto import tqdm

    missing = [i for i, item in enumerate(dataset.items) if not cache.has(item.id)]
    by_bucket: dict = {}
    for index in missing:
        by_bucket.setdefault(dataset.bucket_of[index], []).append(index)
    with tqdm(total=len(missing), desc="caching latents", disable=not progress or not missing) as bar:
        for indices in by_bucket.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                latents = encode_images(vae, torch.stack([dataset.pixel_values(i) for i in chunk]))
                for index, latent in zip(chunk, latents.cpu()):
                    cache.save(dataset.items[index].id, latent.clone())
                bar.update(len(chunk))
    return len(missing)


def fill_text_cache(items, cache: FeatureCache, pipe, family: str, device, batch_size: int,
                    progress: bool = True) -> int:
    """Encode every caption not cached yet; returns how many were encoded."""
    from tqdm.auto import tqdm

    missing = [item for item in items if not cache.has(item.id)]
    with tqdm(total=len(missing), desc="caching text embeddings", disable=not progress or not missing) as bar:
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            encoded = encode_captions(pipe, family, [item.caption for item in chunk], device)
            for row, item in enumerate(chunk):
                cache.save(item.id, {key: value[row].float().cpu().clone() for key, value in encoded.items()})
            bar.update(len(chunk))
    return len(missing)
