"""Following a batch-size study beside the Train tab's monitor: progress in words, then the recommendation and the report.

The study's events (runfiles.py: study_plan, study_stage, its runs' and grids' events forwarded, study_report)
are folded by StudyProgress, which knows no Gradio, into the words and the bar shown. The view polls
`update(watch)` on a timer and reads only files the worker writes; it shows itself while the monitor
follows a study job (started here, picked on the Runs tab or in the monitor's list).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from lora_studio import jobs, runfiles
from lora_studio.config import load_toml
from lora_studio.errors import UserError
from lora_studio.ui.monitor import STATE_WORDS, error_text

REPORT_HEIGHT = 900  # px of the embedded report; it scrolls inside


@dataclass
class StudyProgress:
    """What the view shows of one study, folded from its events (fed in order, possibly in pieces)."""

    state: str = "queued"
    batch_sizes: list = field(default_factory=list)
    prompts: list = field(default_factory=list)  # the study's prompts as the user typed them ("" = character prompt)
    lr_scaling: str = ""
    stage: str = ""
    stage_index: int = 0
    stage_total: int = 0
    batch_size: int | None = None  # the run being trained
    step: int = 0
    total_steps: int = 0
    note: str = ""
    runs_done: set = field(default_factory=set)
    prompt_index: int | None = None  # the grid being drawn
    seed_index: int = 0              # … with which of the prompt's seeds
    seeds: list = field(default_factory=list)
    cells: dict = field(default_factory=dict)   # (prompt_index, seed_index) → the grid's cell count
    rendered: dict = field(default_factory=dict)  # (prompt_index, seed_index) → {(x, y, z)} cells ready
    scored: dict = field(default_factory=dict)  # (prompt_index, seed_index) → {(x, y, z)} cells scored
    study: str = ""   # study.json, once the report stage wrote it
    report: str = ""
    sheet: str = ""
    reason: str = ""  # the recommendation's reason as the event carries it; study.json has the whole pick
    recommendation: dict | None = None
    error: dict | None = None

    def feed(self, event: dict) -> None:
        """Fold one event into the view."""
        kind = event.get("type")
        if kind == runfiles.QUEUED:
            self.state, self.error, self.note = "queued", None, ""
        elif kind == runfiles.RUNNING:
            self.state, self.note = "running", "loading the model"
        elif kind == runfiles.STUDY_PLAN:
            self.batch_sizes = [int(b) for b in event["batch_sizes"]]
            self.prompts = self.prompts or list(event["prompts"])
            self.lr_scaling = event["lr_scaling"]
            self.seeds = list(event.get("seeds") or [])
        elif kind == runfiles.STUDY_STAGE:
            self.stage, self.stage_index, self.stage_total = event["stage"], event["index"], event["total"]
            self.note = ""
            if self.stage == "xy" and "prompt_index" in event:
                self.prompt_index, self.seed_index = event["prompt_index"], int(event.get("seed_index", 0))
            if self.stage == "train" and "batch_size" in event:
                self._run_event(kind, event)  # "starting" before the run's own first event
        elif kind == runfiles.STUDY_REPORT:
            self.study, self.report, self.sheet = event["study"], event["report"] or "", event["sheet"] or ""
            self.reason = event["recommendation"] or ""
        elif kind in runfiles.TERMINAL and "run" not in event and "prompt_index" not in event:
            self.state, self.note = kind, ""
            if kind == runfiles.ERROR:
                self.error = {"message": event.get("message", ""), "hint": event.get("hint", "")}
        elif "prompt_index" in event:
            self._grid_event(kind, event)
        elif "batch_size" in event:
            self._run_event(kind, event)

    def _run_event(self, kind: str, event: dict) -> None:
        """A forwarded event of one training run (tagged run/batch_size)."""
        size = int(event["batch_size"])
        if size != self.batch_size:
            self.batch_size, self.step, self.total_steps, self.note = size, 0, 0, ""
        if kind == runfiles.CACHING:
            self.note = f"encoding frames {event.get('done', 0)}/{event.get('total', 0)}"
        elif kind == runfiles.STARTED:
            self.step, self.total_steps, self.note = event.get("start_step", 0), event.get("total_steps", 0), ""
        elif kind == runfiles.STEP:
            self.step, self.total_steps, self.note = event["step"], event.get("total_steps", self.total_steps), ""
        elif kind in (runfiles.RUN_DONE, runfiles.DONE):
            self.runs_done.add(size)

    def _grid_event(self, kind: str, event: dict) -> None:
        """A forwarded event of one study prompt's XY plot (tagged prompt_index)."""
        self.prompt_index, self.seed_index = int(event["prompt_index"]), int(event.get("seed_index", 0))
        index = (self.prompt_index, self.seed_index)
        where = (event.get("x"), event.get("y"), event.get("z", 0))
        if kind == runfiles.XY_PLAN:
            self.cells[index] = event["cells"]
        elif kind == runfiles.CELL:
            self.rendered.setdefault(index, set()).add(where)
        elif kind == runfiles.SCORE:
            self.scored.setdefault(index, set()).add(where)
        elif kind == runfiles.WARNING:
            self.note = event.get("message", "")

    def prompt_label(self, index: int) -> str:
        """'sitting on tree', or 'the character prompt' for an empty study prompt."""
        text = self.prompts[index].strip() if 0 <= index < len(self.prompts) else ""
        return f"'{text}'" if text else "the character prompt"

    def fraction(self) -> tuple[int, int] | None:
        """(done, of) for the bar: the current run's steps, or the current grid's cells; None when unknown."""
        key = (self.prompt_index, self.seed_index)
        if self.stage == "xy" and self.prompt_index is not None and self.cells.get(key):
            return self._cells_done(key)[0], self.cells[key]
        if self.stage in ("train", "") and self.total_steps:
            return self.step, self.total_steps
        return None

    def _cells_done(self, index: tuple) -> tuple[int, str]:
        scored = len(self.scored.get(index, ()))
        return (scored, "scored") if scored else (len(self.rendered.get(index, ())), "rendered")


