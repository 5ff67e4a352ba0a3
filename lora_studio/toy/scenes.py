"""Procedural scenes of the toy world: backgrounds and objects with booru-style tag captions.

Everything is drawn with Pillow on a canvas four times the output size and scaled down, so edges
are smooth. A scene is a pure function of its seed. Base scenes never contain the character and
never use its colours (no pink, nothing whiter than 240 per channel), so the share of those colours
in a generated image measures how much of the character a LoRA has put there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

BACKGROUNDS = ("meadow", "beach", "sky", "night")
OBJECTS = ("tree", "rock", "house", "sun", "moon")
# Which objects make sense on which background (no sun at night, nothing standing in the sky).
OBJECTS_ON = {
    "meadow": ("tree", "rock", "house", "sun"),
    "beach": ("tree", "rock", "house", "sun"),
    "sky": ("sun",),
    "night": ("tree", "rock", "house", "moon"),
}
OVERSAMPLE = 4  # draw at 4x and downscale: cheap antialiasing

SKY_DAY = ((70, 140, 215), (150, 200, 240))      # top, horizon
SKY_NIGHT = ((10, 14, 40), (30, 40, 85))
GRASS = ((70, 160, 60), (40, 120, 40))           # far, near
GRASS_NIGHT = ((25, 55, 35), (15, 40, 25))
SEA = (35, 110, 185)
SAND = (232, 205, 145)
CLOUD = (222, 228, 236)                           # below the character's white on purpose
TRUNK = (110, 70, 35)
LEAVES = ((40, 130, 45), (60, 155, 55), (30, 105, 40))
ROCK = ((120, 120, 125), (150, 150, 155))
WALL = (215, 185, 140)
ROOF = (165, 55, 40)
SUN = (255, 210, 50)
MOON = (232, 232, 205)
STAR = (250, 240, 170)


@dataclass
class Scene:
    """One drawn image and its tags (background first, as a tagger would write them)."""

    image: Image.Image
    tags: list[str] = field(default_factory=list)

    @property
    def caption(self) -> str:
        """Tags joined the kohya way: 'meadow, tree, sun'."""
        return ", ".join(self.tags)


class Canvas:
    """A Pillow drawing surface addressed in unit coordinates (0..1 both ways, y down)."""

    def __init__(self, size: int):
        self.size = size
        self.px = size * OVERSAMPLE
        self.image = Image.new("RGB", (self.px, self.px))
        self.draw = ImageDraw.Draw(self.image)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        """Unit box → pixel box, corners sorted (Pillow refuses inverted boxes)."""
        xs, ys = sorted((x0, x1)), sorted((y0, y1))
        return [xs[0] * self.px, ys[0] * self.px, xs[1] * self.px, ys[1] * self.px]

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill, outline=None, width: float = 0):
        """Ellipse centred at (cx, cy) with radii rx, ry."""
        self.draw.ellipse(self.box(cx - rx, cy - ry, cx + rx, cy + ry), fill=fill, outline=outline,
                          width=max(1, round(width * self.px)) if outline else 0)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill):
        """Axis-aligned rectangle."""
        self.draw.rectangle(self.box(x0, y0, x1, y1), fill=fill)

    def polygon(self, points: list[tuple[float, float]], fill):
        """Filled polygon from unit points."""
        self.draw.polygon([(x * self.px, y * self.px) for x, y in points], fill=fill)

    def gradient(self, y0: float, y1: float, top, bottom):
        """Vertical colour gradient over a horizontal band."""
        a, b = round(y0 * self.px), round(y1 * self.px)
        for y in range(a, b):
            t = (y - a) / max(1, b - a - 1)
            self.draw.line([(0, y), (self.px, y)], fill=mix(top, bottom, t))

    def result(self) -> Image.Image:
        """The canvas scaled to its output size."""
        # BOX averages each 4x4 block: exact antialiasing without the ringing LANCZOS adds,
        # which would push cloud edges into the character's white.
        return self.image.resize((self.size, self.size), Image.BOX)


def mix(a, b, t: float) -> tuple[int, int, int]:
    """Linear blend of two RGB colours."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def jitter(rng: random.Random, colour, amount: int = 12) -> tuple[int, int, int]:
    """A colour varied a little, so the model sees more than one exact shade."""
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)


