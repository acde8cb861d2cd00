"""Peak memory of `instantid faces` on a valid 30000x30000 RGB PNG (README "Limits").

    python benchmarks/big_png_memory.py [--side 30000] [--keep FILE]

Writes the PNG row by row (the sample astronaut enlarged into a grey canvas, so there is a face to
find), then runs `python -m instantid faces PNG --json` in a child process and prints its peak RSS
(getrusage of the children of a fresh wrapper process, so nothing else is counted). tests/
test_bad_input_memory.py runs the same measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FACE_FRACTION = 0.4  # the enlarged astronaut covers this fraction of the side


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_big_png(path: Path, side: int) -> Path:
    """An RGB PNG of side x side, streamed (never held in memory whole)."""
    from instantid.face.samples import sample_photo

    astronaut = np.asarray(Image.open(sample_photo("astronaut")).convert("RGB"))
    scale = max(1, int(side * FACE_FRACTION) // astronaut.shape[0])
    paste = astronaut.shape[0] * scale
    top = left = (side - paste) // 2
    grey = np.full((side, 3), 200, np.uint8)
    compress = zlib.compressobj(1)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        for y in range(side):
            row = grey
            if top <= y < top + paste:
                row = grey.copy()
                row[left:left + paste] = np.repeat(astronaut[(y - top) // scale], scale, axis=0)
            data = compress.compress(b"\x00" + row.tobytes())
            if data:
                out.write(_chunk(b"IDAT", data))
        out.write(_chunk(b"IDAT", compress.flush()) + _chunk(b"IEND", b""))
    return path


_MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "instantid", "faces", sys.argv[1], "--json"], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(done.stdout)
print(done.stderr, file=sys.stderr)
"""


def measure_faces(path: Path) -> tuple[int, int, list]:
    """(exit code, peak RSS in KiB, faces) of `instantid faces PATH --json` in a fresh process tree."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    head, _, rest = done.stdout.partition("\n")
    code, peak_kib = (int(v) for v in head.split())
    faces = json.loads(rest) if code == 0 else []
    if code != 0:
        sys.stderr.write(done.stderr)
    return code, peak_kib, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=30000)
    parser.add_argument("--keep", type=Path, help="write the PNG here (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_big_png(args.keep or Path(tmp) / "big.png", args.side)
        code, peak, faces = measure_faces(path)
    print(json.dumps({"side": args.side, "file_mb": round(path.stat().st_size / 1e6, 1) if args.keep else None,
                      "exit_code": code, "peak_rss_mib": round(peak / 1024), "faces": len(faces)}))


if __name__ == "__main__":
    main()
