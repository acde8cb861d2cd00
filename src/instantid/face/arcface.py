"""facexlib's ArcFace (IR-SE50): the identity embedding InfiniteYou-FLUX was trained with.

InfiniteYou embeds a 112x112 face crop, aligned by insightface's `norm_crop` on the BGR photo, kept in BGR
order, scaled to [-1, 1], with facexlib's `recognition_arcface_ir_se50.pth`: an IR-SE50 network whose
512-d output is L2-normalised. The facexlib package itself is not a dependency: it pins torchvision (whose
PyPI build does not load with the CPU torch: "operator torchvision::nms does not exist"), pulls in numba
and the detection/tracking stacks on import, and its loader hard-codes `.to("cuda")`. So the network is
defined here with facexlib's module names (the checkpoint loads strictly, `weights_only=True`); on random
weights its output matched facexlib 0.3.0's `Backbone(50, 0.6, "ir_se")` to 0.0 (bit-identical).

Where the weights are looked for, in order (nothing is downloaded unless asked):
1. `weights=` (a file, or a folder holding it; authoritative: nothing else is searched);
2. $INSTANTID_ARCFACE (a file or folder);
3. the folder in $INSTANTID_FACE_MODELS (beside the antelopev2 pack), also under `facexlib/`;
4. an installed facexlib package's `weights/` folder (where InfiniteYou's first run downloads it);
5. $XDG_CACHE_HOME/instantid/facexlib (default ~/.cache/instantid/facexlib);
6. the Hugging Face cache, for the repo in $INSTANTID_ARCFACE_REPO (default DEFAULT_REPO_ID), offline.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, FaceModelNotFoundError

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "recognition_arcface_ir_se50.pth"
RELEASE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth"
WEIGHTS_ENV = "INSTANTID_ARCFACE"
MODELS_ENV = "INSTANTID_FACE_MODELS"
REPO_ENV = "INSTANTID_ARCFACE_REPO"
# A public Hub repo holding facexlib's file (a mirror; set $INSTANTID_ARCFACE_REPO to one you trust).
DEFAULT_REPO_ID = "camenduru/PuLID"
REPO_FILENAME = "facexlib/" + WEIGHTS_NAME
CROP_SIZE = 112
EMBEDDING_DIM = 512
# IR-SE50: (output channels, units) per stage; each stage's first unit halves the resolution (112 -> 7).
IR_SE50_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))
SE_REDUCTION = 16


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // SE_REDUCTION, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // SE_REDUCTION, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class ResidualUnitSE(nn.Module):
    """Pre-activation residual unit with squeeze-excitation (the "IR-SE" unit)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # identity, subsampled
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                                nn.BatchNorm2d(channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels), SqueezeExcite(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class ArcFaceIRSE50(nn.Module):
    """IR-SE50 on a [B, 3, 112, 112] crop in [-1, 1] -> [B, 512] unit vectors (facexlib's state-dict layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, in_channels = [], 64
        for channels, count in IR_SE50_STAGES:
            for index in range(count):
                units.append(ResidualUnitSE(in_channels, channels, 2 if index == 0 else 1))
                in_channels = channels
        self.body = nn.Sequential(*units)
        side = CROP_SIZE // 2 ** len(IR_SE50_STAGES)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(512 * side * side, EMBEDDING_DIM), nn.BatchNorm1d(EMBEDDING_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / x.norm(dim=1, keepdim=True)


# ---- where the weights are

def _in(folder: str | Path) -> Path | None:
    folder = Path(folder).expanduser()
    if folder.is_file():
        return folder
    for candidate in (folder / WEIGHTS_NAME, folder / "facexlib" / WEIGHTS_NAME, folder / "facexlib" / "weights" / WEIGHTS_NAME):
        if candidate.is_file():
            return candidate
    return None


def _facexlib_weights_dir() -> Path | None:
    """An installed facexlib's weights folder, found without importing facexlib (its import is heavy)."""
    try:
        spec = importlib.util.find_spec("facexlib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "instantid" / "facexlib"


def find_arcface_weights(weights: str | Path | None = None, *, repo_id: str | None = None,
                         cache_dir: str | Path | None = None) -> Path:
    """The ArcFace checkpoint, searched as the module docstring says; FaceModelNotFoundError naming every
    place looked in, and how to get the file, when it is nowhere."""
    if weights is not None:
        found = _in(weights)
        if found is None:
            raise _not_found([f"weights={weights}"])
        return found
    searched: list[str] = []
    for env in (WEIGHTS_ENV, MODELS_ENV):
        value = os.environ.get(env)
        if value and (found := _in(value)) is not None:
            return found
        searched.append(f"${env}={value}" if value else f"${env} (not set)")
    facexlib_dir = _facexlib_weights_dir()
    if facexlib_dir is not None:
        if (found := _in(facexlib_dir)) is not None:
            return found
        searched.append(f"the installed facexlib's {facexlib_dir}")
    cache = default_cache_dir()
    if (found := _in(cache)) is not None:
        return found
    searched.append(str(cache))
    repo_id = repo_id or os.environ.get(REPO_ENV) or DEFAULT_REPO_ID
    found, why = _from_hub(repo_id, cache_dir=cache_dir, local_files_only=True)
    if found is not None:
        return found
    searched.append(f"the Hugging Face cache for {repo_id}/{REPO_FILENAME} ({why})")
    raise _not_found(searched)


def download_arcface_weights(repo_id: str | None = None, *, cache_dir: str | Path | None = None) -> Path:
    """Download facexlib's ArcFace weights from the Hugging Face Hub repo (default DEFAULT_REPO_ID)."""
    repo_id = repo_id or os.environ.get(REPO_ENV) or DEFAULT_REPO_ID
    found, why = _from_hub(repo_id, cache_dir=cache_dir, local_files_only=False)
    if found is None:
        raise FaceModelNotFoundError(f"could not download {REPO_FILENAME} from Hugging Face repo {repo_id}: {why}. "
                                     + _how_to_get())
    return found


def _from_hub(repo_id: str, *, cache_dir, local_files_only: bool) -> tuple[Path | None, str]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        path = hf_hub_download(repo_id, REPO_FILENAME, cache_dir=str(cache_dir) if cache_dir else None,
                               local_files_only=local_files_only)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, HFValidationError, OSError) as err:
        return None, "not cached" if local_files_only else f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return Path(path), ""


def _how_to_get() -> str:
    return (f"Get {WEIGHTS_NAME} (facexlib's ArcFace IR-SE50, ~175 MB) from {RELEASE_URL} (or run InfiniteYou once, "
            f"which downloads it into facexlib/weights/), then put it in {default_cache_dir()}/, or pass its path "
            f"(CLI: --arcface PATH; Python: weights=PATH) or set ${WEIGHTS_ENV}=PATH. With internet access: python -c "
            "\"from instantid.face.arcface import download_arcface_weights; download_arcface_weights()\"")


def _not_found(searched: list[str]) -> FaceModelNotFoundError:
    return FaceModelNotFoundError(f"facexlib's ArcFace weights ({WEIGHTS_NAME}) not found; searched: "
                                  f"{'; '.join(searched)}. {_how_to_get()}")


# ---- loading and use

def load_arcface(path: str | Path, device: str | torch.device = "cpu") -> ArcFaceIRSE50:
    """The network with facexlib's checkpoint loaded (tensors only: `weights_only=True`), in eval mode."""
    from ..checks import check_input_file
    from ..models.adapter import _load_pickle_safely

    path = check_input_file(path, "ArcFace checkpoint", error=CheckpointError)
    state = _load_pickle_safely(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not an ArcFace state dict (a dict of named tensors, as facexlib's {WEIGHTS_NAME})")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    with torch.device("meta"):  # no random init of 44 M parameters that are overwritten next
        network = ArcFaceIRSE50()
    network = network.to_empty(device="cpu")
    for name, buffer in network.named_buffers():
        if name.endswith("num_batches_tracked"):
            buffer.zero_()
    try:
        missing, unexpected = network.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{path} is not facexlib's ArcFace IR-SE50 checkpoint: "
                              f"{' '.join(str(err).split())[:300]}") from err
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # older checkpoints lack the counters
    if missing or unexpected:
        raise CheckpointError(f"{path} is not facexlib's ArcFace IR-SE50 checkpoint: {len(missing)} tensors missing "
                              f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: tensors with NaN or infinite values ({bad[:3]}); download it again")
    return network.eval().requires_grad_(False).to(device)


def aligned_crop(bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """The 112x112 BGR crop ArcFace takes: insightface's 5-point similarity alignment (`norm_crop`)."""
    from insightface.utils import face_align

    return face_align.norm_crop(np.ascontiguousarray(bgr), landmark=np.asarray(kps, np.float32).reshape(5, 2),
                                image_size=CROP_SIZE)


class ArcFaceRecognizer:
    """Unit-norm 512-d embeddings of faces, as InfiniteYou computes them. Loads on first use."""

    def __init__(self, weights: str | Path | None = None, *, device: str = "cpu", download: bool = False) -> None:
        self.weights = weights
        self.device = device
        self.download = download
        self.path: Path | None = None
        self._network: ArcFaceIRSE50 | None = None

    def _load(self) -> ArcFaceIRSE50:
        if self._network is None:
            try:
                self.path = find_arcface_weights(self.weights)
            except FaceModelNotFoundError:
                if not self.download or self.weights is not None:
                    raise
                self.path = download_arcface_weights()
            logger.info("loading facexlib's ArcFace from %s", self.path)
            self._network = load_arcface(self.path, self.device)
        return self._network

    def embed(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """The face at `kps` (5 points, pixels of `bgr`) -> float32 [512], unit norm."""
        crop = aligned_crop(bgr, kps)
        pixels = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255.0).mul(2.0).sub(1.0)  # BGR kept
        network = self._load()
        with torch.no_grad():
            embedding = network(pixels.to(next(network.parameters()).device))
        return embedding[0].float().cpu().numpy()
