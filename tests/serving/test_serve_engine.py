"""The service's engine is the library, not a second implementation: same seed and inputs give the same
pixels as generate_from_photos; extra ControlNets and the serve/ui options work on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instantid.cli import build_parser
from instantid.cli.serve import engine_config
from instantid.serving.engine import Engine, JobCancelled
from instantid.serving.schemas import JobRequest

pytestmark = pytest.mark.slow


def _engine(*options):
    engine = Engine(engine_config(build_parser().parse_args(["serve", "--tiny", "--device", "cpu", *options])))
    engine.load()
    return engine


def _request(values, photo, **more) -> JobRequest:
    """A job's request for one face photo (its file name: the engine runs it in the photo's folder)."""
    return JobRequest(prompt="a portrait", faces=[photo.name], **values, **more)


def test_serve_takes_generate_model_options():
    args = build_parser().parse_args(["serve", "--base", "B", "--identitynet", "I", "--adapter", "A", "--face-backend",
                                      "dlib", "--lora", "l.safetensors:0.5", "--controlnet", "canny", "--dtype",
                                      "bfloat16", "--device", "cpu", "--offload", "--queue-size", "3", "--api-key", "k"])
    config = engine_config(args)
    load = config.load
    assert (load.base, load.identitynet, load.adapter, load.loras, config.control_kinds) == (
        "B", "I", "A", (("l.safetensors", 0.5),), ("canny",))
    assert (load.dtype, load.device, load.offload, config.face_backend) == ("bfloat16", "cpu", True, "dlib")
    assert (args.queue_size, args.api_key) == (3, "k")
    ui = engine_config(build_parser().parse_args(["ui", "--tiny", "--lora", "x", "--controlnet", "depth"]))
    assert ui.load.tiny and ui.load.loras == (("x", 1.0),) and ui.control_kinds == ("depth",)


def test_same_pixels_as_the_library_and_cancel(photos):
    from instantid.pipelines.from_photos import generate_from_photos

    engine = _engine()
    values = engine.check_request({"num_inference_steps": 2, "width": 64, "height": 64, "seed": 11})[0]
    steps = []
    images, parameters = engine.generate(_request(values, photos["astronaut"]), photos["astronaut"].parent,
                                         on_step=lambda s, t: steps.append((s, t)))
    assert steps == [(0, 2), (1, 2), (2, 2)] and parameters["seed"] == 11
    direct = generate_from_photos(engine.pipe, [photos["astronaut"]], "a portrait", analyzer=engine.analyzer,
                                  width=64, height=64, num_inference_steps=2, guidance_scale=values["guidance_scale"],
                                  controlnet_conditioning_scale=0.8, ip_adapter_scale=0.8,
                                  generator=torch.Generator("cpu").manual_seed(11))
    assert np.array_equal(np.asarray(images[0]), np.asarray(direct.images[0]))

    def cancel_at_first_step(step, total):
        if step == 1:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        engine.generate(_request(values, photos["astronaut"]), photos["astronaut"].parent, cancel_at_first_step)


def test_extra_controlnet(photos):
    engine = _engine("--controlnet", "canny")
    values = engine.check_request({"num_inference_steps": 2, "width": 64, "height": 64})[0]
    folder = photos["astronaut"].parent
    with_photo, parameters = engine.generate(
        _request(values, photos["astronaut"], controls={"canny": str(photos["t1"])}, canny_scale=0.6), folder)
    assert parameters["control_scales"] == {"canny": 0.6}
    without, parameters = engine.generate(_request(values, photos["astronaut"]), folder)
    assert parameters["control_scales"] == {"canny": 0.0}
    assert not np.array_equal(np.asarray(with_photo[0]), np.asarray(without[0]))


@pytest.mark.parametrize("command, words", [
    (["serve", "--base", "/nonexistent/base"], ["--base", "not found"]),
    (["serve", "--tiny", "--state-dir", "{file}"], ["--state-dir", "is a file"]),
    (["ui", "--tiny", "--host", "0.0.0.0"], ["--host", "no login"]),
    (["serve", "--tiny", "--lora", "/nonexistent/style.safetensors:0.7"], ["--lora", "not found"]),
])
def test_refusals_before_anything_loads(tmp_path, command, words):
    import subprocess
    import sys

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    command = [part.replace("{file}", str(a_file)) for part in command]
    if "--state-dir" not in command:
        command += ["--state-dir", str(tmp_path / "state")]
    result = subprocess.run([sys.executable, "-m", "instantid", *command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