def progress_text(p: StudyProgress, state: str) -> str:
    """Where the study is, in words: 'training batch size 2 (run 2 of 4) — step 40/120'."""
    if state == "queued":
        return "waiting for the worker"
    if p.stage == "xy" and p.prompt_index is not None:
        grids = max(len(p.prompts), p.stage_total, p.prompt_index + 1)
        text = f"grid {p.prompt_index + 1} of {grids} {p.prompt_label(p.prompt_index)}"
        if len(p.seeds) > 1:
            text += f", seed {p.seed_index + 1} of {len(p.seeds)}"
        key = (p.prompt_index, p.seed_index)
        if p.cells.get(key):
            done, what = p._cells_done(key)
            text += f": {done}/{p.cells[key]} cells {what}"
        else:
            text += ": planning the cells"
        return text + (f" — {p.note}" if p.note else "")
    if p.stage == "report":
        return "writing the report"
    if p.batch_size is not None:
        runs = len(p.batch_sizes) or p.stage_total
        number = p.batch_sizes.index(p.batch_size) + 1 if p.batch_size in p.batch_sizes else p.stage_index
        text = f"training batch size {p.batch_size} (run {number} of {runs})"
        if p.note:
            return f"{text} — {p.note}"
        return text + (f" — step {p.step}/{p.total_steps}" if p.total_steps else " — starting")
    return p.note if state == "running" else ""


def status_html(p: StudyProgress, state: str) -> str:
    """State, the progress in words and a bar that moves with every step or cell."""
    parts = [f"<b data-state='{state}'>{STATE_WORDS.get(state, state)}</b> batch-size study"]
    if p.batch_sizes:
        parts.append("batch sizes " + ", ".join(str(b) for b in p.batch_sizes))
    words = progress_text(p, state) if state in ("queued", "running", "interrupted") else ""
    if words:
        parts.append(html.escape(words))
    done = p.fraction() if state == "running" else None
    bar = f"<progress value='{done[0]}' max='{max(1, done[1])}'></progress>" if done else ""
    return f"<div class='ls-status' id='study-progress'>{' · '.join(parts)}{bar}</div>"


