"""What the user decided about a dataset: kept or excluded frames, edited tags, the trigger word.

Kept in a small JSON file in the studio's data folder (never in the image folder), written
atomically on every change. Training asks for the kept frames with their edited captions through
`training_frames`; data/review.py is the part that looks at the frames and flags them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Protocol

from lora_studio import paths
from lora_studio.data.captions import (add_tag, ensure_trigger_first, join_tags, remove_tag, replace_tag,
                                       split_tags)
from lora_studio.data.frames import Frame, ScanReport, scan_frames
from lora_studio.errors import UserError

STATE_SCHEMA_VERSION = 1


class _Captioned(Protocol):
    id: str
    caption: str


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


@dataclasses.dataclass
class BulkPlan:
    """What a bulk keep/exclude changes: the frames it flips, and those it leaves (excluded by hand)."""

    kept: bool
    change: list[str]
    spared: list[str]  # excluded by hand: "Keep all shown" leaves them unless the user says so

    def count_text(self) -> str:
        """'12 frames' / '1 frame'."""
        return f"{len(self.change)} frame{'s' if len(self.change) != 1 else ''}"


class ReviewState:
    """Kept/excluded decisions, edited tags and the trigger word for one dataset folder.

    Frames are keyed by `Frame.id` (the path relative to the folder). A frame without a decision is
    kept. Every change is written to disk at once, and the last one can be undone.
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

    def excluded_by_hand(self, frame_id: str) -> bool:
        """Whether the user excluded this frame on its own (not with a bulk action); older states count as by hand."""
        entry = self._data["frames"].get(frame_id, {})
        return entry.get("kept", True) is False and entry.get("by", "hand") == "hand"

    def set_kept(self, frame_id: str, kept: bool, reason: str = "") -> None:
        """Keep or exclude one frame by hand, with an optional reason; saved at once (and can be undone)."""
        self._remember(f"{'keep' if kept else 'exclude'} {frame_id}")
        entry = self._entry(frame_id)
        if kept:
            for key in ("kept", "reason", "by"):
                entry.pop(key, None)
        else:
            entry.update(kept=False, reason=reason.strip(), by="hand")
        self._tidy(frame_id)
        self.save()

    def plan_kept_many(self, frame_ids: Iterable[str], kept: bool, include_by_hand: bool = False) -> BulkPlan:
        """What set_kept_many would change, without changing anything (for saying so before the click).

        Excluding leaves frames already excluded as they are (their reasons stay); keeping leaves the
        frames the user excluded by hand excluded unless `include_by_hand`.
        """
        change, spared = [], []
        for frame_id in dict.fromkeys(frame_ids):
            if kept == self.is_kept(frame_id):
                continue
            if kept and self.excluded_by_hand(frame_id) and not include_by_hand:
                spared.append(frame_id)
            else:
                change.append(frame_id)
        return BulkPlan(kept, change, spared)

    def set_kept_many(self, frame_ids: Iterable[str], kept: bool, reason: str = "",
                      include_by_hand: bool = False, by: str = "bulk") -> BulkPlan:
        """Keep or exclude several frames in one write (e.g. every frame flagged 'blur'); undone in one step.

        Follows plan_kept_many: no decision made by hand is overturned unless `include_by_hand`.
        `by="hand"` marks exclusions the user named one by one (the CLI's --exclude). Returns the plan.
        """
        frame_ids = list(dict.fromkeys(frame_ids))
        plan = self.plan_kept_many(frame_ids, kept, include_by_hand)
        if by == "hand" and not kept:  # frames named one by one: the reason given now replaces an older one
            plan.change = [fid for fid in frame_ids if self.is_kept(fid) or self.exclusion_reason(fid) != reason.strip()
                           or not self.excluded_by_hand(fid)]
        if not plan.change:
            return plan
        self._remember(f"{'keep' if kept else 'exclude'} {plan.count_text()}")
        for frame_id in plan.change:
            entry = self._entry(frame_id)
            if kept:
                for key in ("kept", "reason", "by"):
                    entry.pop(key, None)
            else:
                entry.update(kept=False, reason=reason.strip(), by=by)
            self._tidy(frame_id)
        self.save()
        return plan

    # One level of undo: the frames' decisions and tags as they were before the last change.

    def _remember(self, what: str) -> None:
        self._data["undo"] = {"what": what, "frames": copy.deepcopy(self._data["frames"])}

    @property
    def undo_text(self) -> str:
        """What Undo would take back ('exclude 12 frames'), or '' when there is nothing to undo."""
        return self._data.get("undo", {}).get("what", "")

    def undo(self) -> str:
        """Put the decisions and tags back as they were before the last change; returns what was undone."""
        last = self._data.pop("undo", None)
        if not last:
            raise UserError("nothing to undo", "undo takes back the last change, once")
        self._data["frames"] = last["frames"]
        self.save()
        return last["what"]

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
        self._remember(f"edit the tags of {frame_id}")
        self._store_tags(frame_id, tags, original_caption)
        self.save()

    def set_tags_many(self, tags_by_id: dict[str, list[str]], originals: dict[str, str | None],
                      what: str = "set the tags") -> int:
        """Replace several frames' tags in one write, undone in one step (an auto-tagger's proposals)."""
        before = copy.deepcopy(self._data["frames"])
        for frame_id, tags in tags_by_id.items():
            self._store_tags(frame_id, tags, originals.get(frame_id))
        changed = sum(before.get(fid, {}).get("tags") != self._data["frames"].get(fid, {}).get("tags")
                      for fid in tags_by_id)
        if changed:
            self._data["undo"] = {"what": f"{what} ({changed} frame{'s' if changed != 1 else ''})", "frames": before}
            self.save()
        return changed

    def reset_tags(self, frame_id: str) -> None:
        """Forget the edit: the caption file is used again."""
        self._remember(f"use the caption file of {frame_id}")
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

    def batch_edit(self, frames: Iterable[_Captioned], edit: Callable[[list[str]], list[str]],
                   what: str = "a batch tag edit") -> int:
        """Apply `edit` to every frame's current tags; one write, undone in one step; returns how many changed."""
        changed = 0
        undo_to = copy.deepcopy(self._data["frames"])
        for frame in frames:
            before = self.tags_for(frame.id, frame.caption)
            after = edit(before)
            if after != before:
                self._store_tags(frame.id, after, frame.caption)
                changed += 1
        if changed:
            self._data["undo"] = {"what": f"{what} ({changed} frame{'s' if changed != 1 else ''})", "frames": undo_to}
            self.save()
        return changed

    def add_tag_everywhere(self, frames: Iterable[_Captioned], tag: str, first: bool = False) -> int:
        """Add a tag to every frame that lacks it (at the front with `first`)."""
        return self.batch_edit(frames, lambda tags: add_tag(tags, tag, first=first), f"add '{tag}'")

    def remove_tag_everywhere(self, frames: Iterable[_Captioned], tag: str) -> int:
        """Remove a tag from every frame."""
        return self.batch_edit(frames, lambda tags: remove_tag(tags, tag), f"remove '{tag}'")

    def replace_tag_everywhere(self, frames: Iterable[_Captioned], old: str, new: str) -> int:
        """Replace a tag in every frame (an empty `new` removes it)."""
        return self.batch_edit(frames, lambda tags: replace_tag(tags, old, new), f"replace '{old}' with '{new}'"
                               if new else f"remove '{old}'")

    def move_trigger_first(self, frames: Iterable[_Captioned], trigger_word: str = "") -> int:
        """Put the trigger word first in every caption, adding it where missing."""
        trigger_word = trigger_word or self.trigger_word
        if not trigger_word:
            raise UserError("no trigger word set", "type the character's trigger word first")
        return self.batch_edit(frames, lambda tags: ensure_trigger_first(tags, trigger_word),
                               f"put '{trigger_word}' first")

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
