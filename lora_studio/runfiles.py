"""The run folder's contract: every file in it, every event type and its fields, and how they are written.

A run folder is the only thing that crosses between the studio (UI), the command line and the worker.
A newcomer learns all of it here:

    runs/<job-id>/
        job.toml             the job's kind and full config (written by the submitter, read by the worker)
        events.jsonl         one JSON object a line, appended by whoever runs the job (table below)
        STOP                 created by the UI or a person: stop cleanly after the current step
        probe.json           an LR probe's result; a run trained from a probe keeps a copy of it
        NAME-000001.safetensors …   one kohya-format LoRA file per saved epoch
        samples/NAME-e000001-00.png  preview images sampled after an epoch
        state/train_state.pt the LoRA, optimizer and schedule at the last saved epoch (for resuming)
        error.log            the traceback of a job that failed on a bug
        bs1/ … bs4/          a batch-size sweep's sub-runs, each a run folder of its own
        xy_grid-0001.png     an XY plot's grid (A1111 `parameters` text inside), its cells in xy_grid-0001/,
        xy_grid-0001-share.jpg  and the small copy to post
        xy_grid-0001.toml    the XY settings it was made with (its seed resolved)
        xy_grid-0001-scores.json, .csv, .png  the grid's scores per cell, its recommendation, heatmaps
        xy_grid-0001-scored.png  the grid with a score badge on every cell (the grid itself has none by default)
        study.json, report.html, report.png   a batch-size study's results, its report and the sheet to post
        grids/p1/ …          a study's XY plots, one folder per study prompt (Z axis over its runs bs1 … bs4)

Every file but events.jsonl is written with atomic_write (temp file beside it, fsync, rename), so a
killed process never leaves a half-written one: a reader sees the old file or the new one.
events.jsonl is appended a line at a time; a reader skips an unfinished last line.
This module imports nothing from the project but errors, so every layer (config too) may use it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from lora_studio.errors import UserError

# --- file names ----------------------------------------------------------------------------------

JOB_FILE = "job.toml"
EVENTS_FILE = "events.jsonl"
STOP_FILE = "STOP"
PROBE_FILE = "probe.json"
STATE_DIR = "state"
STATE_FILE = "train_state.pt"
ERROR_LOG = "error.log"
SAMPLES_DIR = "samples"
XY_GRID_PREFIX = "xy_grid-"
SCORES_SUFFIX = "-scores.json"  # beside xy_grid-0001.png: xy_grid-0001-scores.json (and .csv)
STUDY_FILE = "study.json"      # a study's results (schema in lora_studio/study/__init__.py)
REPORT_FILE = "report.html"    # a study's report: one self-contained HTML file, images embedded
REPORT_SHEET = "report.png"    # the same report as one PNG sheet to post
STUDY_GRIDS_DIR = "grids"
# kohya's per-epoch LoRA file stem, NAME-000001; A1111's <lora:NAME-000001:w> names it.
EPOCH_STEM = re.compile(r"^(?P<name>.+)-(?P<epoch>\d{6})$")


def epoch_file(name: str, epoch: int) -> str:
    """kohya's per-epoch file name: NAME-000001.safetensors."""
    return f"{name}-{epoch:06d}.safetensors"


def sample_file(name: str, epoch: int, index: int) -> str:
    """A preview's file name inside samples/: NAME-e000001-00.png."""
    return f"{name}-e{epoch:06d}-{index:02d}.png"


def state_path(run_dir: Path) -> Path:
    """Where a run keeps what it needs to resume."""
    return Path(run_dir) / STATE_DIR / STATE_FILE


def sweep_subrun(batch_size: int) -> str:
    """The folder of one batch size inside a sweep's folder."""
    return f"bs{batch_size}"


def study_grid_dir(root: Path, prompt_index: int, seed_index: int = 0) -> Path:
    """A study's XY plot of prompt number prompt_index and its seed_index-th seed (both 0-based).

    grids/p1, grids/p2, … for the study's seed; grids/p1-seed2, … for the seeds after it (StudyConfig.seeds).
    """
    name = f"p{prompt_index + 1}" + (f"-seed{seed_index + 1}" if seed_index else "")
    return Path(root) / STUDY_GRIDS_DIR / name


def xy_grid_stem(number: int) -> str:
    """A1111-style grid numbering: xy_grid-0001."""
    return f"{XY_GRID_PREFIX}{number:04d}"


