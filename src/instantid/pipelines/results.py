"""What every high-level entry returns (generate_from_photos, swap_face, swap_whole_image,
generate_multi_identity): the images, the face analysis they came from, and every parameter used.

Front ends (the CLI, the service, the UI) write `parameters` next to the images (PNG metadata), so a
result can be reproduced from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # type names only: this module stays free of numpy/PIL/torch at import
    import numpy as np
    from PIL import Image

    from ..face.types import Face
    from .face_region import IdentityRegion
    from .condition import FaceCondition


@dataclass
class GenerationResult:
    images: Any  # as the pipeline gives them: a list of PIL images, or one array/tensor (output_type "np", "pt", "latent")
    parameters: dict[str, Any]  # everything the images were made with, JSON-able
    condition: FaceCondition | None = None  # the face photos' analysis (averaged embedding, skipped photos)
    labels: list[str] = field(default_factory=list)  # per image: its series variant ("w0.50", "yaw+15"), or ""
    # face swap
    mask: np.ndarray | None = None  # the feathered blend mask (HxW float32 in [0, 1]), region "face" only
    crop_box: tuple[int, int, int, int] | None = None  # where the model painted, in target pixels
    target_face: Face | None = None  # the replaced face of the target photo
    painted: Image.Image | None = field(default=None, repr=False)  # the model's crop, before paste-back
    # several identities
    identities: list[IdentityRegion] | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [""] * len(self.images)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    @property
    def image(self):
        """The first (often the only) image."""
        return self.images[0]

    @property
    def skipped(self) -> list[str]:
        """Reference photos left out (no face, unreadable), with the reason."""
        return list(self.condition.skipped) if self.condition is not None else []

    def metadata(self, command: str, models: dict, **extra) -> dict[str, Any]:
        """What a front end writes beside the images (PNG metadata, a job's parameters), in one layout: the
        command, `parameters`, the front end's own values (`extra`), the models as the user named them."""
        return {"command": command, **self.parameters, **extra, **models}

    def series(self) -> list[tuple[str, list]]:
        """(label, images) per variant, in order: one ("", images) for a plain run."""
        groups: dict[str, list] = {}
        for label, image in zip(self.labels, self.images):
            groups.setdefault(label, []).append(image)
        return list(groups.items())


def result_parameters(prompt, negative_prompt, seed: int | None, values: dict, *, detail_passes: Sequence = (),
                      **extra) -> dict[str, Any]:
    """The `parameters` of every entry's result, in one layout: the prompt, the seed (None when the caller gave a
    generator), the parameter table's values, then the entry's own (`extra`, JSON-able); the face-detail
    passes' outcomes when the pass was asked for."""
    parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, **values, **extra}
    if detail_passes:
        parameters["face_detail_passes"] = [f"{'repainted' if p.ran else 'skipped'} ({p.reason})"
                                            for p in detail_passes]
    return parameters


def concat_images(batches: list):
    """Several pipeline outputs' `images` as one: lists joined, arrays and tensors concatenated."""
    if len(batches) == 1:
        return batches[0]
    if all(isinstance(batch, list) for batch in batches):
        return [image for batch in batches for image in batch]
    if type(batches[0]).__module__.startswith("torch"):
        import torch

        return torch.cat(list(batches))
    import numpy as np

    return np.concatenate(list(batches))
