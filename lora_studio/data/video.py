"""Frames from a video: scene cuts, a few sharp frames per scene, no near duplicates, black or fades.

Two decoding passes with PyAV keep memory flat for a whole episode: the first reads every frame as a
32×18 thumbnail to find cuts, black, fade and transition frames; the second decodes again and
keeps only the few candidates per stretch of a scene, picking the sharpest one that is not a near
duplicate of a frame already kept. Sharpness, brightness and the perceptual hash are the review's
own (`checks.measure` on the same ≤512 px copy), so the review of the folder agrees with the import.
Libraries checked: PySceneDetect finds cuts the same way (mean HSV difference, a black-level
detector for fades), but it needs opencv-python and click; the detector here is a few lines of
numpy on thumbnails the first pass makes anyway.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from lora_studio.data import checks
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

# Why a frame was not kept; the summary counts each.
DROP_REASONS = {
    "black": "black frame",
    "fade": "part of a fade or a blank frame",
    "transition": "a dissolve, wipe or fast pan between shots",
    "short_scene": "a shot too short to be a scene (a flash)",
    "near_duplicate": "near duplicate of a frame already kept",
    "not_sharpest": "a sharper frame of the same stretch was kept",
    "cap": "over the cap on frames",
}


@dataclass
class VideoImportOptions:
    """What to take from each video: frames per scene, time ranges, a cap, the output size."""

    frames_per_scene: int = 3
    max_frames: int | None = None  # over all videos; scenes are thinned evenly to fit
    ranges: list[tuple[float, float]] = field(default_factory=list)  # seconds; empty: the whole video
    size: int | None = None  # short side in px (never upscaled); None keeps the video's size
    square: bool = False  # centre-crop to size×size (or to the short side without size)
    cut_threshold: float = 0.12  # mean colour change (0..1) between two frames that starts a new scene
    into_existing: bool = False  # allow adding to a folder that already holds files


@dataclass
class VideoImportResult:
    """What an import did: scenes found, files written, why the other frames were dropped."""

    out_dir: Path
    videos: int = 0
    frames_seen: int = 0
    scenes: int = 0
    written: list[Path] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        """One paragraph a user reads: scenes, frames kept, why the others were left out."""
        why = ", ".join(f"{n} {DROP_REASONS[r]}" for r, n in self.dropped.most_common() if n)
        return (f"{self.scenes} scene{'s' if self.scenes != 1 else ''} in {self.videos} video"
                f"{'s' if self.videos != 1 else ''} ({self.frames_seen} frames looked at); kept "
                f"{len(self.written)} frame{'s' if len(self.written) != 1 else ''} in {self.out_dir}"
                + (f". Dropped: {why}." if why else ".") + f" Took {self.seconds:.1f} s.")


Progress = Callable[[float, str], None]


def parse_time(text: str) -> float:
    """'83.5', '1:23.5' or '0:01:23' → seconds."""
    parts = text.strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"{text!r} is not a time", "write seconds (83.5) or minutes:seconds (1:23.5)") from None
    if len(values) > 3 or any(v < 0 for v in values):
        raise UserError(f"{text!r} is not a time", "write seconds (83.5) or minutes:seconds (1:23.5)")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def parse_ranges(text: str) -> list[tuple[float, float]]:
    """'0:10-1:20, 2:00-2:30' → [(10, 80), (120, 150)]; empty text: the whole video."""
    out = []
    for part in re.split(r"[,;\s]+", (text or "").strip()):
        if not part:
            continue
        start, sep, end = part.partition("-")
        if not sep:
            raise UserError(f"time range {part!r} has no end", "write START-END, e.g. 0:10-1:20")
        a, b = parse_time(start), parse_time(end)
        if b <= a:
            raise UserError(f"time range {part!r} ends before it starts", "write START-END, e.g. 0:10-1:20")
        out.append((a, b))
    return sorted(out)


def check_out_dir(out_dir: Path, into_existing: bool) -> None:
    """Refuse to write into a folder that already holds files unless the user said so."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder", "choose a folder for the frames")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not into_existing:
        raise UserError(f"{out_dir} already holds files", "choose a new folder, or allow adding to it "
                        "(--into-existing); frames already there are kept and not duplicated")


# ---------------------------------------------------------------------------------------------
# Decoding


def _open(path: Path):
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


def _frames(path: Path, ranges: list[tuple[float, float]]):
    """(key, time, av.VideoFrame) for every decoded frame inside the ranges; damaged data is a UserError."""
    import av

    container = _open(path)
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


def _estimate_frames(path: Path, ranges: list[tuple[float, float]]) -> int:
    """How many frames the ranges hold (for progress); a guess from duration × frame rate."""
    container = _open(path)
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
# Pass 1: scenes and frames not worth a look


