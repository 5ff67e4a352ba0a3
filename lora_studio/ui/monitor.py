"""The monitor panel: live loss and LR curves, progress with ETA, samples, epoch files, Stop/Resume.

It follows one job folder by reading its events.jsonl from an offset on every timer tick; all it
knows comes from files, so a reopened browser or a restarted studio shows the run where it is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from lora_studio import jobs, runfiles
from lora_studio.errors import UserError

STATE_WORDS = {"queued": "Queued", "running": "Running", "done": "Finished", "stopped": "Stopped",
               "error": "Failed", "interrupted": "Interrupted"}


@dataclass
class Watch:
    """One browser session's view of one job (kept in gr.State)."""

    job: str | None = None
    progress: jobs.Progress = field(default_factory=jobs.Progress)
    state: str = ""
    shown: tuple = ()
    known_jobs: int = -1
    # The Train tab's form and Find LR: the probe this session asked for (its numbers go into the form
    # when it finishes; viewing another probe never changes the form), the probe whose numbers the form
    # got, whether the form still holds them, and the job a "queued as…"/"Stopping…" message is about.
    pending_probe: str | None = None
    applied_probe: str | None = None
    probe_held: bool = False
    notice_job: str | None = None

    def follow(self, run_dir: str | None) -> "Watch":
        """Start following another job from its first event."""
        self.job, self.progress, self.state, self.shown = run_dir, jobs.Progress(), "", ()
        return self


@dataclass
class Monitor:
    """The panel's components."""

    job: gr.Dropdown
    status: gr.HTML
    message: gr.Markdown
    loss: gr.LinePlot
    lr: gr.LinePlot
    samples: gr.Gallery
    files: gr.Markdown
    stop: gr.Button
    resume: gr.Button

    def outputs(self) -> list:
        """Every component update() may change."""
        return [self.job, self.status, self.message, self.loss, self.lr, self.samples, self.files, self.stop,
                self.resume]


def job_label(run_dir: Path, state: str) -> str:
    """'20250101-120000-123-train-tibbie · running'."""
    return f"{run_dir.name} · {state}"


def job_choices() -> list[tuple[str, str]]:
    """The dropdown's (label, folder) pairs, newest first."""
    alive = jobs.worker_running()
    return [(job_label(p, jobs.job_state(p, alive)), str(p)) for p in jobs.list_jobs()[:50]]


def build() -> Monitor:
    """Lay out the panel in the current Blocks context."""
    with gr.Row():
        job = gr.Dropdown(label="Watching run", choices=[], value=None, elem_id="monitor-job", scale=4)
        stop = gr.Button("Stop", variant="stop", elem_id="stop-button", scale=1, interactive=False)
        resume = gr.Button("Resume", elem_id="resume-button", scale=1, interactive=False)
    status = gr.HTML("<div class='ls-status'>No run yet: press Start.</div>", elem_id="monitor-status")
    message = gr.Markdown("", elem_id="monitor-message")
    with gr.Row():
        loss = gr.LinePlot(_loss_frame(jobs.Progress()), x="step", y="loss", color="curve", title="Loss",
                           height=260, elem_id="loss-plot", color_map={"raw": "#9ab", "smoothed": "#e4572e",
                                                                    "validation": "#2a9d3f"})
        lr = gr.LinePlot(_lr_frame(jobs.Progress()), x="step", y="lr", color="curve", title="Learning rate",
                         height=260, elem_id="lr-plot", y_axis_format=".1e")
    samples = gr.Gallery(label="Samples (newest first)", columns=4, height=280, elem_id="samples")
    files = gr.Markdown("", elem_id="epoch-files")
    return Monitor(job, status, message, loss, lr, samples, files, stop, resume)


# Gradio 6.31: a LinePlot whose value starts as an empty DataFrame never draws lines after later
# updates; starting from (and returning) None when there are no points avoids it.

def _loss_frame(progress: jobs.Progress) -> pd.DataFrame | None:
    if not progress.losses:
        return None
    rows = [(s, raw, "raw") for s, raw, _ in progress.losses] + [(s, sm, "smoothed") for s, _, sm in progress.losses]
    rows += [(s, loss, "validation") for s, loss, _ in progress.validation]  # held-out frames, at each epoch's end
    return pd.DataFrame(rows, columns=["step", "loss", "curve"]).astype({"step": "int64", "loss": "float64"})


def _lr_frame(progress: jobs.Progress) -> pd.DataFrame | None:
    if not progress.lrs:
        return None
    rows = [(s, u, "unet") for s, u, _ in progress.lrs] + [(s, t, "text encoder") for s, _, t in progress.lrs]
    return pd.DataFrame(rows, columns=["step", "lr", "curve"]).astype({"step": "int64", "lr": "float64"})


def _status_html(p: jobs.Progress, state: str) -> str:
    word = STATE_WORDS.get(state, state)
    kind = {"probe": "LR probe", "sweep": "batch-size sweep", "xy": "XY plot", "study": "batch-size study"}.get(p.kind, "training")
    parts = [f"<b data-state='{state}'>{word}</b> {kind}"]
    if p.run:
        parts.append(html.escape(p.run))
    if p.total_steps:
        parts.append(f"step {p.step} / {p.total_steps}")
        if p.epochs:
            parts.append(f"epoch {min(p.epoch, p.epochs)} / {p.epochs}")
        if p.losses:
            parts.append(f"loss {p.losses[-1][1]:.4f} (smoothed {p.losses[-1][2]:.4f})")
        if p.validation:
            parts.append(f"validation loss {p.validation[-1][1]:.4f} (epoch {p.validation[-1][2]})")
        if state == "running":
            parts.append(f"ETA {jobs.format_duration(p.eta_seconds())}")
    if p.note:
        parts.append(f"<i>{html.escape(p.note)}</i>")
    bar = f"<progress value='{p.step}' max='{max(1, p.total_steps)}'></progress>" if p.total_steps else ""
    return f"<div class='ls-status'>{' · '.join(parts)}{bar}</div>"


