"""Face analysis with insightface's antelopev2 pack: the face model the released InstantID weights
were trained with (their identity input is its RAW 512-d `face.embedding`).

Where the pack is looked for, in order:
1. `model_dir=` (authoritative: when given, nothing else is searched);
2. the folder in $INSTANTID_FACE_MODELS;
3. the Hugging Face cache, for the repo in $INSTANTID_ANTELOPEV2_REPO (default DEFAULT_REPO_ID),
   without network access.
Each folder may be laid out either way:
    FOLDER/models/antelopev2/scrfd_10g_bnkps.onnx, glintr100.onnx, ...   (insightface's root layout)
    FOLDER/scrfd_10g_bnkps.onnx, glintr100.onnx, ...                      (the antelopev2 folder itself)
Nothing is downloaded unless asked (`download=True`, or `download_antelopev2()`).

insightface quirks this module steps around: FaceAnalysis downloads from a dead link when
`root/models/<name>` is missing, and prefers a folder called `<name>` in the current directory
over `root`. We always resolve the pack folder ourselves and hand FaceAnalysis its absolute path as
`name`, which insightface uses as is (an absolute path is both "an existing dir" and what
os.path.join(root, "models", name) returns), so it neither downloads nor looks in the CWD.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, FaceModelNotFoundError, InstantIDError
from .image import DEFAULT_DETECT_MAX_SIDE, load_for_detection
from .types import Face, sort_largest_first

logger = logging.getLogger(__name__)

PACK_NAME = "antelopev2"
# The five files of the pack; detection and recognition are the two InstantID uses.
PACK_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx", "1k3d68.onnx", "2d106det.onnx", "genderage.onnx")
REQUIRED_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")
MODELS_ENV = "INSTANTID_FACE_MODELS"
REPO_ENV = "INSTANTID_ANTELOPEV2_REPO"
# A public Hub repo with the five antelopev2 .onnx files at its root. Configurable via REPO_ENV
# or repo_id=, e.g. to point at a mirror you trust.
DEFAULT_REPO_ID = "DIAMONIK7777/antelopev2"
_DOWNLOAD_PATTERNS = ["*.onnx"]


def pack_folder_in(folder: str | Path) -> Path | None:
    """The antelopev2 folder inside `folder` (either layout), or None when it holds no full pack."""
    folder = Path(folder).expanduser()
    for candidate in (folder / "models" / PACK_NAME, folder):
        if all((candidate / name).is_file() for name in REQUIRED_FILES):
            return candidate.resolve()
    return None


def find_antelopev2(
    model_dir: str | Path | None = None, *, repo_id: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The antelopev2 folder, searched as the module docstring says; FaceModelNotFoundError if absent."""
    searched: list[str] = []
    if model_dir is not None:
        found = pack_folder_in(model_dir)
        if found is None:
            raise _not_found([f"model_dir={model_dir}"], repo_id)
        return found
    env_dir = os.environ.get(MODELS_ENV)
    if env_dir:
        found = pack_folder_in(env_dir)
        if found is not None:
            return found
        logger.warning("$%s=%s holds no antelopev2 pack; trying the Hugging Face cache", MODELS_ENV, env_dir)
        searched.append(f"${MODELS_ENV}={env_dir}")
    else:
        searched.append(f"${MODELS_ENV} (not set)")
    repo_id = _repo_id(repo_id)
    found, _ = _from_hub(repo_id, cache_dir=cache_dir, local_files_only=True)
    if found is not None:
        return found
    searched.append(f"Hugging Face cache at {cache_dir or _default_hub_cache()} for repo {repo_id}")
    raise _not_found(searched, repo_id)


def download_antelopev2(
    repo_id: str | None = None, *, cache_dir: str | Path | None = None, endpoint: str | None = None
) -> Path:
    """Download the pack from the Hugging Face Hub (with progress bars) and return its folder."""
    repo_id = _repo_id(repo_id)
    logger.info("downloading the antelopev2 face models from the Hugging Face Hub repo %s", repo_id)
    found, why_not = _from_hub(repo_id, cache_dir=cache_dir, local_files_only=False, endpoint=endpoint)
    if found is None:
        raise FaceModelNotFoundError(
            f"could not download the antelopev2 face models from Hugging Face repo {repo_id}: {why_not}. "
            f"Connect to the internet (and unset HF_HUB_OFFLINE), or set ${REPO_ENV} to a repo that "
            f"holds the pack, or copy the files by hand: {_where_to_put_files()}"
        )
    return found


def face_from_insightface(obj, scale: float = 1.0) -> Face:
    """Our Face from an insightface face (attributes bbox, kps, det_score, embedding).

    The embedding is kept RAW (not normalised): the released InstantID weights expect that.
    Coordinates are divided by `scale` (the downscale factor the image was detected at).
    """
    if obj.embedding is None:
        raise InstantIDError(
            "insightface returned a face without an embedding: the pack's recognition model "
            "(glintr100.onnx) did not load; check the antelopev2 folder"
        )
    return Face(
        bbox=np.asarray(obj.bbox, dtype=np.float32).reshape(4) / scale,
        kps=np.asarray(obj.kps, dtype=np.float32).reshape(5, 2) / scale,
        score=float(obj.det_score),
        embedding=np.asarray(obj.embedding, dtype=np.float32).reshape(-1),
        backend=PACK_NAME,
    )


