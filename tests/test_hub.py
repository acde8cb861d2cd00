"""Weights resolution: local paths, Hub ids, and a fast, clear failure offline."""

import socket

import pytest

from instantid.errors import WeightsNotFoundError
from instantid.pipelines import hub
from instantid.pipelines.loading import load_pipeline


@pytest.fixture
def offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.mark.parametrize("spec, local", [
    ("InstantX/InstantID", False),
    ("stabilityai/stable-diffusion-xl-base-1.0", False),
    ("./models/base", True),
    ("/abs/path", True),
    ("~/sdxl", True),
    ("a/b/c", True),
    ("model.safetensors", True),
])
def test_local_path_or_hub_id(spec, local):
    assert hub.looks_like_local_path(spec) is local


def test_existing_local_dir_and_subfolder(tmp_path):
    (tmp_path / "ControlNetModel").mkdir()
    assert hub.resolve_dir(tmp_path, what="x", hint="", subfolder="ControlNetModel") == tmp_path / "ControlNetModel"
    assert hub.resolve_dir(tmp_path / "ControlNetModel", what="x", hint="", subfolder="ControlNetModel") == \
        tmp_path / "ControlNetModel"


def test_missing_local_path_is_named(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        hub.resolve_dir(tmp_path / "missing", what="base model", hint="with --base")
    with pytest.raises(WeightsNotFoundError, match="has no 'ip-adapter.bin'"):
        hub.resolve_file(tmp_path, filename="ip-adapter.bin", what="face adapter", hint="with --adapter")


def test_offline_hub_id_fails_fast_with_download_hint(offline, monkeypatch):
    def no_network(*args, **kwargs):  # fast = no lookup, connection or retry towards the Hub, not a time
        raise AssertionError("offline, yet the network was tried")

    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(WeightsNotFoundError) as err:
        load_pipeline(device="cpu")
    message = str(err.value)
    assert "InstantX/InstantID" in message and "hf download" in message and "--adapter" in message


def test_load_pipeline_refuses_an_unknown_device_before_loading(tmp_path):
    from instantid.errors import DeviceError

    with pytest.raises(DeviceError, match="unknown device 'potato'.*use auto, cpu, cuda"):
        load_pipeline(tmp_path / "no-base", tmp_path / "no-identitynet", tmp_path / "no-adapter", device="potato")
