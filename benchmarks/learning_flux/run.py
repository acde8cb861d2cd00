"""The command: run seeds (in parallel worker processes), then write RESULTS.md."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks.learning.run import _log_to, write_run_record

HERE = Path(__file__).resolve().parent

EXAMPLE = """examples:
  python -m benchmarks.learning_flux --seeds 0 1          # the reported run
  python -m benchmarks.learning_flux --report-only        # rewrite RESULTS.md from saved results
  python -m benchmarks.learning_flux --preset smoke --seeds 0 --out /tmp/s --results-md /tmp/s/RESULTS.md
"""


def parse_args(argv=None) -> argparse.Namespace:
    from .experiment import PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.learning_flux", epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a toy FLUX base and InstantID-on-FLUX (IdentityNet, optionally the adapter branch) on "
                    "benchmarks.learning's cartoon world, evaluate on held-out pairs, and write RESULTS.md.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds to run (default: 0 1)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full", help="run size (default: full)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once, one process each (default: 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: the CPU count divided by the processes in use)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder (default: %(default)s)")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md", help="report (default: %(default)s)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from saved results")
    return parser.parse_args(argv)


def run_one(seed: int, preset: str, out: Path, threads: int) -> dict:
    import torch
    from diffusers.utils import logging as diffusers_logging

    torch.set_num_threads(threads)
    diffusers_logging.set_verbosity_error()
    from .experiment import run_seed

    seed_dir = out / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    _log_to(seed_dir / "log.txt")
    logging.getLogger("benchmarks.learning").info("seed %d: preset %s, %d torch thread(s)", seed, preset, threads)
    return run_seed(seed, preset, seed_dir).variants


def main(argv=None) -> int:
    args = parse_args(argv)
    from .report import write_report

    command = " ".join(["python -m benchmarks.learning_flux",
                        *map(shlex.quote, argv if argv is not None else sys.argv[1:])])
    if not args.report_only:
        jobs = max(1, min(args.jobs, len(args.seeds)))
        threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
        started = time.perf_counter()
        if jobs == 1:
            for seed in args.seeds:
                run_one(seed, args.preset, args.out, threads)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                for future in [pool.submit(run_one, seed, args.preset, args.out, threads) for seed in args.seeds]:
                    future.result()
        minutes = (time.perf_counter() - started) / 60
        print(f"all seeds done in {minutes:.1f} min")
        write_run_record(args.out, command, minutes, jobs, threads)
    write_report(args.out, args.results_md, seeds=None if args.report_only else args.seeds)
    print(f"wrote {args.results_md}")
    return 0
