"""Per-frame dataset checks: open a file defensively, measure it, and turn measurements into flags.

Everything here is cheap (Pillow + numpy on a copy of at most 512 px). Per-file checks come from
`inspect_frame`; checks whose thresholds depend on the set (blur, brightness, duplicates, aspect
buckets, rare tags) take every frame's measurements at once. Outliers and the feature extractors
that measure them are in `outliers.py`.
Libraries checked: imagehash/opencv would do the hashing and Laplacian, but neither is a dependency,
and the few lines of numpy below are all we need.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from lora_studio.data.buckets import bucket_sizes, pick_bucket
from lora_studio.data.frames import MIN_SIDE, to_rgb

if TYPE_CHECKING:  # outliers imports Flag and ImageFacts from here
    from lora_studio.data.outliers import FeatureExtractor

# What each check looks for and why it matters; the UI shows this beside the flag.
CHECKS: dict[str, str] = {
    "unreadable": "The file cannot be opened as a picture; training skips it.",
    "skipped": "Training leaves this file out; the message says why and what to do.",
    "truncated": "The file ends early (an interrupted copy or download); training skips it.",
    "animated": "Only the first frame of an animation is trained.",
    "color_mode": "Converted to 8-bit RGB for training; colours can shift (CMYK) or lose range (16-bit).",
    "alpha": "Transparent parts are flattened onto white for training; check that the edges look right.",
    "too_small": "Training upscales small frames, which teaches the LoRA blur and jagged edges.",
    "aspect": "A very wide or tall frame lands alone in its aspect bucket and gets cropped or squeezed.",
    "blur": "Blurry frames (or motion blur from action scenes) teach the LoRA soft, smeared details.",
    "dark": "A very dark frame shows little of the character and pulls the LoRA toward dark images.",
    "bright": "A very bright or washed-out frame shows little of the character.",
    "low_detail": "A flat, low-contrast frame (a fade, a blank, a flash) carries little to learn.",
    "duplicate": "An identical frame is trained twice as often as the others and adds nothing new.",
    "near_duplicate": "Near-identical frames over-weight one pose; keep the best of the pair.",
    "missing_caption": "Without a caption the frame trains on an empty prompt.",
    "empty_caption": "The caption file is empty, so the frame trains on an empty prompt.",
    "no_trigger": "Without the trigger word this frame does not teach the name of the character.",
    "trigger_not_first": "The trigger word should be the first tag, so 'keep tokens: 1' holds it in place "
                         "when tags are shuffled.",
    "long_caption": "SD1.5 reads 75 CLIP tokens; the end of a longer caption is cut off.",
    "rare_tag": "A tag on only one frame is often a typo, or a detail the LoRA cannot learn from one example.",
    "outlier": "Far from the other frames' look: often a distorted action frame (odd pose, stretched "
               "body, extreme perspective, heavy effects) that teaches the LoRA a deformed character.",
}

# error: cannot be trained; warning: likely hurts the LoRA; note: worth a look. Weights sort frames worst first.
SEVERITY_WEIGHT = {"error": 1000, "warning": 10, "note": 1}

ANALYSIS_SIDE = 512  # long side of the copy that sharpness/brightness are measured on (the usual training size)


@dataclass(frozen=True)
class Flag:
    """One finding about one frame: which check, what was found, the measured value."""

    check: str
    message: str
    value: float | int | str | None = None
    severity: str = "warning"
    other: str | None = None  # the related frame id (the other half of a duplicate pair)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (other left out when there is none)."""
        out = {"check": self.check, "message": self.message, "value": self.value, "severity": self.severity}
        if self.other is not None:
            out["other"] = self.other
        return out


@dataclass
class ImageFacts:
    """What opening and measuring one file found; stats are None when the file is unreadable."""

    readable: bool
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    flags: list[Flag] = field(default_factory=list)
    sharpness: float | None = None  # fine-detail energy relative to contrast (see sharpness_and_anisotropy)
    anisotropy: float | None = None  # 0 = detail in all directions, near 1 = one direction smeared
    brightness: float | None = None  # mean luminance 0..255
    contrast: float | None = None  # luminance standard deviation
    phash: int | None = None  # 64-bit DCT perceptual hash
    pixel_digest: str | None = None  # sha1 of the analysis copy: equal pixels, whatever the file format
    features: np.ndarray | None = None  # outlier features from the extractor


