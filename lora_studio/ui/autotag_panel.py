"""The Dataset tab's "Tag frames": a tagger's tags for every kept frame, previewed, then stored.

The work is `data.autotag`; like the review it runs in the Gradio handler with a progress bar (a
small CPU model: the toy judge, or WD14 through onnxruntime). Nothing is written until the user
presses a store button; the caption files only with the second one, the old captions kept as
NAME.txt.bak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from lora_studio.data import autotag
from lora_studio.data.captions import join_tags
from lora_studio.data.review_state import ReviewState
from lora_studio.errors import UserError
from lora_studio.ui.current_dataset import DatasetSession, same_folder
from lora_studio.ui.monitor import error_text

TABLE_HEADERS = ["frame", "tags now", "proposed tags"]


def preview(folder: str, values: dict, progress: Callable[[float, str], None] | None = None) -> list[autotag.FrameTags]:
    """The proposal for every kept frame of the folder, from the panel's values; nothing is written."""
    if not (folder or "").strip():
        raise UserError("no dataset folder given", "type the folder that holds your frames")
    threshold = values.get("general_threshold")
    options = autotag.TagOptions(
        general_threshold=float(threshold) if threshold not in (None, "") else None,
        character_threshold=float(values.get("character_threshold") or autotag.CHARACTER_THRESHOLD),
        replace_underscores=bool(values.get("replace_underscores", True)),
        undesired=autotag.undesired_list(values.get("undesired") or ""),
        trigger_word=(values.get("trigger_word") or "").strip(), keep_existing=bool(values.get("keep_existing")))
    return autotag.tag_frames(folder.strip(), autotag.load_tagger(values.get("tagger") or "toy"), options, progress)


def preview_table(results: list[autotag.FrameTags]) -> list[list[str]]:
    """One row per frame: its id, the tags training uses now, the proposal."""
    return [[r.id, join_tags(r.current), join_tags(r.tags)] for r in results]


def store(session: DatasetSession, folder: str, previewed: tuple[str, list[autotag.FrameTags]] | None,
          captions: bool) -> str:
    """Store the previewed tags (folder, proposals) as tag edits, and with `captions` in the caption files."""
    if not previewed:
        raise UserError("nothing to store yet", "press Preview tags first")
    previewed_folder, results = previewed
    if not same_folder(folder, previewed_folder):
        raise UserError("the preview is of another folder", "press Preview tags again for the folder in the box")
    note = ""
    if captions:
        written = autotag.write_captions(results)
        note = f" Wrote {len(written)} caption files; the old non-empty ones are kept beside them as NAME.txt.bak."
    changed = autotag.store_in_review(folder.strip(), results)
    if session.review is not None and same_folder(folder, session.review.folder):
        if captions:  # the review read the caption files before they were written
            reviewed = {f.id: f for f in session.review.frames}
            for r in results:
                if r.id in reviewed:
                    reviewed[r.id].caption, reviewed[r.id].caption_file = join_tags(r.tags), True
        session.review.refresh(ReviewState.load(folder.strip()))
    what = "caption files" if captions else "tag edits (the caption files are unchanged)"
    return f"Stored the tags of {len(results)} frames as {what}; {changed} changed.{note}"


@dataclass
class AutotagPanel:
    """The accordion's components."""

    tagger: gr.Dropdown
    general_threshold: gr.Number
    character_threshold: gr.Number
    replace_underscores: gr.Checkbox
    keep_existing: gr.Checkbox
    undesired: gr.Textbox
    preview: gr.Button
    table: gr.Dataframe
    store_edits: gr.Button
    store_captions: gr.Button
    message: gr.Markdown
    results: gr.State


