"""The Dataset tab: every frame as a thumbnail with its flags, worst first; keep/exclude; tag edits.

The review itself is `data.review.review_dataset` (Pillow + numpy statistics, no torch); decisions
and tag edits go straight to `ReviewState`, which writes its own file in the studio's data folder —
the user's images and caption files are never touched (except by "Tag frames" when the user asks it to
write captions, keeping the old ones; ui/autotag_panel.py). "Import video" (ui/video_import.py) makes new
frame folders. The handlers below take and return plain values so tests call them without a browser;
`build` only wires them to components.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from lora_studio.data import checks
from lora_studio.data.captions import join_tags
from lora_studio.data.review import DatasetReview, FrameReview, review_dataset
from lora_studio.data.review_state import ReviewState
from lora_studio.errors import UserError
from lora_studio.ui import autotag_panel, current_dataset, thumbnails, video_import
from lora_studio.ui.current_dataset import DatasetSession, need_review
from lora_studio.ui.dataset_bulk import batch_edit, batch_scope, bulk_preview, set_kept_shown, undo, undo_text
from lora_studio.ui.monitor import error_text

SORTS = ("worst first", "file name", "most unusual look")
SEVERITY_ICON = {"error": "⛔", "warning": "⚠️", "note": "ℹ️"}


# ---------------------------------------------------------------------------------------------
# Handlers: plain values in, plain values out


def review_folder(session: DatasetSession, folder: str, trigger_word: str = "", resolution: int = 512,
                  caption_extension: str = ".txt", progress: Callable[[float, str], None] | None = None) -> str:
    """Review every file of `folder` into the session and make its thumbnails; returns what to tell the user.

    progress(fraction, what) is called after each file, first while checking, then while making thumbnails.
    """
    # Whatever happens next, the previous folder's review is gone: a failed review must not leave its
    # gallery up for Keep/Exclude to edit.
    session.clear()
    if not (folder or "").strip():
        raise UserError("no dataset folder given", "type the folder that holds your frames and .txt captions")
    report = progress or (lambda fraction, what: None)
    review = review_dataset(folder.strip(), trigger_word=(trigger_word or "").strip(), resolution=int(resolution or 512),
                            caption_extension=caption_extension or ".txt",
                            progress=lambda done, total: report(0.8 * done / total, f"checking frame {done} of {total}"))
    # Decoding dominates and Pillow releases the GIL while decoding (as in data.review): a few threads.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        made = pool.map(thumbnails.thumbnail, [f.path for f in review.frames])
        for done, _ in enumerate(made, 1):
            report(0.8 + 0.2 * done / len(review.frames), f"thumbnail {done} of {len(review.frames)}")
    session.review, session.selected = review, None
    guessed = " (guessed from the captions)" if review.trigger_inferred else ""
    trigger = f"trigger word `{review.trigger_word}`{guessed}" if review.trigger_word else "no trigger word"
    return (f"Checked {len(review.frames)} files in {review.seconds:.1f} s for {int(resolution or 512)} px training "
            f"({review.extractor}); {trigger}. Click a frame to see why it is flagged.")


def shown_frames(review: DatasetReview, show: str = "all", sort: str = SORTS[0]) -> list[FrameReview]:
    """The frames the filter lets through, in the chosen order (the review's own order is worst first)."""
    pick = {"all": lambda f: True, "flagged": lambda f: bool(f.flags), "kept": lambda f: f.kept,
            "excluded": lambda f: f.trainable and not f.kept, "unusable": lambda f: not f.trainable}
    frames = [f for f in review.frames if pick.get(show, lambda f: f.has(show))(f)]
    if sort == "file name":
        return sorted(frames, key=lambda f: f.id)
    if sort == "most unusual look":
        return sorted(frames, key=lambda f: -f.outlier_score)
    return frames


def filter_choices(review: DatasetReview | None, current: str = "all") -> list[tuple[str, str]]:
    """The filter's (label, value) pairs with counts: all, flagged, kept, excluded, then one per check found."""
    if review is None:
        return [("all frames", "all")]
    frames = review.frames
    out = [(f"all frames ({len(frames)})", "all"), (f"flagged ({sum(bool(f.flags) for f in frames)})", "flagged"),
           (f"kept ({review.kept_count})", "kept"),
           (f"excluded ({sum(f.trainable and not f.kept for f in frames)})", "excluded")]
    unusable = sum(not f.trainable for f in frames)
    if unusable or current == "unusable":
        out.append((f"cannot be used ({unusable})", "unusable"))
    for check in checks.CHECKS:
        count = sum(f.has(check) for f in frames)
        if count or check == current:
            out.append((f"{check.replace('_', ' ')} ({count})", check))
    return out


def kept_text(review: DatasetReview | None) -> str:
    """'**kept: 64 of 70**' — how many frames training will use."""
    return f"**{review.summary()}**" if review else "Press **Review** to check every frame of the folder."


def select_frame(session: DatasetSession, index: int | None) -> str | None:
    """The id of the gallery's index-th frame becomes the selected one."""
    if index is not None and 0 <= index < len(session.shown):
        session.selected = session.shown[index]
    return session.selected


def set_kept(session: DatasetSession, frame_id: str | None, kept: bool, reason: str = "",
             folder: str | None = None) -> str:
    """Keep or exclude one frame by hand (saved at once); returns what to tell the user."""
    review, frame = _need_frame(session, frame_id, folder)
    if not frame.trainable:
        raise UserError(f"{frame.id} cannot be used for training anyway", "its flags say why; fix or remove the file")
    state = ReviewState.load(review.folder)
    state.set_kept(frame.id, kept, reason or "")
    review.refresh(state)
    return f"{'Kept' if kept else 'Excluded'} `{frame.id}`." + (f" Reason: {reason.strip()}" if reason and not kept else "")


def save_tags(session: DatasetSession, frame_id: str | None, text: str, folder: str | None = None) -> str:
    """Store the frame's edited tags (the caption file stays as it is)."""
    review, frame = _need_frame(session, frame_id, folder)
    if not frame.trainable:
        raise UserError(f"{frame.id} cannot be used for training", "its tags are not used")
    state = ReviewState.load(review.folder)
    state.set_tags(frame.id, text or "", original_caption=frame.caption if frame.caption_file else None)
    review.refresh(state)
    return f"Saved the tags of `{frame.id}`."


def reset_tags(session: DatasetSession, frame_id: str | None, folder: str | None = None) -> str:
    """Forget the frame's tag edit: its caption file is used again."""
    review, frame = _need_frame(session, frame_id, folder)
    state = ReviewState.load(review.folder)
    state.reset_tags(frame.id)
    review.refresh(state)
    return f"`{frame.id}` uses its caption file again."


def _need_frame(session: DatasetSession, frame_id: str | None,
                folder: str | None = None) -> tuple[DatasetReview, FrameReview]:
    review = need_review(session, folder)
    if not frame_id:
        raise UserError("no frame selected", "click a frame in the gallery first")
    return review, review.frame(frame_id)


# ---------------------------------------------------------------------------------------------
# What is shown


def flag_lines(frame: FrameReview) -> str:
    """The frame's flags as Markdown: what was found, then why it matters."""
    if not frame.flags:
        return "No flags: nothing unusual found in this frame."
    lines = []
    for f in frame.flags:
        other = f" (see `{f.other}`)" if f.other else ""
        lines.append(f"- {SEVERITY_ICON.get(f.severity, '•')} **{f.check.replace('_', ' ')}** — {f.message}{other}  \n"
                     f"  _{checks.CHECKS.get(f.check, '')}_")
    return "\n".join(lines)


def frame_details(frame: FrameReview) -> str:
    """Name, size, decision and flags of one frame, as Markdown."""
    if not frame.trainable:
        decision = "**cannot be used for training**"
    elif frame.kept:
        decision = "**kept** for training"
    else:
        decision = "**excluded**" + (f": {frame.exclusion_reason}" if frame.exclusion_reason else "")
    edited = " · tags edited here (the caption file is unchanged)" if frame.edited else ""
    return f"#### `{frame.id}`\n{frame.width}×{frame.height} px · {decision}{edited}\n\n{flag_lines(frame)}"


def badge_caption(frame: FrameReview) -> str:
    """The gallery caption: file name, then its checks or decision."""
    state = "" if frame.kept else (" · EXCLUDED" if frame.trainable else " · CANNOT USE")
    found = ", ".join(dict.fromkeys(f.check.replace("_", " ") for f in frame.flags))
    return f"{frame.id}{state}" + (f" · {found}" if found else "")


# ---------------------------------------------------------------------------------------------
# Layout and wiring


@dataclass
class DatasetTab:
    """The tab's components."""

    folder: gr.Textbox
    trigger: gr.Textbox
    kept: gr.Markdown
    message: gr.Markdown
    show: gr.Dropdown
    sort: gr.Radio
    gallery: gr.Gallery
    image: gr.Image
    details: gr.Markdown
    pair: gr.Image
    reason: gr.Textbox
    tags: gr.Textbox
    decide: list  # buttons that act on the selected frame
    bulk: gr.Markdown  # what the bulk buttons would change in this view
    scope: gr.Markdown  # which frames a batch tag edit changes
    undo: gr.Button


def gallery_updates(tab: DatasetTab, session: DatasetSession, show: str, sort: str) -> dict:
    """Gallery, filter and counter for the session's review."""
    review = session.review
    frames = shown_frames(review, show, sort) if review else []
    session.shown = [f.id for f in frames]
    index = session.shown.index(session.selected) if session.selected in session.shown else None
    tiles = [(thumbnails.badged(f), badge_caption(f)) for f in frames]
    last = undo_text(session)
    return {tab.gallery: gr.Gallery(value=tiles, selected_index=index),
            tab.show: gr.Dropdown(choices=filter_choices(review, show), value=show),
            tab.kept: kept_text(review), tab.bulk: bulk_preview(session), tab.scope: batch_scope(review),
            tab.undo: gr.Button(f"Undo: {last}" if last else "Undo", interactive=bool(last))}


def frame_updates(tab: DatasetTab, session: DatasetSession) -> dict:
    """The selected frame's preview, flags, tags and buttons (empty when none is selected)."""
    frame = session.review.frame(session.selected) if session.review and session.selected else None
    if frame is None:
        return {tab.image: None, tab.details: "Click a frame to see its flags, keep or exclude it, and edit its tags.",
                tab.pair: gr.Image(value=None, visible=False), tab.reason: "", tab.tags: "",
                **{b: gr.Button(interactive=False) for b in tab.decide}}
    other = next((f for f in frame.flags if f.other), None)
    pair = (gr.Image(value=thumbnails.preview(session.review.folder / other.other), visible=True,
                     label=f"its {other.check.replace('_', ' ')}: {other.other}") if other
            else gr.Image(value=None, visible=False))
    return {tab.image: thumbnails.preview(frame.path), tab.details: frame_details(frame), tab.pair: pair,
            tab.reason: frame.exclusion_reason, tab.tags: join_tags(frame.tags),
            **{b: gr.Button(interactive=frame.trainable) for b in tab.decide}}


def build(page: gr.Tab, dataset_field: gr.Component | None = None, trigger_field: gr.Component | None = None,
          resolution_field: gr.Component | None = None, caption_field: gr.Component | None = None,
          folder: str = "", trigger_word: str = "") -> DatasetTab:
    """Lay out the tab (inside `page`); the Train tab's fields, when given, supply folder, trigger and size."""
    with gr.Row():
        folder_box = gr.Textbox(folder, label="Frame folder", elem_id="dataset-folder", scale=4,
                                info="follows the Train tab's dataset field; your files are never changed")
        trigger = gr.Textbox(trigger_word, label="Trigger word", elem_id="dataset-trigger", scale=2)
        review_button = gr.Button("Review", variant="primary", elem_id="dataset-review-button", scale=1)
    video_panel = video_import.build()
    tag_panel = autotag_panel.build()
    kept = gr.Markdown(kept_text(None), elem_id="dataset-kept")
    message = gr.Markdown("", elem_id="dataset-message")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            with gr.Row():
                show = gr.Dropdown(filter_choices(None), value="all", label="Show", elem_id="dataset-filter", scale=2)
                sort = gr.Radio(list(SORTS), value=SORTS[0], label="Order", elem_id="dataset-sort", scale=3)
            gr.Markdown("Worst first. The badge counts a frame's flags: red = cannot be trained, orange = likely "
                        "hurts the LoRA, blue = worth a look.", elem_classes="ls-legend")
            gallery = gr.Gallery(show_label=False, columns=5, height=620, allow_preview=False, buttons=[],
                                 object_fit="contain", elem_id="dataset-gallery")
            with gr.Row():
                exclude_shown = gr.Button("Exclude all shown", size="sm", elem_id="dataset-exclude-shown")
                keep_shown = gr.Button("Keep all shown", size="sm", elem_id="dataset-keep-shown")
                undo_button = gr.Button("Undo", size="sm", elem_id="dataset-undo", interactive=False)
            keep_by_hand = gr.Checkbox(False, label="also the frames I excluded by hand (their reasons are dropped)",
                                       elem_id="dataset-keep-by-hand")
            bulk = gr.Markdown("", elem_id="dataset-bulk-preview")
        with gr.Column(scale=2, min_width=340):
            image = gr.Image(label="Selected frame", type="pil", interactive=False, height=300,
                             elem_id="dataset-frame-image")
            details = gr.Markdown("", elem_id="dataset-frame-details")
            pair = gr.Image(type="pil", interactive=False, height=180, visible=False, elem_id="dataset-pair-image")
            reason = gr.Textbox(label="Reason to exclude (optional)", elem_id="dataset-reason")
            with gr.Row():
                keep = gr.Button("Keep", elem_id="dataset-keep-button", interactive=False)
                exclude = gr.Button("Exclude", variant="stop", elem_id="dataset-exclude-button", interactive=False)
            tags = gr.Textbox(label="Tags (comma-separated; saved beside the review, not in the caption file)",
                              lines=2, elem_id="dataset-tags")
            with gr.Row():
                save = gr.Button("Save tags", elem_id="dataset-save-tags", interactive=False)
                reset = gr.Button("Use the caption file", elem_id="dataset-reset-tags", interactive=False)
            with gr.Accordion("Batch tag edits (kept frames only)", open=False, elem_id="dataset-batch"):
                scope = gr.Markdown(batch_scope(None), elem_id="dataset-batch-scope")
                with gr.Row():
                    add_trigger = gr.Button("Add trigger word everywhere", size="sm", elem_id="dataset-add-trigger")
                    trigger_first = gr.Button("Move trigger word first", size="sm", elem_id="dataset-trigger-first")
                batch_tag = gr.Textbox(label="Tag", elem_id="dataset-batch-tag")
                new_tag = gr.Textbox(label="Replace with (empty: remove)", elem_id="dataset-batch-new")
                with gr.Row():
                    remove_tag = gr.Button("Remove tag everywhere", size="sm", elem_id="dataset-remove-tag")
                    replace_tag = gr.Button("Replace tag everywhere", size="sm", elem_id="dataset-replace-tag")

    tab = DatasetTab(folder_box, trigger, kept, message, show, sort, gallery, image, details, pair, reason, tags,
                     [keep, exclude, save, reset], bulk=bulk, scope=scope, undo=undo_button)
    session = gr.State(DatasetSession())
    view_outputs = [gallery, show, kept, bulk, scope, undo_button]
    everything = [session, *view_outputs, keep_by_hand, message, image, details, pair, reason, tags, *tab.decide]
    frame_outputs = [image, details, pair, reason, tags, *tab.decide]

    def full(s: DatasetSession, shown: str, order: str, note: str) -> dict:
        # the tick that lets "Keep all shown" overturn decisions made by hand counts for one click only
        return {session: s, message: note, keep_by_hand: False, **gallery_updates(tab, s, shown, order),
                **frame_updates(tab, s)}

    resolution = resolution_field or gr.State(512)
    caption_extension = caption_field or gr.State(".txt")

    def on_review(data: dict, progress=gr.Progress()) -> dict:
        s = data[session]
        try:
            note = review_folder(s, data[folder_box], data[trigger], data[resolution] or 512,
                                 data[caption_extension] or ".txt", lambda fraction, what: progress(fraction, desc=what))
        except UserError as exc:
            return full(s, data[show], data[sort], error_text(exc))  # the session is cleared: an empty gallery
        out = {**full(s, data[show], data[sort], note), trigger: s.review.trigger_word}
        if dataset_field is not None:  # the folder just reviewed is the one the Train tab trains
            out[dataset_field] = current_dataset.reviewed(s, data[folder_box])
        return out

    def acting(action: Callable[[DatasetSession, dict], str]):
        """A handler that applies one change, then redraws everything it may have changed."""
        def handler(data: dict) -> dict:
            s = data[session]
            try:
                note = action(s, data)
            except UserError as exc:
                return {message: error_text(exc)}
            return full(s, data[show], data[sort], note)
        return handler

    def on_select(s: DatasetSession, evt: gr.SelectData):
        select_frame(s, evt.index)
        return {session: s, **frame_updates(tab, s)}

    def on_view(s, shown, order):
        return {session: s, **gallery_updates(tab, s, shown, order)}

    def on_page(s: DatasetSession, train_dataset, train_trigger, shown, order):
        folder_now = current_dataset.follow_train_tab(s, train_dataset)
        if folder_now is None:
            return {session: s}
        note = "" if s.review else f"The Train tab's dataset is `{folder_now}`: press **Review** to check it."
        return {**full(s, shown, order, note), folder_box: folder_now, trigger: train_trigger or ""}

    view = {session, show, sort}
    quiet = {"show_progress": "hidden"}
    review_inputs = {*view, folder_box, trigger, resolution, caption_extension}
    review_outputs = [*everything, trigger] + ([dataset_field] if dataset_field is not None else [])
    for event in (review_button.click, folder_box.submit):
        event(on_review, inputs=review_inputs, outputs=review_outputs, show_progress_on=[kept])
    gallery.select(on_select, inputs=session, outputs=[session, *frame_outputs], **quiet)
    gr.on([show.input, sort.input], on_view, inputs=[session, show, sort], outputs=[session, *view_outputs], **quiet)
    # Every action names the folder in the box: a review of another folder is refused, not edited.
    actions = [
        (keep, set(), lambda s, d: set_kept(s, s.selected, True, folder=d[folder_box])),
        (exclude, {reason}, lambda s, d: set_kept(s, s.selected, False, d[reason], folder=d[folder_box])),
        (exclude_shown, {reason}, lambda s, d: set_kept_shown(s, False, d[reason], folder=d[folder_box])),
        (keep_shown, {keep_by_hand}, lambda s, d: set_kept_shown(s, True, include_by_hand=d[keep_by_hand],
                                                                 folder=d[folder_box])),
        (undo_button, set(), lambda s, d: undo(s, folder=d[folder_box])),
        (save, {tags}, lambda s, d: save_tags(s, s.selected, d[tags], folder=d[folder_box])),
        (reset, set(), lambda s, d: reset_tags(s, s.selected, folder=d[folder_box])),
    ]
    batch = {trigger, batch_tag, new_tag}
    for button, name in ((add_trigger, "add_trigger"), (trigger_first, "move_trigger_first"),
                         (remove_tag, "remove"), (replace_tag, "replace")):
        actions.append((button, batch, lambda s, d, name=name: batch_edit(s, name, d[trigger], d[batch_tag], d[new_tag],
                                                                          folder=d[folder_box])))
    for button, extra, action in actions:
        button.click(acting(action), inputs=view | extra | {folder_box}, outputs=everything, **quiet)
    batch_tag.change(lambda s, t: batch_scope(s.review, t), inputs=[session, batch_tag], outputs=scope, **quiet)
    video_import.wire(video_panel, folder_box)
    autotag_panel.wire(tag_panel, session, folder_box, trigger, lambda s, d, note: full(s, d[show], d[sort], note),
                       {show, sort}, everything)
    if dataset_field is not None:
        page.select(on_page, inputs=[session, dataset_field, trigger_field or gr.State(""), show, sort],
                    outputs=[*everything, folder_box, trigger], **quiet)
    return tab
