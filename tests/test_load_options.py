"""LoadOptions, what every front end loads from: the models named the way the user gave them, and the
`--lora SPEC[:SCALE]` syntax (no model loads here)."""

from __future__ import annotations

import pytest

from instantid.pipelines.loading import LoadOptions, parse_lora_spec


def test_models_are_named_as_given_never_by_a_server_path(tmp_path):
    """Job parameters go to every client: Hub ids as given, local models by their file name, tiny as "tiny"."""
    base = tmp_path / "models" / "my-base.safetensors"
    options = LoadOptions(base=str(base), identitynet="owner/identitynet", adapter=str(tmp_path / "ip-adapter.bin"),
                          controlnets=(str(tmp_path / "canny-net/"),))
    assert options.model_names(local_paths=False) == {
        "base": "my-base.safetensors", "identitynet": "owner/identitynet", "adapter": "ip-adapter.bin",
        "controlnets": ["canny-net"], "tiny": False}
    assert options.model_names()["base"] == str(base)  # the CLI's metadata: the user's own paths
    tiny = LoadOptions(tiny=True, controlnets=("diffusers/controlnet-canny-sdxl-1.0", str(base)))
    assert tiny.model_names(local_paths=False) == {"base": "tiny", "identitynet": "tiny", "adapter": "tiny",
                                                   "controlnets": ["tiny", "my-base.safetensors"], "tiny": True}


@pytest.mark.parametrize("spec, parsed", [
    ("style.safetensors:0.7", ("style.safetensors", 0.7)), ("owner/name", ("owner/name", 1.0)),
    ("C:/loras/x.safetensors", ("C:/loras/x.safetensors", 1.0)), ("x:-0.5", ("x", -0.5)), (":0.5", (":0.5", 1.0)),
])
def test_lora_spec(spec, parsed):
    assert parse_lora_spec(spec) == parsed
