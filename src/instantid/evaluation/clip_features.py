"""CLIP extractor: L2-normalised image and text features, for CLIP-T (prompt fidelity) and CLIP-I
(image similarity to the reference). Only a model already on disk is used: a Hugging Face cache
entry or a folder; nothing is downloaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InstantIDError

if TYPE_CHECKING:  # numpy loads with the extractor; `instantid eval --help` reads DEFAULT_CLIP_MODEL without it
    import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
BATCH_SIZE = 8


class ClipModelNotFoundError(InstantIDError, FileNotFoundError):
    """No CLIP model on disk under the given name (and nothing is downloaded)."""


class ClipExtractor:
    """A transformers CLIPModel and its processor, in eval mode on `device`."""

    def __init__(self, model, processor, name: str, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.processor = processor
        self.name = name
        self.device = device

    @classmethod
    def load(cls, name: str | Path = DEFAULT_CLIP_MODEL, device: str = "cpu") -> "ClipExtractor":
        """Load from a local folder or the Hugging Face cache; ClipModelNotFoundError otherwise."""
        from transformers import AutoProcessor, CLIPModel

        try:
            model = CLIPModel.from_pretrained(str(name), local_files_only=True)
            processor = AutoProcessor.from_pretrained(str(name), local_files_only=True)
        except (OSError, ValueError) as err:
            raise ClipModelNotFoundError(
                f"CLIP model '{name}' is not on this machine, so CLIP-T and CLIP-I are left out "
                f"({type(err).__name__}). To get them: `hf download {DEFAULT_CLIP_MODEL}` (about 1.7 GB) on a "
                "machine with network, or pass --clip-model FOLDER holding a transformers CLIP model"
            ) from err
        return cls(model, processor, str(name), device)

    def image_features(self, images) -> np.ndarray:
        """[n, d] unit vectors for PIL images."""
        import numpy as np
        import torch

        out = []
        for start in range(0, len(images), BATCH_SIZE):
            inputs = self.processor(images=list(images[start:start + BATCH_SIZE]), return_tensors="pt")
            with torch.no_grad():
                features = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device))
            out.append(_as_unit_rows(features))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def text_features(self, texts: list[str]) -> np.ndarray:
        """[n, d] unit vectors for prompts (truncated to CLIP's 77 tokens)."""
        import numpy as np
        import torch

        out = []
        for start in range(0, len(texts), BATCH_SIZE):
            inputs = self.processor(text=list(texts[start:start + BATCH_SIZE]), return_tensors="pt", padding=True,
                                    truncation=True)
            with torch.no_grad():
                features = self.model.get_text_features(input_ids=inputs["input_ids"].to(self.device),
                                                        attention_mask=inputs["attention_mask"].to(self.device))
            out.append(_as_unit_rows(features))
        return np.concatenate(out) if out else np.zeros((0, 0))


def _as_unit_rows(features) -> np.ndarray:
    import numpy as np

    # transformers 5 may return a model output instead of a tensor; its pooled features are the projection
    tensor = getattr(features, "pooler_output", features)
    rows = tensor.float().cpu().numpy()
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
