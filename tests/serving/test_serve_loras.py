"""The server's LoRA names and a request's `loras` field (no model: names, parsing, refusals)."""

from __future__ import annotations

import pytest

from instantid.errors import UsageError
from instantid.pipelines.loading import parse_lora_spec
from instantid.serving.loras import as_text, requested_scales
from instantid.serving.loras import server_loras as named


def server_loras(specs: list[str]):
    """The LoRAs of a server started with these --lora specs."""
    return named([parse_lora_spec(spec) for spec in specs])


def test_names_from_the_startup_specs():
    loras = server_loras(["/models/loras/Film Grain.safetensors:0.7", "owner/pixel-art", "other/Film Grain.safetensors",
                          "./folder/"])
    assert [(lora.name, lora.scale, lora.adapter) for lora in loras] == [
        ("Film_Grain", 0.7, "lora_0"), ("pixel-art", 1.0, "lora_1"), ("Film_Grain_2", 1.0, "lora_2"),
        ("folder", 1.0, "lora_3")]


def test_requested_scales():
    loras = server_loras(["a.safetensors:0.5", "b.safetensors"])
    assert requested_scales(None, loras) == {"a": 0.5, "b": 1.0}  # no field: the startup scales
    assert requested_scales("b:-0.5", loras) == {"a": 0.0, "b": -0.5}  # the others off
    assert requested_scales(" a , b:0.25 ", loras) == {"a": 1.0, "b": 0.25}
    assert requested_scales("", loras) == {"a": 0.0, "b": 0.0}
    assert as_text({"a": 1.0, "b": 0.0}) == "a:1" and as_text({"a": 0.0}) == ""


@pytest.mark.parametrize("text, words", [
    ("c:1", ["no LoRA 'c'", "available: a, b"]),
    ("../a.safetensors:1", ["no LoRA"]),
    ("a:x", ["'a'", "number"]),
    ("a:nan", ["finite"]),
    ("a:6", ["between"]),
])
def test_refusals(text, words):
    with pytest.raises(UsageError) as err:
        requested_scales(text, server_loras(["a.safetensors", "b.safetensors"]))
    for word in words:
        assert word in str(err.value)


def test_no_loras_loaded():
    with pytest.raises(UsageError, match="start the server with --lora"):
        requested_scales("a", [])
