"""Scoring generated pictures: a judge trained on real renders, and the held-out generation protocol.

The judge is a small CNN that reads a 16x16 picture and says who is in it, which background it has,
and where the face centre is. It is trained on real renders of all 32 (person, background) pairs and
its accuracy on fresh real renders is reported beside every score it gives.

Every variant generates the same held-out (person, background) pairs, with the same poses, the same
starting noise and the same reference pictures, through the project's InstantID pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from instantid.face import get_reference_face
from instantid.face.keypoints import average_embeddings

from .toy_models import ToyTextEncoder
from .world import (COLOURS, EXPRESSIONS, NUM_PEOPLE, PEOPLE, SIZE, Picture, Pose, ToyRecognizer, draw_pictures, keypoint_image,
                    random_poses, render)


class Judge(torch.nn.Module):
    """16x16 picture in [-1, 1] -> (person logits, background logits, face centre in pixels)."""

    def __init__(self, expressions: bool = False):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
            torch.nn.SiLU(), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(64, 96, 3, stride=2, padding=1), torch.nn.SiLU(), torch.nn.Flatten(),
            torch.nn.Linear(96 * 16, 128), torch.nn.SiLU())
        self.person = torch.nn.Linear(128, NUM_PEOPLE)
        self.colour = torch.nn.Linear(128, len(COLOURS))
        self.centre = torch.nn.Linear(128, 2)
        # made last, so the default judge's initial weights are what they always were
        self.expression = torch.nn.Linear(128, len(EXPRESSIONS)) if expressions else None

    def forward(self, pixels):
        h = self.features(pixels)
        return self.person(h), self.colour(h), self.centre(h) + SIZE / 2

    @torch.no_grad()
    def read_expression(self, pixels) -> torch.Tensor:
        """Index into EXPRESSIONS of each picture's expression."""
        return self.expression(self.features(pixels.clamp(-1, 1))).argmax(1)


def expression_labels(pictures: list[Picture]) -> torch.Tensor:
    return torch.tensor([EXPRESSIONS.index(p.expression) for p in pictures])


