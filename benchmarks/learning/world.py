"""The toy world: cartoon people on coloured backgrounds, their keypoints, and a face recognizer.

Eight identities differ in skin, hair colour and style, eye colour, face shape and mouth. A picture
is one person at a random position and size on one of four background colours, captioned
"a face on <colour> background". Pictures are drawn at 4x and box-filtered down to 16x16.

The recognizer is the world's oracle: it knows every picture the world drew (by its pixels) and
returns the person's fixed identity vector plus per-picture noise, through the project's face
backend interface (`instantid.face.types.FaceAnalyzer`), as the 512-d antelopev2 vector would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from instantid.face.keypoints import draw_kps
from instantid.face.types import Face

SIZE = 16  # pixels per side of every picture
_DRAW_SCALE = 4  # drawn at 64x64, then box-filtered to 16x16
_KPS_CANVAS = 128  # keypoints are drawn as released (fixed pen sizes) on 128x128, then resized
EMBEDDING_DIM = 64

# Expressions (the reference-mode comparison only): the mouth then varies per picture instead of being a
# trait of the person, and the recognizer leaks a little of it into the embedding, as real face
# embeddings carry some expression, pose and lighting: what a model trained with `same` references copies.
EXPRESSIONS = ("smile", "neutral")

BACKGROUNDS = {"red": (190, 45, 45), "green": (45, 150, 70), "blue": (45, 75, 190), "purple": (125, 60, 160)}
COLOURS = tuple(BACKGROUNDS)


@dataclass(frozen=True)
class Person:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    eyes: tuple[int, int, int]
    face_width: float  # of the face's height
    smile: bool


_PALE, _TAN, _BROWN, _DARK = (250, 215, 190), (225, 175, 125), (160, 105, 65), (95, 60, 40)
_BLACK, _BLOND, _WHITE, _GINGER = (25, 20, 20), (240, 215, 110), (235, 235, 235), (215, 110, 30)
_BLUE_EYES, _GREEN_EYES, _BROWN_EYES = (40, 120, 255), (40, 200, 60), (90, 45, 10)

PEOPLE = (
    Person(_PALE, _BLACK, False, _BLUE_EYES, 0.80, True),
    Person(_PALE, _GINGER, True, _GREEN_EYES, 0.95, False),
    Person(_TAN, _BLOND, False, _BROWN_EYES, 0.95, True),
    Person(_TAN, _BLACK, True, _BLUE_EYES, 0.80, False),
    Person(_BROWN, _WHITE, False, _GREEN_EYES, 0.80, False),
    Person(_BROWN, _GINGER, False, _BROWN_EYES, 0.95, True),
    Person(_DARK, _BLOND, True, _BROWN_EYES, 0.80, True),
    Person(_DARK, _WHITE, True, _BLUE_EYES, 0.95, False),
)
NUM_PEOPLE = len(PEOPLE)


@dataclass(frozen=True)
class Pose:
    x: float  # face centre, pixels of the 16x16 picture
    y: float
    radius: float  # half the face's height

    def keypoints(self, face_width: float = 0.9) -> np.ndarray:
        """[5, 2] in insightface order: left eye, right eye, nose, left and right mouth corners."""
        r, w = self.radius, self.radius * face_width
        return np.array([[self.x - 0.42 * w, self.y - 0.12 * r], [self.x + 0.42 * w, self.y - 0.12 * r],
                         [self.x, self.y + 0.18 * r], [self.x - 0.32 * w, self.y + 0.5 * r],
                         [self.x + 0.32 * w, self.y + 0.5 * r]], dtype=np.float32)


def random_poses(rng: np.random.Generator, count: int) -> list[Pose]:
    xy = rng.uniform(5.5, SIZE - 5.5, size=(count, 2))
    radius = rng.uniform(3.6, 5.0, size=count)
    return [Pose(float(x), float(y), float(r)) for (x, y), r in zip(xy, radius)]


def caption(colour: str) -> str:
    return f"a face on {colour} background"


def render(person: int, colour: str, pose: Pose, expression: str | None = None) -> np.ndarray:
    """One picture: uint8 [16, 16, 3]. `expression` None: the person's own mouth."""
    p, s = PEOPLE[person], _DRAW_SCALE
    big = Image.new("RGB", (SIZE * s, SIZE * s), BACKGROUNDS[colour])
    draw = ImageDraw.Draw(big)
    cx, cy, r = pose.x * s, pose.y * s, pose.radius * s
    w = r * p.face_width
    if p.long_hair:  # hair behind the face, down to the chin
        draw.rectangle([cx - w * 1.12, cy - r * 0.4, cx + w * 1.12, cy + r * 0.85], fill=p.hair)
    draw.ellipse([cx - w, cy - r, cx + w, cy + r], fill=p.skin)
    draw.chord([cx - w * 1.08, cy - r * 1.12, cx + w * 1.08, cy + r * 0.35], 180, 360, fill=p.hair)
    kps = pose.keypoints(p.face_width) * s
    eye = r * 0.17
    for x, y in kps[:2]:
        draw.ellipse([x - eye, y - eye, x + eye, y + eye], fill=p.eyes)
    (lx, ly), (rx, ry) = kps[3], kps[4]
    if (p.smile if expression is None else expression == "smile"):
        draw.arc([lx, ly - r * 0.25, rx, ry + r * 0.2], 0, 180, fill=(120, 20, 30), width=max(1, int(r * 0.12)))
    else:
        draw.line([lx, ly, rx, ry], fill=(120, 20, 30), width=max(1, int(r * 0.12)))
    return np.asarray(big.resize((SIZE, SIZE), Image.Resampling.BOX))