# ---------------------------------------------------------------------------------------------
# Opening a file


def _file_reason(path: Path) -> str:
    """Why Pillow could not identify a file, in words a user can act on."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8") or head[:4] in (b"RIFF", b"GIF8"):
        return "damaged image: the header is there but the content cannot be decoded"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not an image: {size} bytes in no picture format Pillow knows"
    if all(c.isprintable() or c.isspace() for c in text):
        return f"not an image: the file holds text ({size} bytes), despite its '{path.suffix}' name"
    return f"not an image: {size} bytes in no picture format Pillow knows"


_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that undoes it (the table ImageOps.exif_transpose uses), applied to
# the small analysis copy instead of the full-size frame.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _mode_flags(image: Image.Image, n_frames: int) -> list[Flag]:
    flags = []
    if n_frames > 1:
        flags.append(Flag("animated", f"animated ({n_frames} frames): only the first frame is used",
                          n_frames, "note"))
    mode = image.mode
    if mode == "CMYK":
        flags.append(Flag("color_mode", "CMYK colours: converted to RGB, colours may shift", mode, "note"))
    elif mode.startswith("I;16") or mode in ("I", "F"):
        flags.append(Flag("color_mode", f"{'16' if mode.startswith('I;16') else '32'}-bit image: "
                          "scaled down to 8 bits for training", mode, "note"))
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        flags.append(Flag("alpha", "has transparency: flattened onto white for training", mode, "note"))
    return flags


def open_for_review(path: Path) -> tuple[ImageFacts, Image.Image | None]:
    """Open a file without trusting it: facts and flags, plus an RGB analysis copy when it decodes."""
    path = Path(path)
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        return ImageFacts(False, flags=[Flag("unreadable", _file_reason(path), None, "error")]), None
    except Image.DecompressionBombError as exc:
        return ImageFacts(False, flags=[Flag("unreadable", f"too many pixels to open safely ({exc})",
                                             None, "error")]), None
    except OSError as exc:
        return ImageFacts(False, flags=[Flag("unreadable", f"cannot open: {exc}", None, "error")]), None
    with image:
        facts = ImageFacts(True, width=image.width, height=image.height, format=image.format or "",
                           mode=image.mode)
        facts.flags.extend(_mode_flags(image, getattr(image, "n_frames", 1)))
        if image.format == "JPEG":
            image.draft("RGB", (ANALYSIS_SIDE, ANALYSIS_SIDE))  # decode at reduced size: much faster
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            facts.readable = False
            facts.flags.append(Flag("unreadable", f"too many pixels to open safely ({exc})", None, "error"))
            return facts, None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            # Pillow's decoders raise all of these for damaged data (as frames.scan_frames knows too).
            facts.readable = False
            if "truncated" in str(exc):
                facts.flags.append(Flag("truncated", "truncated: the file ends early (an interrupted copy "
                                        "or download)", None, "error"))
            else:
                facts.flags.append(Flag("unreadable", f"damaged image: {exc}", None, "error"))
            return facts, None
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        rgb = to_rgb(image)  # always a new image, so it outlives the file
        if max(rgb.size) > ANALYSIS_SIDE:
            scale = ANALYSIS_SIDE / max(rgb.size)
            rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BOX)
    if orientation in _ORIENTATION_TRANSPOSE:
        # Same orientation as training (frames.open_rgb): a phone photo lying on its side is no outlier.
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
        if orientation in (5, 6, 7, 8):
            facts.width, facts.height = facts.height, facts.width
    return facts, rgb


# ---------------------------------------------------------------------------------------------
# Measuring a readable frame


def luminance(rgb: Image.Image) -> np.ndarray:
    """Rec. 601 luma as float64, 0..255."""
    arr = np.asarray(rgb, dtype=np.float64)
    return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114


def sharpness_and_anisotropy(luma: np.ndarray) -> tuple[float, float]:
    """Fine-detail energy (Laplacian variance over luminance variance, ×100) and how one-sided it is.

    Dividing by the luminance variance makes sharpness independent of contrast, so a hazy or
    colour-washed frame is not called blurry. Anisotropy compares the fine detail along four
    directions: 0 when they match, near 1 when one direction has lost its detail, as motion blur
    (or a one-way stretch) leaves a frame.
    """
    if min(luma.shape) < 3:
        return 0.0, 0.0
    centre = luma[1:-1, 1:-1]
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    sharpness = 100.0 * float(lap.var()) / max(float(luma.var()), 25.0)  # floor: flat frames stay near 0
    along = [
        ((luma[1:-1, 2:] - 2 * centre + luma[1:-1, :-2]) ** 2).mean(),  # horizontal
        ((luma[2:, 1:-1] - 2 * centre + luma[:-2, 1:-1]) ** 2).mean(),  # vertical
        ((luma[2:, 2:] - 2 * centre + luma[:-2, :-2]) ** 2).mean() / 2,  # diagonals: √2 longer steps
        ((luma[2:, :-2] - 2 * centre + luma[:-2, 2:]) ** 2).mean() / 2,
    ]
    strongest = max(along)
    anisotropy = 1.0 - float(min(along)) / strongest if strongest > 1e-9 else 0.0
    return sharpness, anisotropy


_DCT32 = np.cos(np.pi * (2 * np.arange(32)[None, :] + 1) * np.arange(32)[:, None] / 64.0)


def perceptual_hash(rgb: Image.Image) -> int:
    """64-bit pHash: signs of the low-frequency DCT of a 32×32 grey copy against their median."""
    grey = np.asarray(rgb.convert("L").resize((32, 32), Image.BOX), dtype=np.float64)
    low = (_DCT32 @ grey @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low)
    return int("".join("1" if b else "0" for b in bits), 2)


def measure(facts: ImageFacts, rgb: Image.Image, extractor: FeatureExtractor | None = None) -> ImageFacts:
    """Fill in sharpness, brightness, contrast, hashes and features from the analysis copy."""
    luma = luminance(rgb)
    facts.sharpness, facts.anisotropy = sharpness_and_anisotropy(luma)
    facts.brightness = float(luma.mean())
    facts.contrast = float(luma.std())
    facts.phash = perceptual_hash(rgb)
    facts.pixel_digest = hashlib.sha1(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    if extractor is not None:
        facts.features = np.asarray(extractor(rgb), dtype=np.float64).ravel()
    return facts


def inspect_frame(path: Path, extractor: FeatureExtractor | None = None) -> ImageFacts:
    """Open, check and measure one file; never raises for a bad file (the reason goes in a flag)."""
    facts, rgb = open_for_review(path)
    if rgb is None:
        return facts
    if min(facts.width, facts.height) < MIN_SIDE:
        return facts  # nothing to measure in a 1-pixel-high strip; size flags say why
    return measure(facts, rgb, extractor)


# ---------------------------------------------------------------------------------------------
# Checks on one frame's size and caption

# What caption_flags and rare_tag_flags find: they read only the tags, so a tag edit redoes them
# without decoding any image again.
CAPTION_CHECKS = {"missing_caption", "empty_caption", "no_trigger", "trigger_not_first", "long_caption", "rare_tag"}


def size_flags(width: int, height: int, resolution: int) -> list[Flag]:
    """Too small for the training resolution, or too small to be a picture at all."""
    if min(width, height) < MIN_SIDE:
        return [Flag("too_small", f"too small to use: {width}×{height} px", min(width, height), "error")]
    upscale = resolution / math.sqrt(width * height)
    if upscale > 1.5:
        return [Flag("too_small", f"too small for {resolution} px training: {width}×{height} would be "
                     f"upscaled {upscale:.1f}×", round(upscale, 2))]
    return []


def caption_flags(caption: str | None, tags: list[str], trigger_word: str, token_count: int | None) -> list[Flag]:
    """Missing/empty caption, trigger word absent or not first, caption over 75 CLIP tokens."""
    if caption is None:
        return [Flag("missing_caption", "no caption file: the frame trains on an empty prompt")]
    if not tags:
        return [Flag("empty_caption", "the caption is empty: the frame trains on an empty prompt")]
    flags = []
    if trigger_word:
        lowered = [t.lower() for t in tags]
        if trigger_word.lower() not in lowered:
            flags.append(Flag("no_trigger", f"no trigger word '{trigger_word}' in the tags", trigger_word))
        elif lowered[0] != trigger_word.lower():
            flags.append(Flag("trigger_not_first", f"trigger word '{trigger_word}' is tag "
                              f"{lowered.index(trigger_word.lower()) + 1}, not first: shuffling can move it",
                              trigger_word, "note"))
    if token_count is not None and token_count > 75:
        flags.append(Flag("long_caption", f"caption is {token_count} CLIP tokens; SD1.5 reads 75, "
                          "the rest is cut off", token_count))
    return flags


def rare_tag_flags(tags_by_frame: dict[str, list[str]], trigger_word: str = "") -> dict[str, list[Flag]]:
    """Tags that appear on only one frame (only meaningful with at least five captioned frames)."""
    captioned = {fid: tags for fid, tags in tags_by_frame.items() if tags}
    if len(captioned) < 5:
        return {}
    counts: dict[str, int] = {}
    for tags in captioned.values():
        for tag in {t.lower() for t in tags}:
            counts[tag] = counts.get(tag, 0) + 1
    out: dict[str, list[Flag]] = {}
    for fid, tags in captioned.items():
        rare = [t for t in dict.fromkeys(tags) if counts[t.lower()] == 1 and t.lower() != trigger_word.lower()]
        if rare:
            shown = ", ".join(f"'{t}'" for t in rare[:5]) + (" …" if len(rare) > 5 else "")
            out[fid] = [Flag("rare_tag", f"on this frame only: {shown}", len(rare), "note")]
    return out


# ---------------------------------------------------------------------------------------------
# Checks relative to the whole set

BLUR_RATIO = 0.3  # sharpness below this fraction of the set's median is "blurry"
MOTION_ANISOTROPY = 0.9  # a blurry frame whose detail is this one-sided reads as motion blur
NEAR_DUPLICATE_BITS = 4  # pHash distance (of 64 bits) at or below which frames are near duplicates
NEAR_DUPLICATE_BRIGHTNESS = 16.0  # ... and mean brightness within this many levels of 255
RELATIVE_MIN_FRAMES = 5  # fewer frames than this: no median worth comparing to


def _num(value: float) -> str:
    """12 or 0.31, never 1.2e+02."""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2g}"


def _median(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if values else 0.0


def quality_flags(facts: dict[str, ImageFacts]) -> dict[str, list[Flag]]:
    """Blur, motion blur, very dark / bright and low detail, each against the set's median."""
    measured = {fid: f for fid, f in facts.items() if f.sharpness is not None}
    out: dict[str, list[Flag]] = {fid: [] for fid in measured}
    if not measured:
        return out
    relative = len(measured) >= RELATIVE_MIN_FRAMES
    med_sharp = _median([f.sharpness for f in measured.values()]) if relative else 0.0  # no blur check alone
    med_bright = _median([f.brightness for f in measured.values()]) if relative else 128.0
    med_contrast = _median([f.contrast for f in measured.values()]) if relative else 50.0
    for fid, f in measured.items():
        if f.sharpness < BLUR_RATIO * med_sharp:
            kind = "motion blur" if f.anisotropy >= MOTION_ANISOTROPY else "blurry"
            out[fid].append(Flag("blur", f"{kind}: sharpness {_num(f.sharpness)}, the dataset median is "
                                 f"{_num(med_sharp)}", round(f.sharpness, 2)))
        # Dark/bright need both an absolute level and a gap to the set: a night-scene set is not "dark".
        if f.brightness < 45 and f.brightness < 0.5 * med_bright:
            out[fid].append(Flag("dark", f"very dark: brightness {f.brightness:.0f} of 255, the dataset "
                                 f"median is {med_bright:.0f}", round(f.brightness, 1)))
        elif f.brightness > 215 and 255 - f.brightness < 0.5 * (255 - med_bright):
            out[fid].append(Flag("bright", f"very bright: brightness {f.brightness:.0f} of 255, the dataset "
                                 f"median is {med_bright:.0f}", round(f.brightness, 1)))
        if f.contrast < max(8.0, 0.3 * med_contrast):
            out[fid].append(Flag("low_detail", f"low detail: contrast {f.contrast:.0f}, the dataset median is "
                                 f"{med_contrast:.0f}", round(f.contrast, 1)))
    return out