def _as_tensors(pictures: list[Picture]):
    pixels = torch.from_numpy(np.stack([p.pixels for p in pictures]).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    people = torch.tensor([p.person for p in pictures])
    colours = torch.tensor([COLOURS.index(p.colour) for p in pictures])
    centres = torch.tensor([[p.pose.x, p.pose.y] for p in pictures], dtype=torch.float32)
    return pixels, people, colours, centres


@dataclass
class JudgeReport:
    person_accuracy: float
    colour_accuracy: float
    centre_error: float  # mean distance in pixels
    expression_accuracy: float | None = None  # the judge on real renders (expression world only)


def train_judge(seed: int, steps: int = 600, batch_size: int = 128, expressions: bool = False
                ) -> tuple[Judge, JudgeReport]:
    """Train on fresh real renders of every pair; report on other fresh renders. `expressions`: the world
    with per-picture expressions, and a head that reads them."""
    torch.manual_seed(seed)
    judge = Judge(expressions)
    pairs = [(person, colour) for person in range(NUM_PEOPLE) for colour in COLOURS]
    rng = np.random.default_rng([seed, 3])
    train_pictures = draw_pictures(pairs, 120, rng, expressions)
    train = _as_tensors(train_pictures)
    expression_of = expression_labels(train_pictures) if expressions else None
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    for step in range(steps):
        index = torch.from_numpy(rng.choice(len(train[0]), size=batch_size, replace=False))
        pixels, people, colours, centres = (t[index] for t in train)
        pixels = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(step)) * 0.05
        person, colour, centre = judge(pixels)
        loss = F.cross_entropy(person, people) + F.cross_entropy(colour, colours) + F.smooth_l1_loss(centre, centres)
        if expressions:
            loss = loss + F.cross_entropy(judge.expression(judge.features(pixels)), expression_of[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    judge.eval().requires_grad_(False)
    test_pictures = draw_pictures(pairs, 10, rng, expressions)
    test_pixels, people, colours, centres = _as_tensors(test_pictures)
    report = score(judge, test_pixels, people, colours, centres)
    if expressions:
        report.expression_accuracy = (judge.read_expression(test_pixels) == expression_labels(test_pictures)
                                      ).float().mean().item()
    return judge, report


@torch.no_grad()
def score(judge: Judge, pixels, people, colours, centres) -> JudgeReport:
    person, colour, centre = judge(pixels.clamp(-1, 1))
    return JudgeReport(person_accuracy=(person.argmax(1) == people).float().mean().item(),
                       colour_accuracy=(colour.argmax(1) == colours).float().mean().item(),
                       centre_error=(centre - centres).norm(dim=1).mean().item())


@dataclass
class HeldOutTask:
    """What every variant is asked to draw: per held-out pair, poses, starting noise and references."""

    pairs: list[tuple[int, str]]
    poses: dict[tuple[int, str], list[Pose]]
    noise: dict[tuple[int, str], torch.Tensor]
    references: dict[int, list[Picture]]  # per person: pictures on training backgrounds
    # expression world: each pair's held-out photos show the opposite of its person's first reference
    target_expression: dict[tuple[int, str], str] | None = None

    @classmethod
    def draw(cls, held_out: set[tuple[int, str]], poses_per_pair: int, seed: int, expressions: bool = False
             ) -> "HeldOutTask":
        rng = np.random.default_rng([seed, 4])
        pairs = sorted(held_out)
        poses = {pair: random_poses(rng, poses_per_pair) for pair in pairs}
        generator = torch.Generator().manual_seed(seed)
        noise = {pair: torch.randn(poses_per_pair, 3, SIZE, SIZE, generator=generator) for pair in pairs}
        references = {}
        for person, held_colour in pairs:
            colours = [c for c in COLOURS if (person, c) not in held_out]
            references[person] = [Picture(person, colour, pose, render(person, colour, pose))
                                  for colour, pose in zip(rng.choice(colours, size=3), random_poses(rng, 3))]
        if not expressions:
            return cls(pairs, poses, noise, references)
        target_expression = {}
        for person, colour in pairs:  # drawn after everything above: the default task is unchanged
            shown = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
            references[person] = [Picture(p.person, p.colour, p.pose, render(p.person, p.colour, p.pose, shown), shown)
                                  for p in references[person]]
            target_expression[person, colour] = next(e for e in EXPRESSIONS if e != shown)
        return cls(pairs, poses, noise, references, target_expression)

    def targets(self) -> list[Picture]:
        """The real pictures each generation should match (same person, background and pose; in the
        expression world, the held-out photo's expression)."""
        expression = self.target_expression or {}
        return [Picture(person, colour, pose, render(person, colour, pose, expression.get((person, colour))),
                        expression.get((person, colour)))
                for person, colour in self.pairs for pose in self.poses[person, colour]]

    def reference_embedding(self, recognizer: ToyRecognizer, person: int, count: int) -> np.ndarray:
        """The first `count` references' embeddings, averaged as the pipeline's users average them."""
        pictures = self.references[person][:count]
        recognizer.remember(pictures)
        return average_embeddings([get_reference_face(p.pixels, analyzer=recognizer).embedding for p in pictures])


@torch.no_grad()
def generate(pipe, task: HeldOutTask, text: ToyTextEncoder, recognizer: ToyRecognizer, *, adapter_scale: float,
             identitynet_scale: float, references: int = 1, steps: int = 20) -> torch.Tensor:
    """Pictures in [-1, 1], [pairs x poses, 3, 16, 16], in the order of `task.targets()`."""
    states = text.colour_states()
    out = []
    for person, colour in task.pairs:
        poses = task.poses[person, colour]
        kps = [Image.fromarray(keypoint_image(pose.keypoints(PEOPLE[person].face_width))) for pose in poses]
        result = pipe(prompt_embeds=states[colour].expand(len(poses), -1, -1), image=kps,
                      image_embeds=task.reference_embedding(recognizer, person, references),
                      latents=task.noise[person, colour].clone(), num_inference_steps=steps, guidance_scale=1.0,
                      height=SIZE, width=SIZE, output_type="latent", ip_adapter_scale=adapter_scale,
                      controlnet_conditioning_scale=identitynet_scale)
        out.append(result.images)
    return torch.cat(out).clamp(-1, 1)


def score_generations(judge: Judge, generated: torch.Tensor, task: HeldOutTask) -> JudgeReport:
    _, people, colours, centres = _as_tensors(task.targets())
    return score(judge, generated, people, colours, centres)


@dataclass
class CopyPaste:
    """MultiID-Bench's Sim(Ref) vs Sim(GT), on the one feature the reference should *not* dictate: the
    expression. Sim(Ref): outputs showing the reference's expression; Sim(GT): outputs showing the held-out
    photo's (always the other one). copy_paste = Sim(Ref) - Sim(GT): +1 copies the reference every time,
    0 does not follow it at all."""

    sim_ref: float
    sim_gt: float

    @property
    def copy_paste(self) -> float:
        return self.sim_ref - self.sim_gt


def copy_paste_score(judge: Judge, generated: torch.Tensor, task: HeldOutTask) -> CopyPaste:
    shown = judge.read_expression(generated)
    targets = expression_labels(task.targets())
    references = torch.tensor([EXPRESSIONS.index(task.references[person][0].expression)
                               for person, colour in task.pairs for _ in task.poses[person, colour]])
    return CopyPaste((shown == references).float().mean().item(), (shown == targets).float().mean().item())


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8."""
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