def keypoint_image(kps: np.ndarray) -> np.ndarray:
    """IdentityNet's condition for keypoints `kps` (16x16 pixels): uint8 [16, 16, 3]."""
    canvas = draw_kps((_KPS_CANVAS, _KPS_CANVAS), np.asarray(kps) * (_KPS_CANVAS / SIZE))
    return np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.BOX))


def held_out_pairs(seed: int) -> set[tuple[int, str]]:
    """8 of the 32 (person, background) pairs, seen in neither training stage: one per person, two per colour."""
    colours = np.random.default_rng([seed, 5]).permutation(np.arange(NUM_PEOPLE) % len(COLOURS))
    return {(person, COLOURS[int(colour)]) for person, colour in enumerate(colours)}


@dataclass(frozen=True)
class Picture:
    person: int
    colour: str
    pose: Pose
    pixels: np.ndarray  # uint8 [16, 16, 3]
    expression: str | None = None  # None: the person's own mouth (the default world)

    @property
    def kps(self) -> np.ndarray:
        return self.pose.keypoints(PEOPLE[self.person].face_width)


def draw_pictures(pairs, poses_per_pair: int, rng: np.random.Generator, expressions: bool = False) -> list[Picture]:
    """`expressions`: each picture gets a random expression (drawn after the poses, so the default world's
    random stream is unchanged)."""
    pictures = []
    for person, colour in sorted(pairs):
        poses = random_poses(rng, poses_per_pair)
        chosen = [EXPRESSIONS[int(i)] for i in rng.integers(len(EXPRESSIONS), size=len(poses))] if expressions \
            else [None] * len(poses)
        for pose, expression in zip(poses, chosen):
            pictures.append(Picture(person, colour, pose, render(person, colour, pose, expression), expression))
    return pictures


class ToyRecognizer:
    """The world's face backend: identity vector + noise for every picture the world drew.

    `noise` is the per-picture spread relative to the identity vector's norm (1.0). The noise of a
    picture is a function of its pixels and the recognizer's seed, so the same picture always gets the
    same embedding, like a real recognizer.
    """

    name = "toy"
    embedding_dim = EMBEDDING_DIM

    def __init__(self, seed: int, noise: float = 0.3, expression_leak: float = 0.0):
        rng = np.random.default_rng([seed, 7])
        vectors = rng.normal(size=(NUM_PEOPLE, EMBEDDING_DIM))
        self.identity_vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        direction = np.random.default_rng([seed, 8]).normal(size=EMBEDDING_DIM)
        self.expression_vector = (direction / np.linalg.norm(direction)).astype(np.float32)
        self.expression_leak = expression_leak  # +leak * vector for a smile, -leak for neutral
        self.noise = noise
        self.seed = seed
        self._known: dict[bytes, Picture] = {}

    def remember(self, pictures: list[Picture]) -> None:
        for picture in pictures:
            self._known[self._key(picture.pixels)] = picture

    @staticmethod
    def _key(pixels: np.ndarray) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).digest()

    def detect(self, image) -> list[Face]:
        pixels = np.asarray(image, dtype=np.uint8)
        picture = self._known.get(self._key(pixels))
        if picture is None:
            return []  # not a picture of this world
        key = int.from_bytes(self._key(pixels)[:8], "little")
        noise = np.random.default_rng([self.seed, key]).normal(size=EMBEDDING_DIM) * self.noise / EMBEDDING_DIM ** 0.5
        kps = picture.kps
        w = picture.pose.radius * PEOPLE[picture.person].face_width
        bbox = np.array([picture.pose.x - w, picture.pose.y - picture.pose.radius,
                         picture.pose.x + w, picture.pose.y + picture.pose.radius], dtype=np.float32)
        embedding = self.identity_vectors[picture.person] + noise
        if self.expression_leak and picture.expression is not None:
            embedding = embedding + self.expression_leak * (1 if picture.expression == "smile" else -1) * self.expression_vector
        return [Face(bbox=bbox, kps=kps, score=1.0, backend=self.name, embedding=embedding.astype(np.float32))]
