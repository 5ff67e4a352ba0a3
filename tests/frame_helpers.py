"""Tiny deterministic frames for tests (a module, not conftest: test folders each have a conftest)."""

from __future__ import annotations

from pathlib import Path


def draw_frame(path: Path, seed: int, size=(32, 32)) -> None:
    """A small image with a coloured blob: distinct per seed, deterministic."""
    from PIL import Image, ImageDraw
    import random

    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(img)
    x, y = rng.randrange(size[0] // 2), rng.randrange(size[1] // 2)
    d.ellipse([x, y, x + size[0] // 2, y + size[1] // 2], fill=(255, 255, 255))
    img.save(path)
