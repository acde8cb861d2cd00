"""torch.profiler tables of one call per pipeline: where the time goes, operator by operator."""

from __future__ import annotations

import torch

ROW_LIMIT = 30


def profile_table(run, device: torch.device, row_limit: int = ROW_LIMIT) -> str:
    """Run `run()` once under the profiler; the operators sorted by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=row_limit)
