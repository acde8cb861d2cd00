"""Face photos in, images out: several references are averaged, faceless photos are skipped by name."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.errors import EmbeddingError, NoFaceError
from instantid.pipelines.condition import face_condition
from instantid.pipelines.from_photos import generate_from_photos


def test_references_are_averaged_and_keypoints_come_from_the_first(photos, dlib_analyzer):
    one = face_condition([photos["grace_hopper"]], dlib_analyzer)
    two = face_condition([photos["grace_hopper"], photos["tom_hanks"]], dlib_analyzer)
    tom = face_condition([photos["tom_hanks"]], dlib_analyzer)
    assert np.allclose(two.embedding, (one.embedding + tom.embedding) / 2)
    assert np.array_equal(two.kps, one.kps) and two.pose_size == one.pose_size


def test_pose_photo_supplies_keypoints_only(photos, dlib_analyzer):
    posed = face_condition([photos["grace_hopper"]], dlib_analyzer, pose_photo=photos["astronaut"])
    plain = face_condition([photos["grace_hopper"]], dlib_analyzer)
    astronaut = face_condition([photos["astronaut"]], dlib_analyzer)
    assert np.array_equal(posed.embedding, plain.embedding)
    assert np.array_equal(posed.kps, astronaut.kps) and posed.pose_size == astronaut.pose_size


def test_faceless_photo_is_skipped_by_name(photos, dlib_analyzer, blank):
    condition = face_condition([blank, photos["grace_hopper"]], dlib_analyzer)
    assert len(condition.faces) == 1 and "blank.png" in condition.skipped[0]
    with pytest.raises(NoFaceError, match="blank.png"):
        face_condition([blank], dlib_analyzer)


def test_two_references_equal_passing_their_mean(photos, dlib_analyzer, tiny_pipe):
    common = dict(num_inference_steps=2, output_type="latent", width=64, height=64)
    result = generate_from_photos(
        tiny_pipe, [photos["grace_hopper"], photos["tom_hanks"]], "a portrait", analyzer=dlib_analyzer,
        generator=torch.Generator().manual_seed(0), **common)
    condition = result.condition
    mean = (condition.faces[0].embedding + condition.faces[1].embedding) / 2
    # the entry's scales are the params table's defaults, not the pipeline's (1.0, and 0.5 as loaded)
    direct = tiny_pipe(prompt="a portrait", image_embeds=mean, image=condition.kps_image(64, 64),
                       generator=torch.Generator().manual_seed(0), controlnet_conditioning_scale=0.8,
                       ip_adapter_scale=0.8, guidance_scale=5.0, **common)
    assert torch.allclose(result.images, direct.images, atol=1e-6)
    assert result.parameters["seed"] is None  # an explicit generator wins over the seed


class SpyPipe:
    """Records the keywords of each call; no model. Enough for the entry's argument handling."""

    face_embedding_dim = 128
    scheduler = object()
    unet = SimpleNamespace(config={"addition_embed_type": "text_time"})  # an SDXL pipeline, as the entry reads it

    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return SimpleNamespace(images=[Image.new("RGB", (kwargs["width"], kwargs["height"]))])


def test_defaults_are_the_params_table(photos, dlib_analyzer):
    from instantid.params import DEFAULTS

    spy = SpyPipe()
    result = generate_from_photos(spy, photos["grace_hopper"], "a portrait", analyzer=dlib_analyzer)
    (call,) = spy.calls
    for name in ("num_inference_steps", "guidance_scale", "controlnet_conditioning_scale", "ip_adapter_scale",
                 "control_guidance_start", "control_guidance_end", "num_images_per_prompt"):
        assert call[name] == DEFAULTS[name], name
        assert result.parameters[name] == DEFAULTS[name], name
    assert result.parameters["seed"] == DEFAULTS["seed"]
    # the seed made the generator: the same seed gives the same first draw
    assert torch.equal(torch.randn(3, generator=call["generator"]),
                       torch.randn(3, generator=torch.Generator().manual_seed(DEFAULTS["seed"])))
    # the size is the pose photo's, capped (FaceCondition.output_size), and the keypoint image has it
    assert (call["width"], call["height"]) == result.condition.output_size() == call["image"].size


def test_out_of_range_parameters_and_unknown_style_are_refused(photos, dlib_analyzer):
    from instantid.errors import UsageError

    spy = SpyPipe()
    with pytest.raises(UsageError, match="between 1 and 500"):
        generate_from_photos(spy, photos["grace_hopper"], "x", analyzer=dlib_analyzer, num_inference_steps=0)
    with pytest.raises(UsageError, match="must be below"):
        generate_from_photos(spy, photos["grace_hopper"], "x", analyzer=dlib_analyzer, control_guidance_start=0.7,
                             control_guidance_end=0.3)
    with pytest.raises(ValueError, match="unknown style"):
        generate_from_photos(spy, photos["grace_hopper"], "x", analyzer=dlib_analyzer, style="no-such-style")
    for knob, words in (({"face_index": -1}, "face_index must be between 0 and 31"),
                        ({"face_detail": "always"}, "face_detail must be one of auto, on, off")):
        with pytest.raises(UsageError, match=words):  # the per-job knobs' rows of the parameter table
            generate_from_photos(spy, photos["grace_hopper"], "x", analyzer=dlib_analyzer, **knob)
    assert spy.calls == []


def test_series_give_one_labelled_image_per_value_from_the_same_seed(photos, dlib_analyzer):
    spy = SpyPipe()
    result = generate_from_photos(spy, photos["grace_hopper"], "x", analyzer=dlib_analyzer, yaw=[-20, 0, 20], seed=5)
    assert result.labels == ["yaw-20", "yaw+0", "yaw+20"] and [label for label, _ in result.series()] == result.labels
    kps_images = [np.asarray(call["image"]) for call in spy.calls]
    assert (kps_images[0] != kps_images[2]).any()  # the head turned
    first_draws = [torch.randn(2, generator=call["generator"]) for call in spy.calls]
    assert all(torch.equal(first_draws[0], draw) for draw in first_draws)  # a fresh generator per variant


def test_backend_and_adapter_size_mismatch_is_explained(photos, tiny_pipe):
    class Fake512:
        name, embedding_dim = "antelopev2", 512

        def detect(self, image):
            from instantid.face.types import Face

            return [Face(bbox=np.array([10, 10, 90, 90], np.float32), kps=np.full((5, 2), 50, np.float32),
                         score=0.9, embedding=np.ones(512, np.float32), backend="antelopev2")]

    with pytest.raises(EmbeddingError, match="512-d face embeddings but the adapter takes 128-d"):
        generate_from_photos(tiny_pipe, photos["astronaut"], "x", analyzer=Fake512())