def scores_file(grid: Path) -> Path:
    """The scores beside a grid PNG: xy_grid-0001.png → xy_grid-0001-scores.json."""
    grid = Path(grid)
    return grid.with_name(grid.stem + SCORES_SUFFIX)


def xy_settings_file(grid: Path) -> Path:
    """The XY settings a grid was made with, as an [xy] table: xy_grid-0001.png → xy_grid-0001.toml."""
    return Path(grid).with_suffix(".toml")


def scores_csv(grid: Path) -> Path:
    """The same cells as a CSV: xy_grid-0001-scores.csv."""
    return scores_file(grid).with_suffix(".csv")


def scores_picture(grid: Path) -> Path:
    """The scores as heatmaps (epoch × weight, one panel per score): xy_grid-0001-scores.png."""
    return scores_file(grid).with_suffix(".png")


def scores_badged(grid: Path) -> Path:
    """The grid with each cell's scores as a small badge on it: xy_grid-0001.png → xy_grid-0001-scored.png."""
    grid = Path(grid)
    return grid.with_name(grid.stem + "-scored.png")


def run_scores_picture(grid: Path, run: str) -> Path:
    """One run's heatmaps of a study grid (its cells only): xy_grid-0001.png, bs1 → xy_grid-0001-bs1-scores.png."""
    grid = Path(grid)
    return grid.with_name(f"{grid.stem}-{run}{SCORES_SUFFIX}").with_suffix(".png")


# --- the event types -----------------------------------------------------------------------------

@dataclass(frozen=True)
class EventType:
    """One kind of line in events.jsonl: who writes it, what it means, which fields it carries."""

    name: str
    writer: str
    meaning: str
    fields: tuple[str, ...] = ()    # always present
    optional: tuple[str, ...] = ()  # present in some jobs or situations


EVENT_TYPES: dict[str, EventType] = {}
# Every event has its wall-clock `time` (added by append_event); an event a sweep forwards from one of
# its sub-runs into its own stream also carries `run` ("bs2") and `batch_size`.
COMMON_FIELDS = ("type", "time")
SWEEP_FIELDS = ("run", "batch_size")
# A study forwards its runs' and grids' events into its own stream too; a grid's events also carry
# the study prompt they belong to.
STUDY_FIELDS = ("prompt_index", "seed_index")  # seed_index: which of a prompt's seeds (StudyConfig.seeds)


def _declare(name: str, writer: str, meaning: str, fields: tuple = (), optional: tuple = ()) -> str:
    EVENT_TYPES[name] = EventType(name, writer, meaning, tuple(fields), tuple(optional))
    return name


# The life of a job: queued → running → (the engine's events) → done | stopped | error.
QUEUED = _declare("queued", "jobs.submit, jobs.resume", "the job waits for the worker",
                  ("kind", "resume"))
RUNNING = _declare("running", "worker", "the worker picked the job up (it may still be loading the model)",
                   ("pid", "resume"))
WARNING = _declare("warning", "train loop, worker", "something the user should know; the job goes on",
                   ("message",))
DONE = _declare("done", "train loop, worker", "the job finished; the worker adds the job's result",
                (), ("step", "epochs", "loss", "elapsed_s", "steps", "total_steps", "stopped", "files", "runs",
                     "d_lr", "unet_lr", "te_lr", "optimizer", "scheduler", "probe_divisor", "te_lr_divisor",
                     "probe_epochs", "probe_images", "grid", "grids", "cells", "rendered", "reused", "lora_loads",
                     "downscaled", "share", "scores", "recommendation", "study", "report", "sheet"))
STOPPED = _declare("stopped", "train loop, worker, XY run", "the job stopped early on request (resumable)",
                   (), ("step", "epoch", "total_steps", "before_start", "runs", "grid", "grids", "cells",
                        "rendered", "reused", "lora_loads", "downscaled", "share", "stopped", "scores",
                        "recommendation", "study", "report", "sheet"))
ERROR = _declare("error", "worker, CLI", "the job failed: a message and what to do about it",
                 ("message", "hint"), ("log",))

# Training (train/loop.py; the LR probe and a sweep's sub-runs are trainings too)
CACHING = _declare("caching", "train loop", "frames encoded to latents so far", ("done", "total"))
STARTED = _declare("started", "train loop", "the loop begins (or resumes at start_step)",
                   ("total_steps", "steps_per_epoch", "epochs", "frames", "start_step", "resumed", "device",
                    "config"))
