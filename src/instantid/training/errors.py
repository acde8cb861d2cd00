"""Typed training errors (subclasses of instantid.errors.InstantIDError, so the CLI prints them in one line)."""

from ..errors import InstantIDError


class TrainingConfigError(InstantIDError, ValueError):
    """Training options that contradict each other or are out of range."""


class TrainingDataError(InstantIDError, ValueError):
    """A dataset folder that cannot be trained on (no usable items, mixed embedding sizes, ...)."""
