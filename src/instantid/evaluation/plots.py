"""Figures for an Evaluation: a histogram of face similarity per recognizer, and a grid of the
images with their scores. matplotlib (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scoring import Evaluation
from .metrics import UNRELATED_PEOPLE

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as err:  # report.py turns this into a note
    raise ImportError("matplotlib is not installed (pip install matplotlib)") from err

GRID_COLUMNS = 5
THUMB_INCHES = 2.2
HIST_BINS = 40


def similarity_histogram(evaluation: Evaluation, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = {name: [s.similarity[name] for s in evaluation.scores if s.similarity.get(name) is not None]
              for name in evaluation.recognizers}
    found = [v for vs in values.values() for v in vs]
    # Bins over the range the scores occupy (dlib's similarities all sit near 1), shared by the recognizers.
    baselines = [UNRELATED_PEOPLE[n] for n in values if n in UNRELATED_PEOPLE]
    low = np.floor(min(found + baselines, default=0.0) * 20) / 20
    for name, scores in values.items():
        if scores:
            ax.hist(scores, bins=HIST_BINS, range=(low, 1.0), alpha=0.6, label=f"{name} (n={len(scores)})")
    for name in values:  # the documented similarity of two different people: a score there is no likeness
        if name in UNRELATED_PEOPLE:
            ax.axvline(UNRELATED_PEOPLE[name], color="black", linestyle="--",
                       label=f"{name}: unrelated people ({UNRELATED_PEOPLE[name]:.3f})")
    ax.set_xlabel("face similarity to the reference (cosine)")
    ax.set_ylabel("images")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _caption(score, recognizers) -> str:
    parts = []
    for name in recognizers:
        value = score.similarity.get(name)
        parts.append(f"{name}: {'no face' if value is None else f'{value:.2f}'}")
    if score.clip_t is not None:
        parts.append(f"CLIP-T {score.clip_t:.2f}")
    if score.kps_distance is not None:
        parts.append(f"kps {score.kps_distance:.2f}")
    return "\n".join(parts)


def score_grid(evaluation: Evaluation, path: Path) -> Path:
    from ..errors import ImageReadError
    from ..face.image import load_image

    count = len(evaluation.scores)
    columns = min(GRID_COLUMNS, max(count, 1))
    rows = max(1, -(-count // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * THUMB_INCHES, rows * (THUMB_INCHES + 0.7)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, score in zip(axes.flat, evaluation.scores):
        try:
            ax.imshow(np.asarray(load_image(score.image)))
        except (ImageReadError, OSError):  # scored from an in-memory image: only its name is kept
            ax.text(0.5, 0.5, "(not a file)", transform=ax.transAxes, ha="center", fontsize=7)
        ax.set_title(Path(score.image).name[:28], fontsize=7)
        ax.text(0.5, -0.04, _caption(score, evaluation.recognizers), transform=ax.transAxes, ha="center",
                va="top", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