# ---- backgrounds -------------------------------------------------------------------------------

def draw_background(c: Canvas, background: str, rng: random.Random) -> float:
    """Paint a background; return the horizon's y (where ground objects stand from)."""
    if background == "sky":
        c.gradient(0, 1, jitter(rng, SKY_DAY[0]), jitter(rng, SKY_DAY[1]))
        for _ in range(rng.randint(2, 4)):
            draw_cloud(c, rng.uniform(0.1, 0.9), rng.uniform(0.25, 0.9), rng.uniform(0.08, 0.16), rng)
        return 1.0
    horizon = rng.uniform(0.45, 0.6)
    if background == "night":
        c.gradient(0, horizon, jitter(rng, SKY_NIGHT[0], 6), jitter(rng, SKY_NIGHT[1], 6))
        for _ in range(rng.randint(8, 16)):
            x, y, r = rng.uniform(0, 1), rng.uniform(0, horizon - 0.05), rng.uniform(0.006, 0.012)
            c.ellipse(x, y, r, r, fill=STAR)
        c.gradient(horizon, 1, jitter(rng, GRASS_NIGHT[0], 6), jitter(rng, GRASS_NIGHT[1], 6))
        return horizon
    c.gradient(0, horizon, jitter(rng, SKY_DAY[0]), jitter(rng, SKY_DAY[1]))
    for _ in range(rng.randint(0, 2)):
        draw_cloud(c, rng.uniform(0.1, 0.9), rng.uniform(0.1, horizon - 0.15), rng.uniform(0.06, 0.1), rng)
    if background == "meadow":
        c.gradient(horizon, 1, jitter(rng, GRASS[0]), jitter(rng, GRASS[1]))
        for _ in range(rng.randint(6, 14)):  # tufts of darker grass
            x, y = rng.uniform(0, 1), rng.uniform(horizon + 0.05, 1)
            c.ellipse(x, y, 0.03, 0.012, fill=jitter(rng, GRASS[1], 10))
    elif background == "beach":
        shore = horizon + rng.uniform(0.12, 0.2)
        c.gradient(horizon, shore, jitter(rng, SEA, 10), mix(SEA, (90, 170, 220), 0.5))
        c.rect(0, shore, 1, 1, fill=jitter(rng, SAND, 8))
        # foam line where the waves reach the sand
        c.draw.line([(0, shore * c.px), (c.px, shore * c.px)], fill=(225, 235, 235), width=OVERSAMPLE)
        return shore
    else:
        raise ValueError(f"unknown background {background!r}")
    return horizon


def draw_cloud(c: Canvas, x: float, y: float, r: float, rng: random.Random):
    """A puffy cloud from a few overlapping circles."""
    colour = jitter(rng, CLOUD, 5)
    for dx, dy, k in ((-1.0, 0.2, 0.7), (0.0, 0.0, 1.0), (1.0, 0.2, 0.75), (0.5, -0.3, 0.7)):
        c.ellipse(x + dx * r, y + dy * r, r * k * 1.1, r * k * 0.8, fill=colour)


# ---- objects -----------------------------------------------------------------------------------

