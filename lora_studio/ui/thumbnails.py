"""Gallery tiles for the Dataset tab: a frame's small copy with its flag badge, and the selected frame's preview.

Pixels are sent to Gradio (it serves only files under allowed paths); thumbnails are cached by the
file's path, modification time and size, so redrawing the gallery after a keep/exclude decodes nothing.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from lora_studio.data import checks
from lora_studio.data.frames import to_rgb
from lora_studio.data.review import FrameReview

THUMB = 176  # gallery thumbnail side, px
PREVIEW = 640  # long side of the selected frame's preview, px
BADGE_COLOUR = {"error": (200, 30, 40), "warning": (235, 130, 20), "note": (60, 110, 170)}
# Pillow's decoders raise all of these for damaged files (as data.frames knows too).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError)


def small_copy(path: Path, side: int) -> Image.Image | None:
    """The frame as training sees it (EXIF-rotated 8-bit RGB), at most `side` px; None if it does not decode."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (side * 2, side * 2))  # decode at reduced size: much faster
            img.load()
            rgb = to_rgb(ImageOps.exif_transpose(img))
    except _DECODE_ERRORS:
        return None  # the review's flags already say why
    rgb.thumbnail((side, side), Image.BILINEAR)
    return rgb


@functools.lru_cache(maxsize=1024)
def _cached_thumbnail(path: str, mtime_ns: int, size: int) -> Image.Image | None:
    return small_copy(Path(path), THUMB)


def thumbnail(path: Path) -> Image.Image | None:
    """The gallery's small copy of a frame, read again only when the file changed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _cached_thumbnail(str(path), stat.st_mtime_ns, stat.st_size)


def badged(frame: FrameReview) -> Image.Image:
    """The gallery tile: the frame on a square, its flag count in the worst severity's colour (top right),
    greyed with a band on top when it is excluded or cannot be used (the gallery's caption covers the bottom)."""
    tile = Image.new("RGB", (THUMB, THUMB), (40, 40, 44))
    small = thumbnail(frame.path)
    if small is not None:
        small = ImageOps.contain(small, (THUMB, THUMB), Image.BICUBIC)
        tile.paste(small, ((THUMB - small.width) // 2, (THUMB - small.height) // 2))
    if not frame.kept:
        tile = Image.blend(tile, Image.new("RGB", tile.size, (90, 90, 90)), 0.55)
    draw = ImageDraw.Draw(tile)
    font = _font(15)
    if not frame.kept:
        draw.rectangle([0, 0, THUMB, 24], fill=(150, 20, 30))
        draw.text((THUMB // 2 - 18, 12), "EXCLUDED" if frame.trainable else "CANNOT USE", fill="white",
                  font=font, anchor="mm")
    if frame.flags:
        worst = max(frame.flags, key=lambda f: checks.SEVERITY_WEIGHT.get(f.severity, 1)).severity
        draw.rounded_rectangle([THUMB - 38, 2, THUMB - 4, 24], radius=8, fill=BADGE_COLOUR.get(worst, (60, 110, 170)),
                               outline="white")
        draw.text((THUMB - 21, 13), str(len(frame.flags)), fill="white", font=font, anchor="mm")
    return tile


@functools.lru_cache(maxsize=4)
def _font(size: int):
    return ImageFont.load_default(size=size)


def preview(path: Path) -> Image.Image | None:
    """The selected frame at PREVIEW px (gradio serves only files under allowed paths: send pixels)."""
    image = small_copy(path, PREVIEW)
    if image is not None and max(image.size) < PREVIEW // 2:
        image = ImageOps.contain(image, (PREVIEW // 2, PREVIEW // 2), Image.NEAREST)  # a 64 px frame, visible
    return image
