"""The sharded dataset format: WebDataset tar shards of face records, and the index that lists them.

    OUT/index.json                 written last: format version, backend, embedding size, shards, counts
    OUT/shards/000000-00.tar       samples of source chunk 0 (a chunk rolls over to -01, -02 past --shard-max-bytes)
    OUT/shards/000000.done.json    the chunk is finished: its tar parts, sample counts, rejections
    OUT/rejected.jsonl             every source item left out, with the reason (gathered from the chunks)

One sample (WebDataset convention: files sharing a key, `<key>.<ext>`):

    <key>.<jpg|png|...>   the image bytes exactly as they came (never re-encoded)
    <key>.txt             the caption
    <key>.json            width, height, bbox, kps (five points), score, num_faces, identity (or null), image ext
    <key>.npy             the raw float32 identity embedding

A chunk is a fixed slice of the source's items (`--shard-size` items), so a rerun knows which chunks are
finished from their `.done.json` and redoes only the others.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TrainingDataError

INDEX = "index.json"
SHARDS_DIR = "shards"
REJECTED = "rejected.jsonl"
FORMAT = "instantid-webdataset"
FORMAT_VERSION = 1
META_KEYS = ("width", "height", "bbox", "kps", "score", "num_faces", "identity", "image_ext")


def chunk_name(chunk: int) -> str:
    return f"{chunk:06d}"


def done_path(out: Path, chunk: int) -> Path:
    return out / SHARDS_DIR / f"{chunk_name(chunk)}.done.json"


def encode_sample(key: str, image_bytes: bytes, image_ext: str, caption: str, meta: dict, embedding: np.ndarray) -> dict:
    """A WebDataset sample dict (what `webdataset.TarWriter.write` takes)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(embedding, dtype=np.float32))
    return {"__key__": key, image_ext: image_bytes, "txt": caption.encode("utf-8"),
            "json": json.dumps({**meta, "image_ext": image_ext}).encode("utf-8"), "npy": buffer.getvalue()}


@dataclass(frozen=True)
class ShardSample:
    """One sample read back from a shard (undecoded image)."""

    key: str
    image_bytes: bytes
    caption: str
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    kps: np.ndarray  # [5, 2] pixels of the original image
    score: float
    identity: str | None
    embedding: np.ndarray

    @property
    def id(self) -> str:
        return self.key

    @property
    def face_centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2


def decode_sample(raw: dict) -> ShardSample:
    """A raw WebDataset sample (bytes per extension) -> ShardSample; ValueError names what is wrong."""
    try:
        meta = json.loads(raw["json"])
        image_bytes = raw[meta["image_ext"]]
        embedding = np.load(io.BytesIO(raw["npy"]), allow_pickle=False).astype(np.float32).reshape(-1)
        kps = np.asarray(meta["kps"], dtype=np.float32)
        bbox = tuple(float(v) for v in meta["bbox"])
        sample = ShardSample(str(raw["__key__"]), bytes(image_bytes), raw["txt"].decode("utf-8"), int(meta["width"]),
                             int(meta["height"]), bbox, kps, float(meta.get("score", 0.0)), meta.get("identity"),
                             embedding)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"sample {raw.get('__key__', '?')}: {type(err).__name__}: {err}") from None
    if kps.shape != (5, 2) or len(bbox) != 4 or sample.width <= 0 or sample.height <= 0 or not embedding.size \
            or not np.isfinite(embedding).all():
        raise ValueError(f"sample {sample.key}: bad shapes or values in its record")
    return sample


def is_sharded(data_dir: str | os.PathLike) -> bool:
    return (Path(data_dir) / INDEX).is_file()


def read_index(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / INDEX
    if not path.is_file():
        raise TrainingDataError(f"{data_dir} has no {INDEX}: `instantid prepare-data SRC {data_dir} --shards` writes it "
                                "last, so the preparation did not finish; rerun it (finished shards are kept)")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT or int(index.get("format_version", 0)) > FORMAT_VERSION:
        raise TrainingDataError(f"{path} is format {index.get('format')!r} version {index.get('format_version')}; "
                                f"this instantid reads {FORMAT} up to version {FORMAT_VERSION}: upgrade instantid")
    return index


def shard_urls(data_dir: str | os.PathLike, index: dict) -> list[str]:
    """Every shard's location: relative names resolve against the data folder; URLs (s3://, pipe:) stay as given."""
    return [name if "://" in name or name.startswith("pipe:") else str(Path(data_dir) / name)
            for name in (shard["name"] for shard in index["shards"])]


def write_index(out: Path, backend: str, embedding_dim: int, source: str, chunks: list[dict],
                source_rejected: dict | None = None) -> dict:
    """index.json from the finished chunks (written last: its presence means the dataset is complete);
    `source_rejected`: counts of source rows that never became items."""
    shards = [part for chunk in sorted(chunks, key=lambda c: c["chunk"]) for part in chunk["parts"]]
    rejected: dict = dict(source_rejected or {})
    for chunk in chunks:
        for reason, count in chunk["rejected"].items():
            rejected[reason] = rejected.get(reason, 0) + count
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": backend, "embedding_dim": embedding_dim,
             "source": source, "samples": sum(s["samples"] for s in shards), "bytes": sum(s["bytes"] for s in shards),
             "chunks": len(chunks), "rejected": dict(sorted(rejected.items())), "shards": shards}
    tmp = out / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2), encoding="utf-8")
    os.replace(tmp, out / INDEX)
    return index
