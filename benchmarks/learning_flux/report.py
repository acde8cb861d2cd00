"""RESULTS.md of the FLUX experiment, with benchmarks.learning's result loading, medians and chart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.learning.experiment import grid_file_name
from benchmarks.learning.report import METRICS, bar_chart, load_results, median

from .experiment import BOTH, PRESETS


def acceptance(results: list[dict]) -> list[tuple[str, bool]]:
    base = median(results, "base", "identity")
    identitynet, both = median(results, "identitynet", "identity"), median(results, BOTH, "identity")
    worst_background = min(median(results, v, "background") for v in results[0]["variants"])
    return [
        (f"identity with IdentityNet {identitynet:.3f} > base {base:.3f} + 0.25", identitynet > base + 0.25),
        (f"identity with IdentityNet + adapter branch {both:.3f} > base {base:.3f} + 0.25", both > base + 0.25),
        (f"lowest background accuracy over variants {worst_background:.3f} >= 0.8", worst_background >= 0.8),
        ("frozen base bit-identical after every stage-2 run",
         all(all(r["frozen_unchanged"].values()) for r in results)),
    ]


def write_report(out_dir: Path, results_md: Path, seeds: list[int] | None = None) -> str:
    results = load_results(out_dir, seeds)
    if not results:
        raise SystemExit(f"no results under {out_dir}: run the experiment first")
    run_file = out_dir / "run.json"
    run = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else {}
    rel = Path(os.path.relpath(out_dir, results_md.parent)).as_posix()
    preset = PRESETS[results[0]["preset"]]
    seeds = [r["seed"] for r in results]
    variants = list(results[0]["variants"])
    lines = [
        "# Does InstantID on FLUX learn identity? A CPU-scale experiment",
        "",
        f"Command: `{run.get('command', 'python -m benchmarks.learning_flux')}` (seeds {', '.join(map(str, seeds))}, "
        f"preset `{results[0]['preset']}`)."
        + (f" It took {run['minutes']} min on {run['cpus']} CPU cores shared with other jobs ({run['jobs']} seed(s) at "
           f"once, {run['threads_per_job']} torch thread(s) each; Python {run['python']}, torch {run['torch']}, "
           f"diffusers {run['diffusers']}, {run['date']})." if run else ""),
        "How it is built: [README.md](README.md). Per seed, run time: "
        + ", ".join(f"seed {r['seed']} {r['seconds'] / 60:.1f} min" for r in results) + ".",
        "",
        "## Acceptance (medians over seeds)",
        "",
    ]
    lines += [f"- [{'x' if ok else ' '}] {text}" for text, ok in acceptance(results)]
    lines += ["", "## Held-out (person, background) pairs: median over seeds", "",
              "| variant | " + " | ".join(title for _, title, _ in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(fmt.format(median(results, v, m)) for m, _, fmt in METRICS) + " |")
    lines += ["", f"![bar chart]({rel}/bar_chart.png)", "", "## Per seed", "",
              "| seed | variant | " + " | ".join(title for _, title, _ in METRICS) + " |",
              "|---:|---|" + "---:|" * len(METRICS)]
    for r in results:
        for v in variants:
            lines.append(f"| {r['seed']} | {v} | " + " | ".join(fmt.format(r["variants"][v][m]) for m, _, fmt in METRICS)
                         + " |")
    lines += ["", "## The judge on real renders", "",
              "| seed | identity accuracy | background accuracy | centre error (px) |", "|---:|---:|---:|---:|"]
    for r in results:
        j = r["judge"]
        lines.append(f"| {r['seed']} | {j['person_accuracy']:.3f} | {j['colour_accuracy']:.3f} | {j['centre_error']:.2f} |")
    lines += ["", "## Training losses (mean of the first / last 10% of steps) and frozen weights", "",
              "| seed | stage | first | last | base DiT bit-identical after |", "|---:|---|---:|---:|---|"]
    for r in results:
        for stage, (first, last) in r["losses"].items():
            frozen = "" if stage == "base" else str(r["frozen_unchanged"][stage])
            lines.append(f"| {r['seed']} | {stage} | {first:.4f} | {last:.4f} | {frozen} |")
    lines += ["", f"## Samples (seed {seeds[0]})", "",
              "Each row is one held-out pair: a reference picture (on a training background), a gap, then for "
              f"each of {preset.eval_poses} poses the real target and the generated picture.", ""]
    for v in variants:
        lines += [f"**{v}**", "", f"![{v}]({rel}/seed{seeds[0]}/{grid_file_name(v)})", ""]
    lines += ["## What the command printed", ""]
    for r in results:
        log = out_dir / f"seed{r['seed']}" / "log.txt"
        if log.is_file():
            lines += ["```", log.read_text(encoding="utf-8").rstrip(), "```", ""]
    bar_chart(results, out_dir / "bar_chart.png")
    text = "\n".join(lines) + "\n"
    results_md.write_text(text, encoding="utf-8")
    return text
