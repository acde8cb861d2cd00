"""Find weights: a local path, or a Hugging Face Hub repo (downloaded into the standard cache).

Offline or unreachable Hub -> one WeightsNotFoundError within seconds, saying what to download and
where to pass it, instead of huggingface_hub's minute of retries.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import WeightsNotFoundError

logger = logging.getLogger(__name__)

# The released weights and the base model the authors use.
RELEASED_REPO = "InstantX/InstantID"
RELEASED_IDENTITYNET_SUBFOLDER = "ControlNetModel"
RELEASED_ADAPTER_FILE = "ip-adapter.bin"
DEFAULT_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
WEIGHT_SUFFIXES = {".bin", ".safetensors", ".ckpt", ".pt", ".pth"}


def looks_like_local_path(spec: str) -> bool:
    """True for things a user means as a path (so a missing one is 'no such file', not a Hub id)."""
    # Hub ids are "owner/name": one slash, no file suffix.
    return (
        os.path.isabs(spec)
        or spec.startswith((".", "~"))
        or spec.strip("/").count("/") > 1
        or Path(spec).suffix in WEIGHT_SUFFIXES
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _not_found(what: str, repo_id: str, hint: str, cause: Exception | None = None) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{what} '{repo_id}' is neither a local path nor in the local Hugging Face cache, and the Hub cannot be reached"
        f"{f' ({cause.__class__.__name__})' if cause else ''}. On a machine with network run "
        f"`hf download {repo_id} --local-dir DIR` and pass DIR {hint}; or set HF_HOME to a cache that has it."
    )


def download(repo_id: str, *, what: str, hint: str, allow_patterns: list[str] | None = None) -> Path:
    """A snapshot of `repo_id` from the cache, downloading (with progress bars) when needed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if not _hub_reachable():
        raise _not_found(what, repo_id, hint)
    logger.info("downloading %s from the Hugging Face Hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise _not_found(what, repo_id, hint, err) from err


def resolve_dir(spec: str | os.PathLike, *, what: str, hint: str, subfolder: str | None = None,
                allow_patterns: list[str] | None = None) -> Path:
    """A local directory for a diffusers-layout model given as a path or a Hub repo id."""
    spec = os.fspath(spec)
    local = Path(spec).expanduser()
    if local.is_dir():
        return local / subfolder if subfolder and (local / subfolder).is_dir() else local
    if looks_like_local_path(spec):
        raise WeightsNotFoundError(f"{what} folder '{spec}' does not exist; pass an existing folder {hint}")
    root = download(spec, what=what, hint=hint, allow_patterns=allow_patterns)
    return root / subfolder if subfolder else root


def resolve_file(spec: str | os.PathLike, *, filename: str, what: str, hint: str) -> Path:
    """A local file given as a path, a folder holding `filename`, or a Hub repo id holding it."""
    spec = os.fspath(spec)
    local = Path(spec).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        if (local / filename).is_file():
            return local / filename
        raise WeightsNotFoundError(f"{what}: folder '{spec}' has no '{filename}'; pass the file itself {hint}")
    if looks_like_local_path(spec):
        raise WeightsNotFoundError(f"{what} file '{spec}' does not exist; pass an existing file {hint}")
    return download(spec, what=what, hint=hint, allow_patterns=[filename]) / filename
