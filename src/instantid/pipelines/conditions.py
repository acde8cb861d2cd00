"""Condition images for extra ControlNets beside IdentityNet (canny, depth, body pose).

Canny runs in-process with OpenCV. Depth and pose need annotator models: they load through
transformers / controlnet_aux from a local folder or the Hugging Face cache; when the model (or the
library) is missing the error says what to install or download.

Imports of OpenCV, numpy and PIL happen in the functions: the CLI reads CONDITION_KINDS to build its
options, and `instantid --help` must not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import WeightsNotFoundError
from ..params import PARAMS_BY_NAME, Param

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


def canny_image(rgb: np.ndarray, size: tuple[int, int], low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges of `rgb` at `size` (w, h), as a 3-channel image (white edges on black)."""
    import cv2
    import numpy as np
    from PIL import Image

    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


DEPTH_ANNOTATOR_ENV = "INSTANTID_DEPTH_ANNOTATOR"
DEPTH_ANNOTATOR = "Intel/dpt-hybrid-midas"


def depth_image(rgb: np.ndarray, size: tuple[int, int], model: str | None = None) -> Image.Image:
    """Monocular depth of `rgb` at `size`, through a transformers depth-estimation model
    (a Hub id or folder: `model`, else $INSTANTID_DEPTH_ANNOTATOR, else Intel/dpt-hybrid-midas)."""
    import os

    from PIL import Image

    model = model or os.environ.get(DEPTH_ANNOTATOR_ENV, DEPTH_ANNOTATOR)
    from transformers import pipeline

    from .hub import resolve_dir

    # Our resolver: a local folder, the cache, or a download; offline it fails fast with the fix.
    path = resolve_dir(model, what="depth annotator", hint=f"in ${DEPTH_ANNOTATOR_ENV}")
    try:
        estimator = pipeline("depth-estimation", model=str(path))
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(f"depth annotator in '{path}' could not be loaded ({err}); pass a transformers "
                                   "depth-estimation model folder") from err
    depth = estimator(Image.fromarray(rgb))["depth"].convert("RGB")
    return depth.resize(size, Image.BICUBIC)


def openpose_image(rgb: np.ndarray, size: tuple[int, int], model: str = "lllyasviel/Annotators") -> Image.Image:
    """OpenPose body skeleton of `rgb` at `size`, through controlnet_aux."""
    from PIL import Image

    try:
        from controlnet_aux import OpenposeDetector
    except ImportError as err:
        raise WeightsNotFoundError("body pose needs the controlnet_aux package: pip install controlnet_aux") from err
    try:
        detector = OpenposeDetector.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"OpenPose annotator weights '{model}' are not available ({err.__class__.__name__}); download them with "
            f"`hf download {model}` on a machine with network"
        ) from err
    return detector(Image.fromarray(rgb)).convert("RGB").resize(size, Image.BICUBIC)


@dataclass(frozen=True)
class ConditionKind:
    """An extra ControlNet kind: its default SDXL model and strength (the authors' demo values)."""

    name: str
    default_model: str
    default_scale: float
    annotate: Callable[[np.ndarray, tuple[int, int]], Image.Image]

    @property
    def scale_param(self) -> Param:
        """Its strength as a row of the parameter table (the CLI option, the API field, their check): the kind's
        default in the range of IdentityNet's scale, as every ControlNet's scale is checked in the pipeline call."""
        identitynet = PARAMS_BY_NAME["controlnet_conditioning_scale"]
        return Param(f"{self.name}_scale", f"--{self.name}-scale", float, self.default_scale,
                     f"strength of the {self.name} ControlNet", identitynet.min, identitynet.max)


CONDITION_KINDS = {
    "canny": ConditionKind("canny", "diffusers/controlnet-canny-sdxl-1.0", 0.3, canny_image),
    "depth": ConditionKind("depth", "diffusers/controlnet-depth-sdxl-1.0", 0.5, depth_image),
    "openpose": ConditionKind("openpose", "thibaud/controlnet-openpose-sdxl-1.0", 0.4, openpose_image),
}


@dataclass(frozen=True)
class ExtraControl:
    """One extra ControlNet's input for `generate_from_photos`: a photo and how strongly it acts.

    With `kind` (a CONDITION_KINDS name) the photo is annotated (edges, depth, body pose) at the output
    size; without, `image` is the condition image itself, resized to the output size. `model` names the
    ControlNet to load (front ends pass it to load_pipeline); the call only needs the image and scales.
    """

    image: object  # path, PIL image or array
    scale: float = 1.0
    kind: str | None = None
    model: str | None = None
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        from ..errors import UsageError

        if self.kind is not None and self.kind not in CONDITION_KINDS:
            raise UsageError(f"unknown control kind {self.kind!r}; choose one of {', '.join(CONDITION_KINDS)}")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise UsageError(f"a control window needs 0 <= start < end <= 1, got {self.start}..{self.end}")

    @classmethod
    def of_kind(cls, kind: str, image, scale: float | None = None, model: str | None = None) -> "ExtraControl":
        """The kind's defaults (the authors' demo strength, the SDXL ControlNet) where not given."""
        known = CONDITION_KINDS.get(kind)
        return cls(image=image, kind=kind, scale=known.default_scale if scale is None and known else scale,
                   model=model or (known.default_model if known else None))

    def condition_image(self, size: tuple[int, int]) -> Image.Image:
        from PIL import Image

        from ..face.image import load_at_least

        rgb, _ = load_at_least(self.image, max(size))  # only the output size is needed: large photos decoded reduced
        if self.kind is None:
            return Image.fromarray(rgb).resize(size, Image.BICUBIC)
        return CONDITION_KINDS[self.kind].annotate(rgb, size)
