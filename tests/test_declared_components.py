"""The generation path extends diffusers only with declared components: no module's `forward` replaced,
no forward hooks, no tensor version counters (issue 11). Only the testing room may hook modules: its stage
timer is measurement around a timed bench call (testing/stage_timer.py; tests/test_bench.py)."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "instantid"
PATCHES = re.compile(r"\.forward\s*=|register_forward_pre_hook|register_forward_hook|\._version\b")


def test_no_runtime_patches_outside_the_testing_room():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("testing/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PATCHES.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "runtime patches in the package:\n" + "\n".join(found)
