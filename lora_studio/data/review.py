"""Dataset review: every file in a frame folder checked and flagged, and the user's decisions kept.

Two parts. `review_dataset` looks at every image file (readable or not) and returns flags with
reasons, worst frames first. `ReviewState` holds what the user decided — kept or excluded, edited
tags, the trigger word — in a small JSON file in the studio's data folder (never in the image
folder), written atomically on every change. Training asks the state, through `training_frames`,
for the kept frames with their edited captions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

from lora_studio import paths
from lora_studio.data import checks, outliers
from lora_studio.data.captions import (add_tag, ensure_trigger_first, join_tags, remove_tag, replace_tag,
                                       split_tags)
from lora_studio.data.frames import (IMAGE_EXTENSIONS, OTHER_IMAGE_EXTENSIONS, Frame, ScanReport, scan_frames,
                                     walk_files)
from lora_studio.errors import UserError

STATE_SCHEMA_VERSION = 1


class _Captioned(Protocol):
    id: str
    caption: str


# ---------------------------------------------------------------------------------------------
# The user's decisions


def state_path(dataset_dir: str | Path) -> Path:
    """Where the review state of a dataset folder lives: projects/reviews/<name>-<hash of its path>.json."""
    folder = Path(dataset_dir).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[:40] or "dataset"
    digest = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:12]
    return paths.projects_dir() / "reviews" / f"{slug}-{digest}.json"


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file beside the target, then rename: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ReviewState:
    """Kept/excluded decisions, edited tags and the trigger word for one dataset folder.

    Frames are keyed by `Frame.id` (the path relative to the folder). A frame without a decision is
    kept. Every change is written to disk at once.
    """

    def __init__(self, dataset_dir: Path, path: Path, data: dict):
        self.dataset_dir = dataset_dir
        self.path = path
        self._data = data

    @classmethod
    def load(cls, dataset_dir: str | Path) -> "ReviewState":
        """The saved state of a dataset folder, or an empty one (nothing written until the first change)."""
        folder = Path(dataset_dir).expanduser().resolve()
        path = state_path(folder)
        data = {"schema_version": STATE_SCHEMA_VERSION, "dataset": str(folder), "trigger_word": "", "frames": {}}
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UserError(f"the review state {path} is damaged ({exc})",
                                "delete it to start the review over; your images are not affected") from None
            if saved.get("schema_version") != STATE_SCHEMA_VERSION:
                raise UserError(f"the review state {path} has schema {saved.get('schema_version')!r}, "
                                f"this version reads {STATE_SCHEMA_VERSION}", "update LoRA Studio or delete the file")
            data.update(saved)
        return cls(folder, path, data)

    def save(self) -> None:
        """Write the state now (every setter already does)."""
        self._data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        _write_json_atomic(self.path, self._data)

    def _entry(self, frame_id: str) -> dict:
        return self._data["frames"].setdefault(frame_id, {})

    def _tidy(self, frame_id: str) -> None:
        if not self._data["frames"].get(frame_id, True):
            del self._data["frames"][frame_id]

    # Kept or excluded

    def is_kept(self, frame_id: str) -> bool:
        """False once the user excluded the frame; frames start kept."""
        return self._data["frames"].get(frame_id, {}).get("kept", True)

    def exclusion_reason(self, frame_id: str) -> str:
        """The reason the user gave for excluding a frame ('' if none or kept)."""
        return self._data["frames"].get(frame_id, {}).get("reason", "")

    def set_kept(self, frame_id: str, kept: bool, reason: str = "") -> None:
        """Keep or exclude one frame, with an optional reason; saved at once."""
        self.set_kept_many([frame_id], kept, reason)

    def set_kept_many(self, frame_ids: Iterable[str], kept: bool, reason: str = "") -> None:
        """Keep or exclude several frames in one write (e.g. every frame flagged 'blur')."""
        for frame_id in frame_ids:
            entry = self._entry(frame_id)
            if kept:
                entry.pop("kept", None)
                entry.pop("reason", None)
            else:
                entry.update(kept=False, reason=reason.strip())
            self._tidy(frame_id)
        self.save()

    def excluded_ids(self) -> set[str]:
        """Frame ids the user excluded (what `scan_frames(exclude=...)` takes)."""
        return {fid for fid, entry in self._data["frames"].items() if entry.get("kept", True) is False}

    def kept_frame_ids(self, frame_ids: Iterable[str]) -> list[str]:
        """The ids among `frame_ids` that are kept, in the given order."""
        excluded = self.excluded_ids()
        return [fid for fid in frame_ids if fid not in excluded]

    # Tags

    def edited_tags(self, frame_id: str) -> list[str] | None:
        """The user's tags for a frame, or None when its caption file is used as is."""
        tags = self._data["frames"].get(frame_id, {}).get("tags")
        return list(tags) if tags is not None else None

    def tags_for(self, frame_id: str, original_caption: str) -> list[str]:
        """The frame's tags as training sees them: edited ones, else the caption file's."""
        edited = self.edited_tags(frame_id)
        return edited if edited is not None else split_tags(original_caption)

    def caption_for(self, frame_id: str, original_caption: str | None = None) -> str | None:
        """The caption training uses: the edited tags joined, else `original_caption`."""
        edited = self.edited_tags(frame_id)
        return join_tags(edited) if edited is not None else original_caption

    def set_tags(self, frame_id: str, tags: list[str] | str, original_caption: str | None = None) -> None:
        """Replace a frame's tags (a list or a caption string); saved at once.

        With `original_caption`, tags equal to the caption file's drop the edit instead of storing a copy.
        """
        self._store_tags(frame_id, tags, original_caption)
        self.save()

    def reset_tags(self, frame_id: str) -> None:
        """Forget the edit: the caption file is used again."""
        self._entry(frame_id).pop("tags", None)
        self._tidy(frame_id)
        self.save()

    def _store_tags(self, frame_id: str, tags: list[str] | str, original_caption: str | None) -> None:
        tags = split_tags(tags) if isinstance(tags, str) else [t.strip() for t in tags if t.strip()]
        entry = self._entry(frame_id)
        if original_caption is not None and tags == split_tags(original_caption):
            entry.pop("tags", None)
        else:
            entry["tags"] = tags
        self._tidy(frame_id)

    # Batch edits: `frames` are anything with .id and .caption (the caption file's text), e.g. Frame.

    def batch_edit(self, frames: Iterable[_Captioned], edit: Callable[[list[str]], list[str]]) -> int:
        """Apply `edit` to every frame's current tags; one write; returns how many frames changed."""
        changed = 0
        for frame in frames:
            before = self.tags_for(frame.id, frame.caption)
            after = edit(before)
            if after != before:
                self._store_tags(frame.id, after, frame.caption)
                changed += 1
        if changed:
            self.save()
        return changed

    def add_tag_everywhere(self, frames: Iterable[_Captioned], tag: str, first: bool = False) -> int:
        """Add a tag to every frame that lacks it (at the front with `first`)."""
        return self.batch_edit(frames, lambda tags: add_tag(tags, tag, first=first))

    def remove_tag_everywhere(self, frames: Iterable[_Captioned], tag: str) -> int:
        """Remove a tag from every frame."""
        return self.batch_edit(frames, lambda tags: remove_tag(tags, tag))

    def replace_tag_everywhere(self, frames: Iterable[_Captioned], old: str, new: str) -> int:
        """Replace a tag in every frame (an empty `new` removes it)."""
        return self.batch_edit(frames, lambda tags: replace_tag(tags, old, new))

    def move_trigger_first(self, frames: Iterable[_Captioned], trigger_word: str = "") -> int:
        """Put the trigger word first in every caption, adding it where missing."""
        trigger_word = trigger_word or self.trigger_word
        if not trigger_word:
            raise UserError("no trigger word set", "type the character's trigger word first")
        return self.batch_edit(frames, lambda tags: ensure_trigger_first(tags, trigger_word))

    # Trigger word

    @property
    def trigger_word(self) -> str:
        """The character's trigger word as the user set it in the review ('' if never set)."""
        return self._data.get("trigger_word", "")

    def set_trigger_word(self, word: str) -> None:
        """Remember the trigger word for this dataset; saved at once."""
        self._data["trigger_word"] = word.strip()
        self.save()

    # What training uses

    def apply(self, frames: Iterable[Frame]) -> list[Frame]:
        """The kept frames, each with its edited caption in place of the caption file's."""
        excluded = self.excluded_ids()
        return [dataclasses.replace(f, caption=self.caption_for(f.id, f.caption))
                for f in frames if f.id not in excluded]