@dataclass
class _Seen:
    key: int
    time: float
    brightness: float
    contrast: float
    reason: str = ""  # why it is no candidate ('' = usable)


def _scan(path: Path, options: VideoImportOptions,
          tick: Callable[[], None]) -> tuple[list[list[_Seen]], Counter, int]:
    """Every frame's thumbnail statistics, split into scenes at cuts and black stretches.

    Returns the scenes with a usable frame, the dropped frames per reason, and how many frames were seen.
    """
    scenes: list[list[_Seen]] = [[]]
    dropped: Counter = Counter()
    seen_count = 0
    recent: deque = deque()  # (time, thumbnail, brightness) of the last TRANSITION_WINDOW_S
    changes: deque = deque(maxlen=24)  # the current shot's recent frame-to-frame changes
    gradual = False  # inside a dissolve or fade found over the window
    previous = None
    for key, t, frame in _frames(path, options.ranges):
        tick()
        seen_count += 1
        thumb = _thumbnail(frame)
        luma = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        seen = _Seen(key, t, float(luma.mean()), float(luma.std()))
        black = seen.brightness < BLACK_BRIGHTNESS and seen.contrast < BLACK_CONTRAST
        change = float(np.abs(thumb - previous).mean()) / 255 if previous is not None else 0.0
        while recent and t - recent[0][0] > TRANSITION_WINDOW_S:
            recent.popleft()
        if black:
            dropped["black"] += 1
            if scenes[-1]:
                scenes.append([])  # black separates scenes: a fade out and in is a cut
            gradual = False
        elif change > options.cut_threshold or (
                change > ADAPTIVE_MIN_CHANGE and len(changes) >= 3
                and change > ADAPTIVE_RATIO * (float(np.mean(changes)) + 0.002)):
            # a jump far above the shot's usual frame-to-frame change is a cut between similar-looking shots
            if scenes[-1]:
                scenes.append([])
            recent.clear()
            changes.clear()
            gradual = False
        elif recent and (spread := float(np.abs(thumb - recent[0][1]).mean()) / 255) > options.cut_threshold:
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


def _thumbnail(frame) -> np.ndarray:
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


def _frame_image(frame, size: int | None, square: bool) -> Image.Image:
    """The decoded frame at the training size, scaled by swscale (much faster than Pillow at 1080p)."""
    if size and min(frame.width, frame.height) > size:
        scale = size / min(frame.width, frame.height)
        width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
        return to_training_size(frame.reformat(width=width, height=height, format="rgb24",
                                               interpolation="AREA").to_image(), None, square)
    return to_training_size(frame.to_image(), None, square)


def _mark_fades(scene: list[_Seen]) -> None:
    """Frames in a steady brightening or darkening run are a fade, even where it has barely begun."""
    run: list[_Seen] = []
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


def _stretches(scene: list[_Seen], parts: int) -> list[list[_Seen]]:
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


# ---------------------------------------------------------------------------------------------
# Pass 2: the candidates in full


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


def measure_frame(image: Image.Image) -> checks.ImageFacts:
    """The review's measurements (sharpness, brightness, perceptual hash) on its ≤512 px analysis copy."""
    rgb = image
    if max(rgb.size) > checks.ANALYSIS_SIDE:
        scale = checks.ANALYSIS_SIDE / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BOX)
    return checks.measure(checks.ImageFacts(True, image.width, image.height), rgb)


def is_near_duplicate(facts: checks.ImageFacts, kept: list[checks.ImageFacts]) -> bool:
    """The review's near-duplicate rule (checks.duplicate_flags): hash distance and brightness close."""
    return any((facts.phash ^ k.phash).bit_count() <= checks.NEAR_DUPLICATE_BITS
               and abs(facts.brightness - k.brightness) <= checks.NEAR_DUPLICATE_BRIGHTNESS for k in kept)


def _existing_facts(out_dir: Path) -> list[checks.ImageFacts]:
    """Measurements of the images already in the folder, so a second import does not repeat them."""
    from lora_studio.data.frames import IMAGE_EXTENSIONS

    found = []
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            facts = checks.inspect_frame(path)
            if facts.phash is not None:
                found.append(facts)
    return found


