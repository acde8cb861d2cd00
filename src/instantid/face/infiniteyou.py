"""The FLUX family's face path, as InfiniteYou's wrapper analyses a face.

Detection: insightface's antelopev2 (the same pack as the SDXL path) at 640x640; when it finds nothing, again
at 320x320, then 160x160 (a face that fills the photo is found at a smaller detection size). Faces come back
largest first (their wrapper uses the largest). Identity: not the pack's glintr100 but facexlib's ArcFace
IR-SE50 (face/arcface.py) on the 112x112 aligned BGR crop, a unit-norm 512-d vector: `Face.embedding` of
this backend is that vector, which is what the FLUX weights take.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from .antelopev2 import AntelopeV2FaceAnalyzer
from .arcface import ArcFaceRecognizer
from .image import DEFAULT_DETECT_MAX_SIDE, load_for_detection
from .types import Face

logger = logging.getLogger(__name__)

BACKEND = "infiniteyou"
DETECTION_SIZES = (640, 320, 160)


class InfiniteYouFaceAnalyzer:
    """FaceAnalyzer for the FLUX (InfiniteYou) weights: antelopev2 detection cascade + facexlib ArcFace.

    model_dir / download / repo_id / cache_dir: the antelopev2 pack, as AntelopeV2FaceAnalyzer finds it.
    arcface: facexlib's `recognition_arcface_ir_se50.pth` (a file or folder; default: searched, see
    face/arcface.py). device: "cpu", "cuda" or "auto" for detection; ArcFace runs on "cuda" when asked.
    Models load on first use.
    """

    name = BACKEND
    embedding_dim = 512

    def __init__(self, model_dir: str | Path | None = None, *, arcface: str | Path | None = None,
                 device: str = "cpu", download: bool = False, repo_id: str | None = None,
                 cache_dir: str | Path | None = None, det_thresh: float = 0.5,
                 detection_sizes: tuple[int, ...] = DETECTION_SIZES, max_side: int = DEFAULT_DETECT_MAX_SIDE) -> None:
        self.detectors = [AntelopeV2FaceAnalyzer(model_dir, device=device, det_size=(size, size), det_thresh=det_thresh,
                                                 download=download, repo_id=repo_id, cache_dir=cache_dir,
                                                 max_side=max_side)
                          for size in detection_sizes]
        self.recognizer = ArcFaceRecognizer(arcface, device="cuda" if device == "cuda" else "cpu", download=download)
        self.max_side = int(max_side)

    def detect(self, image) -> list[Face]:
        """All faces in `image` (path, PIL image or RGB array), largest first, with ArcFace embeddings; [] when none."""
        rgb, scale = load_for_detection(image, self.max_side)
        faces: list[Face] = []
        for detector in self.detectors:  # 640, then 320, then 160: the first size that finds a face wins
            faces = detector.detect(rgb)
            if faces:
                break
            logger.info("no face at detection size %s; trying the next", detector.det_size)
        if not faces:
            return []
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # InfiniteYou aligns the BGR photo and keeps BGR
        # Coordinates of the (possibly downscaled, see image.py) copy align the crop; the Face gets the photo's.
        return [replace(face, kps=(face.kps / scale).astype(np.float32), bbox=(face.bbox / scale).astype(np.float32),
                        backend=BACKEND, embedding=self.recognizer.embed(bgr, face.kps).astype(np.float32),
                        extra={**face.extra, "detection_size": detector.det_size[0]})
                for face in faces]
