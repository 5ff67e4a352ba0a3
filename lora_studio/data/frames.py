"""Scan a folder of training frames: images, their tag captions, repeats and sizes.

Robust to what real frame folders hold: a half-copied JPEG, a caption renamed to .png, a 1x1
spacer, a CMYK scan, a 16-bit PNG. Bad files are reported one by one with a reason and left out;
they never stop the scan.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from lora_studio.errors import UserError

# kohya's IMAGE_EXTENSIONS (sd-scripts train_util), without the optional avif/jxl plugins.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Images a user may drop in the folder that we do not train on: say so instead of ignoring them.
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".avif", ".heic", ".heif", ".jxl", ".psd")
MIN_SIDE = 8
# kohya's "6_name" folder: the number is the repeat count. Bounded so a "2024_05_trip" folder is not
# read as 2024 repeats (the config allows at most 1000).
_REPEATS_FOLDER = re.compile(r"^(\d+)_.+")
_MAX_REPEATS = 1000
# EXIF orientations 5-8 rotate by 90°, so the trained width and height swap.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


@dataclass
class Frame:
    """One training image with its caption; `id` is its path relative to the dataset root (posix)."""

    id: str
    path: Path
    caption: str
    caption_path: Path | None
    repeats: int
    width: int
    height: int


@dataclass
class ScanReport:
    """What a scan found: usable frames, and (relative file, reason) for every file left out."""

    frames: list[Frame] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan_frames(folder, caption_extension: str = ".txt", default_repeats: int = 1,
                exclude: set[str] | None = None) -> ScanReport:
    """Find every usable image under `folder` (recursively) with its caption, repeats and size."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise UserError(f"dataset folder not found: {root}", "check the path; it should hold your frames and .txt captions")
    if not root.is_dir():
        raise UserError(f"dataset is not a folder: {root}", "point at the folder that holds the images, not at one file")
    exclude = set(exclude or ())
    ext = caption_extension if caption_extension.startswith(".") else "." + caption_extension
    report = ScanReport()
    excluded = 0
    for directory, names in walk_files(root):
        captions = {name.lower(): name for name in names if name.lower().endswith(ext.lower())}
        repeats = _repeats_for(directory, root, default_repeats)
        for name in names:
            rel = (directory / name).relative_to(root).as_posix()
            suffix = Path(name).suffix.lower()
            if suffix in OTHER_IMAGE_EXTENSIONS:
                report.skipped.append((rel, f"{suffix} files are not used for training; convert it to .png"))
                continue
            if suffix not in IMAGE_EXTENSIONS:
                continue  # captions, review state, notes: not images
            if rel in exclude:
                excluded += 1
                continue
            path = directory / name
            size, problem = _image_size(path)
            if problem:
                report.skipped.append((rel, problem))
                continue
            wanted = Path(name).stem + ext
            # Exact name first; then any case, for folders made on Windows/macOS ("IMG_1.PNG" + "img_1.txt").
            caption_name = wanted if wanted in names else captions.get(wanted.lower())
            caption_path = directory / caption_name if caption_name else None
            caption, problem = _read_caption(caption_path)
            if problem:
                report.skipped.append((rel, problem))
                continue
            report.frames.append(Frame(id=rel, path=path, caption=caption, caption_path=caption_path,
                                       repeats=repeats, width=size[0], height=size[1]))
    if not report.frames:
        raise UserError(_nothing_usable(root, report.skipped, excluded),
                        "add .png/.jpg/.jpeg/.webp/.bmp frames (with .txt tag captions) to the folder")
    return report


def open_rgb(path) -> Image.Image:
    """Open an image as 8-bit RGB the way training sees it: EXIF-rotated, alpha on white, first frame."""
    with Image.open(path) as img:
        img.seek(0)  # animated GIF/WebP/PNG: the first frame
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB as training sees it (16-bit scaled, not clipped; alpha on white; CMYK converted), as a new image."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: convert("RGB") would clip everything above 255 to white; scale instead.
        img = img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if img.mode == "F":
        img = img.point(lambda v: v * 255).convert("L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        # Transparent areas become white, as artists export character sheets; black would leak into training.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # CMYK, palette, greyscale, YCbCr


def walk_files(root: Path):
    """(directory, sorted file names) for every folder under root, sorted, hidden entries left out."""
    # Python's glob (and so kohya) skips dot-files; macOS "._img.png" twins would otherwise be reported corrupt.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def _repeats_for(directory: Path, root: Path, default: int) -> int:
    """Repeats from the nearest kohya 'N_name' folder between the image and the root (root included)."""
    current = directory
    while True:
        match = _REPEATS_FOLDER.match(current.name)
        if match and 1 <= int(match.group(1)) <= _MAX_REPEATS:
            return int(match.group(1))
        if current == root:
            return default
        current = current.parent


def _image_size(path: Path) -> tuple[tuple[int, int] | None, str]:
    """(width, height) after EXIF rotation, or a reason the file cannot be trained on."""
    try:
        with Image.open(path) as img:
            img.load()  # verify() misses truncated data; decoding the pixels finds it
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION)
    except UnidentifiedImageError:
        return None, f"not an image Pillow can read (is it really a {path.suffix.lower()} file?)"
    except Image.DecompressionBombError:
        return None, "image is too large (over Pillow's decompression-bomb limit); scale it down"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # Pillow's decoders raise all of these for damaged data.
        if "truncated" in str(exc):
            return None, "the file is cut short (truncated); copy or export it again"
        return None, f"the image is damaged and cannot be decoded ({exc})"
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    if min(width, height) < MIN_SIDE:
        return None, f"image is {width}x{height} px; frames need at least {MIN_SIDE} px per side"
    return (width, height), ""


def _read_caption(path: Path | None) -> tuple[str, str]:
    """Caption text (lines joined as tags) or a reason it cannot be read; no file means an empty caption."""
    if path is None:
        return "", ""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: Windows Notepad writes a BOM
    except UnicodeDecodeError:
        return "", f"caption {path.name} is not UTF-8 text; save it as UTF-8"
    except OSError as exc:
        return "", f"caption {path.name} cannot be read ({exc.strerror or exc})"
    # kohya reads only the first line; joining keeps tags a user put one per line.
    lines = [line.strip().strip(",").strip() for line in text.splitlines()]
    return ", ".join(line for line in lines if line), ""


def _nothing_usable(root: Path, skipped: list[tuple[str, str]], excluded: int) -> str:
    """The message for a scan that found nothing to train on, saying what was found instead."""
    if not skipped and not excluded:
        return f"no images in {root}"
    parts = []
    if skipped:
        examples = "; ".join(f"{file}: {reason}" for file, reason in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        parts.append(f"{len(skipped)} file(s) skipped — {examples}{more}")
    if excluded:
        parts.append(f"{excluded} excluded in review")
    return f"no usable images in {root}: " + ", ".join(parts)
