"""The analyzer a front end's face options name: `auto` resolved per command by params.face_backend_name
(params.FACE_BACKEND_RULE), with a model folder only where that backend can use it."""

from __future__ import annotations

from ..params import face_backend_name


def analyzer_for(choice: str = "auto", model_dir: str | None = None, *, released_weights: bool = False,
                 tiny: bool = False, family: str | None = None, arcface: str | None = None):
    """A new analyzer of the backend `choice` names. `model_dir` names antelopev2's pack (which the infiniteyou
    backend detects with too) unless dlib was asked for by name: `auto` may resolve to dlib (e.g. tiny) while
    the folder holds antelopev2 models. `arcface`: facexlib's ArcFace weights, for the infiniteyou backend."""
    from . import get_face_analyzer

    from ..models.face_paths import check_face_path

    backend = face_backend_name(choice, released_weights=released_weights, tiny=tiny, family=family)
    if family is not None:
        check_face_path(family, backend)  # before any face model loads
    kwargs = {"model_dir": model_dir} if model_dir and (backend != "dlib" or choice == "dlib") else {}
    if backend == "infiniteyou" and arcface:
        kwargs["arcface"] = arcface
    return get_face_analyzer(backend, **kwargs)
