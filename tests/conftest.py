"""Shared fixtures: the sample photos, one dlib analyzer per session, and a 20000x20000 JPEG."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from huge_photo import HUGE_PASTE_AT, HUGE_PASTE_SIDE, HUGE_SIDE
from instantid.face.samples import SAMPLE_PHOTOS, sample_photo


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {name: sample_photo(name) for name in SAMPLE_PHOTOS}


@pytest.fixture(scope="session")
def dlib_analyzer():
    from instantid.face.dlib_backend import DlibFaceAnalyzer

    return DlibFaceAnalyzer()


@pytest.fixture(scope="session")
def huge_jpeg(tmp_path_factory, photos) -> Path:
    """A 20000x20000 (400 MP) greyscale JPEG with the astronaut enlarged inside it.

    Greyscale keeps writing it at ~0.4 GB and under a second; the file is ~5 MB.
    """
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    canvas = Image.new("L", (HUGE_SIDE, HUGE_SIDE), 200)
    astronaut = Image.open(photos["astronaut"]).convert("L").resize((HUGE_PASTE_SIDE,) * 2, Image.BILINEAR)
    canvas.paste(astronaut, HUGE_PASTE_AT)
    del astronaut
    canvas.save(path, quality=80)
    return path


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    """A tiny random SDXL InstantID pipeline with a 128-d (dlib-sized) adapter; one per test module,
    built once per session into a temporary cache."""
    from instantid.testing.tiny import tiny_instantid_cached
    from instantid.pipelines.loading import load_pipeline

    tiny = tiny_instantid_cached(embedding_dim=128,
                                 cache_dir=tmp_path_factory.getbasetemp() / "xdg-cache" / "instantid" / "tiny")
    pipe = load_pipeline(tiny.base, tiny.identitynet, tiny.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_flux_paths(tmp_path_factory):
    """The tiny random FLUX family (InfiniteYou's layout), built once per session into a temporary cache."""
    from instantid.testing.tiny_flux import tiny_flux_cached

    return tiny_flux_cached(cache_dir=tmp_path_factory.getbasetemp() / "xdg-cache" / "instantid" / "tiny")


@pytest.fixture(scope="module")
def tiny_flux_pipe(tiny_flux_paths):
    """A tiny random FLUX InstantID pipeline, loaded as the drop-in usage shows; one per test module."""
    from diffusers import FluxControlNetModel

    from instantid import FluxInstantIDPipeline

    pipe = FluxInstantIDPipeline.from_pretrained(
        tiny_flux_paths.base, controlnet=FluxControlNetModel.from_pretrained(tiny_flux_paths.identitynet))
    pipe.load_ip_adapter_instantid(tiny_flux_paths.adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def fake_arcface(tmp_path_factory) -> Path:
    """A fake facexlib ArcFace checkpoint (IR-SE50, random weights, saved like the real .pth), once per session."""
    from instantid.testing.fake_arcface import build_fake_arcface

    return build_fake_arcface(tmp_path_factory.mktemp("arcface"))


@pytest.fixture(scope="session")
def blank(tmp_path_factory) -> Path:
    """A plain-colour photo with no face."""
    path = tmp_path_factory.mktemp("blank") / "blank.png"
    Image.new("RGB", (160, 120), (90, 140, 200)).save(path)
    return path


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if any model (pipeline, tiny weights, face analyzer, training components) starts loading:
    for refusals that must come before any model does."""
    import instantid.face as face
    import instantid.pipelines.loading as loading
    import instantid.testing.tiny as tiny
    import instantid.training.train as training

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    for module, name in ((loading, "load_pipeline"), (tiny, "tiny_instantid_cached"), (face, "get_face_analyzer"),
                         (training, "load_components")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def no_pipeline_loads(monkeypatch):
    """As no_model_loads, but face analysis may run (for refusals that need the face's position or size)."""
    import instantid.pipelines.loading as loading
    import instantid.testing.tiny as tiny

    def refuse(*args, **kwargs):
        raise AssertionError("a pipeline was loaded before the refusal")

    monkeypatch.setattr(loading, "load_pipeline", refuse)
    monkeypatch.setattr(tiny, "tiny_instantid_cached", refuse)
