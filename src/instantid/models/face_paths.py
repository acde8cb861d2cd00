"""Which face path each model family takes, and the one check that an embedding came down the right one.

SDXL / SD1.5 InstantID weights take the raw embedding of the backend they were trained with (antelopev2's
512-d, norm about 20-30; or dlib's 128-d). FLUX (InfiniteYou) weights take a unit-norm embedding: facexlib's
ArcFace on antelopev2-detected faces (the `infiniteyou` backend), or, for a FLUX family trained on dlib, dlib's
128-d vector L2-normalised. An embedding from the other family's path is refused with the way to the right one.
"""

from __future__ import annotations

import numpy as np

from ..errors import EmbeddingError

FLUX = "flux"
# Backends whose embeddings each family can take (the projection's input size decides among them).
FACE_PATHS = {"sdxl": ("antelopev2", "dlib"), "sd15": ("antelopev2", "dlib"), FLUX: ("infiniteyou", "dlib")}
UNIT_NORM_FAMILIES = (FLUX,)
# How far from 1 a norm may be and still count as L2-normalised (float32 rounding is ~1e-6).
UNIT_NORM_TOLERANCE = 1e-3


def check_face_path(family: str, backend: str | None) -> None:
    """Refuse a face backend the family's weights were not trained with (None: unknown, not checked)."""
    if backend is None or family not in FACE_PATHS or backend in FACE_PATHS[family]:
        return
    if family == FLUX:
        raise EmbeddingError(f"the '{backend}' face backend gives SDXL InstantID's raw embedding, but FLUX (InfiniteYou) "
                             "weights take facexlib's unit-norm ArcFace embedding: use --face-backend infiniteyou "
                             "(get_face_analyzer('infiniteyou'))")
    raise EmbeddingError(f"the '{backend}' face backend gives FLUX InfiniteYou's unit-norm ArcFace embedding, but "
                         f"{family.upper()} InstantID weights take antelopev2's raw embedding: use --face-backend "
                         "antelopev2 (or dlib for a dlib-trained adapter)")


def for_family(family: str, embedding) -> np.ndarray:
    """The embedding as the family's weights take it: L2-normalised for FLUX (averages and interpolations of
    unit vectors are shorter than 1; dlib's vectors are not normalised), as it is otherwise."""
    embedding = np.asarray(embedding, dtype=np.float32)
    if family in UNIT_NORM_FAMILIES:
        norm = np.linalg.norm(embedding, axis=-1, keepdims=True)
        return embedding / np.maximum(norm, 1e-12)
    return embedding


def looks_unit_norm(embedding) -> bool:
    norms = np.linalg.norm(np.asarray(embedding, dtype=np.float64).reshape(-1, np.shape(embedding)[-1]), axis=-1)
    return bool(np.all(np.abs(norms - 1) <= UNIT_NORM_TOLERANCE))


def check_embedding_path(embedding, family: str) -> None:
    """At a pipeline's door, the one check that an embedding came down its family's face path: FLUX weights take
    a unit-norm embedding; SDXL / SD1.5 weights a raw one (a unit-norm 512-d vector is InfiniteYou's ArcFace,
    antelopev2's raw embedding never is)."""
    unit_norm = looks_unit_norm(embedding)
    if family in UNIT_NORM_FAMILIES and not unit_norm:
        norm = float(np.linalg.norm(np.reshape(embedding, (-1, np.shape(embedding)[-1])), axis=-1).max())
        raise EmbeddingError(
            f"image_embeds has norm {norm:.3g}, but the FLUX (InfiniteYou) weights take a unit-norm ArcFace embedding "
            "(facexlib IR-SE50): this looks like an SDXL InstantID embedding (antelopev2's raw embedding has a norm of "
            "about 20-30). Analyse the photo with the FLUX family's face path: get_face_analyzer('infiniteyou') "
            "(CLI: --face-backend infiniteyou)")
    if family not in UNIT_NORM_FAMILIES and unit_norm and np.shape(embedding)[-1] == 512:
        raise EmbeddingError("image_embeds is a unit-norm 512-d vector, FLUX InfiniteYou's ArcFace embedding, but "
                             f"{family.upper()} InstantID weights take antelopev2's raw embedding (face.embedding from the "
                             "antelopev2 backend, norm about 20-30; not normed_embedding)")