def recommendation_text(recommendation: dict | None, reason: str = "") -> str:
    """The study's answer: a headline 'batch size 2 · epoch 6 · weight 0.7', then its reason in words."""
    if not recommendation:  # study.json not read (yet): the event's reason names the pick in words
        return f"**Recommendation:** {reason}" if reason else "**No recommendation:** the cells were not scored."
    reason = recommendation.get("reason") or reason
    if recommendation.get("epoch") is None:  # every LoRA cell looked broken: the reason says so
        return "**No recommendation.** " + (reason or "The cells were not scored; the report shows every grid.")
    return (f"**Recommendation: batch size {recommendation['batch_size']} · epoch {recommendation['epoch']} · "
            f"weight {float(recommendation['weight']):g}**" + (f"\n\n{reason}" if reason else ""))


def message_text(p: StudyProgress, state: str) -> str:
    """The recommendation once the report is written, or the error and what to do."""
    if p.error:
        return error_text(UserError(p.error["message"], p.error["hint"]))
    if state == "interrupted":
        return ("⚠️ **The worker stopped while this study was running.** — press Resume study: finished runs are "
                "not trained again, cached cells are not rendered again.")
    lines = []
    if state == "stopped":
        lines.append("Stopped. Press **Resume study** to continue where it stopped.")
    if p.study or state == "done":
        lines.append(recommendation_text(p.recommendation, p.reason))
    return "\n\n".join(lines)


def report_html(report: Path) -> str:
    """The self-contained report.html embedded as an iframe (srcdoc: Gradio serves .html files only as downloads)."""
    text = report.read_text(encoding="utf-8")
    return (f"<iframe id='study-report-frame' title='Study report' srcdoc=\"{html.escape(text, quote=True)}\" "
            f"style='width:100%;height:{REPORT_HEIGHT}px;border:1px solid #ddd;border-radius:6px'></iframe>")


# --- following one study -------------------------------------------------------------------------

@dataclass
class StudyWatch:
    """One browser session's view of one study job (kept in gr.State)."""

    job: str | None = None
    offset: int = 0
    progress: StudyProgress = field(default_factory=StudyProgress)
    shown: tuple = ()
    seen: str | None = None  # the monitor's job last looked at (a study or not)

    def follow(self, job_dir: str | None) -> "StudyWatch":
        """Start following another study from its first event."""
        self.job, self.offset, self.progress, self.shown = job_dir, 0, StudyProgress(), ()
        if job_dir:
            self.progress.prompts = _own_prompts(Path(job_dir))
        return self


def is_study(job_dir: Path) -> bool:
    """True for a study job's folder."""
    try:
        return load_toml(Path(job_dir) / runfiles.JOB_FILE).get("kind") == "study"
    except UserError:  # a hand-edited job.toml that no longer parses is no study to show
        return False


def _own_prompts(job_dir: Path) -> list:
    """The study prompts as the user typed them (the events carry them with the trigger and LoRA tag added)."""
    try:
        return list(load_toml(job_dir / runfiles.JOB_FILE).get("study", {}).get("prompts", []))
    except UserError:
        return []


def _recommendation(study_file: Path) -> dict | None:
    """study.json's overall pick {batch_size, run, epoch, weight, reason}, or None."""
    try:
        return json.loads(study_file.read_text(encoding="utf-8")).get("recommendation")
    except (OSError, json.JSONDecodeError):  # written atomically; missing only if the folder was deleted
        return None


def _file(root: Path, path: str) -> Path | None:
    found = root / path if path else None  # study.json's paths are relative to the study folder
    return found if found and found.is_file() else None


