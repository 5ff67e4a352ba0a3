"""Auto-tagging: a tagger's tags for every frame, previewed, then stored as review edits or captions.

A tagger is anything with `tag_probabilities(images)` (evaluate/scorer.py's `Tagger`): the toy
judge on the toy world (offline, the demo's default), a WD14 ONNX tagger for anime frames
(evaluate/anime.py). The options are the ones kohya_ss users know from its WD14 tab: general and
character thresholds, underscores to spaces, undesired tags, the trigger word first.
Tags go into the review state (data/review_state.py), like a tag edit by hand, and into the caption
files only when asked; the old caption is then kept beside it as NAME.txt.bak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from lora_studio.data.captions import ensure_trigger_first, join_tags, split_tags
from lora_studio.data.frames import open_rgb, scan_frames
from lora_studio.data.review_state import ReviewState
from lora_studio.errors import UserError

TAGGERS = ("toy", "wd14")
GENERAL_THRESHOLD = 0.35  # kohya_ss' and SmilingWolf's default for general tags
CHARACTER_THRESHOLD = 0.85
BATCH = 16
BACKUP_SUFFIX = ".bak"  # NAME.txt → NAME.txt.bak, beside it, so the old caption is one rename away


@dataclass
class TagOptions:
    """How probabilities become a caption."""

    general_threshold: float | None = None  # None: the tagger's own per-tag thresholds where it has them, else 0.35
    character_threshold: float = CHARACTER_THRESHOLD  # for taggers that know which tags are characters
    replace_underscores: bool = True
    undesired: list[str] = field(default_factory=list)
    trigger_word: str = ""
    keep_existing: bool = False  # add the new tags after the frame's current ones instead of replacing them


@dataclass
class FrameTags:
    """One frame's proposed tags (what the preview shows and what gets written)."""

    id: str
    path: Path
    caption_path: Path | None
    current: list[str]  # the tags training uses now (edited ones, else the caption file's)
    original: str  # the caption file's text
    tags: list[str]  # the proposal, trigger word first


def _key(tag: str) -> str:
    # as captions.py compares tags: CLIP lowercases and collapses whitespace
    return " ".join(tag.split()).lower()


def load_tagger(name: str = "toy"):
    """The toy judge (offline) or the WD14 ONNX tagger (downloaded once by evaluate/anime.py)."""
    if name == "toy":
        from lora_studio.toy.judge import load_judge

        return load_judge()
    if name == "wd14":
        try:
            from lora_studio.evaluate.anime import WD14Tagger
        except ImportError:
            raise UserError("the WD14 tagger is not available in this build",
                            "use --tagger toy, or update LoRA Studio") from None
        return WD14Tagger()
    raise UserError(f"unknown tagger {name!r}", f"choose one of: {', '.join(TAGGERS)}")


def undesired_list(text: str | Sequence[str]) -> list[str]:
    """'simple background, tree' or a list → the tags to leave out."""
    return split_tags(text) if isinstance(text, str) else [t for t in text if t.strip()]


def select_tags(probabilities: dict[str, float], options: TagOptions, thresholds: dict[str, float] | None = None,
                categories: dict[str, str] | None = None) -> list[str]:
    """Tags over their threshold, most certain first, undesired ones out, the trigger word first.

    `thresholds` are the tagger's own per tag (the toy judge's); `categories` say which tags are
    characters (WD14: 'general', 'character', 'rating'; rating tags never go in a caption).
    """
    unwanted = {_key(t.replace("_", " ")) for t in options.undesired}
    chosen = []
    for tag, p in sorted(probabilities.items(), key=lambda kv: -kv[1]):
        kind = (categories or {}).get(tag, "general")
        if kind == "rating":
            continue
        if kind == "character":
            limit = options.character_threshold
        elif options.general_threshold is not None:
            limit = options.general_threshold
        else:
            limit = (thresholds or {}).get(tag, GENERAL_THRESHOLD)
        if p < limit:
            continue
        # WD14's names use underscores, except emoticons like ^_^ where they are the tag
        shown = tag.replace("_", " ") if options.replace_underscores and len(tag) > 3 else tag
        if _key(shown.replace("_", " ")) not in unwanted:
            chosen.append(shown)
    return ensure_trigger_first(chosen, options.trigger_word)


def tag_frames(folder: str | Path, tagger, options: TagOptions | None = None,
               progress: Callable[[float, str], None] | None = None,
               caption_extension: str = ".txt") -> list[FrameTags]:
    """The proposal for every kept frame of the folder; nothing is written."""
    options = options or TagOptions()
    state = ReviewState.load(folder)
    frames = scan_frames(folder, caption_extension, exclude=state.excluded_ids()).frames
    if not frames:
        raise UserError(f"no frames to tag in {folder}", "import frames first, or keep some in the review")
    thresholds = getattr(tagger, "tag_thresholds", None)
    categories = getattr(tagger, "tag_categories", None)
    out = []
    for start in range(0, len(frames), BATCH):
        batch = frames[start:start + BATCH]
        probabilities = tagger.tag_probabilities([open_rgb(f.path) for f in batch])
        for frame, probs in zip(batch, probabilities):
            proposal = select_tags(probs, options, thresholds, categories)
            current = state.tags_for(frame.id, frame.caption)
            if options.keep_existing:
                known = {_key(t) for t in current}
                proposal = ensure_trigger_first(current + [t for t in proposal if _key(t) not in known],
                                                options.trigger_word)
            out.append(FrameTags(frame.id, frame.path, frame.caption_path, current, frame.caption, proposal))
        if progress is not None:
            done = min(start + BATCH, len(frames))
            progress(done / len(frames), f"tagged {done} of {len(frames)} frames")
    return out


def preview_lines(results: Sequence[FrameTags]) -> list[str]:
    """'frame_000.png: tibbie, sheep, meadow' per frame (what the CLI prints before writing)."""
    return [f"{r.id}: {join_tags(r.tags)}" for r in results]


def store_in_review(folder: str | Path, results: Sequence[FrameTags]) -> int:
    """The proposals become the frames' tag edits (one change, undone in one step); returns how many changed.

    A proposal equal to the caption file (after write_captions) leaves no edit: the file is the truth again.
    """
    state = ReviewState.load(folder)
    originals = {r.id: (r.caption_path.read_text(encoding="utf-8-sig") if r.caption_path and r.caption_path.is_file()
                        else None) for r in results}
    return state.set_tags_many({r.id: r.tags for r in results}, originals, "auto-tag")


def write_captions(results: Sequence[FrameTags], caption_extension: str = ".txt") -> list[Path]:
    """Write each proposal into the frame's caption file; an old non-empty caption is kept as NAME.txt.bak."""
    written = []
    for r in results:
        caption = r.caption_path or r.path.with_suffix(caption_extension)
        if caption.is_file() and caption.read_bytes().strip():  # bytes: any encoding is backed up as it was
            backup = caption.with_name(caption.name + BACKUP_SUFFIX)
            if not backup.exists():  # the first backup is the user's own caption: a second run must not overwrite it
                backup.write_bytes(caption.read_bytes())
        caption.write_text(join_tags(r.tags) + "\n", encoding="utf-8")
        r.caption_path = caption
        written.append(caption)
    return written
