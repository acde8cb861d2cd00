"""Face photos in, images out: several references are averaged, faceless photos are skipped by name."""

import numpy as np
import pytest
import torch

from instantid.errors import EmbeddingError, NoFaceError
from instantid.pipelines.from_photos import face_condition, generate_from_photos


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
    output, condition = generate_from_photos(
        tiny_pipe, [photos["grace_hopper"], photos["tom_hanks"]], "a portrait", analyzer=dlib_analyzer,
        generator=torch.Generator().manual_seed(0), **common)
    mean = (condition.faces[0].embedding + condition.faces[1].embedding) / 2
    direct = tiny_pipe(prompt="a portrait", image_embeds=mean, image=condition.kps_image(64, 64),
                       generator=torch.Generator().manual_seed(0), **common)
    assert torch.allclose(output.images, direct.images, atol=1e-6)


def test_backend_and_adapter_size_mismatch_is_explained(photos, tiny_pipe):
    class Fake512:
        name, embedding_dim = "antelopev2", 512

        def detect(self, image):
            from instantid.face.types import Face

            return [Face(bbox=np.array([10, 10, 90, 90], np.float32), kps=np.full((5, 2), 50, np.float32),
                         score=0.9, embedding=np.ones(512, np.float32), backend="antelopev2")]

    with pytest.raises(EmbeddingError, match="512-d embeddings but the loaded adapter takes 128-d"):
        generate_from_photos(tiny_pipe, photos["astronaut"], "x", analyzer=Fake512())