def aspect_flags(sizes: dict[str, tuple[int, int]], resolution: int = 512, min_bucket_reso: int = 256,
                 max_bucket_reso: int = 1024, bucket_reso_steps: int = 64) -> dict[str, list[Flag]]:
    """Aspect ratios that training must crop hard, and unusual ones alone in their aspect bucket."""
    buckets = bucket_sizes(resolution, min_bucket_reso, max_bucket_reso, bucket_reso_steps)
    picked = {fid: pick_bucket(w, h, buckets) for fid, (w, h) in sizes.items() if w > 0 and h > 0}
    per_bucket = Counter(picked.values())
    out: dict[str, list[Flag]] = {}
    for fid, bucket in picked.items():
        w, h = sizes[fid]
        ratio = max(w, h) / min(w, h)
        shape = "wide" if w > h else "tall"
        text = f"{ratio:.1f}:1" if ratio < 100 else f"{ratio:.0f}:1"
        # The bucket covers the frame after resizing; what sticks out is cropped away.
        kept = min(w / h, bucket[0] / bucket[1]) / max(w / h, bucket[0] / bucket[1])
        if ratio >= 3.0 or kept < 0.75:
            cropped = "over 99%" if kept < 0.01 else f"{100 * (1 - kept):.0f}%"
            out[fid] = [Flag("aspect", f"extreme aspect ratio {text} ({shape}): its bucket is "
                             f"{bucket[0]}×{bucket[1]}, so {cropped} of it is cropped away", round(ratio, 2))]
        elif ratio >= 1.5 and per_bucket[bucket] == 1:
            out[fid] = [Flag("aspect", f"aspect ratio {text} ({shape}) that no other frame has: it lands "
                             f"alone in the {bucket[0]}×{bucket[1]} bucket", round(ratio, 2), "note")]
    return out