def draw_tree(c: Canvas, x: float, ground: float, scale: float, rng: random.Random):
    """A round-crowned tree: brown trunk, green crown of a few blobs."""
    h = 0.45 * scale
    c.rect(x - 0.03 * scale, ground - h * 0.55, x + 0.03 * scale, ground, fill=jitter(rng, TRUNK, 10))
    cy = ground - h * 0.7
    for dx, dy, k in ((0, 0, 1.0), (-0.6, 0.25, 0.7), (0.6, 0.25, 0.7), (0, -0.45, 0.7)):
        colour = jitter(rng, LEAVES[rng.randrange(len(LEAVES))], 10)
        c.ellipse(x + dx * 0.12 * scale, cy + dy * 0.12 * scale, 0.13 * scale * k + 0.02 * scale,
                  0.12 * scale * k + 0.02 * scale, fill=colour)


def tree_crown_top(x: float, ground: float, scale: float) -> tuple[float, float]:
    """Where something can sit on a tree drawn by draw_tree with the same arguments."""
    h = 0.45 * scale
    return x, ground - h * 0.7 - 0.12 * scale


def draw_rock(c: Canvas, x: float, ground: float, scale: float, rng: random.Random):
    """A grey boulder with a lighter top."""
    w, h = 0.12 * scale, 0.08 * scale
    c.ellipse(x, ground - h * 0.6, w, h, fill=jitter(rng, ROCK[0], 10))
    c.ellipse(x - w * 0.2, ground - h * 0.9, w * 0.55, h * 0.45, fill=jitter(rng, ROCK[1], 10))


def draw_house(c: Canvas, x: float, ground: float, scale: float, rng: random.Random, night: bool):
    """A house: square walls, red triangular roof, a door and a window (lit at night)."""
    w, h = 0.14 * scale, 0.16 * scale
    wall = jitter(rng, WALL, 10) if not night else mix(WALL, (20, 25, 50), 0.55)
    c.rect(x - w, ground - h, x + w, ground, fill=wall)
    roof = jitter(rng, ROOF, 10) if not night else mix(ROOF, (20, 25, 50), 0.45)
    c.polygon([(x - w * 1.2, ground - h), (x + w * 1.2, ground - h), (x, ground - h - h * 0.8)], fill=roof)
    c.rect(x - w * 0.25, ground - h * 0.55, x + w * 0.2, ground, fill=(90, 55, 30))
    window = (250, 215, 90) if night else (120, 170, 210)
    c.rect(x + w * 0.4, ground - h * 0.8, x + w * 0.8, ground - h * 0.45, fill=window)


def draw_sun(c: Canvas, x: float, y: float, scale: float, rng: random.Random):
    """A yellow disc with a soft halo."""
    r = 0.08 * scale
    c.ellipse(x, y, r * 1.35, r * 1.35, fill=mix(SUN, (150, 200, 240), 0.55))
    c.ellipse(x, y, r, r, fill=jitter(rng, SUN, 5))


def draw_moon(c: Canvas, x: float, y: float, scale: float, sky, rng: random.Random):
    """A crescent: a pale disc with a sky-coloured disc bitten out of it."""
    r = 0.07 * scale
    c.ellipse(x, y, r, r, fill=jitter(rng, MOON, 5))
    c.ellipse(x + r * 0.45, y - r * 0.2, r * 0.85, r * 0.85, fill=sky)


def place_objects(rng: random.Random, background: str, wanted: list[str] | None = None) -> list[str]:
    """Pick which objects a scene holds (1–3 of those allowed on the background)."""
    allowed = OBJECTS_ON[background]
    if wanted is not None:
        return [o for o in wanted if o in allowed]
    k = rng.choice((1, 1, 2, 2, 3)) if len(allowed) > 1 else 1
    chosen = rng.sample(allowed, min(k, len(allowed)))
    return [o for o in OBJECTS if o in chosen]  # a fixed order, like a tagger's


