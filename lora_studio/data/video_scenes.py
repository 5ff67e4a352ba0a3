"""A video's scenes: decoding with PyAV, cuts, black, fade and transition frames, from tiny thumbnails.

The first pass of data/video.py: every frame becomes a 32×18 thumbnail, cheap enough for a whole
episode; what it finds (scenes of frames, each usable or with a reason not to take it) decides
which few frames the second pass decodes in full.
Libraries checked: PySceneDetect finds cuts the same way (mean HSV difference, an adaptive
detector, a black-level detector for fades), but it needs opencv-python and click; the detector
here is a few lines of numpy on the thumbnails.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from lora_studio.errors import UserError

THUMB = (32, 18)  # the first pass's thumbnail: enough to see a cut, cheap enough for every frame
BLACK_BRIGHTNESS = 20.0  # mean luma (0..255) below which, with little contrast, a frame is black
BLACK_CONTRAST = 10.0
FLAT_CONTRAST = 5.0  # any frame this flat is a blank (a white flash, a fade's end), not a picture
FADE_CONTRAST = 0.5  # contrast below this share of the scene's median: part of a fade
FADE_BRIGHTNESS = (0.7, 1.4)  # brightness outside these shares of the scene's median: part of a fade
FADE_LEVEL_SHARE = 0.7  # a slow change mostly in overall brightness is a fade, not a dissolve
FADE_STEP = 0.02  # brightness changing by this share per frame, the same way ...
FADE_RUN = 3  # ... for this many frames in a row: a fade has begun
ADAPTIVE_MIN_CHANGE = 0.04  # below cut_threshold, a change counts as a cut only if it is ...
ADAPTIVE_RATIO = 5.0  # ... this many times the shot's recent mean change (PySceneDetect's AdaptiveDetector idea)
TRANSITION_WINDOW_S = 0.5  # a change this large over this long, without a cut, is a dissolve or a fast pan
MIN_SCENE_FRAMES = 3  # shorter shots are flashes, not scenes
CANDIDATES_PER_STRETCH = 5  # frames decoded in full per stretch of a scene to find the sharpest


# ---------------------------------------------------------------------------------------------
# Decoding


def open_video(path: Path):
    import av  # PyAV: only when a video is imported

    if not path.is_file():
        raise UserError(f"video not found: {path}", "check the path")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise UserError(f"{path.name} cannot be read as a video ({exc})",
                        "is the file complete? try playing it; a damaged download must be fetched again") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path.name} has no video stream", "pass a video file (mp4, mkv, webm …)")
    return container


def decoded_frames(path: Path, ranges: list[tuple[float, float]]):
    """(key, time, av.VideoFrame) for every decoded frame inside the ranges; damaged data is a UserError."""
    import av

    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = ranges[0][0] if ranges else 0.0
        if start > 1.0 and stream.time_base:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        end = ranges[-1][1] if ranges else float("inf")
        index = 0
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
            key = frame.pts if frame.pts is not None else index
            index += 1
            if t > end:
                break
            if ranges and not any(a <= t < b for a, b in ranges):
                continue
            yield key, t, frame
    except av.FFmpegError as exc:
        raise UserError(f"{path.name} is damaged: decoding stopped ({exc})",
                        "fetch the file again, or give a time range that avoids the damaged part") from None
    finally:
        container.close()


def estimate_frames(path: Path, ranges: list[tuple[float, float]]) -> int:
    """How many frames the ranges hold (for progress); a guess from duration × frame rate."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                    else (container.duration or 0) / 1_000_000)
    finally:
        container.close()
    if ranges:
        duration = sum(min(b, duration or b) - a for a, b in ranges if a < (duration or b))
    return max(1, int(stream.frames or 0) if not ranges and stream.frames else int(duration * rate) or 1)


# ---------------------------------------------------------------------------------------------
# Scenes and frames not worth a look


