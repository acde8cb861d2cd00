"""The command: run seeds (in parallel worker processes), then write RESULTS.md."""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Experiment:
    """What differs between this experiment and its siblings (benchmarks.learning_flux): the package whose
    `experiment.run_seed`, `experiment.PRESETS` and `report.write_report` run, and its command's texts."""

    package: str
    folder: Path
    description: str
    example: str
    default_seeds: tuple[int, ...]


LEARNING = Experiment(
    "benchmarks.learning", HERE,
    "Train a toy base and InstantID on a cartoon world, evaluate on held-out (person, background) pairs, and write "
    "RESULTS.md.",
    """example (the reported run, about 35 minutes on 2 cores):
  python -m benchmarks.learning --seeds 0 1 2
  python -m benchmarks.learning --report-only        # rewrite RESULTS.md from saved results
""", (0, 1, 2))


def parse_args(argv=None, experiment: Experiment = LEARNING) -> argparse.Namespace:
    presets = importlib.import_module(f"{experiment.package}.experiment").PRESETS
    seeds = experiment.default_seeds
    parser = argparse.ArgumentParser(
        prog=f"python -m {experiment.package}", epilog=experiment.example,
        formatter_class=argparse.RawDescriptionHelpFormatter, description=experiment.description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds),
                        help=f"seeds to run (default: {' '.join(map(str, seeds))})")
    parser.add_argument("--preset", choices=sorted(presets), default="full", help="run size (default: full)")
    parser.add_argument("--jobs", type=int, default=len(seeds),
                        help=f"seeds trained at once, one process each (default: {len(seeds)})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: the CPU count divided by the processes in use; "
                             "results are deterministic for a given seed and thread count)")
    parser.add_argument("--out", type=Path, default=experiment.folder / "results",
                        help="results folder (default: %(default)s)")
    parser.add_argument("--results-md", type=Path, default=experiment.folder / "RESULTS.md",
                        help="report (default: %(default)s)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from saved results")
    return parser.parse_args(argv)


def _log_to(path: Path) -> None:
    formatter = logging.Formatter("%(message)s")
    logger = logging.getLogger("benchmarks.learning")
    logger.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(path, mode="w", encoding="utf-8")):
        handler.setFormatter(formatter)
        logger.addHandler(handler)


def run_one(seed: int, preset: str, out: Path, threads: int, package: str = LEARNING.package) -> dict:
    """One seed of `package`'s experiment in this process (a worker's entry point)."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    torch.set_num_threads(threads)
    diffusers_logging.set_verbosity_error()  # the adapter loader's notes about image encoders are not news here
    run_seed = importlib.import_module(f"{package}.experiment").run_seed

    seed_dir = out / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    _log_to(seed_dir / "log.txt")
    logging.getLogger("benchmarks.learning").info("seed %d: preset %s, %d torch thread(s)", seed, preset, threads)
    result = run_seed(seed, preset, seed_dir)
    return result.variants


def write_run_record(out: Path, command: str, minutes: float, jobs: int, threads: int) -> None:
    """What RESULTS.md says about the run itself: command, wall time, machine, versions."""
    import datetime
    import json
    import os
    import platform

    import diffusers
    import torch

    record = {"command": command, "minutes": round(minutes, 1), "jobs": jobs, "threads_per_job": threads,
              "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
              "torch": torch.__version__, "diffusers": diffusers.__version__,
              "date": datetime.date.today().isoformat()}
    (out / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")


def main(argv=None, experiment: Experiment = LEARNING) -> int:
    import os

    args = parse_args(argv, experiment)
    write_report = importlib.import_module(f"{experiment.package}.report").write_report

    command = " ".join([f"python -m {experiment.package}",
                        *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    if not args.report_only:
        jobs = max(1, min(args.jobs, len(args.seeds)))
        threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
        started = time.perf_counter()
        if jobs == 1:
            for seed in args.seeds:
                run_one(seed, args.preset, args.out, threads, experiment.package)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                for future in [pool.submit(run_one, seed, args.preset, args.out, threads, experiment.package)
                               for seed in args.seeds]:
                    future.result()
        minutes = (time.perf_counter() - started) / 60
        print(f"all seeds done in {minutes:.1f} min")
        write_run_record(args.out, command, minutes, jobs, threads)
    write_report(args.out, args.results_md, seeds=None if args.report_only else args.seeds)
    print(f"wrote {args.results_md}")
    return 0
