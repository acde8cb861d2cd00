"""Face analysis with dlib: offline, no download, models from the `face_recognition_models` package.

Detection: dlib's HOG frontal-face detector (default) or its CNN (MMOD) detector. Landmarks: the
68-point shape predictor, reduced to InstantID's five keypoints. Identity: dlib's 128-d ResNet
descriptor. This embedding is NOT the 512-d antelopev2 one the released InstantID weights expect;
it serves face checks (same person or not) and the dlib-trained path.

Large photos are downscaled to `max_side` before detection; landmarks and the descriptor are
computed on that downscaled copy, and boxes/keypoints are mapped back to full-photo coordinates.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceModelNotFoundError
from .image import load_for_detection
from .types import Face, sort_largest_first

logger = logging.getLogger(__name__)

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"

# Five InstantID keypoints from dlib's 68-point layout (image-left eye is points 36-41).
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_LEFT_MOUTH = 48
_RIGHT_MOUTH = 54

# HOG detection margin a face must reach. Measured on the sample photos at upsample=1: real faces
# scored >= 0.30 (t1.jpg, also resized / JPEG-recompressed / mirrored), the one false detection
# (a patch on the astronaut's suit) <= 0.17. dlib's own default of 0.0 would keep that patch.
DEFAULT_HOG_THRESHOLD = 0.25
# Long side detection runs on. With upsample=1, HOG then finds faces down to ~40 px at that size.
DEFAULT_MAX_SIDE = 1280


def face_recognition_models_dir() -> Path:
    """The model folder of the installed `face_recognition_models` package.

    Found via find_spec, without importing the package: its __init__ needs pkg_resources.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelNotFoundError(
            "the dlib face backend needs the model files of the face_recognition_models package, which "
            "is not installed; run: pip install face_recognition_models (or pass model_dir=FOLDER with "
            f"{SHAPE_PREDICTOR_FILE} and {RECOGNITION_FILE})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass
class _DlibModels:
    detector: object
    shape_predictor: object
    recognizer: object


class DlibFaceAnalyzer:
    """FaceAnalyzer on dlib. Faces come back largest first, in full-photo coordinates.

    detector: "hog" (default, fast) or "cnn" (dlib's MMOD detector: more tolerant of pose and light,
    but 10-50x slower on CPU: seconds per photo).
    upsample: times the detector doubles the image first (finds faces down to ~80 px / 2**upsample).
    threshold: minimum HOG margin (detector="hog"); minimum MMOD confidence (detector="cnn").
    num_jitters: descriptor re-samples (1 = fast; 10+ = a bit more stable, 10x slower).
    max_side: photos with a longer side are downscaled for detection.
    model_dir: folder with the .dat files; default: the face_recognition_models package.
    Not thread-safe: one analyzer per thread.
    """

    name = "dlib"
    embedding_dim = 128

    def __init__(
        self,
        *,
        upsample: int = 1,
        threshold: float | None = None,
        num_jitters: int = 1,
        detector: str = "hog",
        max_side: int = DEFAULT_MAX_SIDE,
        model_dir: str | Path | None = None,
    ) -> None:
        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', got {detector!r}")
        if upsample < 0 or num_jitters < 1:
            raise ValueError(f"need upsample >= 0 and num_jitters >= 1, got {upsample} and {num_jitters}")
        self.upsample = int(upsample)
        if threshold is None:
            threshold = DEFAULT_HOG_THRESHOLD if detector == "hog" else 0.0
        self.threshold = float(threshold)
        self.num_jitters = int(num_jitters)
        self.detector = detector
        self.max_side = int(max_side)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._models: _DlibModels | None = None

    def detect(self, image) -> list[Face]:
        """All faces in `image` (path, PIL image or RGB array), largest first; [] when none."""
        rgb, scale = load_for_detection(image, self.max_side)
        rgb = np.ascontiguousarray(rgb)
        models = self._load_models()
        faces = []
        for rect, score in self._find_boxes(models, rgb):
            shape = models.shape_predictor(rgb, rect)
            landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            embedding = np.array(
                models.recognizer.compute_face_descriptor(rgb, shape, self.num_jitters), dtype=np.float32
            )
            faces.append(_make_face(rect, score, landmarks, embedding, rgb.shape, scale))
        logger.info("dlib found %d face(s) (detection at %dx%d)", len(faces), rgb.shape[1], rgb.shape[0])
        return sort_largest_first(faces)

    def looking_closer(self) -> "DlibFaceAnalyzer":
        """This analyzer with the photo upsampled once more before detection: finds faces half as small,
        ~4x slower (the small-face retry, see small_faces.py). Shares the loaded models."""
        closer = copy.copy(self)
        closer._models = self._load_models()
        closer.upsample = self.upsample + 1
        return closer

    def _find_boxes(self, models: _DlibModels, rgb: np.ndarray) -> list[tuple[object, float]]:
        if self.detector == "cnn":
            found = models.detector(rgb, self.upsample)
            return [(d.rect, float(d.confidence)) for d in found if d.confidence >= self.threshold]
        # run() reports each box's margin; boxes below `threshold` are already left out.
        rects, scores, _ = models.detector.run(rgb, self.upsample, self.threshold)
        return [(rect, float(score)) for rect, score in zip(rects, scores)]

    def _load_models(self) -> _DlibModels:
        if self._models is None:
            import dlib

            folder = self.model_dir or face_recognition_models_dir()
            needed = [SHAPE_PREDICTOR_FILE, RECOGNITION_FILE] + ([CNN_DETECTOR_FILE] if self.detector == "cnn" else [])
            missing = [name for name in needed if not (folder / name).is_file()]
            if missing:
                raise FaceModelNotFoundError(
                    f"dlib model file(s) {', '.join(missing)} not found in {folder}; reinstall "
                    "face_recognition_models (pip install --force-reinstall face_recognition_models) "
                    "or pass a model_dir that holds them"
                )
            logger.info("loading dlib face models from %s", folder)
            if self.detector == "cnn":
                detector = dlib.cnn_face_detection_model_v1(str(folder / CNN_DETECTOR_FILE))
            else:
                detector = dlib.get_frontal_face_detector()
            self._models = _DlibModels(
                detector=detector,
                shape_predictor=dlib.shape_predictor(str(folder / SHAPE_PREDICTOR_FILE)),
                recognizer=dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE)),
            )
        return self._models


def five_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """[5, 2] keypoints in KEYPOINT_NAMES order from dlib's [68, 2] landmarks."""
    return np.stack(
        [
            landmarks[_LEFT_EYE].mean(axis=0),
            landmarks[_RIGHT_EYE].mean(axis=0),
            landmarks[_NOSE_TIP],
            landmarks[_LEFT_MOUTH],
            landmarks[_RIGHT_MOUTH],
        ]
    ).astype(np.float32)


def _make_face(rect, score: float, landmarks: np.ndarray, embedding: np.ndarray, shape, scale: float) -> Face:
    height, width = shape[:2]
    # dlib boxes are inclusive and may reach past the border; clip to the image, then scale back.
    box = np.array(
        [max(rect.left(), 0), max(rect.top(), 0), min(rect.right() + 1, width), min(rect.bottom() + 1, height)],
        dtype=np.float32,
    )
    return Face(
        bbox=box / scale,
        kps=five_keypoints(landmarks) / scale,
        score=score,
        embedding=embedding,
        backend="dlib",
        extra={"landmarks_68": landmarks / scale},
    )
