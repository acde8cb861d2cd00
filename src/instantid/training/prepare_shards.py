"""`prepare-data --shards`: face analysis as a Ray Data pipeline, writing WebDataset shards (see shards.py).

The source's items are cut into chunks of `shard_size` items. Ray Data maps the unfinished chunks over an
actor pool (`map_batches` with a callable class): each actor loads the face backend once, analyses its
chunk's images and writes the chunk's tar parts itself (so writing scales with the workers, and a cluster
writes straight to shared storage), then a `.done.json`. The driver gathers the chunks' records into
`rejected.jsonl` and writes `index.json` last. A rerun skips every chunk with a `.done.json`.

`--from-folder` converts a `prepare-data` folder (manifest + embeddings) into the same shards, no face
model involved.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import TrainingDataError
from .prepare import FaceRecord, PrepareOptions, analyse_item, manifest_row, problem_id
from .shards import REJECTED, SHARDS_DIR, chunk_name, done_path, encode_sample, write_index
from .sources import SourceItem, read_source

logger = logging.getLogger(__name__)

META_FROM_MANIFEST = ("width", "height", "bbox", "kps", "score", "num_faces")


@dataclass(frozen=True)
class ShardOptions:
    shard_size: int = 1000  # source items per chunk (its tar parts hold the usable ones)
    shard_max_bytes: int = 1_000_000_000  # a chunk's tar rolls over to a new part past this
    ray_address: str | None = None  # join this cluster; None: start a local Ray
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class ShardReport:
    output: str
    backend: str
    embedding_dim: int
    items_in_source: int
    samples: int
    shards: int
    chunks_done_before: int
    rejected: dict

    def summary(self) -> str:
        lines = [f"{self.samples} samples in {self.shards} shard(s) under {self.output} from {self.items_in_source} "
                 f"source items ({self.chunks_done_before} chunk(s) done before); {sum(self.rejected.values())} left out"]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.rejected.items())]
        return "\n".join(lines)


# ---- one chunk ----------------------------------------------------------------------------------

def image_ext(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpeg": "jpg", "tif": "tiff"}.get(ext, ext) or "img"


def write_chunk(out: Path, chunk: int, records, max_bytes: int) -> dict:
    """Write the usable FaceRecords of one chunk into tar parts, atomically: parts are written in a temporary
    folder, moved in place, then `.done.json` marks the chunk finished. Returns the done record."""
    import webdataset as wds

    shards = out / SHARDS_DIR
    tmp = shards / f".tmp-{chunk_name(chunk)}"
    shutil.rmtree(tmp, ignore_errors=True)  # a killed run's half-written chunk
    tmp.mkdir(parents=True)
    parts, rejected = [], []
    writer, size, count = None, 0, 0

    def close_part():
        if writer is not None:
            writer.close()
            parts.append({"name": f"{SHARDS_DIR}/{chunk_name(chunk)}-{len(parts):02d}.tar", "samples": count,
                          "bytes": (tmp / f"{len(parts):02d}.tar").stat().st_size})

    for record in records:
        if record.reason is not None:
            rejected.append({"id": record.item.id, "image": str(record.item.image), "reason": record.reason,
                             "detail": record.detail})
            continue
        data = Path(record.item.image).read_bytes()
        row = manifest_row(record, "")
        meta = {key: row[key] for key in META_FROM_MANIFEST}
        meta["identity"] = record.item.identity
        sample = encode_sample(record.item.id, data, image_ext(Path(record.item.image)), record.item.caption, meta,
                               record.embedding)
        sample_bytes = sum(len(v) for k, v in sample.items() if k != "__key__") + 512 * len(sample)
        if writer is None or (count and size + sample_bytes > max_bytes):
            close_part()
            writer = wds.TarWriter(str(tmp / f"{len(parts):02d}.tar"))
            size, count = 0, 0
        writer.write(sample)
        size += sample_bytes
        count += 1
    close_part()
    for number, part in enumerate(parts):
        os.replace(tmp / f"{number:02d}.tar", out / part["name"])
    reasons: dict = {}
    for row in rejected:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    done = {"chunk": chunk, "parts": parts, "samples": sum(p["samples"] for p in parts), "rejected": reasons,
            "rejected_rows": rejected, "worker": os.getpid()}
    target = done_path(out, chunk)
    (tmp / "done.json").write_text(json.dumps(done), encoding="utf-8")
    os.replace(tmp / "done.json", target)
    shutil.rmtree(tmp, ignore_errors=True)
    return done


class ChunkAnalyser:
    """A Ray Data actor: loads the face backend once, then analyses and writes whole chunks."""

    def __init__(self, out: str, options: dict, max_bytes: int):
        from ..face import get_face_analyzer

        self.out, self.max_bytes = Path(out), max_bytes
        self.options = PrepareOptions(**options)
        self.analyzer = get_face_analyzer(self.options.backend, **self.options.analyzer_kwargs())

    def __call__(self, batch: dict) -> dict:
        done = []
        for chunk, items in zip(batch["chunk"], batch["items"]):
            source = [SourceItem(i["id"], Path(i["image"]), i["caption"], i.get("identity")) for i in json.loads(items)]
            records = (analyse_item(item, self.analyzer, self.options) for item in source)
            record = write_chunk(self.out, int(chunk), records, self.max_bytes)
            done.append(json.dumps({k: record[k] for k in ("chunk", "samples")}))
        return {"done": np.array(done, dtype=object)}


# ---- the whole run ------------------------------------------------------------------------------

def prepare_shards(src, out, options: PrepareOptions = PrepareOptions(), shard: ShardOptions = ShardOptions()
                   ) -> ShardReport:
    """Analyse SRC on Ray Data into shards under OUT; resumable per chunk."""
    from ..face import BACKENDS, get_face_analyzer

    if options.backend not in BACKENDS:
        raise TrainingDataError(f"unknown face backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    try:
        import ray.data  # noqa: F401
    except ImportError as err:
        raise TrainingDataError(f"--shards runs on Ray Data, which is not installed ({err}): "
                                "pip install 'instantid[data]' (ray[data])") from None
    out = Path(out)
    items, problems = read_source(src, options.identity_from_folder)
    embedding_dim = _check_backend(out, options.backend, get_face_analyzer(options.backend).embedding_dim)
    chunks = [items[i:i + shard.shard_size] for i in range(0, len(items), shard.shard_size)]
    todo = [n for n in range(len(chunks)) if not done_path(out, n).is_file()]
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    if todo:
        _run_on_ray(out, chunks, todo, options, shard)
    return _finish(out, src, options.backend, embedding_dim, len(chunks), len(chunks) - len(todo), problems,
                   len(items) + len(problems))


def _run_on_ray(out: Path, chunks: list, todo: list[int], options: PrepareOptions, shard: ShardOptions) -> None:
    import ray
    from tqdm.auto import tqdm

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=shard.ray_address, include_dashboard=False, log_to_driver=False,
                 **({} if shard.ray_address else {"num_cpus": max(1, int(options.workers * shard.cpus_per_worker))}))
    try:
        rows = [{"chunk": n, "items": json.dumps([{"id": i.id, "image": str(Path(i.image).resolve()), "caption": i.caption,
                                                   "identity": i.identity} for i in chunks[n]])} for n in todo]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            ChunkAnalyser, batch_size=1, concurrency=options.workers, num_cpus=shard.cpus_per_worker,
            num_gpus=shard.gpus_per_worker or None,
            fn_constructor_kwargs={"out": str(out.resolve()), "options": {**asdict(options), "workers": 1, "progress": False},
                                   "max_bytes": shard.shard_max_bytes})
        bar = tqdm(total=len(todo), unit="shard", desc="analysing faces (Ray Data)", disable=not options.progress)
        for _ in dataset.iter_rows():
            bar.update()
        bar.close()
    finally:
        if started_here:
            ray.shutdown()


def convert_folder(folder, out, shard: ShardOptions = ShardOptions()) -> ShardReport:
    """`prepare-data --from-folder`: a prepared folder (manifest.jsonl + embeddings) -> shards, no face model."""
    from .data import read_prepared_dataset
    from .prepare import read_dataset_info

    folder, out = Path(folder), Path(out)
    info = read_dataset_info(folder)
    prepared = read_prepared_dataset(folder)
    _check_backend(out, info["backend"], int(info["embedding_dim"]))
    records = []
    for item in prepared.items:
        source = SourceItem(item.id, item.image, item.caption, item.identity)
        records.append(FaceRecord(source, None, "", item.width, item.height, tuple(item.bbox),
                                  tuple(map(tuple, np.asarray(item.kps).tolist())), 0.0, 1,
                                  np.load(item.embedding_file).astype(np.float32)))
    _fill_scores(folder, records)
    chunks = [records[i:i + shard.shard_size] for i in range(0, len(records), shard.shard_size)]
    done_before = 0
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    for number, chunk in enumerate(chunks):
        if done_path(out, number).is_file():
            done_before += 1
            continue
        write_chunk(out, number, chunk, shard.shard_max_bytes)
    return _finish(out, str(folder), info["backend"], int(info["embedding_dim"]), len(chunks), done_before, [],
                   len(records))


def _fill_scores(folder: Path, records: list[FaceRecord]) -> None:
    """Detector score and face count are in the manifest rows but not in TrainingItem: read them back."""
    from .prepare import MANIFEST

    extra = {}
    with (folder / MANIFEST).open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
                extra[row["id"]] = (float(row.get("score", 0.0)), int(row.get("num_faces", 1)))
            except (ValueError, KeyError, TypeError):
                continue
    for i, record in enumerate(records):
        score, faces = extra.get(record.item.id, (0.0, 1))
        records[i] = FaceRecord(record.item, None, "", record.width, record.height, record.bbox, record.kps, score, faces,
                                record.embedding)


def _check_backend(out: Path, backend: str, embedding_dim: int) -> int:
    """One backend per output folder (kept in `backend.json` until index.json exists)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "backend.json"
    if path.is_file():
        known = json.loads(path.read_text(encoding="utf-8"))
        if known["backend"] != backend:
            raise TrainingDataError(f"{out} holds shards of the {known['backend']!r} face backend, not {backend!r}; "
                                    "embeddings of different backends cannot be mixed: use another output folder")
        return int(known["embedding_dim"])
    path.write_text(json.dumps({"backend": backend, "embedding_dim": embedding_dim}), encoding="utf-8")
    return embedding_dim


def _finish(out: Path, src, backend: str, embedding_dim: int, num_chunks: int, done_before: int, problems: list,
            items_in_source: int) -> ShardReport:
    """rejected.jsonl (source problems + every chunk's rejections), then index.json, last."""
    chunks = []
    for number in range(num_chunks):
        path = done_path(out, number)
        if not path.is_file():
            raise TrainingDataError(f"chunk {number} of {out} did not finish ({path} missing); rerun the same command "
                                    "to finish it (finished chunks are kept)")
        chunks.append(json.loads(path.read_text(encoding="utf-8")))
    source_rows = [{"id": problem_id(p), "image": p.where, "reason": p.reason, "detail": p.detail} for p in problems]
    source_counts: dict = {}
    for row in source_rows:
        source_counts[row["reason"]] = source_counts.get(row["reason"], 0) + 1
    rows = source_rows + [row for chunk in chunks for row in chunk["rejected_rows"]]
    tmp = out / (REJECTED + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, out / REJECTED)
    index = write_index(out, backend, embedding_dim, str(src), chunks, source_counts)
    return ShardReport(str(out), backend, embedding_dim, items_in_source, index["samples"], len(index["shards"]),
                       done_before, index["rejected"])
