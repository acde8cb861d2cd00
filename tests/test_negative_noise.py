"""Noise in the CFG negative face embedding (anti-burn): off by default, reproducible, latents untouched."""

import numpy as np
import pytest
import torch

from instantid.errors import UsageError
from instantid.face.keypoints import draw_kps
from instantid.pipelines.negative_noise import forked_generator, negative_face_embedding
from shared_fixtures import load_parity_pipeline

KPS = np.array([[20.0, 25.0], [44.0, 25.0], [32.0, 38.0], [23.0, 50.0], [41.0, 50.0]])


@pytest.fixture(scope="module")
def pipe():
    return load_parity_pipeline(scale=0.8)


def run(pipe, generator=None, **overrides):
    call = dict(prompt="a person", image_embeds=pipe.embedding, image=draw_kps((64, 64), KPS),
                num_inference_steps=2, guidance_scale=5.0, output_type="latent",
                generator=generator or torch.Generator("cpu").manual_seed(0))
    call.update(overrides)
    return pipe(**call).images


# ---- the pure function


def test_zero_noise_is_zeros_and_draws_nothing():
    positive = torch.randn(2, 1, 1, 8)
    generator = torch.Generator("cpu").manual_seed(3)
    state = generator.get_state().clone()
    negative = negative_face_embedding(positive, 0.0, generator)
    assert torch.equal(negative, torch.zeros_like(positive))
    assert torch.equal(generator.get_state(), state)


def test_noise_is_uniform_scaled_shared_by_the_batch_and_leaves_the_call_generator_alone():
    positive = torch.randn(3, 1, 1, 512)
    generator = torch.Generator("cpu").manual_seed(3)
    state = generator.get_state().clone()
    negative = negative_face_embedding(positive, 0.35, generator)
    assert torch.equal(generator.get_state(), state)  # the latents the stock pipeline draws next are unchanged
    assert negative.shape == positive.shape
    assert float(negative.min()) >= 0.0 and float(negative.max()) < 0.35
    assert float(negative.std()) > 0.05  # really noise, not a constant
    assert torch.equal(negative[0], negative[2])
    # Same state -> same noise; another seed -> other noise; and not a replay of the seed's own stream.
    assert torch.equal(negative, negative_face_embedding(positive, 0.35, torch.Generator("cpu").manual_seed(3)))
    assert not torch.equal(negative, negative_face_embedding(positive, 0.35, torch.Generator("cpu").manual_seed(4)))
    replay = 0.35 * torch.rand((1, 1, 1, 512), generator=torch.Generator("cpu").manual_seed(3))
    assert not torch.allclose(negative[:1], replay)


def test_fork_without_generator_uses_the_global_state_without_advancing_it():
    torch.manual_seed(11)
    before = torch.get_rng_state().clone()
    first = forked_generator(None).initial_seed()
    assert torch.equal(torch.get_rng_state(), before)
    assert forked_generator(None).initial_seed() == first
    assert forked_generator([torch.Generator().manual_seed(1)]).initial_seed() == \
        forked_generator(torch.Generator().manual_seed(1)).initial_seed()


@pytest.mark.parametrize("bad", [-0.1, 5.5, "lots"])  # NaN/inf: the parameter table's test (test_bad_input_api)
def test_bad_noise_is_refused(bad):
    with pytest.raises(UsageError, match="negative_face_noise"):
        negative_face_embedding(torch.zeros(1, 1, 1, 4), bad)


# ---- the pipeline call


def test_default_is_bit_identical_to_zero_noise(pipe):
    assert torch.equal(run(pipe), run(pipe, negative_face_noise=0.0))


def test_noise_changes_the_image_reproducibly_without_touching_the_latent_stream(pipe):
    plain_gen, noisy_gen = torch.Generator("cpu").manual_seed(0), torch.Generator("cpu").manual_seed(0)
    plain = run(pipe, plain_gen)
    noisy = run(pipe, noisy_gen, negative_face_noise=0.35)
    assert (noisy - plain).abs().max() > 1e-3
    assert torch.equal(noisy, run(pipe, negative_face_noise=0.35))  # same seed, same image
    # The stock pipeline drew exactly the same numbers from the call's generator in both calls.
    assert torch.equal(plain_gen.get_state(), noisy_gen.get_state())


def test_noise_does_nothing_without_cfg(pipe):
    # guidance 1 = no CFG: there is no negative branch for the noise to act on.
    assert torch.equal(run(pipe, guidance_scale=1.0), run(pipe, guidance_scale=1.0, negative_face_noise=1.0))


def test_cli_flag_comes_from_the_params_table():
    from instantid.cli import build_parser
    from instantid.params import generation_values

    parser = build_parser()
    args = parser.parse_args(["generate", "--face", "x.jpg", "--prompt", "p", "--out", "o.png",
                              "--negative-face-noise", "0.35"])
    assert generation_values(vars(args))["negative_face_noise"] == 0.35
    args = parser.parse_args(["generate", "--face", "x.jpg", "--prompt", "p", "--out", "o.png"])
    assert generation_values(vars(args))["negative_face_noise"] == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--face", "x.jpg", "--prompt", "p", "--out", "o.png",
                           "--negative-face-noise", "9"])


def test_regions_use_the_noisy_negative_too(tiny_pipe):
    """Several identities (multi): each region's adapter input and IdentityNet tokens take the call's negative."""
    from instantid.pipelines.face_region import IdentityRegion
    from instantid.pipelines.multi_identity import generate_multi_identity

    left, right = (0, 8, 32, 64), (32, 8, 64, 64)
    rng = np.random.default_rng(0)
    identities = [IdentityRegion(box, embedding=rng.normal(size=128).astype(np.float32) * 3,
                                 kps=KPS / 64 * [box[2] - box[0], box[3] - box[1]] + [box[0], box[1]])
                  for box in (left, right)]

    def multi(**extra):
        return generate_multi_identity(tiny_pipe, identities, "two people", width=64, height=64,
                                       num_inference_steps=1, guidance_scale=5.0, output_type="latent",
                                       generator=torch.Generator().manual_seed(0), **extra).images

    plain = multi()
    assert torch.equal(plain, multi(negative_face_noise=0.0))
    noisy = multi(negative_face_noise=1.0)
    assert (noisy - plain).abs().max() > 1e-4 and torch.equal(noisy, multi(negative_face_noise=1.0))