def duplicate_flags(facts: dict[str, ImageFacts]) -> dict[str, list[Flag]]:
    """Identical pixels, and near duplicates by perceptual hash; each flag names the other frame."""
    hashed = [(fid, f) for fid, f in facts.items() if f.phash is not None]
    out: dict[str, list[Flag]] = {}
    first_with_digest: dict[str, str] = {}
    exact: set[str] = set()
    for fid, f in hashed:
        if f.pixel_digest in first_with_digest:
            other = first_with_digest[f.pixel_digest]
            out.setdefault(fid, []).append(Flag("duplicate", f"identical to {other}", 0, "warning", other))
            out.setdefault(other, []).append(Flag("duplicate", f"identical to {fid}", 0, "warning", fid))
            exact.update((fid, other))
        else:
            first_with_digest[f.pixel_digest] = fid
    if len(hashed) < 2:
        return out
    ids = [fid for fid, _ in hashed]
    hashes = np.array([f.phash for _, f in hashed], dtype=np.uint64)
    brightness = np.array([f.brightness for _, f in hashed], dtype=np.float64)
    for row, fid in enumerate(ids):
        # Popcount by unpacking bits: np.bitwise_count needs numpy 2, which the project does not pin.
        dist = np.unpackbits((hashes ^ hashes[row]).view(np.uint8)).reshape(len(ids), 64).sum(axis=1).astype(np.int64)
        dist[row] = 65
        # pHash ignores overall colour and level: a black and a white frame hash alike, so also compare brightness.
        dist[np.abs(brightness - brightness[row]) > NEAR_DUPLICATE_BRIGHTNESS] = 65
        best = int(dist.argmin())
        if dist[best] <= NEAR_DUPLICATE_BITS and not (fid in exact and ids[best] in exact):
            close = int((dist <= NEAR_DUPLICATE_BITS).sum())
            more = f" (and {close - 1} more)" if close > 1 else ""
            out.setdefault(fid, []).append(Flag(
                "near_duplicate", f"near duplicate of {ids[best]}{more}: hash distance {dist[best]} of 64",
                int(dist[best]), "note", ids[best]))
    return out