def build() -> AutotagPanel:
    """Lay out the accordion (wired later by `wire`)."""
    with gr.Accordion("Tag frames", open=False, elem_id="autotag"):
        with gr.Row():
            tagger = gr.Dropdown([("toy world judge (offline)", "toy"), ("WD14 (anime, ONNX)", "wd14")], value="toy",
                                 label="Tagger", elem_id="autotag-tagger")
            general = gr.Number(None, label="General threshold (empty: the tagger's own, else 0.35)", minimum=0,
                                maximum=1, elem_id="autotag-threshold")
            character = gr.Number(autotag.CHARACTER_THRESHOLD, label="Character threshold", minimum=0, maximum=1,
                                  elem_id="autotag-character-threshold")
        with gr.Row():
            undesired = gr.Textbox(label="Undesired tags (comma-separated, never written)", elem_id="autotag-undesired",
                                   scale=3)
            underscores = gr.Checkbox(True, label="Underscores to spaces", elem_id="autotag-underscores")
            keep_existing = gr.Checkbox(False, label="Keep the current tags, add the new ones after",
                                        elem_id="autotag-keep-existing")
        preview_button = gr.Button("Preview tags", variant="primary", elem_id="autotag-preview")
        table = gr.Dataframe(headers=TABLE_HEADERS, value=None, interactive=False, wrap=True, elem_id="autotag-table")
        with gr.Row():
            store_edits = gr.Button("Store as tag edits", interactive=False, elem_id="autotag-store")
            store_captions = gr.Button("Store and write the caption files (old ones kept as .txt.bak)",
                                       interactive=False, elem_id="autotag-write-captions")
        message = gr.Markdown("", elem_id="autotag-message")
    return AutotagPanel(tagger, general, character, underscores, keep_existing, undesired, preview_button, table,
                        store_edits, store_captions, message, gr.State(None))


def wire(panel: AutotagPanel, session: gr.State, folder_box: gr.Textbox, trigger: gr.Textbox,
         redraw: Callable[[DatasetSession, dict, str], dict], redraw_inputs: set, redraw_outputs: list) -> None:
    """Preview on click; the store buttons then write and redraw the gallery through `redraw(session, data, note)`."""
    values = {panel.tagger, panel.general_threshold, panel.character_threshold, panel.replace_underscores,
              panel.keep_existing, panel.undesired}
    stores = [panel.store_edits, panel.store_captions]

    def on_preview(data: dict, progress=gr.Progress()) -> dict:
        named = {"tagger": data[panel.tagger], "general_threshold": data[panel.general_threshold],
                 "character_threshold": data[panel.character_threshold],
                 "replace_underscores": data[panel.replace_underscores], "keep_existing": data[panel.keep_existing],
                 "undesired": data[panel.undesired], "trigger_word": data[trigger]}
        try:
            results = preview(data[folder_box], named, lambda fraction, what: progress(fraction, desc=what))
        except UserError as exc:
            return {panel.message: error_text(exc), panel.results: None, panel.table: None,
                    **{b: gr.Button(interactive=False) for b in stores}}
        return {panel.results: (data[folder_box], results), panel.table: preview_table(results),
                panel.message: f"Proposed tags for {len(results)} kept frames; nothing is written yet.",
                **{b: gr.Button(interactive=True) for b in stores}}

    def on_store(captions: bool):
        def handler(data: dict) -> dict:
            s = data[session]
            try:
                note = store(s, data[folder_box], data[panel.results], captions)
            except UserError as exc:
                return {panel.message: error_text(exc)}
            return {**redraw(s, data, note), panel.message: note, panel.results: None,
                    **{b: gr.Button(interactive=False) for b in stores}}
        return handler

    panel.preview.click(on_preview, inputs={*values, folder_box, trigger},
                        outputs=[panel.results, panel.table, panel.message, *stores], show_progress_on=[panel.message])
    for button, captions in ((panel.store_edits, False), (panel.store_captions, True)):
        button.click(on_store(captions), inputs={session, folder_box, panel.results, *redraw_inputs},
                     outputs=[*redraw_outputs, panel.message, panel.results, *stores], show_progress="hidden")
