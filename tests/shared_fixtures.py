"""Paths to the project's shared fixtures (../shared beside the repository), skipping when absent."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
PARITY_DIR = SHARED / "fixtures" / "official-parity"


def require_parity_fixture() -> Path:
    if not (PARITY_DIR / "cases.json").is_file():
        pytest.skip(f"official-parity fixture not found at {PARITY_DIR}: it comes from the project's shared/ folder "
                    "(outputs of the released InstantID code); clone the project with its shared/ beside it")
    return PARITY_DIR