STEP = _declare("step", "train loop", "one optimizer step: its loss and the LRs it used (d·lr for DAdaptation)",
                ("step", "epoch", "loss", "lr_unet", "lr_te", "total_steps", "elapsed_s"))
EPOCH = _declare("epoch", "train loop", "an epoch ended", ("epoch", "step"))
CHECKPOINT = _declare("checkpoint", "train loop", "an epoch's LoRA file was written", ("path", "epoch", "step"))
VALIDATION = _declare("validation", "train loop", "the held-out frames' loss at fixed timesteps and noise, LoRA "
                       "at weight 1 (epoch 0: before training)", ("epoch", "step", "loss", "frames"))
SAMPLE = _declare("sample", "train loop", "a preview image of the LoRA after an epoch", ("path", "epoch", "prompt"))
PROBE = _declare("probe", "LR probe", "the probe's d·lr and the LRs it recommends (also in probe.json)",
                 ("d_lr", "unet_lr", "te_lr", "optimizer", "scheduler", "probe_divisor", "te_lr_divisor"),
                 ("probe_epochs", "probe_images"))
RUN_DONE = _declare("run_done", "sweep", "one batch size of a sweep finished (its own stream says done)",
                    ("run", "batch_size"), ("step", "epochs", "loss", "elapsed_s"))

# XY plots (generate/xy_job.py, generate/xy.py)
XY_LABELS = _declare("xy_labels", "XY run", "the grid's labels, so a viewer can draw it growing",
                     ("columns", "rows", "grids", "width", "height"))
XY_PLAN = _declare("xy_plan", "XY plot", "how many cells, and how many must be rendered (the rest are cached)",
                   ("cells", "columns", "rows", "grids", "to_render", "grid"))
CELL = _declare("cell", "XY plot", "one cell's PNG is ready (rendered now, or reused)",
                ("x", "y", "path", "rendered"), ("z",))
XY_DONE = _declare("xy_done", "XY plot", "the grid file(s) were written",
                   ("grid", "grids", "rendered", "reused", "stopped", "downscaled"))
SCORE = _declare("score", "XY plot", "one cell's scores (0–1 each; meanings in evaluate/scorer.py)",
                 ("x", "y", "fidelity", "adherence", "quality", "cached"), ("z",))
RECOMMENDATION = _declare("recommendation", "XY plot", "the epoch × weight the scores recommend, and why",
                          ("epoch", "weight", "reason", "path"), ("run",))
SHARE = _declare("share", "XY run", "the small copy of the grid to post", ("path",))

# Batch-size studies (lora_studio/study/): trainings and XY plots above, forwarded, then a report
STUDY_PLAN = _declare("study_plan", "study", "what the study will do: its batch sizes, prompts and grids "
                      "(seeds: the seed of every grid of a prompt)", ("batch_sizes", "prompts", "grids", "lr_scaling"),
                      ("seeds",))
STUDY_STAGE = _declare("study_stage", "study", "the study moves on: stage 'train' (a run), 'xy' (a prompt's "
                       "grids) or 'report'; index of total within that stage", ("stage", "index", "total"))
STUDY_REPORT = _declare("study_report", "study", "study.json, the report and its PNG sheet were written",
                        ("study", "report", "sheet", "recommendation"))

TERMINAL = (DONE, STOPPED, ERROR)


def event_problems(event: dict) -> list[str]:
    """What is wrong with an event against the table (empty when it is as declared)."""
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        return [f"undeclared event type {kind!r}"]
    declared = EVENT_TYPES[kind]
    problems = [f"{kind}: lacks {name!r}" for name in declared.fields if name not in event]
    allowed = set(COMMON_FIELDS) | set(SWEEP_FIELDS) | set(STUDY_FIELDS) | set(declared.fields) | set(declared.optional)
    problems += [f"{kind}: undeclared field {name!r}" for name in event if name not in allowed]
    return problems


def table_markdown() -> str:
    """The event table as Markdown (the README's run-folder section is written from it)."""
    lines = ["| event | written by | meaning | fields |", "|---|---|---|---|"]
    for e in EVENT_TYPES.values():
        fields = ", ".join(e.fields) + (f" (sometimes: {', '.join(e.optional)})" if e.optional else "")
        lines.append(f"| `{e.name}` | {e.writer} | {e.meaning} | {fields} |")
    return "\n".join(lines)


