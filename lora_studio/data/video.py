"""Frames from a video: scene cuts, a few sharp frames per scene, no near duplicates, black or fades.

Two decoding passes with PyAV keep memory flat for a whole episode: the first (data/video_scenes.py)
reads every frame as a 32×18 thumbnail to find cuts, black, fade and transition frames; the second decodes again and
keeps only the few candidates per stretch of a scene, picking the sharpest one that is not a near
duplicate of a frame already kept. Sharpness, brightness and the perceptual hash are the review's
own (`checks.measure` on the same ≤512 px copy), so the review of the folder agrees with the import.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from lora_studio.data import checks
from lora_studio.data.video_scenes import (decoded_frames, estimate_frames, find_scenes, frame_image,
                                           split_into_stretches)
from lora_studio.errors import UserError

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
# The second pass: the candidates in full


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
    eta = _Eta(progress, 2 * sum(estimate_frames(p, options.ranges) for p in paths))

    plans = []
    for n, path in enumerate(paths, 1):
        scenes, dropped, seen = find_scenes(path, options.ranges, options.cut_threshold, lambda: eta.tick(f"finding scenes in {path.name} ({n}/{len(paths)})"))
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
            scene_stretches = split_into_stretches(scene, per_scene)
            # usable frames that are no candidate: the stretch's sharpest is looked for among a few
            result.dropped["not_sharpest"] += (sum(1 for s in scene if not s.reason)
                                               - sum(len(x) for x in scene_stretches))
            for stretch in scene_stretches:
                stretches.append(stretch)
                for s in stretch:
                    owner[s.key] = (len(stretches) - 1, scene_number)
        decoded: dict[int, list] = {}
        for key, t, frame in decoded_frames(path, options.ranges):
            eta.tick(f"picking frames in {path.name} ({n}/{len(paths)})")
            if key not in owner:
                continue
            index, scene = owner[key]
            image = frame_image(frame, options.size, options.square)
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