def draw_objects(c: Canvas, objects: list[str], background: str, horizon: float, rng: random.Random,
                 free_x: list[float] | None = None):
    """Draw the chosen objects at non-overlapping spots; free_x are x slots still open."""
    slots = free_x if free_x is not None else [0.18, 0.5, 0.82]
    rng.shuffle(slots)
    night = background == "night"
    for name in objects:
        if name in ("sun", "moon"):
            x, y = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.22) if horizon < 1 else rng.uniform(0.15, 0.5)
            if name == "sun":
                draw_sun(c, x, y, rng.uniform(0.9, 1.3), rng)
            else:
                draw_moon(c, x, y, rng.uniform(0.9, 1.2), c.image.getpixel((round(x * c.px), 0)), rng)
            continue
        x = slots.pop() + rng.uniform(-0.06, 0.06) if slots else rng.uniform(0.15, 0.85)
        ground = min(0.97, horizon + rng.uniform(0.08, 0.3) * (1 - horizon) / 0.45)
        scale = rng.uniform(0.8, 1.2) * (0.75 + 0.5 * (ground - horizon) / max(0.05, 1 - horizon))
        if name == "tree":
            draw_tree(c, x, ground, scale * 1.1, rng)
        elif name == "rock":
            draw_rock(c, x, ground, scale, rng)
        elif name == "house":
            draw_house(c, x, ground, scale, rng, night)


# ---- scenes ------------------------------------------------------------------------------------

def draw_scene(seed: int, size: int = 64, background: str | None = None,
               objects: list[str] | None = None) -> Scene:
    """A base scene (never the character): a background with 1–3 objects, tags to match."""
    rng = random.Random(f"scene-{seed}")
    background = background or rng.choice(BACKGROUNDS)
    chosen = place_objects(rng, background, objects)
    c = Canvas(size)
    horizon = draw_background(c, background, rng)
    # Draw ground objects far-to-near is not needed at this size; sun/moon first so trees overlap them.
    order = sorted(chosen, key=lambda o: o not in ("sun", "moon"))
    draw_objects(c, order, background, horizon, rng)
    return Scene(c.result(), [background, *chosen])


def base_scenes(n: int, seed: int = 0, size: int = 64):
    """n base scenes, the pretraining data: scene i depends only on (seed, i)."""
    for i in range(n):
        yield draw_scene(seed * 1_000_003 + i, size)


# ---- abstract images (VAE only) ----------------------------------------------------------------

def random_colour(rng: random.Random) -> tuple[int, int, int]:
    """Any colour, with extra weight on the corners of the RGB cube (black, white, pure hues)."""
    if rng.random() < 0.35:
        return tuple(rng.choice((rng.randint(0, 40), rng.randint(215, 255))) for _ in range(3))
    return tuple(rng.randint(0, 255) for _ in range(3))


def draw_abstract(seed: int, size: int = 64) -> Image.Image:
    """Random shapes in random colours: generic pictures for the VAE, which must encode any colour.

    SD's VAE was trained on general photos, not on the UNet's data; the toy VAE gets these so it can
    reconstruct colours the scenes never use (the character's white, pink and black among them)
    without ever seeing the character.
    """
    rng = random.Random(f"abstract-{seed}")
    c = Canvas(size)
    if rng.random() < 0.5:
        c.gradient(0, 1, random_colour(rng), random_colour(rng))
    else:
        c.rect(0, 0, 1, 1, fill=random_colour(rng))
    for _ in range(rng.randint(3, 10)):
        kind, colour = rng.random(), random_colour(rng)
        x, y, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.3)
        if kind < 0.45:
            c.ellipse(x, y, r, r * rng.uniform(0.4, 1.6), fill=colour)
        elif kind < 0.75:
            c.rect(x - r, y - r * rng.uniform(0.3, 1.5), x + r, y + r, fill=colour)
        elif kind < 0.9:
            c.polygon([(x + rng.uniform(-r, r), y + rng.uniform(-r, r)) for _ in range(3)], fill=colour)
        else:
            c.draw.line([(x * c.px, y * c.px), (rng.uniform(0, 1) * c.px, rng.uniform(0, 1) * c.px)],
                        fill=colour, width=rng.randint(1, 3) * OVERSAMPLE)
    return c.result()