def can_resume(run_dir: Path) -> bool:
    """True where Resume has something to continue: saved training state, or a sweep's finished sub-run.

    A run that failed before its first epoch ended has none: resuming would fail the same way, since it
    reuses its own settings; the user fixes the form and presses Start instead.
    """
    run_dir = Path(run_dir)
    if runfiles.state_path(run_dir).is_file():
        return True
    subruns = [p for p in run_dir.iterdir() if (p / runfiles.JOB_FILE).is_file()] if run_dir.is_dir() else []
    return any(runfiles.state_path(p).is_file() or jobs.job_state(p, False) == "done" for p in subruns)


def error_text(exc: UserError) -> str:
    """A user error as the UI shows it: the message, then what to do."""
    return f"⚠️ **{exc.message}**" + (f" — {exc.hint}" if exc.hint else "")


def _message(p: jobs.Progress, state: str, run_dir: Path) -> str:
    if state == "interrupted":
        tail = jobs.worker_log_tail()
        text = ("⚠️ **The worker stopped while this job was running.** — press Resume to continue from the "
                "last saved epoch.")
        return text + (f"\n\nLast lines of `{jobs.worker_log_path()}`:\n```\n{tail}\n```" if tail else "")
    if p.error:
        return error_text(UserError(p.error["message"], p.error["hint"]))
    if state == "stopped":
        return "Stopped cleanly; its state is saved. Press **Resume** to continue."
    if state == "done" and p.probe:
        return probe_text(p.probe)
    return ""


def probe_text(probe: dict) -> str:
    """How Find LR's numbers were derived, in the seed write-up's words."""
    d_lr, unet_lr, te_lr = probe["d_lr"], probe["unet_lr"], probe["te_lr"]
    epochs = probe.get("probe_epochs", 1)
    images = probe.get("probe_images", "?")
    span = "one epoch" if epochs == 1 else f"{epochs} epochs ({images} images, as the seed's one)"
    return (f"**Find LR:** DAdaptation's step size d·lr peaked at **{d_lr:.3g}** over {span} → "
            f"unet_lr = {d_lr:.3g} ÷ {probe.get('probe_divisor', 3):g} = **{unet_lr:.3g}**, "
            f"te_lr = unet_lr ÷ {probe.get('te_lr_divisor', 10):g} = **{te_lr:.3g}** "
            f"({probe.get('optimizer', 'lion')}, {probe.get('scheduler', 'cosine_with_restarts')}).")


def _files_text(p: jobs.Progress, run_dir: Path) -> str:
    if not p.checkpoints:
        return f"Run folder: `{run_dir}`"
    lines = [f"**Epoch files** in `{run_dir}`:"]
    lines += [f"- `{Path(path).name}` (epoch {epoch})" for path, epoch in p.checkpoints]
    return "\n".join(lines)


def update(watch: Watch) -> dict:
    """Read what is new for the watched job and return only the components that changed."""
    out: dict = {}
    choices_needed = False
    count = len(jobs.list_jobs())
    if count != watch.known_jobs:
        watch.known_jobs, choices_needed = count, True
    if not watch.job:
        return {**out, **({} if not choices_needed else {"choices": job_choices()})}
    run_dir = Path(watch.job)
    if not run_dir.is_dir():  # deleted on the Runs tab (maybe from another browser tab)
        watch.follow(None)
        return {"status": f"<div class='ls-status'>Run {html.escape(run_dir.name)} was deleted.</div>",
                "message": "", "files": "", "loss": None, "lr": None, "samples": [],
                "stop": gr.update(interactive=False), "resume": gr.update(interactive=False), "choices": job_choices()}
    p = watch.progress
    p.read_new(run_dir)
    state = jobs.job_state(run_dir)
    if state == "queued" and not jobs.worker_running():
        jobs.ensure_worker()  # a worker that exited idle just before this job was queued
    shown = (p.offset, state, p.eta_seconds() is not None and round(p.eta_seconds()))
    if shown == watch.shown and not choices_needed:
        return out
    previous_offset = watch.shown[0] if watch.shown else -1
    watch.shown = shown
    out.update(status=_status_html(p, state), message=_message(p, state, run_dir))
    if p.offset != previous_offset:
        out.update(loss=_loss_frame(p), lr=_lr_frame(p), files=_files_text(p, run_dir),
                   samples=[(path, caption) for path, caption in reversed(p.samples) if Path(path).is_file()])
    if state != watch.state or choices_needed:
        watch.state = state
        choices_needed = True
        resumable = state in ("stopped", "error", "interrupted") and p.kind in ("train", "sweep", "") \
            and can_resume(run_dir)
        out.update(stop=gr.update(interactive=state in ("queued", "running")),
                   resume=gr.update(interactive=resumable))
    if choices_needed:
        out["choices"] = job_choices()
    return out


def render(monitor: Monitor, watch: Watch, changes: dict) -> dict:
    """Map update()'s named changes onto the panel's components."""
    out = {}
    for name in ("status", "message", "loss", "lr", "samples", "files", "stop", "resume"):
        if name in changes:
            out[getattr(monitor, name)] = changes[name]
    if "choices" in changes:
        out[monitor.job] = gr.update(choices=changes["choices"], value=watch.job)
    return out
