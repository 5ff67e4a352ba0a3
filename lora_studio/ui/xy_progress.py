"""Following an XY plot in the XY tab: its events folded into progress, the growing preview, the status.

The tab (ui/xy_tab.py) polls `update(watch)` on a timer; everything here reads files the worker writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from lora_studio import jobs, runfiles
from lora_studio.errors import UserError
from lora_studio.ui.monitor import STATE_WORDS, error_text
from lora_studio.ui.xy_scores import ScoreView, scored_grid, scores_image, scores_text

PREVIEW_CELL = 128  # side of a cell in the growing preview, px (the grid file keeps full-size cells)


@dataclass
class PlotProgress:
    """What the tab shows of one xy job, folded from its events."""

    state: str = "queued"
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    grids: list = field(default_factory=list)
    cell_size: tuple = (0, 0)
    total: int = 0
    cells: dict = field(default_factory=dict)  # (x, y, z) → cell PNG
    rendered: int = 0
    reused: int = 0
    grid: str = ""
    share: str = ""
    lora_loads: int | None = None
    error: dict | None = None
    scores: ScoreView = field(default_factory=ScoreView)

    def feed(self, event: dict) -> None:
        """Fold one event into the view."""
        kind = event.get("type")
        if kind in (runfiles.QUEUED, runfiles.RUNNING):
            self.state, self.error = kind, None
        elif kind == runfiles.XY_LABELS:
            self.columns, self.rows, self.grids = event["columns"], event["rows"], event["grids"]
            self.cell_size = (event["width"], event["height"])
        elif kind == runfiles.XY_PLAN:
            self.total = event["cells"]
        elif kind == runfiles.CELL:
            self.cells[(event["x"], event["y"], event.get("z", 0))] = event["path"]
            self.rendered += bool(event["rendered"])
            self.reused += not event["rendered"]
        elif kind == runfiles.XY_DONE:
            self.grid = event["grid"]
        elif kind == runfiles.SHARE:
            self.share = event["path"]
        elif kind in (runfiles.SCORE, runfiles.RECOMMENDATION):
            self.scores.feed(event)
        elif kind in runfiles.TERMINAL:
            self.state = kind
            self.lora_loads = event.get("lora_loads", self.lora_loads)
            if kind == runfiles.ERROR:
                self.error = {"message": event.get("message", ""), "hint": event.get("hint", "")}


@dataclass
class PlotWatch:
    """One browser session's view of one xy job (kept in gr.State)."""

    job: str | None = None
    offset: int = 0
    progress: PlotProgress = field(default_factory=PlotProgress)
    thumbs: dict = field(default_factory=dict)  # (x, y, z) → preview-sized cell
    shown: tuple = ()
    known_jobs: int = -1

    def follow(self, job_dir: str | None) -> "PlotWatch":
        """Start following another plot from its first event."""
        self.job, self.offset, self.progress, self.thumbs, self.shown = job_dir, 0, PlotProgress(), {}, ()
        return self


def xy_jobs() -> list[Path]:
    """Every XY plot job, newest first."""
    return [p for p in jobs.list_jobs() if (p / runfiles.JOB_FILE).is_file() and _is_xy(p)]


def _is_xy(job_dir: Path) -> bool:
    from lora_studio.config import load_toml

    try:
        return load_toml(job_dir / runfiles.JOB_FILE).get("kind") == "xy"
    except UserError:
        return False


def plot_choices() -> list[tuple[str, str]]:
    """The plot dropdown's (label, folder) pairs."""
    alive = jobs.worker_running()
    return [(f"{p.name} · {jobs.job_state(p, alive)}", str(p)) for p in xy_jobs()[:50]]


def _thumb(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").resize((PREVIEW_CELL, PREVIEW_CELL * image.height // max(1, image.width)),
                                           Image.Resampling.LANCZOS)


