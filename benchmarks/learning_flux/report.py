"""RESULTS.md of the FLUX experiment, with benchmarks.learning's result loading, medians and chart."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.learning.report import (bar_chart, judge_and_loss_tables, load_results, median, samples_and_logs,
                                        variant_tables)

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
    lines += variant_tables(results, variants, rel) + judge_and_loss_tables(results, "DiT")
    lines += samples_and_logs(results, out_dir, rel, preset.eval_poses, run)
    bar_chart(results, out_dir / "bar_chart.png")
    text = "\n".join(lines) + "\n"
    results_md.write_text(text, encoding="utf-8")
    return text
