"""The FLUX learning experiment (benchmarks/learning_flux): its toy pieces, and a smoke run of the whole recipe."""

import json

import numpy as np
import pytest
import torch

from benchmarks.learning import world
from benchmarks.learning.toy_models import ToyTextEncoder
from benchmarks.learning.train import TrainingSet
from test_training_helpers import one_torch_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(size=2):
    rng = np.random.default_rng(0)
    pictures = world.draw_pictures([(3, "blue")], size, rng)
    recognizer = world.ToyRecognizer(seed=0)
    recognizer.remember(pictures)
    from benchmarks.learning_flux.train import flux_batch

    return flux_batch(TrainingSet.from_pictures(pictures, ToyTextEncoder(0), recognizer), rng, size)


@pytest.mark.parametrize("adapter_branch", [False, True])
def test_arms_train_only_their_own_modules(adapter_branch):
    from benchmarks.learning_flux.toy_models import toy_transformer
    from benchmarks.learning_flux.train import instantid_on
    from instantid.training.loop import batch_generator, compute_loss

    base = toy_transformer(0).requires_grad_(False)
    components = instantid_on(base, adapter_branch, seed=0)
    trainable = {name for name, p in components.model.named_parameters() if p.requires_grad}
    assert any(name.startswith("face_projection.") for name in trainable)
    assert any(name.startswith("identitynet.") for name in trainable)
    assert any("to_k_ip" in name for name in trainable) == adapter_branch
    loss = compute_loss(components, components.model, _batch(), batch_generator(0, 0, 0))
    loss.backward()
    base_names = set(base.state_dict())
    assert all(p.grad is None for name, p in components.transformer.named_parameters() if name in base_names)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in components.model.parameters()
               if p.requires_grad)


def test_the_base_variant_is_exactly_the_frozen_base():
    """"base" is the pipeline at IdentityNet scale 0 and adapter scale 0: exactly the sampling of the frozen DiT
    with its stock attention processors and no IdentityNet residuals."""
    from benchmarks.learning_flux.evaluate import generate
    from benchmarks.learning_flux.toy_models import flux_instantid_pipeline, toy_transformer
    from benchmarks.learning_flux.train import instantid_on
    from benchmarks.learning.evaluate import HeldOutTask

    base = toy_transformer(0).requires_grad_(False).eval()
    components = instantid_on(base, True, seed=0)
    task = HeldOutTask.draw({(2, "red")}, 2, seed=0)
    recognizer = world.ToyRecognizer(seed=0)
    text = ToyTextEncoder(0)
    got = generate(components.pipe, task, text, recognizer, adapter_scale=0.0, identitynet_scale=0.0, steps=3)
    fresh_branch = generate(components.pipe, task, text, recognizer, adapter_scale=1.0, identitynet_scale=0.0, steps=3)
    with torch.no_grad():  # a trained branch: non-zero values
        for block in components.transformer.transformer_blocks:
            block.attn.processor.to_v_ip[0].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    with_face = generate(components.pipe, task, text, recognizer, adapter_scale=1.0, identitynet_scale=0.0, steps=3)
    at_zero = generate(components.pipe, task, text, recognizer, adapter_scale=0.0, identitynet_scale=0.0, steps=3)

    plain = toy_transformer(0)
    plain.load_state_dict(base.state_dict())
    from diffusers import FluxControlNetModel

    idle = FluxControlNetModel.from_transformer(plain, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                                num_attention_heads=4)
    reference_pipe = flux_instantid_pipeline(plain, idle)
    reference_pipe.load_ip_adapter_instantid({"image_proj": _released(components.pipe.face_projection)})
    expected = generate(reference_pipe, task, text, recognizer, adapter_scale=0.0, identitynet_scale=0.0, steps=3)
    assert torch.equal(got, expected) and torch.equal(at_zero, expected)
    assert torch.equal(fresh_branch, expected)  # a fresh branch is a no-op (zero values): training starts at the base
    assert not torch.allclose(with_face, expected)


def _released(projection):
    from instantid.models.adapter import resampler_state_dict_to_released

    return {k: v.detach().clone() for k, v in resampler_state_dict_to_released(projection.state_dict()).items()}


@pytest.mark.slow  # several minutes on 2 shared cores
def test_smoke_run_learns_and_keeps_the_base_frozen(tmp_path):
    from benchmarks.learning_flux.experiment import BOTH, run_seed
    from benchmarks.learning_flux.report import write_report

    result = run_seed(0, "smoke", tmp_path / "seed0")
    for stage, (first, last) in result.losses.items():
        assert last < first, f"{stage} loss did not fall: {first:.4f} -> {last:.4f}"
    assert result.frozen_unchanged == {"identitynet": True, BOTH: True}
    assert set(result.variants) == {"base", "identitynet", BOTH, "adapter branch alone"}
    assert all(0.0 <= v["identity"] <= 1.0 for v in result.variants.values())
    saved = json.loads((tmp_path / "seed0" / "results.json").read_text())
    assert saved["variants"] == result.variants
    report = write_report(tmp_path, tmp_path / "RESULTS.md")
    assert f"| {BOTH} |" in report and (tmp_path / "bar_chart.png").is_file()