def training_frames(dataset_dir: str | Path, caption_extension: str = ".txt", default_repeats: int = 1) -> ScanReport:
    """What the trainer calls: the scan of a dataset without excluded frames, with edited captions."""
    state = ReviewState.load(dataset_dir)
    report = scan_frames(dataset_dir, caption_extension, default_repeats, exclude=state.excluded_ids())
    return ScanReport(frames=state.apply(report.frames), skipped=report.skipped)


# ---------------------------------------------------------------------------------------------
# Looking at every frame



@dataclass
class FrameReview:
    """One file of the folder as the review shows it: size, tags, flags and the user's decision."""

    id: str
    path: Path
    width: int
    height: int
    trainable: bool  # the scanner can train it (readable, large enough, a supported format)
    kept: bool  # trainable and not excluded by the user
    exclusion_reason: str
    caption: str  # the caption file's text ('' when there is none)
    caption_file: bool  # whether the frame has a caption file at all
    tags: list[str]  # the tags training uses: edited ones, else the caption file's
    edited: bool
    flags: list[checks.Flag] = field(default_factory=list)

    @property
    def badness(self) -> int:
        """Sort key: errors before warnings before notes; more flags worse."""
        return sum(checks.SEVERITY_WEIGHT.get(f.severity, 1) for f in self.flags)

    @property
    def outlier_score(self) -> float:
        """How far the frame's look is from its neighbours (the outlier flag's value; 0 without one)."""
        return max((float(f.value) for f in self.flags if f.check == "outlier"), default=0.0)

    def has(self, check: str) -> bool:
        """Whether one of the frame's flags comes from `check`."""
        return any(f.check == check for f in self.flags)

    def to_dict(self) -> dict:
        """The CLI's JSON object for this frame."""
        return {"file": self.id, "kept": self.kept, "trainable": self.trainable,
                "exclusion_reason": self.exclusion_reason, "width": self.width, "height": self.height,
                "tags": join_tags(self.tags), "edited": self.edited,
                "flags": [f.to_dict() for f in self.flags]}


