"""The Dataset tab's "Import video": a few sharp, distinct frames per scene into a new folder.

The work is `data.video.import_videos`; it runs in the Gradio handler with a progress bar, as the
review does (CPU decoding, no GPU, nothing for the worker to hold). A folder that already holds
files is only written into after the user confirms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from lora_studio.data.video import VideoImportOptions, VideoImportResult, import_videos, parse_ranges
from lora_studio.errors import UserError
from lora_studio.ui.monitor import error_text


def video_paths(uploaded: list | None, typed: str) -> list[str]:
    """Uploaded files plus paths typed one a line (a local studio reads the user's files in place)."""
    paths = [str(getattr(f, "name", f)) for f in uploaded or []]
    paths += [line.strip().strip('"') for line in (typed or "").splitlines() if line.strip()]
    return paths


def occupied_text(out_dir: str) -> str | None:
    """What to ask before writing into a folder that already holds files; None when it is new or empty."""
    folder = Path((out_dir or "").strip()).expanduser()
    if not (out_dir or "").strip() or not folder.is_dir():
        return None
    count = sum(1 for _ in folder.iterdir())
    if not count:
        return None
    return (f"⚠️ **`{folder}` already holds {count} file{'s' if count != 1 else ''}.** Press **Add to this folder** "
            "to import into it anyway (frames like those already there are skipped, nothing is overwritten), "
            "or choose a new folder.")


def run_import(videos: list[str], out_dir: str, values: dict, into_existing: bool = False,
               progress: Callable[[float, str], None] | None = None) -> VideoImportResult:
    """Import with the panel's values (frames per scene, cap, ranges, size, square)."""
    if not (out_dir or "").strip():
        raise UserError("no folder for the frames", "type a new folder, e.g. ~/frames/tibbie")
    max_frames = int(values.get("max_frames") or 0) or None
    size = int(values.get("size") or 0) or None
    options = VideoImportOptions(frames_per_scene=int(values.get("per_scene") or 3), max_frames=max_frames,
                                 ranges=parse_ranges(values.get("ranges") or ""), size=size,
                                 square=bool(values.get("square")), into_existing=into_existing)
    return import_videos(videos, out_dir.strip(), options, progress)


@dataclass
class VideoImportPanel:
    """The accordion's components."""

    uploads: gr.File
    paths: gr.Textbox
    out: gr.Textbox
    per_scene: gr.Number
    max_frames: gr.Number
    ranges: gr.Textbox
    size: gr.Number
    square: gr.Checkbox
    start: gr.Button
    confirm: gr.Button
    message: gr.Markdown


def build() -> VideoImportPanel:
    """Lay out the accordion (wired later by `wire`)."""
    with gr.Accordion("Import video", open=False, elem_id="video-import"):
        with gr.Row():
            uploads = gr.File(label="Videos", file_count="multiple", file_types=["video"], elem_id="video-uploads")
            paths = gr.Textbox(label="…or video paths on this computer, one a line", lines=3, elem_id="video-paths")
        with gr.Row():
            out = gr.Textbox(label="New folder for the frames", elem_id="video-out", scale=3)
            per_scene = gr.Number(3, label="Frames per scene", precision=0, minimum=1, elem_id="video-per-scene")
            max_frames = gr.Number(None, label="Cap on frames (empty: none)", precision=0, minimum=0,
                                   elem_id="video-max-frames")
        with gr.Row():
            ranges = gr.Textbox(label="Time ranges (empty: all), e.g. 1:20-3:05, 10:00-12:30", elem_id="video-ranges",
                                scale=3)
            size = gr.Number(None, label="Short side px (empty: as the video)", precision=0, minimum=0,
                             elem_id="video-size")
            square = gr.Checkbox(False, label="Centre-crop to a square", elem_id="video-square")
        with gr.Row():
            start = gr.Button("Import frames", variant="primary", elem_id="video-import-button")
            confirm = gr.Button("Add to this folder", variant="stop", visible=False, elem_id="video-confirm")
        message = gr.Markdown("", elem_id="video-message")
    return VideoImportPanel(uploads, paths, out, per_scene, max_frames, ranges, size, square, start, confirm, message)


def wire(panel: VideoImportPanel, folder_box: gr.Textbox) -> None:
    """Import on click (asking first for a folder with files); the frame folder box then names the new folder."""
    values = {panel.per_scene, panel.max_frames, panel.ranges, panel.size, panel.square}
    inputs = {panel.uploads, panel.paths, panel.out, *values}
    outputs = [panel.message, panel.confirm, folder_box]

    def handler(into_existing: bool):
        def run(data: dict, progress=gr.Progress()) -> dict:
            if not into_existing and (ask := occupied_text(data[panel.out])):
                return {panel.message: ask, panel.confirm: gr.Button(visible=True)}
            named = {"per_scene": data[panel.per_scene], "max_frames": data[panel.max_frames],
                     "ranges": data[panel.ranges], "size": data[panel.size], "square": data[panel.square]}
            try:
                result = run_import(video_paths(data[panel.uploads], data[panel.paths]), data[panel.out], named,
                                    into_existing, lambda fraction, what: progress(fraction, desc=what))
            except UserError as exc:
                return {panel.message: error_text(exc), panel.confirm: gr.Button(visible=False)}
            note = result.summary() + (" Press **Review** to check them, then **Tag frames**." if result.written else "")
            return {panel.message: note, panel.confirm: gr.Button(visible=False), folder_box: str(result.out_dir)}
        return run

    panel.start.click(handler(False), inputs=inputs, outputs=outputs, show_progress_on=[panel.message])
    panel.confirm.click(handler(True), inputs=inputs, outputs=outputs, show_progress_on=[panel.message])
    panel.out.change(lambda: gr.Button(visible=False), outputs=panel.confirm, show_progress="hidden")
