"""Real photos that ship inside installed packages, for examples and tests (no downloads)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import InstantIDError

# name -> (package that ships it, path inside the package, what it shows)
SAMPLE_PHOTOS = {
    "t1": ("insightface", "data/images/t1.jpg", "six people, frontal"),
    "tom_hanks": ("insightface", "data/images/Tom_Hanks_54745.png", "one face, 112x112 crop"),
    "astronaut": ("skimage", "data/astronaut.png", "Eileen Collins, one face"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "Grace Hopper, one face"),
}

# pip names for the import names above, for the install hint
_PIP_NAMES = {"insightface": "insightface", "skimage": "scikit-image", "matplotlib": "matplotlib"}


class SamplePhotoNotFoundError(InstantIDError, FileNotFoundError):
    """A sample photo's package is not installed, or the package no longer ships the file."""


def sample_photo(name: str) -> Path:
    """Path of the sample photo `name` (one of SAMPLE_PHOTOS), found without importing its package."""
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    package, relative_path, _ = SAMPLE_PHOTOS[name]
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SamplePhotoNotFoundError(
            f"sample photo {name!r} ships with the {_PIP_NAMES[package]} package, which is not installed; "
            f"run: pip install {_PIP_NAMES[package]}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / relative_path
        if path.is_file():
            return path
    raise SamplePhotoNotFoundError(
        f"sample photo {name!r} is not in the installed {_PIP_NAMES[package]} package (looked for "
        f"{relative_path}); reinstall it: pip install --force-reinstall {_PIP_NAMES[package]}"
    )