@dataclass
class SeenFrame:
    """One decoded frame as the first pass saw it (its thumbnail's statistics)."""

    key: int  # the frame's pts: the second pass finds the same frame by it
    time: float
    brightness: float
    contrast: float
    reason: str = ""  # why it is no candidate ('' = usable)


def find_scenes(path: Path, ranges: list[tuple[float, float]], cut_threshold: float,
                tick: Callable[[], None]) -> tuple[list[list[SeenFrame]], Counter, int]:
    """Every frame's thumbnail statistics, split into scenes at cuts and black stretches.

    Returns the scenes with a usable frame, the dropped frames per reason, and how many frames were seen.
    """
    scenes: list[list[SeenFrame]] = [[]]
    dropped: Counter = Counter()
    seen_count = 0
    recent: deque = deque()  # (time, thumbnail, brightness) of the last TRANSITION_WINDOW_S
    changes: deque = deque(maxlen=24)  # the current shot's recent frame-to-frame changes
    gradual = False  # inside a dissolve or fade found over the window
    previous = None
    for key, t, frame in decoded_frames(path, ranges):
        tick()
        seen_count += 1
        thumb = thumbnail(frame)
        luma = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        seen = SeenFrame(key, t, float(luma.mean()), float(luma.std()))
        black = seen.brightness < BLACK_BRIGHTNESS and seen.contrast < BLACK_CONTRAST
        change = float(np.abs(thumb - previous).mean()) / 255 if previous is not None else 0.0
        while recent and t - recent[0][0] > TRANSITION_WINDOW_S:
            recent.popleft()
        if black:
            dropped["black"] += 1
            if scenes[-1]:
                scenes.append([])  # black separates scenes: a fade out and in is a cut
            gradual = False
        elif change > cut_threshold or (
                change > ADAPTIVE_MIN_CHANGE and len(changes) >= 3
                and change > ADAPTIVE_RATIO * (float(np.mean(changes)) + 0.002)):
            # a jump far above the shot's usual frame-to-frame change is a cut between similar-looking shots
            if scenes[-1]:
                scenes.append([])
            recent.clear()
            changes.clear()
            gradual = False
        elif recent and (spread := float(np.abs(thumb - recent[0][1]).mean()) / 255) > cut_threshold:
            # A big change spread over many frames. When the overall level explains most of it, the
            # picture is fading; otherwise it is a dissolve between shots or a fast pan.
            level = abs(seen.brightness - recent[0][2]) / 255
            seen.reason = "fade" if level > FADE_LEVEL_SHARE * spread else "transition"
            gradual = True
        elif gradual:
            # the first steady frame after a dissolve or fade starts a new scene, as a cut would
            gradual = False
            if any(not f.reason for f in scenes[-1]):
                scenes.append([])
            changes.clear()
        if not seen.reason and not black and seen.contrast < FLAT_CONTRAST:
            seen.reason = "fade"
        if not black:
            scenes[-1].append(seen)
        recent.append((t, thumb, seen.brightness))
        if previous is not None and not black:
            changes.append(change)
        previous = thumb
    kept_scenes = []
    for scene in scenes:
        _mark_fades(scene)
        usable = [s for s in scene if not s.reason]
        if usable:
            median_contrast = float(np.median([s.contrast for s in usable]))
            median_brightness = float(np.median([s.brightness for s in usable]))
            for s in usable:
                # the start of a fade, before the change over the window is large
                if (s.contrast < FADE_CONTRAST * median_contrast
                        or not FADE_BRIGHTNESS[0] <= s.brightness / max(median_brightness, 1.0) <= FADE_BRIGHTNESS[1]):
                    s.reason = "fade"
        if len([s for s in scene if not s.reason]) < MIN_SCENE_FRAMES:
            for s in scene:
                s.reason = s.reason or "short_scene"
        for s in scene:
            if s.reason:
                dropped[s.reason] += 1
        if any(not s.reason for s in scene):
            kept_scenes.append(scene)
    return kept_scenes, dropped, seen_count