# --- writing files -------------------------------------------------------------------------------

TEMP_SUFFIX = ".tmp"  # atomic_write's temp files: .NAME.PID-XXXXXXXX.tmp beside NAME
_TEMP = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp$")


def is_temp(path: Path) -> bool:
    """True for a temp file of atomic_write (left behind only by a process killed while writing)."""
    return bool(_TEMP.match(Path(path).name))


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete temp files a killed writer left in a run folder (and its sub-runs); call it holding the GPU lock."""
    stale = [p for p in Path(run_dir).rglob(".*" + TEMP_SUFFIX) if p.is_file() and is_temp(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f)


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSErrors that mean 'no room left to write'."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(path: Path) -> UserError:
    """The one message for a full disk, with what to do."""
    return UserError(f"the disk is full while writing {path}",
                     "free some space; a stopped run resumes from its last saved epoch (Resume, or "
                     "lora-studio train --resume RUN_DIR)")


def atomic_write(path: Path | str, data: bytes | str | Callable[[BinaryIO], None], encoding: str = "utf-8") -> Path:
    """Write a whole file so that readers only ever see the old or the new one; a full disk is a UserError.

    data is the file's bytes or text, or a function that writes into the open binary file (torch.save,
    Image.save). The temp file is created with os.open's mode 0o666, so the kernel applies the umask
    and the file gets the user's normal mode (0644 under umask 022): tempfile.mkstemp's 0600 would make
    LoRA files unreadable to an A1111 or ComfyUI running as another user.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode(encoding) if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(path) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --- events.jsonl --------------------------------------------------------------------------------

def append_event(run_dir: Path, event: dict) -> dict:
    """Append one event as a JSON line (with a wall-clock 'time'), flushed so a tail sees it now."""
    event = {"time": round(time.time(), 3), **event}
    line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
    # One write() of the whole line: a crash leaves at most an unfinished last line, which readers skip.
    try:
        with open(Path(run_dir) / EVENTS_FILE, "ab") as fh:
            fh.write(line)
            fh.flush()
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(Path(run_dir) / EVENTS_FILE) from exc
        raise
    return event


def read_events(run_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events appended since byte offset, and the new offset; a half-written last line waits."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    events = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        if line.strip():
            events.append(json.loads(line))
    return events, offset + consumed


def last_event(run_dir: Path) -> dict | None:
    """The newest complete event of a run, read from the end of the file (runs can be long)."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = 1 << 14
        while True:
            start = max(0, size - chunk)
            fh.seek(start)
            data = fh.read(size - start)
            lines = [line for line in data.split(b"\n")[:-1] if line.strip()]  # last piece: unfinished line
            if len(lines) > (0 if start == 0 else 1):
                return json.loads(lines[-1])
            if start == 0:
                return None
            chunk *= 4


class Recorder:
    """The one emit() for a job: appends each event to the run folder, then tells the listeners.

    Listeners see the event as written (with its time): the CLI's progress bar, the worker's log, a
    sweep forwarding its sub-run's events into its own stream.
    """

    def __init__(self, run_dir: Path, *listeners: Callable[[dict], None], write: bool = True):
        self.run_dir = Path(run_dir)
        self.write = write  # False: a process that only follows along (not rank 0 of `accelerate launch`)
        self.listeners = [listen for listen in listeners if listen is not None]
        self.last_type: str | None = None
        self.stopped = False

    def __call__(self, event: dict) -> None:
        written = append_event(self.run_dir, event) if self.write else event
        self.last_type = event.get("type")
        self.stopped = self.stopped or self.last_type == STOPPED
        for listen in self.listeners:
            listen(written)

    @property
    def ended(self) -> bool:
        """True once the last event written is a final one."""
        return self.last_type in TERMINAL


# --- STOP ----------------------------------------------------------------------------------------

def request_stop(run_dir: Path) -> None:
    """Ask the run to stop cleanly after its current step."""
    (Path(run_dir) / STOP_FILE).write_text(time.strftime("%Y-%m-%d %H:%M:%S"), encoding="utf-8")


def stop_requested(run_dir: Path) -> bool:
    """True once someone created the STOP file."""
    return (Path(run_dir) / STOP_FILE).exists()


def clear_stop(run_dir: Path) -> None:
    """Remove a STOP file (before resuming)."""
    (Path(run_dir) / STOP_FILE).unlink(missing_ok=True)
