"""Dataset review: every file in a frame folder checked and flagged, and the user's decisions kept.

`review_dataset` looks at every image file (readable or not) and returns flags with reasons,
worst frames first, each with the user's decision from `ReviewState` (data/review_state.py).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from lora_studio.data import checks, outliers
from lora_studio.data.captions import join_tags
from lora_studio.data.frames import IMAGE_EXTENSIONS, OTHER_IMAGE_EXTENSIONS, ScanReport, scan_frames, walk_files
from lora_studio.data.review_state import ReviewState
from lora_studio.errors import UserError


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
