"""A fake facexlib ArcFace checkpoint: the real IR-SE50 architecture with random weights, saved as the real
`recognition_arcface_ir_se50.pth` is (`torch.save` of the plain state dict). For plumbing tests of the FLUX
family's face path offline, as shared/fixtures/fake-antelopev2 is for insightface; its embeddings are unit
vectors that mean nothing as identity."""

from __future__ import annotations

from pathlib import Path

import torch

from instantid.face.arcface import WEIGHTS_NAME, ArcFaceIRSE50


def build_fake_arcface(folder: str | Path, *, seed: int = 0) -> Path:
    """Write `folder/recognition_arcface_ir_se50.pth` (~175 MB, fp32) and return its path. BatchNorm statistics
    are randomised too, so every tensor matters; the global torch RNG is left untouched."""
    path = Path(folder) / WEIGHTS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = ArcFaceIRSE50()
        with torch.no_grad():
            for name, tensor in network.state_dict().items():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 1.5)
                elif name.endswith("running_mean"):
                    tensor.normal_(0.0, 0.1)
                elif tensor.is_floating_point() and tensor.ndim == 1:
                    tensor.add_(torch.randn_like(tensor) * 0.1)
    torch.save(network.state_dict(), path)
    return path
