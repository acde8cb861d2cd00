"""`prepare-data`: image-caption pairs -> the face records training needs, resumably and in parallel.

For every image: the largest face (the released code's rule), its bbox, five keypoints and identity
embedding from the chosen face backend, and the caption. Written to OUT/:

    dataset.json        backend and embedding size (training reads the embedding size from here)
    manifest.jsonl      one line per usable image (see `manifest_row`), appended as results arrive
    embeddings/ab/<id>.npy   the raw embedding of each usable image (float32)
    rejected.jsonl      one line per image left out, with the reason
    report.json         counts per reason, with a few examples each

Rerunning on the same OUT skips every item already in manifest.jsonl or rejected.jsonl (pass
`retry_rejected=True` to look at rejected ones again), so an interrupted run just continues.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .errors import TrainingDataError
from .sources import SourceItem, SourceProblem, read_source

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
REJECTED = "rejected.jsonl"
REPORT = "report.json"
DATASET_INFO = "dataset.json"
EMBEDDINGS = "embeddings"
FORMAT_VERSION = 1

# Reasons found while analysing (sources.py has those found while reading the source).
CORRUPT_IMAGE = "corrupt_image"
IMAGE_TOO_SMALL = "image_too_small"
NO_FACE = "no_face"
FACE_TOO_SMALL = "face_too_small"
ANALYSIS_ERROR = "analysis_error"
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class PrepareOptions:
    backend: str = "dlib"
    face_models: str | None = None  # antelopev2 model folder
    min_image_size: int = 512  # shorter side, pixels: smaller photos train to blur at SD resolutions
    min_face_size: int = 64  # shorter side of the face box, pixels
    workers: int = 1
    progress: bool = True
    retry_rejected: bool = False
    identity_from_folder: bool = False  # a sub-folder per person names the identity

    def analyzer_kwargs(self) -> dict:
        # the antelopev2 pack: its own backend's, and the detector of FLUX's infiniteyou path
        return {"model_dir": self.face_models} if self.backend in ("antelopev2", "infiniteyou") and self.face_models else {}


@dataclass(frozen=True)
class FaceRecord:
    """What analysing one image gave: the largest face, or why there is none to use."""

    item: SourceItem
    reason: str | None = None  # None: usable
    detail: str = ""
    width: int = 0
    height: int = 0
    bbox: tuple = ()
    kps: tuple = ()
    score: float = 0.0
    num_faces: int = 0
    embedding: np.ndarray | None = None


@dataclass
class PrepareReport:
    source: str
    output: str
    backend: str
    embedding_dim: int
    items_in_source: int = 0
    usable: int = 0  # rows in manifest.jsonl after this run
    added: int = 0  # of which added by this run
    already_done: int = 0  # items skipped because an earlier run handled them
    rejected: Counter = field(default_factory=Counter)  # reason -> count (this run and earlier ones)
    examples: dict = field(default_factory=dict)  # reason -> a few "where: detail" strings

    def reject(self, where: str, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(f"{where}: {detail}" if detail else where)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in vars(self).items() if k not in ("rejected", "examples")},
                "rejected": dict(sorted(self.rejected.items())), "rejected_total": sum(self.rejected.values()),
                "examples": self.examples}

    def summary(self) -> str:
        lines = [f"{self.usable} usable images in {self.output} ({self.added} added now, {self.already_done} "
                 f"done before) from {self.items_in_source} source items; {sum(self.rejected.values())} left out"]
        lines += [f"  {reason}: {count}  e.g. {self.examples[reason][0]}" for reason, count in sorted(self.rejected.items())]
        return "\n".join(lines)


def prepare_dataset(src: str | os.PathLike, out: str | os.PathLike, options: PrepareOptions = PrepareOptions()
                    ) -> PrepareReport:
    """Analyse the source's images into OUT (see the module docstring). Bad items are counted, never fatal."""
    from tqdm.auto import tqdm

    from ..face import BACKENDS, get_face_analyzer

    if options.backend not in BACKENDS:
        raise TrainingDataError(f"unknown face backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items, problems = read_source(src, options.identity_from_folder)
    embedding_dim = _check_or_write_info(out, options.backend, get_face_analyzer(options.backend).embedding_dim, src)
    report = PrepareReport(str(src), str(out), options.backend, embedding_dim, items_in_source=len(items) + len(problems))
    for problem in problems:
        report.reject(problem.where, problem.reason, problem.detail)
    problem_ids = {problem_id(problem) for problem in problems}

    done = {row["id"] for row in _read_jsonl(out / MANIFEST)}
    # Source problems are found anew on every run: count only the analysis rejections of earlier runs.
    earlier_rejections = [] if options.retry_rejected else \
        [row for row in _read_jsonl(out / REJECTED) if row.get("id") not in problem_ids]
    for row in earlier_rejections:
        report.reject(row.get("image", "?"), row.get("reason", ANALYSIS_ERROR), row.get("detail", ""))
    skip = done | {row.get("id") for row in earlier_rejections}
    todo = [item for item in items if item.id not in skip]
    report.already_done = len(items) - len(todo)
    if options.retry_rejected:
        _rewrite_without(out / REJECTED, {item.id for item in todo})

    for path in (out / MANIFEST, out / REJECTED):
        _drop_torn_line(path)
    listed = {row.get("id") for row in _read_jsonl(out / REJECTED)}
    with (out / MANIFEST).open("a", encoding="utf-8") as manifest, (out / REJECTED).open("a", encoding="utf-8") as rejected:
        for problem in problems:  # rows of the source that never became items: listed too, once
            if problem_id(problem) not in listed:
                rejected.write(json.dumps({"id": problem_id(problem), "image": problem.where, "reason": problem.reason,
                                           "detail": problem.detail}) + "\n")
        rejected.flush()
        bar = tqdm(total=len(todo), unit="img", desc="analysing faces", disable=not options.progress)
        for record in _analyse_all(todo, options):
            if record.reason is None:
                manifest.write(json.dumps(_write_embedding(out, record)) + "\n")
                manifest.flush()  # a line in the manifest means its embedding file is complete
                report.added += 1
            else:
                rejected.write(json.dumps({"id": record.item.id, "image": str(record.item.image),
                                           "reason": record.reason, "detail": record.detail}) + "\n")
                rejected.flush()
                report.reject(str(record.item.image), record.reason, record.detail)
            bar.update()
        bar.close()
    report.usable = sum(1 for _ in _read_jsonl(out / MANIFEST))
    (out / REPORT).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def analyse_item(item: SourceItem, analyzer, options: PrepareOptions) -> FaceRecord:
    """The largest face of one image, or the reason it cannot be used."""
    from ..face.image import image_size

    try:
        width, height = image_size(item.image)
        if min(width, height) < options.min_image_size:
            return FaceRecord(item, IMAGE_TOO_SMALL, f"{width}x{height} < {options.min_image_size} px")
        faces = analyzer.detect(item.image)
    except ImageReadError as err:
        return FaceRecord(item, CORRUPT_IMAGE, str(err)[:300])
    except Exception as err:  # one odd image must not end a long run; it is reported with its error
        logger.warning("analysing %s failed: %r", item.image, err)
        return FaceRecord(item, ANALYSIS_ERROR, f"{type(err).__name__}: {str(err)[:200]}")
    if not faces:
        return FaceRecord(item, NO_FACE, "no face detected")
    face = faces[0]  # largest first
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    if min(x2 - x1, y2 - y1) < options.min_face_size:
        return FaceRecord(item, FACE_TOO_SMALL, f"largest face {x2 - x1:.0f}x{y2 - y1:.0f} < {options.min_face_size} px")
    return FaceRecord(item, None, "", width, height, (x1, y1, x2, y2),
                      tuple((float(x), float(y)) for x, y in face.kps), float(face.score), len(faces),
                      np.asarray(face.embedding, dtype=np.float32))


def problem_id(problem: SourceProblem) -> str:
    """A stable id for a source row that never became an item (its rejected.jsonl line is written once)."""
    import hashlib

    return "source-" + hashlib.sha1(f"{problem.where}\n{problem.reason}".encode("utf-8")).hexdigest()[:16]


def manifest_row(record: FaceRecord, embedding_file: str) -> dict:
    """A manifest.jsonl line: everything training needs about one image (pixel coordinates of the file)."""
    return {"id": record.item.id, "image": str(Path(record.item.image).resolve()), "caption": record.item.caption,
            "width": record.width, "height": record.height, "bbox": [round(v, 2) for v in record.bbox],
            "kps": [[round(x, 2), round(y, 2)] for x, y in record.kps], "score": round(record.score, 4),
            "num_faces": record.num_faces, "embedding": embedding_file,
            **({"identity": record.item.identity} if record.item.identity is not None else {})}


def embedding_path(item_id: str) -> str:
    """Where an item's embedding lives, relative to OUT (two-character folders keep directories small)."""
    return f"{EMBEDDINGS}/{item_id[:2]}/{item_id}.npy"


# ---- internals ---------------------------------------------------------------------------------

def _write_embedding(out: Path, record: FaceRecord) -> dict:
    relative = embedding_path(record.item.id)
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    np.save(out / relative, record.embedding)
    return manifest_row(record, relative)


def _analyse_all(items: list[SourceItem], options: PrepareOptions):
    """FaceRecords for `items`, in any order; in worker processes when options.workers > 1."""
    if not items:
        return
    if options.workers <= 1:
        from ..face import get_face_analyzer

        analyzer = get_face_analyzer(options.backend, **options.analyzer_kwargs())
        for item in items:
            yield analyse_item(item, analyzer, options)
        return
    # spawn: the parent may hold threads (torch, onnxruntime) that fork would copy in a broken state.
    context = multiprocessing.get_context("spawn")
    with context.Pool(options.workers, initializer=_start_worker, initargs=(options,)) as pool:
        yield from pool.imap_unordered(_analyse_in_worker, items, chunksize=4)


_worker_state: dict = {}


def _start_worker(options: PrepareOptions) -> None:
    from ..face import get_face_analyzer

    _worker_state["options"] = options
    _worker_state["analyzer"] = get_face_analyzer(options.backend, **options.analyzer_kwargs())


def _analyse_in_worker(item: SourceItem) -> FaceRecord:
    return analyse_item(item, _worker_state["analyzer"], _worker_state["options"])


def _check_or_write_info(out: Path, backend: str, embedding_dim: int, src) -> int:
    info_path = out / DATASET_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("backend") != backend:
            raise TrainingDataError(
                f"{out} was prepared with the {info.get('backend')!r} face backend, not {backend!r}; embeddings of "
                "different backends cannot be mixed: use another output folder or the same backend")
        return int(info["embedding_dim"])
    info = {"format": FORMAT_VERSION, "backend": backend, "embedding_dim": embedding_dim, "source": str(src)}
    info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return embedding_dim


def _read_jsonl(path: Path):
    """Rows of a JSONL file we wrote; a torn last line (the run was killed mid-write) is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                yield row


def _drop_torn_line(path: Path) -> None:
    """Cut off a row a killed run left half-written (its item is simply analysed again)."""
    if not path.is_file() or not path.stat().st_size:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _rewrite_without(path: Path, ids: set[str]) -> None:
    kept = [row for row in _read_jsonl(path) if row.get("id") not in ids]
    path.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")


def read_dataset_info(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / DATASET_INFO
    if not path.is_file():
        raise TrainingDataError(f"{data_dir} has no {DATASET_INFO}; prepare it with `instantid prepare-data SRC {data_dir}`")
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["PrepareOptions", "PrepareReport", "FaceRecord", "SourceProblem", "prepare_dataset", "analyse_item",
           "read_dataset_info", "MANIFEST", "REJECTED", "REPORT", "DATASET_INFO"]
