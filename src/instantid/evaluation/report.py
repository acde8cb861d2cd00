"""Write an Evaluation: CSV (one row per image), a markdown table with aggregates, JSON, and plots."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from .scoring import Evaluation
from .metrics import UNRELATED_PEOPLE

logger = logging.getLogger(__name__)

AGGREGATE_STATS = ("n", "mean", "median", "std", "min", "max")


def write_csv(evaluation: Evaluation, path: Path) -> Path:
    rows = evaluation.rows()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["image"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cell(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown(evaluation: Evaluation) -> str:
    """Per-image table (file name only), then the aggregates, then notes."""
    rows = evaluation.rows()
    lines = [f"Reference: {', '.join(Path(r).name for r in evaluation.references)}; "
             f"recognizers: {', '.join(evaluation.recognizers)}.", ""]
    if rows:
        columns = [c for c in rows[0] if c != "prompt"]
        lines += ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
        for row in rows:
            cells = [Path(row["image"]).name if c == "image" else _cell(row[c]) for c in columns]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| metric | " + " | ".join(AGGREGATE_STATS) + " |",
              "| --- | " + " | ".join("---:" for _ in AGGREGATE_STATS) + " |"]
    for metric, stats in evaluation.aggregate().items():
        if "rate" in stats:
            lines.append(f"| {metric} (detection rate) | " + _cell(stats["rate"]) + " |" + " |" * (len(AGGREGATE_STATS) - 1))
        else:
            lines.append(f"| {metric} | " + " | ".join(_cell(stats[s]) for s in AGGREGATE_STATS) + " |")
    lines += ["", *[f"- {name}: two unrelated people score about {UNRELATED_PEOPLE[name]:.3f} (a similarity near it "
                    "is no likeness; compare images with each other, not with 1.0)"
                    for name in evaluation.recognizers if name in UNRELATED_PEOPLE]]
    if evaluation.notes:
        lines += ["", *[f"- {note}" for note in evaluation.notes]]
    return "\n".join(lines)


def write_report(evaluation: Evaluation, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """eval.csv, eval.md, eval.json and (with matplotlib) similarity_hist.png and grid.png under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": write_csv(evaluation, out / "eval.csv")}
    written["markdown"] = out / "eval.md"
    written["markdown"].write_text(markdown(evaluation) + "\n", encoding="utf-8")
    written["json"] = out / "eval.json"
    reference_pose = evaluation.reference_pose
    written["json"].write_text(json.dumps({
        "references": evaluation.references, "recognizers": evaluation.recognizers, "rows": evaluation.rows(),
        "aggregate": evaluation.aggregate(), "notes": evaluation.notes,
        "reference_pose": vars(reference_pose) if reference_pose else None}, indent=2) + "\n", encoding="utf-8")
    if plots:
        try:
            from .plots import score_grid, similarity_histogram
        except ImportError as err:
            evaluation.notes.append(f"plots left out: {err}")
            logger.warning("plots left out: %s", err)
        else:
            written["histogram"] = similarity_histogram(evaluation, out / "similarity_hist.png")
            written["grid"] = score_grid(evaluation, out / "grid.png")
    return written