def preview(progress: PlotProgress, thumbs: dict):
    """The grid as far as it is rendered: finished cells in place, grey where still to come."""
    from lora_studio.generate.grid import blank_cell, draw_grid, draw_sheet

    width, height = progress.cell_size
    cell = (PREVIEW_CELL, PREVIEW_CELL * height // max(1, width))
    blank = blank_cell(*cell)
    sheets = []
    for z in range(max(1, len(progress.grids))):
        rows = [[thumbs.get((x, y, z), blank) for x in range(len(progress.columns))] for y in range(len(progress.rows))]
        sheets.append(draw_grid(rows, progress.columns, progress.rows)[0])
    return sheets[0] if len(sheets) == 1 else draw_sheet(sheets, progress.grids)


def status_html(p: PlotProgress, state: str) -> str:
    """State, cells done of all, rendered vs reused, and a progress bar that moves with every cell."""
    word = {"running": "Rendering"}.get(state, STATE_WORDS.get(state, state))
    parts = [f"<b data-state='{state}'>{word}</b> XY plot"]
    done = len(p.cells)
    if p.total:
        parts.append(f"cells {done} / {p.total}")
        parts.append(f"{p.rendered} rendered · {p.reused} reused (cached, or the shared weight-0 row)")
    elif state == "running":
        parts.append("<i>loading the model</i>")
    elif state == "queued":
        parts.append("<i>waiting for the worker</i>")
    bar = f"<progress value='{done}' max='{max(1, p.total)}'></progress>" if p.total else ""
    return f"<div class='ls-status'>{' · '.join(parts)}{bar}</div>"


def message_text(p: PlotProgress, state: str) -> str:
    """Where the grid is and what it cost, or the error and what to do."""
    if p.error:
        return error_text(UserError(p.error["message"], p.error["hint"]))
    if state == "interrupted":
        return ("⚠️ **The worker stopped while this plot was rendering.** — press Generate again; the cells "
                "already rendered come from the cache.")
    if state in ("done", "stopped") and p.grid:
        loads = f" · {p.lora_loads} LoRA file loads" if p.lora_loads is not None else ""
        early = "Stopped early: the grid holds the cells rendered so far. " if state == "stopped" else ""
        grid = Path(p.grid)
        return (f"{early}**Grid:** `{grid.name}` — {p.rendered} cells rendered, {p.reused} reused{loads}. "
                f"Every cell is also its own PNG in `{grid.stem}/`, beside the grid in `{grid.parent}`.")
    return ""


def update(watch: PlotWatch) -> dict:
    """Read what is new for the followed plot; return only the named parts that changed."""
    out: dict = {}
    count = len(jobs.list_jobs())
    if count != watch.known_jobs:
        watch.known_jobs = count
        out["choices"] = plot_choices()
    if not watch.shown:
        out["job"] = watch.job  # a plot was just picked or queued: the dropdown names it
    if not watch.job:
        watch.shown = (0, "")
        return out
    job_dir = Path(watch.job)
    p = watch.progress
    events, watch.offset = runfiles.read_events(job_dir, watch.offset)
    for event in events:
        p.feed(event)
        if event.get("type") == runfiles.CELL and Path(event["path"]).is_file():
            watch.thumbs[(event["x"], event["y"], event.get("z", 0))] = _thumb(event["path"])
    state = jobs.job_state(job_dir)
    if state == "queued" and not jobs.worker_running():
        jobs.ensure_worker()  # a worker that exited idle just before this plot was queued
    shown = (watch.offset, state)
    if shown == watch.shown:
        return out
    if watch.shown and watch.shown[1] != state and "choices" not in out:
        out["choices"] = plot_choices()  # the dropdown's labels carry each plot's state
    new_events = not watch.shown or watch.shown[0] != watch.offset
    watch.shown = shown
    finished = state in ("done", "stopped")
    out.update(status=status_html(p, state), message=message_text(p, state),
               stop=gr.update(interactive=state in ("queued", "running")))
    if new_events:
        # A grid of small cells (the toy model's 64 px) would show as a stamp: its preview is drawn larger.
        if finished and p.grid and Path(p.grid).is_file() and p.cell_size[0] >= PREVIEW_CELL:
            out["image"] = p.grid
        else:
            out["image"] = preview(p, watch.thumbs) if p.columns else None
        out["scores_text"] = scores_text(p.scores, p.total)
        out["scores_image"] = gr.update(value=scores_image(p.scores, p.grid if finished else ""),
                                        visible=bool(finished and p.scores.recommendation))
        out["grid_file"] = _download(p.grid if finished else "")
        out["share_file"] = _download(p.share if finished else "")
        out["scored_file"] = _download((scored_grid(p.scores, p.grid) if finished else "") or "")
    return out


def _download(path: str):
    ok = bool(path) and Path(path).is_file()
    return gr.update(value=path if ok else None, interactive=ok)
