"""Tibbie, the toy world's character: a white fluffy sheep with a pink bow and black legs.

The base model knows generic sheep (sheep.py) but never sees her look: white fleece, black face
and legs, pink bow, nor the word 'tibbie'. Her three colours are chosen so they are easy to count in an image
(see measure.py): pure-ish white fleece, a saturated pink bow, near-black legs and face.
"""

from __future__ import annotations

import random

from lora_studio.toy.scenes import Canvas, Scene, draw_background
from lora_studio.toy.sheep import BOW_COLOURS, FACE_COLOURS, FLEECE_COLOURS, TIBBIE_LOOK, draw_sheep_pose

TRIGGER = "tibbie"
FLEECE, FLEECE_SHADE = FLEECE_COLOURS["white"]
PINK = BOW_COLOURS["pink"]
BLACK = FACE_COLOURS["black"]

# Poses and the background each one happens on; tags are what a tagger would write.
POSES = {
    "standing": ("meadow", "beach", "night"),
    "sitting on tree": ("meadow",),
    "lying on beach": ("beach",),
    "full body": ("meadow", "beach", "sky"),
    "close-up": ("meadow", "beach", "sky", "night"),
}


def draw_character_frame(seed: int, pose: str | None = None, size: int = 64) -> Scene:
    """A frame of Tibbie in a pose, with tags like 'tibbie, sheep, pink bow, standing, meadow'."""
    rng = random.Random(f"tibbie-{seed}")
    pose = pose or rng.choice(list(POSES))
    if pose not in POSES:
        raise ValueError(f"unknown pose {pose!r}; poses: {', '.join(POSES)}")
    background = rng.choice(POSES[pose])
    facing = rng.choice((1, -1))
    c = Canvas(size)
    horizon = draw_background(c, background, rng)
    tags = [TRIGGER, "sheep", "pink bow"]
    pose_tags = draw_sheep_pose(c, rng, TIBBIE_LOOK, pose, background, facing, horizon)
    return Scene(c.result(), tags + [t for t in dict.fromkeys(pose_tags) if t not in tags])
