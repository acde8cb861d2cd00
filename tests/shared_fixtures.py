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


def load_parity_pipeline(**adapter_kwargs):
    """The InstantID pipeline on the fixture's tiny components, loaded as the fixture's README shows;
    `pipe.embedding` holds the fixture's face embedding."""
    import numpy as np
    from diffusers import ControlNetModel

    from instantid import StableDiffusionXLInstantIDPipeline

    fixture = require_parity_fixture()
    pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(
        fixture / "base", controlnet=ControlNetModel.from_pretrained(fixture / "ControlNetModel"))
    pipe.load_ip_adapter_instantid(fixture / "ip-adapter.bin", **adapter_kwargs)
    pipe.set_progress_bar_config(disable=True)
    pipe.embedding = np.load(fixture / "face_embedding.npy")
    return pipe
