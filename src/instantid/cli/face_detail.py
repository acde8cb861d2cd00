"""The face-detail options of the generating commands (generate, multi): --face-detail, --face-detail-strength
(rows of the parameter table, checked with the request: pipelines/request.py). See pipelines/face_detail.py for what
the pass does."""

from __future__ import annotations

import argparse

from ..params import JOB_PARAMS_BY_NAME
from .common import add_param_option

OPTIONS = ("face_detail", "face_detail_strength")


def add_options(p: argparse.ArgumentParser) -> None:
    for name in OPTIONS:
        add_param_option(p, JOB_PARAMS_BY_NAME[name], default=JOB_PARAMS_BY_NAME[name].default)


def report(result) -> None:
    """Say what each face-detail pass did."""
    for line in result.parameters.get("face_detail_passes", []):
        print(f"face detail: {line}")
