"""One row of scores per generated image, and their aggregates: ties the extractors to the metrics."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import metrics
from .face_features import FaceExtractor, FaceFeatures
from .head_pose import HeadPose, head_pose

logger = logging.getLogger(__name__)


@dataclass
class ImageScore:
    image: str
    prompt: str | None = None
    detected: dict[str, bool] = field(default_factory=dict)  # recognizer -> face found
    similarity: dict[str, float | None] = field(default_factory=dict)  # recognizer -> cosine to the reference
    clip_t: float | None = None
    clip_i: float | None = None
    kps_distance: float | None = None  # "copy-paste" axis: 0 = the reference's face layout
    pose: HeadPose | None = None
    pose_change: dict[str, float] | None = None  # |yaw|, |pitch|, |roll| differences to the reference, total
    sim_gt: dict[str, float | None] = field(default_factory=dict)  # recognizer -> cosine to the held-out photos
    copy_paste: dict[str, float | None] = field(default_factory=dict)  # recognizer -> Sim(Ref) - Sim(GT)

    def as_row(self, recognizers: Sequence[str]) -> dict:
        """Flat CSV row: one column per recognizer and metric."""
        row: dict = {"image": self.image, "prompt": self.prompt or ""}
        for name in recognizers:
            row[f"face_{name}"] = self.detected.get(name, False)
            row[f"similarity_{name}"] = _round(self.similarity.get(name))
            if name in self.sim_gt:  # a held-out photo was given
                row[f"sim_gt_{name}"] = _round(self.sim_gt[name])
                row[f"copy_paste_{name}"] = _round(self.copy_paste.get(name))
        row.update(clip_t=_round(self.clip_t), clip_i=_round(self.clip_i), kps_distance=_round(self.kps_distance))
        for axis in ("yaw", "pitch", "roll"):
            row[axis] = _round(getattr(self.pose, axis) if self.pose else None, 2)
        row["pose_change_deg"] = _round(self.pose_change["total"] if self.pose_change else None, 2)
        return row


def _round(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


@dataclass
class Evaluation:
    references: list[str]
    recognizers: list[str]
    scores: list[ImageScore]
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    reference_pose: HeadPose | None = None

    def rows(self) -> list[dict]:
        return [s.as_row(self.recognizers) for s in self.scores]

    def aggregate(self) -> dict[str, dict]:
        """Per metric: summary over the images (similarity over images with a face)."""
        out: dict[str, dict] = {}
        for name in self.recognizers:
            out[f"face_{name}"] = {"rate": metrics.detection_rate(s.detected.get(name, False) for s in self.scores)}
            out[f"similarity_{name}"] = metrics.summary(s.similarity.get(name) for s in self.scores)
            if any(name in s.sim_gt for s in self.scores):
                out[f"sim_gt_{name}"] = metrics.summary(s.sim_gt.get(name) for s in self.scores)
                out[f"copy_paste_{name}"] = metrics.summary(s.copy_paste.get(name) for s in self.scores)
        out["clip_t"] = metrics.summary(s.clip_t for s in self.scores)
        out["clip_i"] = metrics.summary(s.clip_i for s in self.scores)
        out["kps_distance"] = metrics.summary(s.kps_distance for s in self.scores)
        out["pose_change_deg"] = metrics.summary(s.pose_change["total"] if s.pose_change else None for s in self.scores)
        return out


def _name(image) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"


def _pose_or_none(features: FaceFeatures) -> HeadPose | None:
    try:
        return head_pose(features.kps, features.image_size)
    except ValueError:
        return None


def evaluate(references: Sequence, generated: Sequence, extractors: Sequence[FaceExtractor], *,
             clip=None, prompts: Sequence[str | None] | None = None, pose_reference=None,
             notes: Sequence[str] = (), on_image: Callable[[int], None] | None = None,
             held_out: Sequence = ()) -> Evaluation:
    """Score each generated image against the reference photos (one person).

    extractors: face recognizers; the first one also gives the keypoints for the pose metrics.
    clip: a ClipExtractor or None (CLIP-T needs `prompts`, one per generated image).
    pose_reference: the photo whose face layout counts as "copied" (default: the first reference).
    held_out: other photos of the same person, never given to the generator: Sim(GT) and the copy-paste score
    Sim(Ref) - Sim(GT) (MultiID-Bench) per image.
    """
    if not extractors:
        raise ValueError("evaluate needs at least one face extractor")
    notes = list(notes)
    ref_embeddings: dict[str, list[np.ndarray]] = {}
    for extractor in extractors:
        found = [f.embedding for f in (extractor(r) for r in references) if f.detected]
        ref_embeddings[extractor.name] = found
        if len(found) < len(references):
            notes.append(f"{extractor.name}: a face was found in {len(found)} of {len(references)} reference photo(s)")
    held_embeddings = {extractor.name: [f.embedding for f in (extractor(h) for h in held_out) if f.detected]
                       for extractor in extractors} if held_out else {}
    for name, found in held_embeddings.items():
        if len(found) < len(held_out):
            notes.append(f"{name}: a face was found in {len(found)} of {len(held_out)} held-out photo(s)")
    primary = extractors[0]
    pose_features = primary(pose_reference if pose_reference is not None else references[0])
    reference_pose = _pose_or_none(pose_features) if pose_features.detected else None
    if not pose_features.detected:
        notes.append(f"{primary.name} found no face in the pose reference: keypoint and pose metrics left out")

    prompts = list(prompts) if prompts is not None else [None] * len(generated)
    clip_image, clip_text, clip_refs = _clip_features(clip, references, generated, prompts)
    scores = []
    for index, image in enumerate(generated):
        score = ImageScore(_name(image), prompts[index])
        for extractor in extractors:
            features = extractor(image)
            score.detected[extractor.name] = features.detected
            refs = ref_embeddings[extractor.name]
            score.similarity[extractor.name] = (metrics.identity_similarity(refs, features.embedding)
                                                if features.detected and refs else None)
            if extractor.name in held_embeddings:
                held = held_embeddings[extractor.name]
                sim_gt = metrics.identity_similarity(held, features.embedding) if features.detected and held else None
                score.sim_gt[extractor.name] = sim_gt
                sim_ref = score.similarity[extractor.name]
                score.copy_paste[extractor.name] = (metrics.copy_paste(sim_ref, sim_gt)
                                                    if sim_ref is not None and sim_gt is not None else None)
            if extractor is primary and features.detected and pose_features.detected:
                score.kps_distance = metrics.kps_distance(features.kps, pose_features.kps)
                score.pose = _pose_or_none(features)
                if score.pose and reference_pose:
                    score.pose_change = score.pose.difference(reference_pose)
        if clip_image is not None:
            score.clip_i = metrics.clip_image_score(clip_image[index], clip_refs)
            if clip_text is not None and prompts[index]:
                score.clip_t = metrics.clip_text_score(clip_image[index], clip_text[index])
        scores.append(score)
        if on_image is not None:
            on_image(index)
    if clip is not None and not any(prompts):
        notes.append("CLIP-T left out: no prompts (give --prompt, --prompts, or images written by `instantid generate`)")
    return Evaluation([_name(r) for r in references], [e.name for e in extractors], scores, notes, reference_pose)


def _clip_features(clip, references, generated, prompts):
    """CLIP features of the generated images, of their prompts (blank for none) and of the references."""
    if clip is None:
        return None, None, None
    from ..face.image import load_image
    from PIL import Image

    def pil(source):
        return Image.fromarray(load_image(source))

    image_features = clip.image_features([pil(g) for g in generated])
    reference_features = list(clip.image_features([pil(r) for r in references]))
    text_features = clip.text_features([p or "" for p in prompts]) if any(prompts) else None
    return image_features, text_features, reference_features
