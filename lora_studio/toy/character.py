"""Tibbie, the toy world's character: a white fluffy sheep with a pink bow and black legs.

The base model never sees her. Her three colours are chosen so they are easy to count in an image
(see measure.py): pure-ish white fleece, a saturated pink bow, near-black legs and face.
"""

from __future__ import annotations

import random

from lora_studio.toy.scenes import (Canvas, Scene, draw_background, draw_objects, draw_tree,
                                    tree_crown_top)

TRIGGER = "tibbie"
FLEECE = (250, 250, 250)
FLEECE_SHADE = (236, 236, 240)
PINK = (255, 80, 170)
BLACK = (28, 28, 30)

# Poses and the background each one happens on; tags are what a tagger would write.
POSES = {
    "standing": ("meadow", "beach", "night"),
    "sitting on tree": ("meadow",),
    "lying on beach": ("beach",),
    "full body": ("meadow", "beach", "sky"),
    "close-up": ("meadow", "beach", "sky", "night"),
}


def draw_sheep(c: Canvas, x: float, feet_y: float, scale: float, facing: int = 1, legs: str = "standing"):
    """Tibbie in side view; (x, feet_y) is the bottom centre, facing is 1 (right) or -1 (left).

    legs: "standing" (four straight legs), "folded" (short stubs, for sitting or lying).
    """
    body_w, body_h = 0.16 * scale, 0.1 * scale
    leg_h = 0.09 * scale if legs == "standing" else 0.03 * scale
    body_y = feet_y - leg_h - body_h * 0.8
    for dx in (-0.65, -0.35, 0.35, 0.65):
        lx = x + dx * body_w
        c.rect(lx - 0.012 * scale, body_y + body_h * 0.3, lx + 0.012 * scale, feet_y, fill=BLACK)
    # Fleece: a shaded base and a ring of puffs, so it reads as fluffy even at 64 px.
    c.ellipse(x, body_y, body_w, body_h, fill=FLEECE_SHADE)
    for i in range(7):
        px = x + body_w * (-0.7 + 1.4 * i / 6)
        py = body_y + body_h * (-0.45 if i % 2 else -0.1)
        c.ellipse(px, py, body_w * 0.36, body_h * 0.62, fill=FLEECE)
    c.ellipse(x, body_y + body_h * 0.15, body_w * 0.85, body_h * 0.6, fill=FLEECE)
    c.ellipse(x - facing * body_w * 1.0, body_y - body_h * 0.1, body_w * 0.16, body_h * 0.25, fill=FLEECE)
    draw_head(c, x + facing * body_w * 1.0, body_y - body_h * 0.55, scale, facing)


def draw_head(c: Canvas, hx: float, hy: float, scale: float, facing: int):
    """Black face, white fluff on top, a pink bow between the ears."""
    c.ellipse(hx + facing * 0.02 * scale, hy + 0.02 * scale, 0.055 * scale, 0.045 * scale, fill=BLACK)
    c.ellipse(hx - facing * 0.045 * scale, hy - 0.005 * scale, 0.03 * scale, 0.015 * scale, fill=BLACK)  # ear
    c.ellipse(hx - facing * 0.005 * scale, hy - 0.03 * scale, 0.04 * scale, 0.025 * scale, fill=FLEECE)
    c.ellipse(hx + facing * 0.045 * scale, hy + 0.01 * scale, 0.008 * scale, 0.008 * scale, fill=(240, 240, 240))
    draw_bow(c, hx - facing * 0.01 * scale, hy - 0.055 * scale, scale)


def draw_bow(c: Canvas, x: float, y: float, scale: float):
    """A pink bow: two triangles and a knot."""
    w, h = 0.065 * scale, 0.04 * scale
    c.polygon([(x, y), (x - w, y - h), (x - w, y + h)], fill=PINK)
    c.polygon([(x, y), (x + w, y - h), (x + w, y + h)], fill=PINK)
    c.ellipse(x, y, 0.015 * scale, 0.015 * scale, fill=(220, 50, 140))


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
    extra: list[str] = []
    tags = [TRIGGER, "sheep", "pink bow"]
    if pose == "sitting on tree":
        x = rng.uniform(0.35, 0.65)
        ground, tree_scale = rng.uniform(0.9, 0.97), rng.uniform(1.5, 1.8)
        draw_tree(c, x, ground, tree_scale, rng)
        top_x, top_y = tree_crown_top(x, ground, tree_scale)
        draw_sheep(c, top_x, top_y + 0.07, rng.uniform(1.1, 1.3), facing, legs="folded")
        tags += ["sitting on tree", background, "tree"]
    elif pose == "lying on beach":
        extra = ["sun"] if rng.random() < 0.4 else []
        draw_objects(c, extra, background, horizon, rng)
        x = rng.uniform(0.35, 0.65)
        draw_sheep(c, x, rng.uniform(0.8, 0.9), rng.uniform(1.3, 1.6), facing, legs="folded")
        tags += ["lying on beach", background]
    elif pose == "close-up":
        # the head (about one body-width ahead of the centre) lands near the middle of the frame
        draw_sheep(c, rng.uniform(0.48, 0.56) - facing * 0.5, rng.uniform(1.45, 1.6), rng.uniform(3.6, 4.2), facing)
        tags += ["close-up", background]
    elif pose == "full body":
        x = rng.uniform(0.47, 0.53) - facing * 0.08
        feet = 0.85 if background != "sky" else rng.uniform(0.72, 0.8)
        draw_sheep(c, x, feet, rng.uniform(1.9, 2.2), facing)
        tags += ["full body", "standing", background]
    else:  # standing, with scenery around
        x = rng.choice((0.3, 0.66))
        if rng.random() < 0.5:  # one thing on the ground, on the other side
            extra.append(rng.choice(("tree", "rock", "house")))
        if rng.random() < 0.3:
            extra.append("moon" if background == "night" else "sun")
        draw_objects(c, sorted(extra, key=lambda o: o not in ("sun", "moon")), background, horizon, rng,
                     free_x=[0.82 if x < 0.5 else 0.18])
        draw_sheep(c, x, min(0.95, horizon + rng.uniform(0.2, 0.35)), rng.uniform(1.2, 1.6), facing)
        tags += ["standing", background]
    tags += [o for o in extra if o not in tags]
    return Scene(c.result(), tags)