@dataclass
class DatasetReview:
    """The whole folder reviewed: frames worst first, plus what the review assumed."""

    folder: Path
    frames: list[FrameReview]
    trigger_word: str
    trigger_inferred: bool
    extractor: str
    seconds: float

    @property
    def kept_count(self) -> int:
        """How many frames training will use."""
        return sum(f.kept for f in self.frames)

    def summary(self) -> str:
        """'kept: 64 of 70' (plus unusable files, if any)."""
        unusable = sum(not f.trainable for f in self.frames)
        usable = len(self.frames) - unusable
        tail = f" ({unusable} file{'s' if unusable != 1 else ''} cannot be used)" if unusable else ""
        return f"kept: {self.kept_count} of {usable}{tail}"

    def flagged(self, check: str) -> list[FrameReview]:
        """Frames with a flag from `check`, worst first (for filters and batch exclusion)."""
        return [f for f in self.frames if f.has(check)]

    def frame(self, frame_id: str) -> FrameReview:
        """One frame's review by id."""
        for f in self.frames:
            if f.id == frame_id:
                return f
        raise KeyError(frame_id)

    def refresh(self, state: ReviewState, tokenizer=None) -> None:
        """Bring the review up to date with the saved decisions and tags, redoing only the tag checks."""
        # The caption pass of review_dataset without decoding any image again (a 70-frame folder of
        # 1080p frames takes ~8 s to review on two cores; a tag edit must show at once).
        trainable = [f for f in self.frames if f.trainable]
        originals = {f.id: f.caption if f.caption_file else None for f in trainable}
        tags = _current_tags(state, originals)
        tag_flags = _tag_flags(state, originals, tags, self.trigger_word, tokenizer)
        for f in self.frames:
            f.kept, f.exclusion_reason = f.trainable and state.is_kept(f.id), state.exclusion_reason(f.id)
            if f.trainable:
                f.tags, f.edited = tags[f.id], state.edited_tags(f.id) is not None
                f.flags = [fl for fl in f.flags if fl.check not in checks.CAPTION_CHECKS] + tag_flags[f.id]
        self.frames.sort(key=_worst_first)