class _Eta:
    """progress(fraction, 'what · about 12 s left') from the work done so far."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, max(1, total), 0
        self.start = time.monotonic()
        self.last = 0.0

    def tick(self, what: str) -> None:
        self.done += 1
        now = time.monotonic()
        if self.progress is None or (now - self.last < 0.2 and self.done < self.total):
            return
        self.last = now
        fraction = min(1.0, self.done / self.total)
        left = (now - self.start) * (1 - fraction) / fraction if fraction > 0 else 0.0
        self.progress(fraction, f"{what} · about {left:.0f} s left" if fraction < 1 else what)


def import_videos(videos: list[str | Path], out_dir: str | Path, options: VideoImportOptions | None = None,
                  progress: Progress | None = None) -> VideoImportResult:
    """Scenes → a few sharp, distinct frames each → PNGs with empty captions in `out_dir`."""
    options = options or VideoImportOptions()
    if options.frames_per_scene < 1:
        raise UserError("frames per scene must be at least 1", "take 1–5 frames per scene")
    paths = [Path(v).expanduser() for v in videos]
    if not paths:
        raise UserError("no video given", "pass one or more video files")
    out = Path(out_dir).expanduser()
    check_out_dir(out, options.into_existing)
    started = time.monotonic()
    result = VideoImportResult(out, videos=len(paths))
    # Both passes decode every frame, so the ETA counts each frame twice.
    eta = _Eta(progress, 2 * sum(_estimate_frames(p, options.ranges) for p in paths))

    plans = []
    for n, path in enumerate(paths, 1):
        scenes, dropped, seen = _scan(path, options, lambda: eta.tick(f"finding scenes in {path.name} ({n}/{len(paths)})"))
        result.frames_seen += seen
        result.dropped.update(dropped)
        plans.append((path, scenes))
    result.scenes = sum(len(scenes) for _, scenes in plans)
    per_scene, keep_scene = _fit_cap(result.scenes, options)

    kept = _existing_facts(out) if options.into_existing else []
    out.mkdir(parents=True, exist_ok=True)
    scene_number = 0
    for n, (path, scenes) in enumerate(plans, 1):
        stretches, owner = [], {}
        for scene in scenes:
            scene_number += 1
            if not keep_scene(scene_number):
                result.dropped["cap"] += sum(1 for s in scene if not s.reason)
                continue
            scene_stretches = _stretches(scene, per_scene)
            # usable frames that are no candidate: the stretch's sharpest is looked for among a few
            result.dropped["not_sharpest"] += (sum(1 for s in scene if not s.reason)
                                               - sum(len(x) for x in scene_stretches))
            for stretch in scene_stretches:
                stretches.append(stretch)
                for s in stretch:
                    owner[s.key] = (len(stretches) - 1, scene_number)
        decoded: dict[int, list] = {}
        for key, t, frame in _frames(path, options.ranges):
            eta.tick(f"picking frames in {path.name} ({n}/{len(paths)})")
            if key not in owner:
                continue
            index, scene = owner[key]
            image = _frame_image(frame, options.size, options.square)
            decoded.setdefault(index, []).append((measure_frame(image), image, t, scene))
            if len(decoded[index]) == len(stretches[index]):
                _keep_sharpest(decoded.pop(index), path, kept, result)
        for candidates in decoded.values():  # a stretch the decoder ended early
            _keep_sharpest(candidates, path, kept, result)
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress(1.0, result.summary())
    return result


def _fit_cap(scenes: int, options: VideoImportOptions) -> tuple[int, Callable[[int], bool]]:
    """Frames per scene and which scenes (numbered from 1) to use so the total stays under the cap."""
    per_scene = options.frames_per_scene
    if not options.max_frames or scenes * per_scene <= options.max_frames:
        return per_scene, lambda n: True
    per_scene = max(1, options.max_frames // max(1, scenes))
    if scenes <= options.max_frames:
        return per_scene, lambda n: True
    chosen = set(np.linspace(1, scenes, options.max_frames).round().astype(int).tolist())  # evenly over the video
    return 1, lambda n: n in chosen


def _keep_sharpest(candidates: list, path: Path, kept: list[checks.ImageFacts], result: VideoImportResult) -> None:
    """Write the sharpest candidate of a stretch unless it is a near duplicate of a kept frame; count the rest.

    A stretch whose best frame is already kept is a repeat (the same shot again, or a static one): its
    other frames are not tried, so importing a video twice into one folder adds nothing.
    """
    candidates.sort(key=lambda c: -(c[0].sharpness or 0.0))
    for facts, image, t, scene in candidates[:1]:
        if is_near_duplicate(facts, kept):
            result.dropped["near_duplicate"] += len(candidates)
            return
        kept.append(facts)
        name = f"{path.stem}_scene{scene:03d}_{t:08.2f}s"
        target = result.out_dir / f"{name}.png"
        suffix = 1
        while target.exists():  # --into-existing: never overwrite a frame already there
            suffix += 1
            target = result.out_dir / f"{name}-{suffix}.png"
        image.save(target)
        target.with_suffix(".txt").write_text("", encoding="utf-8")  # empty caption: tag it next
        result.written.append(target)
        result.dropped["not_sharpest"] += len(candidates) - 1
