"""The analyzer a front end's face options name: `auto` resolved per command by params.face_backend_name
(params.FACE_BACKEND_RULE), with a model folder only where that backend can use it."""

from __future__ import annotations

from ..params import face_backend_name


def analyzer_for(choice: str = "auto", model_dir: str | None = None, *, released_weights: bool = False,
                 tiny: bool = False):
    """A new analyzer of the backend `choice` names. `model_dir` names antelopev2's pack unless dlib was asked
    for by name: `auto` may resolve to dlib (e.g. tiny) while the folder holds antelopev2 models."""
    from . import get_face_analyzer

    backend = face_backend_name(choice, released_weights=released_weights, tiny=tiny)
    given = model_dir and (backend == "antelopev2" or choice == "dlib")
    return get_face_analyzer(backend, **({"model_dir": model_dir} if given else {}))