def update(watch: StudyWatch, monitor_job: str | None) -> dict:
    """Follow the monitor's job if it is a study; return only the named parts that changed."""
    if monitor_job != watch.seen:
        watch.seen = monitor_job
        watch.follow(monitor_job if monitor_job and is_study(Path(monitor_job)) else None)
        if not watch.job:
            return {"visible": False}
    if not watch.job:
        return {}
    job_dir = Path(watch.job)
    if not job_dir.is_dir():  # deleted on the Runs tab
        watch.follow(None)
        return {"visible": False}
    p = watch.progress
    events, watch.offset = runfiles.read_events(job_dir, watch.offset)
    for event in events:
        p.feed(event)
    if p.study and p.recommendation is None:
        p.recommendation = _recommendation(Path(p.study)) or {}  # {}: read once, even when there is none
    state = jobs.job_state(job_dir)
    shown = (watch.offset, state)
    if shown == watch.shown:
        return {}
    first = not watch.shown
    watch.shown = shown
    out = {"status": status_html(p, state), "message": message_text(p, state),
           "resume": gr.update(visible=state in ("stopped", "error", "interrupted"),
                               interactive=state in ("stopped", "error", "interrupted"))}
    if first:
        out["visible"] = True
    report, sheet = _file(job_dir, p.report), _file(job_dir, p.sheet)
    if events or first:
        finished = state in jobs.TERMINAL and report is not None
        out["report"] = gr.update(value=report_html(report) if finished else "", visible=finished)
        out["report_file"] = gr.update(value=str(report) if finished else None, interactive=finished)
        out["sheet_file"] = gr.update(value=str(sheet) if finished and sheet else None,
                                      interactive=bool(finished and sheet))
    return out


# --- the components ------------------------------------------------------------------------------

@dataclass
class StudyView:
    """The view's components, keyed as update() names its changes: the status beside the monitor, the report below."""

    box: gr.Column
    status: gr.HTML
    message: gr.Markdown
    resume: gr.Button
    report_box: gr.Column | None = None
    report_file: gr.DownloadButton | None = None
    sheet_file: gr.DownloadButton | None = None
    report: gr.HTML | None = None

    def outputs(self) -> list:
        """Every component update() may change."""
        return [self.box, self.status, self.message, self.resume, self.report_box, self.report_file, self.sheet_file,
                self.report]


def build() -> StudyView:
    """Lay out the status part (hidden until the monitor follows a study) in the current Blocks context."""
    with gr.Column(visible=False, elem_id="study-view") as box:
        gr.Markdown("### Batch-size study")
        status = gr.HTML("", elem_id="study-status")
        message = gr.Markdown("", elem_id="study-recommendation")
        resume = gr.Button("Resume study", interactive=False, visible=False, elem_id="study-resume-button", size="sm")
    return StudyView(box, status, message, resume)


def build_report(view: StudyView) -> StudyView:
    """Lay out the report part, full width (the report is a wide page): its downloads and the report itself."""
    with gr.Column(visible=False, elem_id="study-report-box") as view.report_box:
        gr.Markdown("### Study report")
        with gr.Row():
            view.report_file = gr.DownloadButton("Download report (HTML)", value=None, interactive=False,
                                                 elem_id="study-download-report")
            view.sheet_file = gr.DownloadButton("Download report sheet (PNG)", value=None, interactive=False,
                                                elem_id="study-download-sheet")
        view.report = gr.HTML("", visible=False, elem_id="study-report")
    return view


def render(view: StudyView, changes: dict) -> dict:
    """Map update()'s named changes onto the view's components."""
    out = {getattr(view, name): value for name, value in changes.items() if name != "visible"}
    if "visible" in changes:
        out[view.box] = gr.Column(visible=changes["visible"])
        out[view.report_box] = gr.Column(visible=changes["visible"])
    return out


def wire(view: StudyView, monitor_watch: gr.State) -> None:
    """Poll the study the monitor follows; Resume study queues a stopped one again."""
    watch = gr.State(StudyWatch())

    def on_tick(w, study_watch: StudyWatch) -> dict:
        return {**render(view, update(study_watch, w.job)), watch: study_watch}

    def on_resume(study_watch: StudyWatch) -> dict:
        try:
            if not study_watch.job:
                raise UserError("no study is shown", "pick a study job on the Runs tab")
            jobs.resume(study_watch.job)
        except UserError as exc:
            return {view.message: error_text(exc)}
        return {**render(view, update(study_watch, study_watch.seen)), watch: study_watch}

    outputs = [*view.outputs(), watch]
    gr.Timer(1.0).tick(on_tick, inputs=[monitor_watch, watch], outputs=outputs, show_progress="hidden")
    view.resume.click(on_resume, inputs=watch, outputs=outputs, show_progress="hidden")
