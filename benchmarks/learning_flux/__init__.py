"""Does InstantID on FLUX learn identity? The FLUX counterpart of benchmarks/learning (its world, judge and report)."""
