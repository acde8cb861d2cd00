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


INFINITEYOU_DIR = SHARED / "fixtures" / "infiniteyou-parity"


def infiniteyou_case_names() -> list[str]:
    """The fixture's case names (read at collection time), or [] when the fixture is absent."""
    import json

    cases = INFINITEYOU_DIR / "cases.json"
    return list(json.loads(cases.read_text())) if cases.is_file() else []


def require_infiniteyou_fixture() -> Path:
    if not (INFINITEYOU_DIR / "cases.json").is_file():
        pytest.skip(f"infiniteyou-parity fixture not found at {INFINITEYOU_DIR}: it comes from the project's shared/ "
                    "folder (outputs of ByteDance's InfiniteYou pipeline code); clone the project with its shared/ beside it")
    return INFINITEYOU_DIR


def load_infiniteyou_pipeline():
    """The FLUX InstantID pipeline on the fixture's tiny components, loaded as issue 20's drop-in usage shows;
    `pipe.embedding` holds the fixture's (unit-norm ArcFace) face embedding."""
    import numpy as np
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline

    fixture = require_infiniteyou_fixture()
    pipe = FluxInstantIDPipeline.from_pretrained(
        fixture / "base", controlnet=FluxControlNetModel.from_pretrained(fixture / "InfuseNetModel"))
    pipe.load_ip_adapter_instantid(fixture / "image_proj_model.bin")
    pipe.set_progress_bar_config(disable=True)
    pipe.embedding = np.load(fixture / "face_embedding.npy")
    return pipe
