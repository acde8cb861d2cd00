"""Face analysis cached per image content: the same photo is detected and embedded once.

The key is the SHA-256 of the file's bytes (or of the pixels, for arrays and PIL images) plus the
analyzer's backend and settings, so a renamed copy hits the cache and an edited file does not.
Results live in memory, and on disk too when `cache_dir` is given (one .npz per image and analyzer
setting, no pickle), so re-running an evaluation skips the faces already seen.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from ..checks import check_input_file
from ..errors import ImageReadError
from .types import Face, FaceAnalyzer

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SETTING_TYPES = (int, float, str, bool, tuple, type(None))


def content_hash(image) -> str:
    """SHA-256 hex digest of an image source's content (file bytes, or mode/size/pixels)."""
    digest = hashlib.sha256()
    if isinstance(image, (str, os.PathLike)):
        # a regular file only: reading a FIFO or /dev/zero to hash it would hang (InputFileError says what it is)
        check_input_file(image, "image file")
        with open(image, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    elif isinstance(image, Image.Image):
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    elif isinstance(image, np.ndarray):
        digest.update(f"{image.dtype}{image.shape}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    else:
        raise ImageReadError(f"cannot read an image from an object of type {type(image).__name__}; pass a file path, "
                             "a PIL image or an RGB numpy array")
    return digest.hexdigest()


def analyzer_key(analyzer: FaceAnalyzer) -> str:
    """Backend name plus a short hash of the analyzer's plain settings (thresholds, sizes...)."""
    settings = sorted((k, repr(v)) for k, v in vars(analyzer).items()
                      if not k.startswith("_") and isinstance(v, _SETTING_TYPES))
    return f"{analyzer.name}-{hashlib.sha256(repr(settings).encode()).hexdigest()[:12]}"


def _copy(face: Face) -> Face:
    """A copy whose arrays the caller may modify without touching the cache."""
    return Face(bbox=face.bbox.copy(), kps=face.kps.copy(), score=face.score, embedding=face.embedding.copy(),
                backend=face.backend, extra=dict(face.extra))


class CachedFaceAnalyzer:
    """A FaceAnalyzer that remembers `detect` results by image content.

    max_entries bounds the in-memory cache (least recently used out first). `hits`/`misses` count.
    The disk cache keeps bbox, kps, score and embedding; backend extras (e.g. dlib's 68 landmarks)
    are kept in memory only.
    """

    def __init__(self, analyzer: FaceAnalyzer, cache_dir: str | Path | None = None, max_entries: int = 512) -> None:
        self.analyzer = analyzer
        self.name = analyzer.name
        self.embedding_dim = analyzer.embedding_dim
        self.cache_dir = Path(cache_dir) / analyzer_key(analyzer) if cache_dir is not None else None
        self.max_entries = max_entries
        self._memory: OrderedDict[str, list[Face]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def detect(self, image) -> list[Face]:
        key = content_hash(image)
        faces = self._memory.get(key)
        if faces is None and self.cache_dir is not None:
            faces = self._read_disk(key)
        if faces is None:
            self.misses += 1
            faces = self.analyzer.detect(image)
            if self.cache_dir is not None:
                self._write_disk(key, faces)
        else:
            self.hits += 1
        self._remember(key, faces)
        return [_copy(face) for face in faces]

    def _remember(self, key: str, faces: list[Face]) -> None:
        self._memory[key] = faces
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _disk_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.npz"

    def _read_disk(self, key: str) -> list[Face] | None:
        path = self._disk_path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return [Face(bbox=data["bbox"][i], kps=data["kps"][i], score=float(data["score"][i]),
                             embedding=data["embedding"][i], backend=self.name) for i in range(len(data["score"]))]
        except (OSError, ValueError, KeyError) as err:  # a torn or foreign file: analyse again
            logger.warning("ignoring unreadable face cache entry %s (%s)", path, err)
            return None

    def _write_disk(self, key: str, faces: list[Face]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        dim = self.embedding_dim
        arrays = {
            "bbox": np.array([f.bbox for f in faces], dtype=np.float32).reshape(-1, 4),
            "kps": np.array([f.kps for f in faces], dtype=np.float32).reshape(-1, 5, 2),
            "score": np.array([f.score for f in faces], dtype=np.float32),
            "embedding": np.array([f.embedding for f in faces], dtype=np.float32).reshape(-1, dim),
        }
        # Write beside, then rename: a reader never sees half a file.
        temporary = self._disk_path(key).with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, self._disk_path(key))