# BT.601 YUV → RGB, for the thumbnails taken straight from the decoded planes
_YUV_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=np.float32)


def _block_mean(plane, height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """A plane of the decoded frame averaged down to rows×cols (every 2nd pixel is plenty for a thumbnail)."""
    a = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:height, :width]
    a = a[::2, ::2]
    a = a[:a.shape[0] // rows * rows, :a.shape[1] // cols * cols].astype(np.float32)
    return a.reshape(rows, a.shape[0] // rows, cols, a.shape[1] // cols).mean(axis=(1, 3))


def thumbnail(frame) -> np.ndarray:
    """THUMB-sized RGB float32 thumbnail of a decoded frame.

    For 4:2:0 video (nearly all of it) the planes are averaged in numpy: swscale's conversion to a tiny
    RGB copy costs more than decoding the frame.
    """
    cols, rows = THUMB
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width >= 4 * cols and frame.height >= 4 * rows:
        y = _block_mean(frame.planes[0], frame.height, frame.width, rows, cols)
        u = _block_mean(frame.planes[1], frame.height // 2, frame.width // 2, rows, cols) - 128.0
        v = _block_mean(frame.planes[2], frame.height // 2, frame.width // 2, rows, cols) - 128.0
        if frame.format.name == "yuv420p":  # limited range: black is 16, white 235
            y, u, v = (y - 16.0) * (255 / 219), u * (255 / 224), v * (255 / 224)
        rgb = np.stack([y, u, v], axis=-1) @ _YUV_TO_RGB.T
        return np.clip(rgb, 0, 255)
    return frame.reformat(width=cols, height=rows, format="rgb24",
                          interpolation="AREA").to_ndarray().astype(np.float32)


def frame_image(frame, size: int | None, square: bool) -> Image.Image:
    """The decoded frame at the training size, scaled by swscale (much faster than Pillow at 1080p)."""
    if size and min(frame.width, frame.height) > size:
        scale = size / min(frame.width, frame.height)
        width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
        return to_training_size(frame.reformat(width=width, height=height, format="rgb24",
                                               interpolation="AREA").to_image(), None, square)
    return to_training_size(frame.to_image(), None, square)


def _mark_fades(scene: list[SeenFrame]) -> None:
    """Frames in a steady brightening or darkening run are a fade, even where it has barely begun."""
    run: list[SeenFrame] = []
    sign = 0
    for before, s in zip(scene, scene[1:]):
        step = (s.brightness - before.brightness) / max(before.brightness, 1.0)
        now = (step > FADE_STEP) - (step < -FADE_STEP)
        if now and now == sign:
            run.append(s)
        else:
            if len(run) >= FADE_RUN:
                for f in run:
                    f.reason = f.reason or "fade"
            run, sign = ([s] if now else []), now
    if len(run) >= FADE_RUN:
        for f in run:
            f.reason = f.reason or "fade"


def split_into_stretches(scene: list[SeenFrame], parts: int) -> list[list[SeenFrame]]:
    """The scene's usable frames in `parts` equal stretches by time, each thinned to a few candidates."""
    usable = [s for s in scene if not s.reason]
    parts = max(1, min(parts, len(usable)))
    bounds = np.linspace(0, len(usable), parts + 1).round().astype(int)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        stretch = usable[a:b]
        picks = np.linspace(0, len(stretch) - 1, min(CANDIDATES_PER_STRETCH, len(stretch))).round().astype(int)
        out.append([stretch[i] for i in dict.fromkeys(picks.tolist())])
    return out


def to_training_size(image: Image.Image, size: int | None, square: bool) -> Image.Image:
    """Scale the short side down to `size` (never up) and optionally centre-crop to a square."""
    if size and min(image.size) > size:
        scale = size / min(image.size)
        image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                             Image.LANCZOS)
    if square:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image