def _worst_first(frame: FrameReview) -> tuple:
    """Sort key: most and worst flags first, then the most unusual look, then by name."""
    return -frame.badness, -frame.outlier_score, frame.id


def list_image_files(root: Path) -> list[str]:
    """Every file under root that looks like an image by its name, as relative posix ids (sorted).

    Same walk as frames.scan_frames (hidden files and folders left out), so the ids match.
    """
    wanted = set(IMAGE_EXTENSIONS) | set(OTHER_IMAGE_EXTENSIONS)
    return [(directory / name).relative_to(root).as_posix()
            for directory, names in walk_files(root) for name in names if Path(name).suffix.lower() in wanted]


def infer_trigger_word(tag_lists: Iterable[list[str]]) -> str:
    """The tag that opens at least half of the captions (of three or more), else ''."""
    lists = [tags for tags in tag_lists if tags]
    if len(lists) < 3:
        return ""
    firsts: dict[str, int] = {}
    for tags in lists:
        firsts[tags[0].lower()] = firsts.get(tags[0].lower(), 0) + 1
    tag, count = max(firsts.items(), key=lambda item: item[1])
    if count * 2 < len(lists):
        return ""
    return next(tags[0] for tags in lists if tags[0].lower() == tag)


def _token_counts(captions: dict[str, str], tokenizer) -> dict[str, int]:
    """CLIP token counts, loading the tokenizer only if a caption could be over 75 tokens."""
    from lora_studio.data.captions import count_clip_tokens

    # CLIP's byte-level BPE spends at least one byte per token, so 75 bytes can never exceed 75 tokens.
    long = {fid: c for fid, c in captions.items() if len(c.encode("utf-8")) > 75}
    if not long:
        return {}
    tokenizer = _default_tokenizer() if tokenizer is None else tokenizer
    return {fid: count_clip_tokens(c, tokenizer) for fid, c in long.items()}


@functools.lru_cache(maxsize=1)
def _default_tokenizer():
    """The bundled SD1.5 CLIP tokenizer, loaded once: the Dataset tab recounts tokens after every tag edit."""
    from lora_studio.models.tiny import load_clip_tokenizer  # transformers' tokenizer only: no torch

    return load_clip_tokenizer()


def _current_tags(state: ReviewState, originals: dict[str, str | None]) -> dict[str, list[str]]:
    """Each frame's tags as training sees them; `originals` holds caption file texts (None: no file)."""
    return {fid: state.tags_for(fid, caption or "") for fid, caption in originals.items()}


def _tag_flags(state: ReviewState, originals: dict[str, str | None], tags: dict[str, list[str]],
               trigger_word: str, tokenizer) -> dict[str, list[checks.Flag]]:
    """The checks that read only the tags (checks.CAPTION_CHECKS), for every frame of `originals`."""
    captions = {fid: state.caption_for(fid, caption) for fid, caption in originals.items()}
    tokens = _token_counts({fid: c for fid, c in captions.items() if c}, tokenizer)
    rare = checks.rare_tag_flags(tags, trigger_word)
    return {fid: checks.caption_flags(captions[fid], tags[fid], trigger_word, tokens.get(fid)) + rare.get(fid, [])
            for fid in originals}


def _scan_or_nothing(root: Path, caption_extension: str) -> ScanReport:
    try:
        return scan_frames(root, caption_extension)
    except UserError:
        return ScanReport()  # nothing usable: every file still gets its own reason from the review


