"""Scoring a generated suite grid (suite.py) per setting: what `instantid eval --suite` reports.

Per image: face found and face similarity per recognizer (scoring.evaluate), CLIP-T, CLIP-I to the
reference photos, and CLIP-I to the image generated WITHOUT the identity at the same seed and setting
(`clip_i_no_identity`: 1 = inserting the face changed nothing else). Per setting: detection rate
(a named column per recognizer), mean and median of every score.

The headline similarity uses a recognizer OTHER than the one that conditioned the images when one is
available (a model scored by its own encoder is flattered); otherwise the report says so. The similarity
of unrelated people is reported beside it as the baseline: the mean similarity between the suite's
different people's reference photos, or, with one person, the documented metrics.UNRELATED_PEOPLE value.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import numpy as np

from . import metrics
from .metrics import UNRELATED_PEOPLE
from .scoring import ImageScore, evaluate
from .suite import NO_IDENTITY_SCALES, Job, Suite

logger = logging.getLogger(__name__)



@dataclass
class SuiteRow:
    job: Job
    image: str
    score: ImageScore
    clip_i_no_identity: float | None = None

    def as_dict(self, recognizers) -> dict:
        row = {"setting": self.job.setting, "person": self.job.person, "prompt_index": self.job.prompt_index,
               "seed": self.job.seed, **self.score.as_row(recognizers)}
        row["clip_i_reference"] = row.pop("clip_i")
        row["clip_i_no_identity"] = None if self.clip_i_no_identity is None else round(self.clip_i_no_identity, 4)
        return row


@dataclass
class SuiteEvaluation:
    suite: Suite
    recognizers: list[str]
    headline: str  # the recognizer of the headline similarity
    rows: list[SuiteRow]
    unrelated: dict[str, float | None]  # recognizer -> similarity of unrelated people (baseline)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[dict]:
        """One row per setting: n, detection rate per recognizer, mean/median of each score."""
        out = []
        for setting in self.suite.settings:
            rows = [r for r in self.rows if r.job.setting == setting]
            line: dict = {"setting": setting, "images": len(rows)}
            for name in self.recognizers:
                line[f"detection_rate_{name}"] = _round(metrics.detection_rate(r.score.detected.get(name, False)
                                                                               for r in rows))
                stats = metrics.summary(r.score.similarity.get(name) for r in rows)
                line[f"similarity_{name}_mean"], line[f"similarity_{name}_median"] = (_round(stats["mean"]),
                                                                                      _round(stats["median"]))
            for key, values in (("clip_t", [r.score.clip_t for r in rows]),
                                ("clip_i_no_identity", [r.clip_i_no_identity for r in rows]),
                                ("kps_distance", [r.score.kps_distance for r in rows])):
                stats = metrics.summary(values)
                line[f"{key}_mean"], line[f"{key}_median"] = _round(stats["mean"]), _round(stats["median"])
            out.append(line)
        return out


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def unrelated_people_similarity(suite: Suite, extractors) -> tuple[dict[str, float | None], list[str]]:
    """Per recognizer: mean similarity of each person's reference identity to OTHER people's photos."""
    out, notes = {}, []
    for extractor in extractors:
        embeddings = {person: [f.embedding for f in map(extractor, photos) if f.detected]
                      for person, photos in suite.people.items()}
        values = [metrics.identity_similarity(embeddings[a], e)
                  for a, b in permutations(embeddings, 2) if embeddings[a] for e in embeddings[b]]
        if values:
            out[extractor.name] = float(np.mean(values))
        else:
            out[extractor.name] = UNRELATED_PEOPLE.get(extractor.name)
            if out[extractor.name] is not None:
                notes.append(f"unrelated-people baseline for {extractor.name}: {out[extractor.name]:.3f}, measured "
                             "between two different sample photos (the suite has one person)")
    return out, notes


def score_suite(suite: Suite, out: str | Path, extractors, *, clip=None, notes=(), progress: bool = True
                ) -> SuiteEvaluation:
    from tqdm.auto import tqdm

    out = Path(out)
    notes = list(notes)
    names = [e.name for e in extractors]
    others = [n for n in names if n != suite.face_backend]
    headline = others[0] if others else names[0]
    if not others:
        notes.append(f"face similarity is measured with {headline}, the encoder that conditioned the images: it "
                     "flatters the model; install another recognizer's models (antelopev2 or dlib) for a fair score")
    jobs = [job for job in suite.jobs() if job.person is not None]
    rows = []
    with tqdm(total=len(jobs), desc="scoring", unit="image", disable=not progress) as bar:
        for person, references in suite.people.items():
            mine = [job for job in jobs if job.person == person]
            evaluation = evaluate(references, [job.path(out) for job in mine], extractors, clip=clip,
                                  prompts=[suite.prompts[job.prompt_index] for job in mine],
                                  on_image=lambda _: bar.update())
            rows += [SuiteRow(job, str(job.path(out)), score) for job, score in zip(mine, evaluation.scores)]
            notes += [n for n in evaluation.notes if n not in notes]
    if clip is not None:
        _add_clip_no_identity(rows, out, clip)
    elif not any("CLIP" in note for note in notes):
        notes.append("CLIP-T and CLIP-I left out (no CLIP model given)")
    unrelated, unrelated_notes = unrelated_people_similarity(suite, extractors)
    return SuiteEvaluation(suite, names, headline, rows, unrelated, notes + unrelated_notes)


def _add_clip_no_identity(rows: list[SuiteRow], out: Path, clip) -> None:
    from PIL import Image

    def features(paths):
        return clip.image_features([Image.open(p).convert("RGB") for p in paths])

    bases = sorted({Job(r.job.setting, None, r.job.prompt_index, r.job.seed) for r in rows},
                   key=lambda j: (j.setting, j.prompt_index, j.seed))
    base_features = dict(zip(bases, features([b.path(out) for b in bases])))
    for row, feature in zip(rows, features([r.image for r in rows])):
        base = base_features[Job(row.job.setting, None, row.job.prompt_index, row.job.seed)]
        row.clip_i_no_identity = metrics.cosine_similarity(feature, base)


# ---- writing


def markdown(result: SuiteEvaluation) -> str:
    summary = result.summary()
    suite = result.suite
    lines = [f"# Suite {suite.name}", "",
             f"{len(suite.people)} people x {len(suite.prompts)} prompts x {len(suite.seeds)} seeds x "
             f"{len(suite.settings)} settings; conditioned with {suite.face_backend} embeddings; headline face "
             f"similarity: {result.headline}.", ""]
    if summary:
        columns = list(summary[0])
        lines += ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
        lines += ["| " + " | ".join("—" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float)
                                    else str(row[c]) for c in columns) + " |" for row in summary]
    lines += ["", "Similarity of unrelated people (baseline: a score at or below this is no likeness):"]
    lines += [f"- {name}: " + ("—" if value is None else f"{value:.3f}") for name, value in result.unrelated.items()]
    lines += ["", "Settings:"] + [f"- {name}: {json.dumps(values)}" for name, values in suite.settings.items()]
    lines += [f"- images without identity: each setting with {json.dumps(NO_IDENTITY_SCALES)}"]
    if result.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def write_suite_report(result: SuiteEvaluation, out: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """OUT/report/: images.csv (one row per image), summary.csv and summary.md (per setting), report.json,
    and similarity_hist.png (headline similarity per setting, with the unrelated-people line)."""
    folder = Path(out) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    rows = [r.as_dict(result.recognizers) for r in result.rows]
    for key, table in (("images", rows), ("summary", result.summary())):
        written[key] = folder / f"{key}.csv"
        with open(written[key], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else ["setting"])
            writer.writeheader()
            writer.writerows(table)
    written["markdown"] = folder / "summary.md"
    written["json"] = folder / "report.json"
    if plots:
        try:
            written["histogram"] = _histogram(result, folder / "similarity_hist.png")
        except ImportError as err:
            result.notes.append(f"plots left out: {err}")
    written["markdown"].write_text(markdown(result) + "\n", encoding="utf-8")
    written["json"].write_text(json.dumps({"suite": result.suite.source, "headline": result.headline,
                                           "summary": result.summary(), "unrelated_people": result.unrelated,
                                           "notes": result.notes, "images": rows}, indent=2) + "\n",
                               encoding="utf-8")
    return written


def _histogram(result: SuiteEvaluation, path: Path) -> Path:
    from .plots import plt

    name = result.headline
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    per_setting = {s: [r.score.similarity.get(name) for r in result.rows if r.job.setting == s] for s in
                   result.suite.settings}
    found = [v for vs in per_setting.values() for v in vs if v is not None]
    baseline = result.unrelated.get(name)
    low = np.floor(min(found + ([baseline] if baseline is not None else []), default=0.0) * 20) / 20
    for setting, values in per_setting.items():
        kept = [v for v in values if v is not None]
        if kept:
            ax.hist(kept, bins=30, range=(low, 1.0), alpha=0.55, label=f"{setting} (n={len(kept)})")
    if baseline is not None:
        ax.axvline(baseline, color="black", linestyle="--", label=f"unrelated people ({baseline:.3f})")
    ax.set_xlabel(f"face similarity to the reference ({name}, cosine)")
    ax.set_ylabel("images")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
