"""The per-step loss record of a training run, appended to OUTPUT_DIR/losses.jsonl as training goes: a killed
run keeps every step it finished, and a resumed one continues the same file (steps redone after the
checkpoint it resumed from replace the earlier lines for those steps when read)."""

from __future__ import annotations

import json
import math
from pathlib import Path

LOSS_LOG = "losses.jsonl"


class LossLog:
    def __init__(self, output_dir: str | Path, fresh: bool = False):
        """fresh: a new run (not a resume) into this folder starts an empty log."""
        self.path = Path(output_dir) / LOSS_LOG
        if fresh and self.path.exists():
            self.path.unlink()
        self._drop_torn_line()

    def _drop_torn_line(self) -> None:
        """Cut off a line a killed run left half-written, so the next one starts on a line of its own."""
        if not self.path.is_file() or not self.path.stat().st_size:
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, step: int, loss: float) -> None:
        line = json.dumps({"step": int(step), "loss": float(loss) if math.isfinite(loss) else None})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def read_losses(output_dir: str | Path, up_to_step: int | None = None) -> dict[int, float | None]:
    """step -> loss over the whole run (all resumes), the latest line per step; torn lines are skipped."""
    path = Path(output_dir) / LOSS_LOG
    losses: dict[int, float | None] = {}
    if not path.is_file():
        return losses
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                row = json.loads(line)
                step = int(row["step"])
            except (ValueError, KeyError, TypeError):
                continue
            if up_to_step is None or step <= up_to_step:
                losses[step] = row.get("loss")
    return dict(sorted(losses.items()))
