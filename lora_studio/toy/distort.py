"""Distorted action frames: what bad frames in a real video dump look like, drawn on purpose.

Warped, stretched, extremely cropped, motion-smeared and upside-down copies of a good frame. A demo
dataset mixes a few in and names them in a sidecar file, so dataset review can be scored for
precision and recall. Their captions stay normal, as a tagger would write them.
"""

from __future__ import annotations

import random

from PIL import Image

DISTORTIONS = ("warped", "stretched", "extreme crop", "motion smear", "upside-down")


def distort(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A distorted copy of an RGB image, the same size."""
    if kind == "warped":
        return warp(image, amplitude=rng.uniform(0.08, 0.12) * image.width, waves=rng.uniform(1.5, 2.5),
                    phase=rng.uniform(0, 6.28))
    if kind == "stretched":
        factor = rng.uniform(2.2, 2.8)
        if rng.random() < 0.5:
            wide = image.resize((round(image.width * factor), image.height), Image.BICUBIC)
            left = (wide.width - image.width) // 2
            return wide.crop((left, 0, left + image.width, image.height))
        tall = image.resize((image.width, round(image.height * factor)), Image.BICUBIC)
        top = (tall.height - image.height) // 2
        return tall.crop((0, top, image.width, top + image.height))
    if kind == "extreme crop":
        side = round(image.width * rng.uniform(0.2, 0.3))
        x = rng.randint(image.width // 4, image.width * 3 // 4 - side)
        y = rng.randint(image.height // 4, image.height * 3 // 4 - side)
        return image.crop((x, y, x + side, y + side)).resize(image.size, Image.BILINEAR)
    if kind == "motion smear":
        return smear(image, length=round(image.width * rng.uniform(0.2, 0.3)))
    if kind == "upside-down":
        return image.rotate(180)
    raise ValueError(f"unknown distortion {kind!r}; kinds: {', '.join(DISTORTIONS)}")


def warp(image: Image.Image, amplitude: float, waves: float, phase: float) -> Image.Image:
    """Sinusoidal displacement in both directions (a funhouse mirror)."""
    import numpy as np

    pixels = np.asarray(image)
    h, w = pixels.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    src_x = xs + amplitude * np.sin(2 * np.pi * waves * ys / h + phase)
    src_y = ys + amplitude * np.sin(2 * np.pi * waves * xs / w + phase * 0.7)
    src_x = np.clip(np.rint(src_x), 0, w - 1).astype(int)
    src_y = np.clip(np.rint(src_y), 0, h - 1).astype(int)
    return Image.fromarray(pixels[src_y, src_x])


def smear(image: Image.Image, length: int) -> Image.Image:
    """Horizontal motion blur: the mean of the image shifted 0..length pixels."""
    import numpy as np

    pixels = np.asarray(image).astype(np.float32)
    padded = np.pad(pixels, ((0, 0), (length, 0), (0, 0)), mode="edge")
    acc = sum(padded[:, length - k:length - k + pixels.shape[1]] for k in range(length + 1))
    return Image.fromarray(np.clip(acc / (length + 1), 0, 255).astype(np.uint8))
