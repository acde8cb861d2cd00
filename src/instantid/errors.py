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


class FaceIndexError(NoFaceError, IndexError):
    """A face index past the number of faces found (no such face)."""


class RegionError(InstantIDError, ValueError):
    """A region (box or mask) is empty, outside the image, overlaps another, or does not match the faces."""


class StrengthError(InstantIDError, ValueError):
    """img2img / inpainting `strength` outside (0, 1]."""


class OutputPathError(InstantIDError, OSError):
    """An output path cannot be written: missing or unwritable folder, a file in the way, bad extension,
    name too long, or a full disk."""


class InputFileError(ImageReadError):
    """An input path is not a readable regular file (missing, a folder, a FIFO or device, a symlink loop...)."""


class DeviceError(InstantIDError, ValueError):
    """A device name that is unknown or not available on this machine (e.g. cuda without CUDA)."""


class LimitError(InstantIDError, ValueError):
    """A request above a resource cap (output pixels, image size, resolution); the message says how to raise it."""


class GenerationError(InstantIDError, RuntimeError):
    """Generation produced an unusable result (e.g. NaN pixels: a black image is never saved)."""
