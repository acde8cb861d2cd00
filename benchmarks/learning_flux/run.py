"""The command: benchmarks.learning's runner (seeds in worker processes, then RESULTS.md) on this package."""

from __future__ import annotations

from pathlib import Path

from benchmarks.learning.run import Experiment, main as run_experiment

LEARNING_FLUX = Experiment(
    "benchmarks.learning_flux", Path(__file__).resolve().parent,
    "Train a toy FLUX base and InstantID-on-FLUX (IdentityNet, and IdentityNet + the adapter branch) on "
    "benchmarks.learning's cartoon world, evaluate on held-out pairs, and write RESULTS.md.",
    """examples:
  python -m benchmarks.learning_flux --seeds 0 1          # the reported run
  python -m benchmarks.learning_flux --report-only        # rewrite RESULTS.md from saved results
  python -m benchmarks.learning_flux --preset smoke --seeds 0 --out /tmp/s --results-md /tmp/s/RESULTS.md
""", (0, 1))


def main(argv=None) -> int:
    return run_experiment(argv, LEARNING_FLUX)
