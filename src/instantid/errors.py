"""Typed errors. Every message says what went wrong, with which value, and how to fix it."""


class InstantIDError(Exception):
    """Base class for all errors raised by instantid."""


class ImageReadError(InstantIDError, ValueError):
    """An image file or object could not be read or decoded."""


class NoFaceError(InstantIDError, ValueError):
    """No face was found where one is required."""


class FaceTooSmallError(NoFaceError):
    """A face was found but is too small to give usable keypoints and identity."""


class FaceModelNotFoundError(InstantIDError, FileNotFoundError):
    """A face-analysis model pack is missing and could not be downloaded."""


class CheckpointError(InstantIDError, ValueError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the model it is loaded into."""


class WeightsNotFoundError(InstantIDError, FileNotFoundError):
    """Model weights are neither local nor downloadable (offline, or a wrong id/path)."""


class EmbeddingError(InstantIDError, ValueError):
    """A face embedding has the wrong size or holds NaN/inf values."""


class UsageError(InstantIDError, ValueError):
    """Options or arguments that contradict each other or are out of range."""


class FaceIndexError(InstantIDError, IndexError):
    """A face index past the number of faces found."""


class RegionError(InstantIDError, ValueError):
    """A region (box or mask) is empty, outside the image, overlaps another, or does not match the faces."""


class StrengthError(InstantIDError, ValueError):
    """img2img / inpainting `strength` outside (0, 1]."""
