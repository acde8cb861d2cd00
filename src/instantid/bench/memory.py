"""Peak memory over a stretch of work: resident set size (RSS) of this process, and CUDA peaks.

On Linux the kernel's own peak-RSS counter (VmHWM) is reset by writing "5" to
/proc/self/clear_refs, so each measured stretch gets its exact peak. Elsewhere a background thread
samples RSS with psutil (peaks shorter than the sampling interval can be missed).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

GIB = 1024**3
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK_RSS = "5"  # see proc(5), /proc/pid/clear_refs
SAMPLE_INTERVAL_S = 0.02


def current_rss_bytes() -> int:
    try:
        import psutil
    except ImportError:  # Linux without psutil: the kernel's own figure
        return _status_kb("VmRSS:") * 1024
    return psutil.Process().memory_info().rss


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise OSError(f"{field} not in {_STATUS}")


def _vm_hwm_bytes() -> int | None:
    try:
        return _status_kb("VmHWM:") * 1024
    except (OSError, ValueError):
        return None


def _reset_vm_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS)
    except OSError:
        return False
    return True


class _RssSampler:
    """Highest RSS seen by a daemon thread polling every SAMPLE_INTERVAL_S."""

    def __init__(self) -> None:
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="rss-sampler")
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, current_rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, current_rss_bytes())


class PeakMemory:
    """`reset()` before the work, `read()` after: peak RSS (and CUDA peaks on a CUDA device), in GiB."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._sampler: _RssSampler | None = None
        self.method = "VmHWM" if _reset_vm_hwm() and _vm_hwm_bytes() is not None else "psutil sampling"
        self._rss_at_reset = 0

    def reset(self) -> None:
        self._rss_at_reset = current_rss_bytes()
        if self.method == "VmHWM":
            _reset_vm_hwm()
        else:
            if self._sampler is not None:
                self._sampler.stop()
            self._sampler = _RssSampler()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()  # so the reserved peak reflects this stretch only
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float]:
        if self.method == "VmHWM":
            peak = _vm_hwm_bytes() or current_rss_bytes()
        else:
            peak = self._sampler.stop() if self._sampler else current_rss_bytes()
            self._sampler = None
        out = {"peak_rss_gib": round(peak / GIB, 3), "rss_at_start_gib": round(self._rss_at_reset / GIB, 3)}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(self.device) / GIB, 3)
            out["cuda_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(self.device) / GIB, 3)
        return out
