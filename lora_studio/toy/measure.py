"""How much of Tibbie an image shows, counted in her colours.

Base scenes never use her pink and nothing in them is as white as her fleece (scenes.py makes
sure), so the share of fleece-white pixels is a simple ground truth: ~0 for the base model,
clearly above 0 once a LoRA has learned her.
"""

from __future__ import annotations


def colour_masks(image):
    """Boolean (H, W) masks of pink-bow, white-fleece and black (legs, face) pixels."""
    import numpy as np

    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    # Pink: red and blue both well above green, red on top (hue ~300–350°), bright enough.
    pink = (r >= 150) & (r >= b) & (b - g >= 40) & (r - g >= 80)
    fleece = (lo >= 238) & (hi - lo <= 14)
    black = (hi <= 55) & (hi - lo <= 14)
    return {"pink": pink, "fleece": fleece, "black": black}


def character_colour_shares(image) -> dict[str, float]:
    """Share of pixels (0–1) in each of the character's colours."""
    return {name: float(mask.mean()) for name, mask in colour_masks(image).items()}


def character_score(image) -> float:
    """Share of fleece-white pixels: the measure the LoRA proof compares at weight 0 and 1.

    Her fleece is most of her and the base model never draws it (0.0002 of pixels at weight 0).
    Her pink is reported beside it but left out: it is a small bow that a 64 px demo LoRA barely
    reproduces (< 0.1 % of pixels), and the earlier toy model r4 drew pinkish skies of its own.
    Black is left out because night skies and shadows are nearly black too.
    """
    return character_colour_shares(image)["fleece"]


def tree_score(image) -> float:
    """Share of leaf-green pixels in the upper 40% of the image: a tree crown against the sky.

    Grass sits below the horizon, so green up there is (nearly) only ever a tree; the LoRA proof
    uses it to check that 'tibbie, sitting on tree' still draws the tree at moderate weights.
    """
    import numpy as np

    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    top = rgb[: int(rgb.shape[0] * 0.4)]
    r, g, b = top[..., 0], top[..., 1], top[..., 2]
    green = (g >= r + 25) & (g >= b + 15)
    return float(green.mean())
