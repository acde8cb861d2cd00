"""`prepare-data --group-identities`: identity labels by clustering face embeddings, for paired references.

Two photos are linked when their embeddings are closer than the backend's threshold, and the connected
groups become the labels (`cluster-000012`). Rows that already carry a label (a source column, a folder
per person) keep it. Thresholds (overridable with --identity-threshold):

- dlib: Euclidean distance <= 0.5. dlib's model is documented as "same person" below 0.6 (99.38% on LFW);
  0.5 is stricter because a wrong merge (pairing two people) hurts training more than a missed one.
- antelopev2 (ArcFace): cosine similarity >= 0.5 (unrelated people sit near 0; the same person usually
  above 0.5 across pose and lighting).

Linking is transitive (single linkage), so one bad link can merge two people: the report lists the
largest groups to look at. The comparison is all-pairs in blocks, fine up to ~100k photos on one machine;
larger sets need an approximate nearest-neighbour index.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import TrainingDataError
from .prepare import MANIFEST, _read_jsonl, read_dataset_info

THRESHOLDS = {"dlib": ("distance", 0.5), "antelopev2": ("cosine", 0.5)}
IDENTITIES_REPORT = "identities.json"


def linked(embeddings: np.ndarray, backend: str, threshold: float | None = None, block: int = 2048):
    """(i, j) pairs, i < j, of embeddings of the same person by the backend's rule."""
    kind, default = THRESHOLDS.get(backend, ("cosine", 0.5))
    threshold = default if threshold is None else threshold
    x = np.asarray(embeddings, dtype=np.float32)
    if kind == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    squares = (x ** 2).sum(1)
    for start in range(0, len(x), block):
        part = x[start:start + block]
        dots = part @ x.T
        if kind == "cosine":
            close = dots >= threshold
        else:
            close = squares[start:start + block, None] + squares[None, :] - 2 * dots <= threshold ** 2
        for i, j in zip(*np.nonzero(close)):
            if start + i < j:
                yield start + int(i), int(j)


def group(count: int, pairs) -> list[int]:
    """Connected components (union-find): a group number per item, numbered by first appearance."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    numbers: dict = {}
    return [numbers.setdefault(root(i), len(numbers)) for i in range(count)]


def group_identities(data_dir, threshold: float | None = None) -> dict:
    """Label every unlabelled manifest row of a prepared folder with its cluster; rewrites manifest.jsonl
    atomically and writes identities.json (groups, sizes, threshold)."""
    data_dir = Path(data_dir)
    info = read_dataset_info(data_dir)
    rows = list(_read_jsonl(data_dir / MANIFEST))
    if not rows:
        raise TrainingDataError(f"{data_dir / MANIFEST} has no rows to group")
    embeddings = np.stack([np.load(data_dir / row["embedding"]).astype(np.float32).reshape(-1) for row in rows])
    groups = group(len(rows), linked(embeddings, info["backend"], threshold))
    labelled = 0
    for row, number in zip(rows, groups):
        if row.get("identity") in (None, ""):
            row["identity"] = f"cluster-{number:06d}"
            labelled += 1
    tmp = data_dir / (MANIFEST + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, data_dir / MANIFEST)
    sizes = Counter(row["identity"] for row in rows)
    kind, default = THRESHOLDS.get(info["backend"], ("cosine", 0.5))
    report = {"backend": info["backend"], "rule": kind, "threshold": default if threshold is None else threshold,
              "rows": len(rows), "labelled_now": labelled, "identities": len(sizes),
              "with_two_or_more_photos": sum(1 for n in sizes.values() if n > 1),
              "largest": sizes.most_common(5)}
    (data_dir / IDENTITIES_REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report
