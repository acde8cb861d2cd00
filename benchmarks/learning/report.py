"""RESULTS.md from the seeds' results.json files: tables, medians, acceptance, sample grids, bar chart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .experiment import PRESETS, STRENGTHS, grid_file_name

METRICS = (("identity", "identity accuracy", "{:.3f}"), ("background", "background accuracy", "{:.3f}"),
           ("position_error", "position error (px)", "{:.2f}"))


def load_results(out_dir: Path, seeds: list[int] | None = None) -> list[dict]:
    """Every seed's results under `out_dir` (or only `seeds`), in seed order; one preset only."""
    results = [json.loads(path.read_text(encoding="utf-8"))
               for path in sorted(out_dir.glob("seed*/results.json"), key=lambda p: int(p.parent.name[4:]))]
    results = [r for r in results if seeds is None or r["seed"] in seeds]
    presets = {r["preset"] for r in results}
    if len(presets) > 1:
        raise SystemExit(f"{out_dir} mixes presets {sorted(presets)}: use one --out folder per preset")
    return results


def median(results: list[dict], variant: str, metric: str) -> float:
    return float(np.median([r["variants"][variant][metric] for r in results if variant in r["variants"]]))


def acceptance(results: list[dict]) -> list[tuple[str, bool]]:
    """The issue's acceptance checks on the medians over seeds."""
    both_id, base_id = median(results, "both", "identity"), median(results, "base", "identity")
    both_pos, base_pos = median(results, "both", "position_error"), median(results, "base", "position_error")
    variants = sorted({v for r in results for v in r["variants"]})
    worst_background = min(median(results, v, "background") for v in variants)
    return [
        (f"identity with both {both_id:.3f} >= 0.75", both_id >= 0.75),
        (f"identity with both - base = {both_id - base_id:.3f} >= 0.5", both_id - base_id >= 0.5),
        (f"lowest background accuracy over variants {worst_background:.3f} >= 0.9", worst_background >= 0.9),
        (f"position error with both {both_pos:.2f} px <= 1.5 px", both_pos <= 1.5),
        (f"position error with both {both_pos:.2f} <= half the base's ({base_pos:.2f} / 2)", both_pos <= base_pos / 2),
        ("frozen base bit-identical after every stage-2 run",
         all(all(r["frozen_unchanged"].values()) for r in results)),
    ]


