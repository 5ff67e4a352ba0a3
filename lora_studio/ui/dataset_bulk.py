"""The Dataset tab's bulk actions: keep/exclude every shown frame, batch tag edits, and Undo.

Each says what it will change before the click (`bulk_preview`, `batch_scope`) and what it changed
after; none overturns a decision made by hand unless the user ticks that it may; the last change
can be undone (`ReviewState.undo`). Plain values in, plain values out, like dataset_tab's handlers.
"""

from __future__ import annotations

from lora_studio.data.captions import core_tags, remove_tag
from lora_studio.data.review_state import ReviewState
from lora_studio.errors import UserError
from lora_studio.ui.current_dataset import DatasetSession, need_review

BATCH_ACTIONS = ("add_trigger", "move_trigger_first", "remove", "replace")


def _frames(n: int) -> str:
    return f"{n} frame{'s' if n != 1 else ''}"


def _stay(n: int) -> str:
    return f"{_frames(n)} you excluded by hand {'stays' if n == 1 else 'stay'} excluded"


def _listed(state: ReviewState, ids: list[str], most: int = 4) -> str:
    """'a.png (warped pose), b.png, and 3 more' — which frames, with their reasons."""
    named = [f"`{fid}`" + (f" ({state.exclusion_reason(fid)})" if state.exclusion_reason(fid) else "")
             for fid in ids[:most]]
    more = f", and {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(named) + more


def _shown_usable(session: DatasetSession, folder: str | None) -> tuple:
    review = need_review(session, folder)
    return review, [fid for fid in session.shown if review.frame(fid).trainable]


def set_kept_shown(session: DatasetSession, kept: bool, reason: str = "", include_by_hand: bool = False,
                   folder: str | None = None) -> str:
    """Keep or exclude every usable frame the gallery shows (e.g. everything flagged 'blur').

    Excluding leaves frames already excluded with their reasons; keeping leaves the frames excluded
    by hand unless `include_by_hand` (the user ticked that it may). Returns what changed.
    """
    review, ids = _shown_usable(session, folder)
    if not ids:
        raise UserError("no usable frames are shown", "pick another filter")
    state = ReviewState.load(review.folder)
    plan = state.set_kept_many(ids, kept, reason or "", include_by_hand=include_by_hand)
    review.refresh(state)
    if kept:
        note = f"Kept {_frames(len(plan.change))}." if plan.change else "Nothing to keep: no frame changed."
        if plan.spared:
            note += (f" {_stay(len(plan.spared))}: {_listed(state, plan.spared)}."
                     " Tick “also the frames I excluded by hand” to keep them too.")
    else:
        note = f"Excluded {_frames(len(plan.change))}." if plan.change else "Nothing to exclude: every shown frame is."
        already = len(ids) - len(plan.change)
        if plan.change and already:
            keep = "keeps its reason" if already == 1 else "keep their reasons"
            note += f" {_frames(already)} already excluded {keep}."
    return note + (" **Undo** takes it back." if plan.change else "")


def bulk_preview(session: DatasetSession) -> str:
    """What "Exclude all shown" and "Keep all shown" would change in the current view, before the click."""
    if session.review is None:
        return ""
    review = session.review
    ids = [fid for fid in session.shown if review.frame(fid).trainable]
    if not ids:
        return "No usable frame is shown: the bulk buttons have nothing to change."
    state = ReviewState.load(review.folder)
    exclude = state.plan_kept_many(ids, False)
    keep = state.plan_kept_many(ids, True)
    spared = f"; {_stay(len(keep.spared))} unless ticked" if keep.spared else ""
    return (f"Of the {_frames(len(ids))} shown, **Exclude all shown** excludes {len(exclude.change)}, "
            f"**Keep all shown** keeps {len(keep.change)}{spared}.")


def batch_scope(review, tag: str = "") -> str:
    """Which frames a batch tag edit changes (the kept ones), the tags on all of them, and how many hold a typed tag."""
    if review is None:
        return "Batch edits change the tags of the kept frames; review a folder first."
    excluded = sum(f.trainable and not f.kept for f in review.frames)
    tail = (f"; the {_frames(excluded)} excluded {'keeps its' if excluded == 1 else 'keep their'} tags"
            if excluded else "")
    text = (f"Changes the tags of the **{review.kept_count} kept frame{'s' if review.kept_count != 1 else ''}**"
            f"{tail}. **Undo** takes an edit back.")
    text += core_tags_advice(review)
    if (tag or "").strip():
        holding = sum(remove_tag(f.tags, tag) != f.tags for f in review.frames if f.kept)
        text += f" '{tag.strip()}' is in {holding} of the kept frames: Remove or Replace changes those {holding}."
    return text


def core_tags_advice(review) -> str:
    """' On every kept frame: …' — the tags a prompt must repeat, since the LoRA files them away from the trigger."""
    common = core_tags([f.tags for f in review.frames if f.kept], review.trigger_word)
    if not common:
        return ""
    trigger = f"'{review.trigger_word}'" if review.trigger_word else "the trigger word"
    listed = ", ".join(f"'{t}'" for t in common)
    return (f" On every kept frame: {listed}. A LoRA learns what these show under the tags, not under {trigger}: "
            f"prompts must name them to get it (her features; leave a background tag out to change it). Removing "
            f"one here makes {trigger} carry what it shows instead.")


def batch_edit(session: DatasetSession, action: str, trigger_word: str = "", tag: str = "", new_tag: str = "",
               folder: str | None = None) -> str:
    """add_trigger / move_trigger_first / remove / replace, on every kept frame's tags; one write, one undo."""
    review = need_review(session, folder)
    frames = [f for f in review.frames if f.kept]
    state = ReviewState.load(review.folder)
    trigger_word, tag, new_tag = (trigger_word or "").strip(), (tag or "").strip(), (new_tag or "").strip()
    if action in ("add_trigger", "move_trigger_first"):
        if not trigger_word:
            raise UserError("no trigger word set", "type the character's trigger word first")
        state.set_trigger_word(trigger_word)
        review.trigger_word, review.trigger_inferred = trigger_word, False
        if action == "add_trigger":
            changed, what = state.add_tag_everywhere(frames, trigger_word, first=True), f"added '{trigger_word}' to"
        else:
            changed, what = state.move_trigger_first(frames, trigger_word), f"put '{trigger_word}' first in"
    elif not tag:
        raise UserError("no tag given", "type the tag to remove or replace")
    elif action == "remove":
        changed, what = state.remove_tag_everywhere(frames, tag), f"removed '{tag}' from"
    elif action == "replace":
        changed = state.replace_tag_everywhere(frames, tag, new_tag)
        what = f"replaced '{tag}' with '{new_tag}' in" if new_tag else f"removed '{tag}' from"
    else:
        raise ValueError(f"unknown batch edit {action!r}")
    review.refresh(state)
    excluded = sum(f.trainable and not f.kept for f in review.frames)
    left = "it is" if excluded == 1 else "they are"
    untouched = f" ({_frames(excluded)} excluded left as {left})" if excluded else ""
    return f"{what[0].upper()}{what[1:]} {changed} kept frame{'s' if changed != 1 else ''}{untouched}."


def undo_text(session: DatasetSession) -> str:
    """What Undo would take back for the session's folder ('' when nothing)."""
    return ReviewState.load(session.review.folder).undo_text if session.review else ""


def undo(session: DatasetSession, folder: str | None = None) -> str:
    """Take back the last change to the folder's decisions or tags (one level)."""
    review = need_review(session, folder)
    state = ReviewState.load(review.folder)
    what = state.undo()
    review.refresh(state)
    return f"Undone: {what}."
