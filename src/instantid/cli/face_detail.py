"""The face-detail options of the generating commands (generate, multi): --face-detail, --face-detail-strength
(rows of the parameter table). See pipelines/face_detail.py for what the pass does."""

from __future__ import annotations

import argparse

from ..params import JOB_PARAMS_BY_NAME
from .common import add_param_option

OPTIONS = ("face_detail", "face_detail_strength")


def add_options(p: argparse.ArgumentParser) -> None:
    for name in OPTIONS:
        add_param_option(p, JOB_PARAMS_BY_NAME[name], default=JOB_PARAMS_BY_NAME[name].default)


def check(args, values: dict) -> None:
    """Before any model loads: the entries' own check (the pass must have at least one denoising step)."""
    from ..pipelines.face_detail import checked_options

    checked_options(args.face_detail, args.face_detail_strength, values["num_inference_steps"])


def entry_options(args) -> dict:
    """The library entries' keywords for these options."""
    return {name: getattr(args, name) for name in OPTIONS}


def report(result) -> None:
    """Say what each face-detail pass did."""
    for line in result.parameters.get("face_detail_passes", []):
        print(f"face detail: {line}")