def bar_chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(results[0]["variants"])
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for axis, (metric, title, _) in zip(axes, METRICS):
        values = np.array([[r["variants"][v][metric] for r in results] for v in variants])
        med = np.median(values, axis=1)
        axis.bar(range(len(variants)), med, yerr=[med - values.min(1), values.max(1) - med], capsize=3,
                 color=["#999999", "#6a9fd4", "#d49a6a", "#4c9a4c", "#8fc48f", "#2e6b2e"][: len(variants)])
        axis.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=8)
        axis.set_title(f"{title}\n(median of {len(results)} seeds, bars: min-max)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


REFERENCE_METRICS = METRICS + (("sim_ref", "Sim(Ref): reference's expression", "{:.3f}"),
                               ("sim_gt", "Sim(GT): held-out photo's expression", "{:.3f}"),
                               ("copy_paste", "copy-paste = Sim(Ref) - Sim(GT)", "{:+.3f}"))


def reference_table(results: list[dict]) -> list[str]:
    lines = ["| variant | " + " | ".join(title for _, title, _ in REFERENCE_METRICS) + " |",
             "|---|" + "---:|" * len(REFERENCE_METRICS)]
    for v in results[0]["variants"]:
        lines.append(f"| {v} | " + " | ".join(fmt.format(median(results, v, m)) for m, _, fmt in REFERENCE_METRICS) + " |")
    return lines


def reference_summary(results: list[dict], link: str) -> list[str]:
    """RESULTS.md's section on the `references` preset (its own report has the details)."""
    seeds = ", ".join(str(r["seed"]) for r in results)
    return ["## Paired references vs copy-paste (`--preset references`)", "",
            f"`--reference same` (the paper) vs `other`, in the world with per-picture expressions; median of seeds "
            f"{seeds}, preset `references` (smaller than the runs above). Details: [{link}]({link}).", "",
            *reference_table(results), ""]


def write_reference_report(results: list[dict], run: dict, results_md: Path, rel: str) -> str:
    """The `references` preset: `--reference same` vs `other` on one base per seed."""
    seeds = [r["seed"] for r in results]
    variants = list(results[0]["variants"])
    preset = PRESETS[results[0]["preset"]]
    lines = [
        "# Paired references vs copy-paste: `--reference same` (the paper) vs `other`",
        "",
        f"Command: `{run.get('command', 'python -m benchmarks.learning --preset references')}` (seeds "
        f"{', '.join(map(str, seeds))})."
        + (f" It took {run['minutes']} min on {run['cpus']} CPU cores shared with other jobs ({run['jobs']} seeds at "
           f"once, {run['threads_per_job']} torch thread(s) each; torch {run['torch']}, {run['date']})." if run else ""),
        "",
        f"The world of [README.md](README.md) with one change: the mouth is an **expression** drawn per picture "
        f"(smile or neutral) instead of a trait of the person, and the recognizer leaks it into the embedding "
        f"(±{preset.expression_leak} along a fixed direction; identity vector norm 1, noise {preset.embedding_noise}), "
        "as real face embeddings carry some expression, pose and lighting. Per seed one base "
        f"({preset.base.steps} steps) is trained and frozen, then InstantID (both modules, {preset.instantid.steps} "
        "steps) twice on it: with each picture's own embedding as the reference (`same`) and with the embedding of "
        "another random picture of the same person (`other`, any background, pose and expression). The keypoints are "
        "always the target's. Evaluation: held-out (person, background) pairs; each pair's reference shows one "
        "expression and its held-out photos the other. **Sim(Ref)** is the share of outputs the judge reads with the "
        "reference's expression, **Sim(GT)** with the held-out photo's; copy-paste = Sim(Ref) - Sim(GT) (MultiID-Bench's "
        "Sim(Ref) vs Sim(GT), on the feature the reference should not dictate).",
        "",
        "## Median over seeds", "", *reference_table(results)]
    lines += ["", "## Per seed", "", "| seed | variant | " + " | ".join(t for _, t, _ in REFERENCE_METRICS) + " |",
              "|---:|---|" + "---:|" * len(REFERENCE_METRICS)]
    for r in results:
        for v in variants:
            lines.append(f"| {r['seed']} | {v} | " + " | ".join(fmt.format(r["variants"][v][m])
                                                                for m, _, fmt in REFERENCE_METRICS) + " |")
    lines += ["", "## The judge on real renders", "", "| seed | identity | background | expression | centre error (px) |",
              "|---:|---:|---:|---:|---:|"]
    for r in results:
        j = r["judge"]
        lines.append(f"| {r['seed']} | {j['person_accuracy']:.3f} | {j['colour_accuracy']:.3f} | "
                     f"{j.get('expression_accuracy') or 0:.3f} | {j['centre_error']:.2f} |")
    lines += ["", "## Training losses (mean of the first / last 10% of steps)", "", "| seed | stage | first | last | "
              "base bit-identical after |", "|---:|---|---:|---:|---|"]
    for r in results:
        for stage, (first, last) in r["losses"].items():
            lines.append(f"| {r['seed']} | {stage} | {first:.4f} | {last:.4f} | "
                         f"{'' if stage == 'base' else r['frozen_unchanged'][stage]} |")
    lines += ["", f"## Samples (seed {seeds[0]})", "", "Each row: the reference, a gap, then (held-out photo, output) "
              "per pose.", ""]
    for v in variants:
        lines += [f"**{v}**", "", f"![{v}]({rel}/seed{seeds[0]}/{grid_file_name(v)})", ""]
    text = "\n".join(lines) + "\n"
    results_md.write_text(text, encoding="utf-8")
    return text


def write_report(out_dir: Path, results_md: Path, seeds: list[int] | None = None) -> str:
    results = load_results(out_dir, seeds)
    run_file = out_dir / "run.json"
    run = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else {}
    rel = Path(os.path.relpath(out_dir, results_md.parent)).as_posix()
    if not results:
        raise SystemExit(f"no results under {out_dir}: run the experiment first")
    preset = PRESETS[results[0]["preset"]]
    if preset.expressions:
        return write_reference_report(results, run, results_md, rel)
    seeds = [r["seed"] for r in results]
    variants = list(results[0]["variants"])
    lines = [
        "# Does the training recipe learn identity? A CPU-scale InstantID experiment",
        "",
        f"Command: `{run.get('command', 'python -m benchmarks.learning')}` (seeds {', '.join(map(str, seeds))}, "
        f"preset `{results[0]['preset']}`)."
        + (f" It took {run['minutes']} min on {run['cpus']} CPU cores ({run['jobs']} seeds at once, "
           f"{run['threads_per_job']} torch thread(s) each; Python {run['python']}, torch {run['torch']}, diffusers "
           f"{run['diffusers']}, {run['date']})." if run else ""),
        "How it is built and what each number means: [README.md](README.md).",
        "",
        "## Acceptance (medians over seeds)",
        "",
    ]
    lines += [f"- [{'x' if ok else ' '}] {text}" for text, ok in acceptance(results)]
    lines += variant_tables(results, variants, rel) + judge_and_loss_tables(results, "UNet")
    if all(r["sweep"] for r in results):
        lines += ["", "## Strength sweep on the jointly trained model (median over seeds)", "",
                  "Rows: adapter strength (`ip_adapter_scale`); columns: IdentityNet strength "
                  "(`controlnet_conditioning_scale`). Cell: identity accuracy / position error (px).", "",
                  "| adapter \\ IdentityNet | " + " | ".join(map(str, STRENGTHS)) + " |",
                  "|---:|" + "---:|" * len(STRENGTHS)]
        for a in STRENGTHS:
            cells = []
            for c in STRENGTHS:
                key = f"{a}/{c}"
                cells.append(f"{np.median([r['sweep'][key]['identity'] for r in results]):.3f} / "
                             f"{np.median([r['sweep'][key]['position_error'] for r in results]):.2f}")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += samples_and_logs(results, out_dir, rel, preset.eval_poses, run)
    bar_chart(results, out_dir / "bar_chart.png")
    text = "\n".join(lines) + "\n"
    results_md.write_text(text, encoding="utf-8")
    return text


# ---- sections shared with benchmarks.learning_flux's report ----------------------------------------

def variant_tables(results: list[dict], variants: list[str], rel: str) -> list[str]:
    """Medians per variant, the bar chart, then every seed's numbers."""
    lines = ["", "## Held-out (person, background) pairs: median over seeds", "",
             "| variant | " + " | ".join(title for _, title, _ in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for v in variants:
        cells = [fmt.format(median(results, v, metric)) for metric, _, fmt in METRICS]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", f"![bar chart]({rel}/bar_chart.png)", "", "## Per seed", ""]
    lines += ["| seed | variant | " + " | ".join(title for _, title, _ in METRICS) + " |",
              "|---:|---|" + "---:|" * len(METRICS)]
    for r in results:
        for v in variants:
            cells = [fmt.format(r["variants"][v][metric]) for metric, _, fmt in METRICS]
            lines.append(f"| {r['seed']} | {v} | " + " | ".join(cells) + " |")
    return lines


def judge_and_loss_tables(results: list[dict], base_name: str) -> list[str]:
    """The judge's scores on real renders, and each stage's losses with the frozen-base check."""
    lines = ["", "## The judge on real renders (fresh poses, all 32 pairs)", "",
             "| seed | identity accuracy | background accuracy | centre error (px) |", "|---:|---:|---:|---:|"]
    for r in results:
        j = r["judge"]
        lines.append(f"| {r['seed']} | {j['person_accuracy']:.3f} | {j['colour_accuracy']:.3f} | {j['centre_error']:.2f} |")
    lines += ["", "## Training losses (mean of the first / last 10% of steps) and frozen weights", "",
              f"| seed | stage | first | last | base {base_name} bit-identical after |", "|---:|---|---:|---:|---|"]
    for r in results:
        for stage, (first, last) in r["losses"].items():
            frozen = "" if stage == "base" else str(r["frozen_unchanged"][stage])
            lines.append(f"| {r['seed']} | {stage} | {first:.4f} | {last:.4f} | {frozen} |")
    return lines


def samples_and_logs(results: list[dict], out_dir: Path, rel: str, eval_poses: int, run: dict) -> list[str]:
    """The first seed's sample grids, then what each seed's run printed."""
    seeds, variants = [r["seed"] for r in results], list(results[0]["variants"])
    lines = ["", f"## Samples (seed {seeds[0]})", "",
             "Each row is one held-out pair: a reference picture (on a training background), a gap, then for "
             f"each of {eval_poses} poses the real target and the generated picture.", ""]
    for v in variants:
        lines += [f"**{v}**", "", f"![{v}]({rel}/seed{seeds[0]}/{grid_file_name(v)})", ""]
    references = out_dir.parent / "results-references"
    if list(references.glob("seed*/results.json")):
        lines += reference_summary(load_results(references), Path(os.path.relpath(results_md.parent / "RESULTS-references.md",
                                                                                   results_md.parent)).as_posix())
    lines += ["## What the command printed", ""]
    for r in results:
        log = out_dir / f"seed{r['seed']}" / "log.txt"
        if log.is_file():
            lines += ["```", log.read_text(encoding="utf-8").rstrip(), "```", ""]
    if run:
        lines += ["```", f"all seeds done in {run['minutes']:.1f} min", "```", ""]
    return lines
