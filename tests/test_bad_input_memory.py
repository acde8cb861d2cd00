"""Bounded memory: `instantid faces` on a valid 30000x30000 RGB PNG (2.7 GB of pixels) stays under 1.5 GB,
because large PNGs are decoded strip by strip and shrunk as they come (face/png_strips.py)."""

from __future__ import annotations

import pytest

from benchmarks.big_png_memory import measure_faces, write_big_png

LIMIT_MIB = 1536


@pytest.mark.slow
def test_faces_on_a_30000_px_png_stays_under_1_5_gb(tmp_path):
    path = write_big_png(tmp_path / "big.png", 30000)
    code, peak_kib, faces = measure_faces(path)
    assert code == 0 and len(faces) == 1  # the enlarged astronaut is found...
    x1, y1, x2, y2 = faces[0]["bbox"]
    assert 9000 < x1 < x2 < 21000 and 9000 < y1 < y2 < 21000  # ...where it was pasted, in full-size coordinates
    assert peak_kib / 1024 < LIMIT_MIB, f"peak RSS {peak_kib / 1024:.0f} MiB"
