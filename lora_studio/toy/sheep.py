"""Sheep of the toy world: one drawing with a look (fleece, face, bow), in five poses, on any background.

Stable Diffusion knows "sheep", "pink bow" and "sitting on tree" before anyone trains a character
LoRA; a character LoRA binds one combination of known things to a trigger word. The toy base learns
generic sheep from these scenes so its LoRA has the same job. Tibbie (character.py) is one look
among them that the base never sees: white fleece + black face and legs + pink bow. The base's
looks never use white fleece at all (so the fleece-white share in toy/measure.py stays a clean
secondary measure) unless `pretrain --white-sheep` asks for LOOKS_WITH_WHITE; the toy judge trains on
every look but hers, white fleece included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lora_studio.toy.scenes import (BACKGROUNDS, Canvas, Scene, draw_background, draw_objects, draw_tree,
                                    mix, tree_crown_top)

# Poses and the backgrounds each happens on; a sheep can be anywhere its pose makes sense.
POSES = {
    "standing": ("meadow", "beach", "night"),
    "sitting on tree": ("meadow", "beach", "night"),
    "lying on beach": ("beach",),
    "full body": BACKGROUNDS,
    "close-up": BACKGROUNDS,
}

# name → (main colour, shade); face and legs share a colour, as on real sheep breeds.
FLEECE_COLOURS = {
    "white": ((250, 250, 250), (236, 236, 240)),
    "cream": ((226, 212, 172), (212, 198, 160)),
    "grey": ((152, 152, 158), (136, 136, 142)),
    "brown": ((140, 96, 60), (124, 84, 52)),
    "black": ((58, 58, 62), (46, 46, 50)),
}
FACE_COLOURS = {"black": (28, 28, 30), "brown": (105, 70, 45), "cream": (214, 200, 165)}
BOW_COLOURS = {"pink": (255, 80, 170), "red": (215, 35, 40), "blue": (40, 80, 220), "yellow": (245, 200, 30),
               "green": (30, 170, 70)}
NO_BOW = "none"


@dataclass(frozen=True)
class Look:
    """What makes a sheep this sheep: its fleece, its face (and legs), its bow or none."""

    fleece: str
    face: str
    bow: str = NO_BOW

    def tags(self) -> list[str]:
        """Booru-style tags a tagger would write for the look: 'brown fleece, black face, red bow'."""
        tags = [f"{self.fleece} fleece", f"{self.face} face"]
        return tags + ([f"{self.bow} bow"] if self.bow != NO_BOW else [])

    @property
    def name(self) -> str:
        """A stable id, e.g. 'grey/black/red'."""
        return f"{self.fleece}/{self.face}/{self.bow}"


TIBBIE_LOOK = Look("white", "black", "pink")
ALL_LOOKS = tuple(Look(f, face, bow) for f in FLEECE_COLOURS for face in FACE_COLOURS
                  for bow in (NO_BOW, *BOW_COLOURS))
# What the base model learns: every look without white fleece (and so never Tibbie's).
BASE_LOOKS = tuple(look for look in ALL_LOOKS if look.fleece != "white")
# Every look but hers, white sheep (with black faces and other bows) included, as SD1.5 knows white sheep and
# pink bows: `pretrain --white-sheep` (r13, not shipped). Her LoRA then only binds known things, and the LR
# probe's d·lr falls ~30x, to SD1.5's scale (benchmarks/toy_world.md, session 10).
LOOKS_WITH_WHITE = tuple(look for look in ALL_LOOKS if look != TIBBIE_LOOK)


@dataclass(frozen=True)
class Palette:
    """The colours one look is painted with."""

    fleece: tuple
    shade: tuple
    face: tuple
    bow: tuple | None
    knot: tuple | None
    eye: tuple


def palette(look: Look) -> Palette:
    """The paint for a look; Tibbie's colours are exactly those character.py has always drawn."""
    fleece, shade = FLEECE_COLOURS[look.fleece]
    bow = BOW_COLOURS.get(look.bow)
    knot = (220, 50, 140) if look.bow == "pink" else (mix(bow, (0, 0, 0), 0.15) if bow else None)
    # Eyes stay below the fleece-white threshold of toy/measure.py except on white sheep.
    eye = (240, 240, 240) if look.fleece == "white" else (225, 225, 225)
    return Palette(fleece, shade, FACE_COLOURS[look.face], bow, knot, eye)


def draw_sheep(c: Canvas, x: float, feet_y: float, scale: float, facing: int = 1, legs: str = "standing",
               look: Look = TIBBIE_LOOK):
    """A sheep in side view; (x, feet_y) is the bottom centre, facing is 1 (right) or -1 (left).

    legs: "standing" (four straight legs), "folded" (short stubs, for sitting or lying).
    """
    p = palette(look)
    body_w, body_h = 0.16 * scale, 0.1 * scale
    leg_h = 0.09 * scale if legs == "standing" else 0.03 * scale
    body_y = feet_y - leg_h - body_h * 0.8
    for dx in (-0.65, -0.35, 0.35, 0.65):
        lx = x + dx * body_w
        c.rect(lx - 0.012 * scale, body_y + body_h * 0.3, lx + 0.012 * scale, feet_y, fill=p.face)
    # Fleece: a shaded base and a ring of puffs, so it reads as fluffy even at 64 px.
    c.ellipse(x, body_y, body_w, body_h, fill=p.shade)
    for i in range(7):
        px = x + body_w * (-0.7 + 1.4 * i / 6)
        py = body_y + body_h * (-0.45 if i % 2 else -0.1)
        c.ellipse(px, py, body_w * 0.36, body_h * 0.62, fill=p.fleece)
    c.ellipse(x, body_y + body_h * 0.15, body_w * 0.85, body_h * 0.6, fill=p.fleece)
    c.ellipse(x - facing * body_w * 1.0, body_y - body_h * 0.1, body_w * 0.16, body_h * 0.25, fill=p.fleece)
    draw_head(c, x + facing * body_w * 1.0, body_y - body_h * 0.55, scale, facing, p)


