"""The CPU-scale learning experiment (benchmarks/learning): its world, and a smoke run of the whole recipe."""

import json

import numpy as np
import pytest
import torch

from benchmarks.learning import world
from benchmarks.learning.experiment import run_seed
from benchmarks.learning.report import write_report
from benchmarks.learning.toy_models import ToyTextEncoder
from benchmarks.learning.train import StagePlan, TrainingSet, train_base
from test_training_helpers import one_torch_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_held_out_pairs_cover_every_person_once_and_every_colour_twice():
    for seed in range(4):
        held = world.held_out_pairs(seed)
        assert sorted(p for p, _ in held) == list(range(world.NUM_PEOPLE))
        assert all(sum(c == colour for _, c in held) == 2 for colour in world.COLOURS)


def test_recognizer_is_stable_per_picture_and_ignores_unknown_images():
    rng = np.random.default_rng(0)
    pictures = world.draw_pictures([(0, "red"), (0, "blue"), (5, "red")], 2, rng)
    recognizer = world.ToyRecognizer(seed=0, noise=0.3)
    recognizer.remember(pictures)
    first = [recognizer.detect(p.pixels)[0] for p in pictures]
    again = [recognizer.detect(p.pixels.copy())[0] for p in pictures]
    assert all(np.array_equal(a.embedding, b.embedding) for a, b in zip(first, again))
    vectors = np.stack([f.normed_embedding for f in first])
    same, other = vectors[0] @ vectors[2], vectors[0] @ vectors[4]  # person 0 on two backgrounds vs person 5
    assert same > other + 0.3
    assert recognizer.detect(np.zeros((16, 16, 3), np.uint8)) == []
    face = first[0]
    x1, y1, x2, y2 = face.bbox
    assert ((face.kps[:, 0] > x1) & (face.kps[:, 0] < x2) & (face.kps[:, 1] > y1) & (face.kps[:, 1] < y2)).all()


def test_base_training_is_deterministic_given_a_seed():
    rng = np.random.default_rng(0)
    pictures = world.draw_pictures([(1, "green"), (2, "purple")], 8, rng)
    recognizer = world.ToyRecognizer(seed=0)
    recognizer.remember(pictures)
    data = TrainingSet.from_pictures(pictures, ToyTextEncoder(0), recognizer)
    runs = [train_base(data, StagePlan(steps=2, batch_size=4, warmup=1), seed=3) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    first, second = (unet.state_dict() for unet, _ in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow  # ~6 min on 2 cores, nearly half the suite: `pytest -m "not slow"` leaves it out
def test_smoke_run_learns_identity_and_keeps_the_base_frozen(tmp_path):
    """The whole recipe at smoke size (about 3 minutes on 2 cores)."""
    result = run_seed(0, "smoke", tmp_path / "seed0")
    for stage, (first, last) in result.losses.items():
        assert last < first, f"{stage} loss did not fall: {first:.4f} -> {last:.4f}"
    assert result.frozen_unchanged == {"both": True}
    both, base = result.variants["both"], result.variants["base"]
    assert both["identity"] > base["identity"], result.variants
    assert (tmp_path / "seed0" / "samples_both.png").is_file()

    saved = json.loads((tmp_path / "seed0" / "results.json").read_text())
    assert saved["variants"] == result.variants
    report = write_report(tmp_path, tmp_path / "RESULTS.md")
    assert "| both |" in report and (tmp_path / "bar_chart.png").is_file()


@pytest.mark.parametrize("arm", ["adapter", "identitynet"])
def test_ablation_arms_train_only_their_own_modules(arm):
    """Fig. 9's arms: the adapter alone has no IdentityNet in its forward; IdentityNet alone keeps the
    adapter's decoupled attention frozen at strength 0 (its Resampler still trains, it feeds IdentityNet)."""
    from benchmarks.learning.toy_models import toy_unet
    from benchmarks.learning.train import ARMS, instantid_on

    base = toy_unet(0).requires_grad_(False)
    components, model = instantid_on(base, ARMS[arm], seed=0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("encoder_hid_proj" in name for name in trainable)
    assert all("to_k_ip" not in name for name in trainable) == (arm == "identitynet")
    assert (model.identitynet is None) == (arm == "adapter")
    scales = {p.scale[0] for p in components.unet.attn_processors.values() if hasattr(p, "to_k_ip")}
    assert scales == ({0.0} if arm == "identitynet" else {1.0})

    rng = np.random.default_rng(0)
    pictures = world.draw_pictures([(3, "blue")], 2, rng)
    recognizer = world.ToyRecognizer(seed=0)
    recognizer.remember(pictures)
    batch = TrainingSet.from_pictures(pictures, ToyTextEncoder(0), recognizer).batch(rng, 2)
    from instantid.training.loop import batch_generator, compute_loss

    loss = compute_loss(components, model, batch, batch_generator(0, 0, 0))
    loss.backward()
    base_names = set(base.state_dict())
    assert all(p.grad is None for name, p in components.unet.named_parameters() if name in base_names)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_the_base_variant_is_exactly_the_frozen_base():
    """"base" is evaluated as the InstantID pipeline at both strengths 0: the UNet then computes exactly
    what the frozen base computes (IdentityNet is skipped at strength 0, see test_pipeline)."""
    from benchmarks.learning.toy_models import toy_unet
    from benchmarks.learning.train import ARMS, instantid_on

    base = toy_unet(0).requires_grad_(False).eval()
    components, _ = instantid_on(base, ARMS["both"], seed=0)
    components.pipe.set_ip_adapter_scale(0.0)
    generator = torch.Generator().manual_seed(0)
    noisy, text = torch.randn(2, 3, 16, 16, generator=generator), ToyTextEncoder(0)(["a face on red background"] * 2)
    faces = torch.randn(2, 1, 1, world.EMBEDDING_DIM, generator=generator)
    with torch.no_grad():
        expected = base(noisy, torch.tensor([10, 500]), text).sample
        got = components.unet(noisy, torch.tensor([10, 500]), text, added_cond_kwargs={"image_embeds": [faces]}).sample
        components.pipe.set_ip_adapter_scale(1.0)
        with_face = components.unet(noisy, torch.tensor([10, 500]), text, added_cond_kwargs={"image_embeds": [faces]}).sample
    assert torch.equal(got, expected)
    assert not torch.allclose(with_face, expected)
