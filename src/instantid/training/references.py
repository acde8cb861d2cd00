"""Paired references: whose face embedding conditions a training sample.

The paper trains every image with its own face as the reference (`same`). The output then learns to
copy the reference's expression, lighting and pose ("copy-paste"). Later systems (PhotoMaker,
InfiniteYou, WithAnyone) take the reference from a *different* photo of the same person (`other`).
`mixed:P` takes another photo with probability P, the sample's own otherwise.

Only the identity embedding is paired: the keypoints always come from the target (they say where its
face is). A sample whose identity has no second photo (or no label) keeps its own embedding; the number
of such samples is reported, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the training flags import this module; numpy stays out of `--help`
    import numpy as np

from .errors import TrainingConfigError

MODES = ("same", "other")


@dataclass(frozen=True)
class ReferenceMode:
    """Probability that a sample's reference is another photo of its person (0: the paper's `same`)."""

    p_other: float

    @classmethod
    def parse(cls, text: str) -> "ReferenceMode":
        if text == "same":
            return cls(0.0)
        if text == "other":
            return cls(1.0)
        if text.startswith("mixed:"):
            try:
                p = float(text.split(":", 1)[1])
            except ValueError:
                p = -1.0
            if 0.0 <= p <= 1.0:
                return cls(p)
        raise TrainingConfigError(f"--reference must be same, other or mixed:P with 0 <= P <= 1, got {text!r}")

    @property
    def pairs(self) -> bool:
        return self.p_other > 0


class IdentityGroups:
    """Sample indices grouped by identity label (None: unlabelled, never paired)."""

    def __init__(self, labels: list):
        self.labels = list(labels)
        self.members: dict = {}
        for index, label in enumerate(self.labels):
            if label is not None and label != "":
                self.members.setdefault(label, []).append(index)

    def partners(self, index: int) -> list[int]:
        label = self.labels[index]
        if label is None or label == "":
            return []
        return [i for i in self.members[label] if i != index]

    def pairable(self) -> int:
        """How many samples have at least one other photo of their person."""
        return sum(len(m) for m in self.members.values() if len(m) > 1)


def pick_reference(mode: ReferenceMode, groups: IdentityGroups, index: int, rng: np.random.Generator) -> int:
    """The index whose embedding conditions sample `index`. Draws from `rng` only when the mode pairs,
    so `same` runs consume exactly the random numbers they always did."""
    if not mode.pairs:
        return index
    partners = groups.partners(index)
    take_other = rng.random() < mode.p_other
    if not partners or not take_other:
        return index
    return partners[int(rng.integers(len(partners)))]