def draw_head(c: Canvas, hx: float, hy: float, scale: float, facing: int, p: Palette):
    """The face, fluff on top, and the bow (if any) between the ears."""
    c.ellipse(hx + facing * 0.02 * scale, hy + 0.02 * scale, 0.055 * scale, 0.045 * scale, fill=p.face)
    c.ellipse(hx - facing * 0.045 * scale, hy - 0.005 * scale, 0.03 * scale, 0.015 * scale, fill=p.face)  # ear
    c.ellipse(hx - facing * 0.005 * scale, hy - 0.03 * scale, 0.04 * scale, 0.025 * scale, fill=p.fleece)
    c.ellipse(hx + facing * 0.045 * scale, hy + 0.01 * scale, 0.008 * scale, 0.008 * scale, fill=p.eye)
    if p.bow:
        draw_bow(c, hx - facing * 0.01 * scale, hy - 0.055 * scale, scale, p.bow, p.knot)


def draw_bow(c: Canvas, x: float, y: float, scale: float, colour, knot):
    """A bow: two triangles and a knot."""
    w, h = 0.065 * scale, 0.04 * scale
    c.polygon([(x, y), (x - w, y - h), (x - w, y + h)], fill=colour)
    c.polygon([(x, y), (x + w, y - h), (x + w, y + h)], fill=colour)
    c.ellipse(x, y, 0.015 * scale, 0.015 * scale, fill=knot)


def draw_sheep_pose(c: Canvas, rng: random.Random, look: Look, pose: str, background: str, facing: int,
                    horizon: float) -> list[str]:
    """Draw the sheep in its pose on a painted background; return the pose's tags and extra objects."""
    if pose == "sitting on tree":
        # A low tree and a sheep as large as a standing one, all in frame: on a tall tree the sheep sat
        # at the top edge at half the size, so a LoRA learned from the other poses had too few pixels
        # there to show her in (issue 12, toy model r7).
        x = rng.uniform(0.4, 0.6)
        ground, tree_scale = rng.uniform(0.92, 0.98), rng.uniform(1.15, 1.35)
        draw_tree(c, x, ground, tree_scale, rng)
        top_x, top_y = tree_crown_top(x, ground, tree_scale)
        draw_sheep(c, top_x, top_y + 0.06, rng.uniform(1.4, 1.6), facing, legs="folded", look=look)
        return ["sitting on tree", background, "tree"]
    if pose == "lying on beach":
        extra = ["sun"] if rng.random() < 0.4 else []
        draw_objects(c, extra, background, horizon, rng)
        x = rng.uniform(0.35, 0.65)
        draw_sheep(c, x, rng.uniform(0.8, 0.9), rng.uniform(1.3, 1.6), facing, legs="folded", look=look)
        return ["lying on beach", background, *extra]
    if pose == "close-up":
        # the head (about one body-width ahead of the centre) lands near the middle of the frame
        draw_sheep(c, rng.uniform(0.48, 0.56) - facing * 0.5, rng.uniform(1.45, 1.6), rng.uniform(3.6, 4.2),
                   facing, look=look)
        return ["close-up", background]
    if pose == "full body":
        x = rng.uniform(0.47, 0.53) - facing * 0.08
        feet = 0.85 if background != "sky" else rng.uniform(0.72, 0.8)
        draw_sheep(c, x, feet, rng.uniform(1.9, 2.2), facing, look=look)
        return ["full body", "standing", background]
    # standing, with scenery around
    extra: list[str] = []
    x = rng.choice((0.3, 0.66))
    if rng.random() < 0.5:  # one thing on the ground, on the other side
        extra.append(rng.choice(("tree", "rock", "house")))
    if rng.random() < 0.3:
        extra.append("moon" if background == "night" else "sun")
    draw_objects(c, sorted(extra, key=lambda o: o not in ("sun", "moon")), background, horizon, rng,
                 free_x=[0.82 if x < 0.5 else 0.18])
    draw_sheep(c, x, min(0.95, horizon + rng.uniform(0.2, 0.35)), rng.uniform(1.2, 1.6), facing, look=look)
    return ["standing", background, *extra]


def draw_sheep_scene(seed: int, look: Look | None = None, pose: str | None = None, size: int = 64,
                     looks: tuple[Look, ...] = BASE_LOOKS) -> Scene:
    """A generic sheep in a pose and place, tagged 'sheep, grey fleece, black face, red bow, standing, meadow'."""
    rng = random.Random(f"sheep-{seed}")
    look = look or rng.choice(looks)
    pose = pose or rng.choice(list(POSES))
    if pose not in POSES:
        raise ValueError(f"unknown pose {pose!r}; poses: {', '.join(POSES)}")
    background = rng.choice(POSES[pose])
    c = Canvas(size)
    horizon = draw_background(c, background, rng)
    pose_tags = draw_sheep_pose(c, rng, look, pose, background, rng.choice((1, -1)), horizon)
    tags = ["sheep", *look.tags()]
    return Scene(c.result(), tags + [t for t in dict.fromkeys(pose_tags) if t not in tags])


def sheep_scenes(n: int, seed: int = 0, size: int = 64, looks: tuple[Look, ...] = BASE_LOOKS):
    """n generic sheep scenes for pretraining: scene i depends only on (seed, i)."""
    for i in range(n):
        yield draw_sheep_scene(seed * 1_000_003 + i, size=size, looks=looks)