class AntelopeV2FaceAnalyzer:
    """FaceAnalyzer on insightface's antelopev2 pack (detection + recognition only).

    model_dir / repo_id / cache_dir: where to look (see the module docstring).
    download: fetch the pack from the Hub when it is not found locally.
    device: "cpu" (default), "cuda" (needs onnxruntime-gpu), or "auto" (CUDA when available).
    det_size, det_thresh: as in insightface's FaceAnalysis.prepare (released code: 640x640, 0.5).
    max_side: photos with a longer side are downscaled first; coordinates are mapped back, the
    embedding comes from the downscaled copy.
    Models load on the first detect().
    """

    name = PACK_NAME
    embedding_dim = 512

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        device: str = "cpu",
        det_size: tuple[int, int] = (640, 640),
        det_thresh: float = 0.5,
        download: bool = False,
        repo_id: str | None = None,
        cache_dir: str | Path | None = None,
        max_side: int = DEFAULT_DETECT_MAX_SIDE,
    ) -> None:
        if device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        self.model_dir = model_dir
        self.device = device
        self.det_size = tuple(det_size)
        self.det_thresh = float(det_thresh)
        self.download = download
        self.repo_id = repo_id
        self.cache_dir = cache_dir
        self.max_side = int(max_side)
        self.pack_dir: Path | None = None  # set once the models are loaded
        self._app = None

    def detect(self, image) -> list[Face]:
        """All faces in `image` (path, PIL image or RGB array), largest first; [] when none."""
        rgb, scale = load_for_detection(image, self.max_side)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # insightface takes OpenCV's BGR order
        found = self._load().get(bgr)
        return sort_largest_first([face_from_insightface(obj, scale) for obj in found])

    def looking_closer(self) -> "AntelopeV2FaceAnalyzer":
        """A copy that detects at twice `det_size` (SCRFD sees the photo upscaled, so it finds faces half as
        small): the small-face retry, see small_faces.py. It loads its own detector on first use."""
        return AntelopeV2FaceAnalyzer(
            self.model_dir, device=self.device, det_size=(2 * self.det_size[0], 2 * self.det_size[1]),
            det_thresh=self.det_thresh, download=self.download, repo_id=self.repo_id, cache_dir=self.cache_dir,
            max_side=self.max_side)

    def _load(self):
        if self._app is None:
            from insightface.app import FaceAnalysis

            self.pack_dir = self._resolve_pack()
            providers, ctx_id = _providers_for(self.device)
            logger.info("loading antelopev2 from %s on %s", self.pack_dir, providers[0])
            try:
                app = FaceAnalysis(
                    name=str(self.pack_dir),  # absolute path: see the module docstring
                    root=str(self.pack_dir.parent),
                    providers=providers,
                    allowed_modules=["detection", "recognition"],
                )
                app.prepare(ctx_id=ctx_id, det_size=self.det_size, det_thresh=self.det_thresh)
            except Exception as err:  # onnxruntime's InvalidProtobuf/Fail/..., insightface's asserts
                raise CheckpointError(
                    f"the antelopev2 models in {self.pack_dir} could not be loaded ({type(err).__name__}: "
                    f"{' '.join(str(err).split())[:200]}); a file is damaged or not an ONNX model: "
                    f"{_where_to_put_files()}") from err
            self._app = app
        return self._app

    def _resolve_pack(self) -> Path:
        try:
            return find_antelopev2(self.model_dir, repo_id=self.repo_id, cache_dir=self.cache_dir)
        except FaceModelNotFoundError:
            if not self.download or self.model_dir is not None:
                raise
        return download_antelopev2(self.repo_id, cache_dir=self.cache_dir)


def _providers_for(device: str) -> tuple[list[str], int]:
    """(onnxruntime providers, insightface ctx_id) for a device name."""
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise InstantIDError(
            "device='cuda' was asked for, but this onnxruntime has no CUDAExecutionProvider "
            f"(it has {', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu "
            "or use device='cpu'"
        )
    if device == "cuda" or (device == "auto" and has_cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], 0
    return ["CPUExecutionProvider"], -1


def _from_hub(
    repo_id: str, *, cache_dir, local_files_only: bool, endpoint: str | None = None
) -> tuple[Path | None, str]:
    """(pack folder from a Hub snapshot, cached or downloaded now, or None; why it is None)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        snapshot = snapshot_download(
            repo_id,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            allow_patterns=_DOWNLOAD_PATTERNS,
            local_files_only=local_files_only,
            endpoint=endpoint,
        )
    # Not cached, offline, unreachable, no such repo, bad repo id, or a disk error: "not there".
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, HFValidationError, OSError) as err:
        logger.info("antelopev2 not available from Hub repo %s: %s", repo_id, err)
        return None, f"{type(err).__name__}: {(str(err).splitlines() or ['no detail'])[0].rstrip('.')}"
    found = pack_folder_in(snapshot)
    return found, "" if found else f"the repo has no {' and '.join(REQUIRED_FILES)} at its root"


def _repo_id(given: str | None) -> str:
    return given or os.environ.get(REPO_ENV) or DEFAULT_REPO_ID


def _default_hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _where_to_put_files() -> str:
    return (
        f"put {', '.join(PACK_FILES)} (at least {' and '.join(REQUIRED_FILES)}) in "
        f"FOLDER/models/{PACK_NAME}/ or directly in FOLDER/, then pass model_dir=FOLDER "
        f"(CLI: --face-models FOLDER) or set ${MODELS_ENV}=FOLDER. A zip extracted into "
        f"{PACK_NAME}/{PACK_NAME}/ needs its files moved up one level."
    )


def _not_found(searched: list[str], repo_id: str | None) -> FaceModelNotFoundError:
    repo_id = _repo_id(repo_id)
    return FaceModelNotFoundError(
        f"antelopev2 face models not found; searched: {'; '.join(searched)}. To fix: "
        f"{_where_to_put_files()} Or download them (needs internet): "
        f"python -c \"from instantid.face.antelopev2 import download_antelopev2; download_antelopev2('{repo_id}')\""
    )