def _inspect_files(root: Path, files: list[str], caption_extension: str, extractor,
                   progress: Callable[[int, int], None] | None) -> tuple[dict[str, checks.ImageFacts], ScanReport]:
    """Open and measure every file, and scan the folder as training will, side by side."""
    # Decoding dominates and Pillow releases the GIL while decoding, so files are read in threads; the
    # scanner (which decodes every file too, to find truncated ones) runs beside them.
    workers = min(4, os.cpu_count() or 1) if getattr(extractor, "thread_safe", False) else 1
    facts: dict[str, checks.ImageFacts] = {}
    with ThreadPoolExecutor(max_workers=1) as scanner, ThreadPoolExecutor(max_workers=workers) as pool:
        scanning = scanner.submit(_scan_or_nothing, root, caption_extension)
        inspecting = {pool.submit(checks.inspect_frame, root / fid, extractor): fid for fid in files}
        for done, future in enumerate(as_completed(inspecting), 1):
            facts[inspecting[future]] = future.result()
            if progress:
                progress(done, len(files))
        scan = scanning.result()
    trainable = {f.id for f in scan.frames}
    for fid, f in facts.items():
        if fid not in trainable:
            f.features = None  # outliers are judged among what would be trained
    return facts, scan


def review_dataset(dataset_dir: str | Path, *, trigger_word: str = "", resolution: int = 512,
                   caption_extension: str = ".txt", extractor: outliers.FeatureExtractor | None = None,
                   tokenizer=None, state: ReviewState | None = None,
                   progress: Callable[[int, int], None] | None = None) -> DatasetReview:
    """Check every image file of a folder; progress(done, total) after each file. Never changes the folder."""
    started = time.perf_counter()
    root = Path(dataset_dir).expanduser()
    if not root.is_dir():
        scan_frames(root)  # raises the scanner's UserError (not found / not a folder)
    state = state or ReviewState.load(root)
    files = list_image_files(root)
    if not files:
        raise UserError(f"no images in {root}", "add .png/.jpg/.jpeg/.webp/.bmp frames (with .txt tag captions)")
    extractor = outliers.ImageStatsFeatures() if extractor is None else extractor
    facts, scan = _inspect_files(root, files, caption_extension, extractor, progress)
    frames = {f.id: f for f in scan.frames}
    skipped = dict(scan.skipped)

    flags: dict[str, list[checks.Flag]] = {fid: list(facts[fid].flags) for fid in files}
    for fid in files:
        f = facts[fid]
        if f.readable:
            flags[fid] += checks.size_flags(f.width, f.height, resolution)
        if fid not in frames and not any(fl.severity == "error" for fl in flags[fid]):
            reason = skipped.get(fid, "the scanner left it out")
            flags[fid].append(checks.Flag("skipped", f"not used for training: {reason}", None, "error"))

    originals = {fid: frame.caption if frame.caption_path else None for fid, frame in frames.items()}
    tags = _current_tags(state, originals)
    inferred = False
    trigger_word = trigger_word or state.trigger_word
    if not trigger_word:
        trigger_word, inferred = infer_trigger_word(tags.values()), True
    trainable_facts = {fid: facts[fid] for fid in frames}
    set_flags = [
        _tag_flags(state, originals, tags, trigger_word, tokenizer),
        checks.quality_flags(trainable_facts),
        checks.aspect_flags({fid: (f.width, f.height) for fid, f in frames.items()}, resolution),
        checks.duplicate_flags(trainable_facts),
        outliers.outlier_flags(trainable_facts, getattr(extractor, "blocks", None),
                               getattr(extractor, "block_names", None)),
    ]
    for found in set_flags:
        for fid, extra in found.items():
            flags[fid] += extra

    reviews = []
    for fid in files:
        frame = frames.get(fid)
        f = facts[fid]
        reviews.append(FrameReview(
            id=fid, path=root / fid,
            width=frame.width if frame else f.width, height=frame.height if frame else f.height,
            trainable=frame is not None, kept=frame is not None and state.is_kept(fid),
            exclusion_reason=state.exclusion_reason(fid), caption=frame.caption if frame else "",
            caption_file=frame is not None and frame.caption_path is not None,
            tags=tags.get(fid, []), edited=state.edited_tags(fid) is not None, flags=flags[fid]))
    reviews.sort(key=_worst_first)
    return DatasetReview(folder=root.resolve(), frames=reviews, trigger_word=trigger_word,
                         trigger_inferred=inferred and bool(trigger_word),
                         extractor=getattr(extractor, "name", type(extractor).__name__),
                         seconds=time.perf_counter() - started)
