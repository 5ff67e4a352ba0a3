"""The UI/CLI side of jobs: create a job folder, start the worker if needed, read events, ask to stop.

A job is a folder runs/<job-id>/ holding job.toml (its kind and full config), events.jsonl and maybe
STOP. Its state is read from the last event: the submitter appends `queued`, the worker appends
`running`, then the engine's events until `done`, `stopped` or `error`. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_studio import paths, runfiles
from lora_studio.config import (SCHEMA_VERSION, StudyConfig, TrainConfig, config_from_dict, dump_toml, load_toml,
                                study_config_from_dict)
from lora_studio.errors import UserError
from lora_studio.train.sweep import SWEEP_BATCH_SIZES

STUDY_TABLE = "study"  # the job.toml table that holds a study job's StudyConfig
JOB_FILE = runfiles.JOB_FILE  # kept here too: the UI names job folders by it
KINDS = ("train", "probe", "sweep", "xy", "study")
TERMINAL = runfiles.TERMINAL
# Keys of job.toml that describe the job rather than the training config.
JOB_KEYS = ("kind", "batch_sizes", "created", "xy", "preset", STUDY_TABLE)


@dataclass
class Job:
    """One queued or finished piece of work for the worker."""

    run_dir: Path
    kind: str
    config: TrainConfig
    batch_sizes: list[int] = field(default_factory=list)
    preset: str = ""  # the preset it was started from, as presets.preset_label() wrote it
    study: StudyConfig | None = None  # a study job's own settings ([study] in job.toml)

    @property
    def id(self) -> str:
        """The folder name, which sorts by creation time."""
        return self.run_dir.name


_last_id_ms = 0


def new_job_id(kind: str, name: str) -> str:
    """A folder name that sorts by creation time and says what it is: 20250101-120000-123-train-name."""
    global _last_id_ms
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "job"
    # Strictly increasing milliseconds: two jobs queued in one click still sort in queue order.
    ms = _last_id_ms = max(int(time.time() * 1000), _last_id_ms + 1)
    job_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(ms / 1000))}-{ms % 1000:03d}-{kind}-{stem}"
    while (paths.runs_dir() / job_id).exists():  # another process took this very name
        job_id += "-"
    return job_id


def _absolute_paths(config: TrainConfig) -> TrainConfig:
    """Resolve relative folders now: the worker may run in another working directory."""
    changes = {}
    if config.dataset:
        changes["dataset"] = str(Path(config.dataset).expanduser().resolve())
    if config.base_model != "toy" and Path(config.base_model).expanduser().exists():
        changes["base_model"] = str(Path(config.base_model).expanduser().resolve())
    return dataclasses.replace(config, **changes)


def check_inputs(config: TrainConfig) -> None:
    """Refuse, before queueing, what would fail at once in the worker: bad model spec, no frames."""
    from lora_studio.models.load import describe_source

    config.validate()
    describe_source(config.base_model)
    kept_frames(config)


def write_job_file(run_dir: Path, kind: str, config: TrainConfig, *, batch_sizes=(), preset: str = "",
                   study: StudyConfig | None = None) -> Path:
    """run_dir/job.toml: the job's kind (and a sweep's batch sizes, the preset it came from), the config, a [study] table."""
    values = {"kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "schema_version": SCHEMA_VERSION}
    if batch_sizes:
        values["batch_sizes"] = [int(b) for b in batch_sizes]
    if preset:
        values["preset"] = preset
    values.update(config.to_dict())
    text = dump_toml(values, header=f"LoRA Studio job: {kind}")
    if study is not None:
        text += f"\n[{STUDY_TABLE}]\n" + dump_toml(study.validate().to_dict())
    return runfiles.atomic_write(Path(run_dir) / runfiles.JOB_FILE, text)


def submit(kind: str, config: TrainConfig, *, batch_sizes=None, preset: str = "", start_worker: bool = True,
           study: StudyConfig | None = None) -> Job:
    """Write runs/<id>/job.toml, queue it, and start the worker if none is running (a study: see submit_study)."""
    if kind not in KINDS:
        raise UserError(f"unknown job kind {kind!r}", f"one of {', '.join(KINDS)}")
    config = _absolute_paths(config).validate()
    if kind == "study":
        study = (study or StudyConfig()).validate()  # refused before any folder is made
    run_dir = paths.runs_dir() / new_job_id(kind, config.name)
    run_dir.mkdir(parents=True)
    sizes = [int(b) for b in (batch_sizes or SWEEP_BATCH_SIZES)] if kind == "sweep" else []
    write_job_file(run_dir, kind, config, batch_sizes=sizes, preset=preset, study=study)
    runfiles.append_event(run_dir, {"type": runfiles.QUEUED, "kind": kind, "resume": False})
    if start_worker:
        ensure_worker()
    if study is not None:
        return Job(run_dir, kind, config, list(study.batch_sizes), preset, study)
    return Job(run_dir, kind, config, sizes, preset)


def submit_study(config: TrainConfig, study: StudyConfig, *, preset: str = "", start_worker: bool = True) -> Job:
    """Queue a batch-size study: job.toml holds the TrainConfig (the preset, at its own batch size) and [study]."""
    return submit("study", config, preset=preset, start_worker=start_worker, study=study)


def submit_xy(settings, *, start_worker: bool = True) -> Job:
    """Queue an XY plot (a config.XYPlotConfig) of a run: job.toml names the base, [xy] holds the plot."""
    from lora_studio.generate.xy_job import check_plot, settings_toml
    from lora_studio.generate.xy_plan import run_loras

    if settings.run.strip():
        settings = dataclasses.replace(settings, run=str(Path(settings.run).expanduser().resolve()))
    planned = check_plot(settings)  # a mistake in the fields is refused now, not after the worker loaded the model
    run = run_loras(settings.run) if settings.run.strip() else next((c.run for c in planned.cells if c.run), None)
    # The run's own base_model string (resolved as submit() resolves it), so the worker's BaseCache
    # finds the base that training left loaded.
    config = _absolute_paths(TrainConfig(name=run.name if run else "xy", base_model=settings.base)).validate()
    run_dir = paths.runs_dir() / new_job_id("xy", config.name)
    run_dir.mkdir(parents=True)
    values = {"kind": "xy", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "schema_version": SCHEMA_VERSION,
              "name": config.name, "base_model": config.base_model}
    runfiles.atomic_write(run_dir / runfiles.JOB_FILE,
                          dump_toml(values, header="LoRA Studio job: xy") + settings_toml(settings))
    runfiles.append_event(run_dir, {"type": runfiles.QUEUED, "kind": "xy", "resume": False})
    if start_worker:
        ensure_worker()
    return Job(run_dir, "xy", config)


def load_job(run_dir: Path) -> Job:
    """Read a job folder's job.toml back into a Job (a plain config file counts as a train job)."""
    run_dir = Path(run_dir)
    values = load_toml(run_dir / runfiles.JOB_FILE)
    kind = values.get("kind", "train")
    batch_sizes = [int(b) for b in values.get("batch_sizes", [])]
    config = config_from_dict({k: v for k, v in values.items() if k not in JOB_KEYS})
    study = study_config_from_dict(values[STUDY_TABLE]) if kind == "study" and STUDY_TABLE in values else None
    if study is not None:
        batch_sizes = list(study.batch_sizes)
    return Job(run_dir, kind, config, batch_sizes, str(values.get("preset", "")), study)


last_event = runfiles.last_event  # kept here too: the UI reads a job's state through jobs


def job_state(run_dir: Path, worker_alive: bool | None = None) -> str:
    """queued, running, done, stopped, error, or interrupted (running, but no worker is alive)."""
    event = last_event(run_dir)
    if event is None or event.get("type") == runfiles.QUEUED:
        return "queued"
    kind = event.get("type")
    if kind in runfiles.TERMINAL:
        return kind
    if worker_alive is None:
        worker_alive = worker_running()
    return "running" if worker_alive else "interrupted"


def list_jobs() -> list[Path]:
    """Every job folder, newest first."""
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / runfiles.JOB_FILE).is_file()), key=lambda p: p.name, reverse=True)


def queued_jobs() -> list[Path]:
    """Jobs waiting for the worker, oldest request first."""
    waiting = []
    for run_dir in list_jobs():
        event = last_event(run_dir)
        if event is not None and event.get("type") == runfiles.QUEUED:
            waiting.append((event.get("time", 0.0), run_dir.name, run_dir))
    return [run_dir for _, _, run_dir in sorted(waiting)]


def active_job() -> Path | None:
    """The job to show on opening the studio: the running one, else the next queued, else the newest."""
    jobs = list_jobs()
    alive = worker_running()
    for run_dir in jobs:
        if job_state(run_dir, alive) == "running":
            return run_dir
    waiting = queued_jobs()
    return waiting[0] if waiting else (jobs[0] if jobs else None)


def stop(run_dir: Path) -> None:
    """Ask a running job to stop after its current step (state saved, resumable); a queued one is skipped."""
    runfiles.request_stop(run_dir)


def resume(run_dir: Path, start_worker: bool = True) -> None:
    """Queue a stopped or interrupted train/sweep/study job again; it continues from its last saved state."""
    run_dir = Path(run_dir)
    job = load_job(run_dir)
    state = job_state(run_dir)
    if job.kind not in ("train", "sweep", "study"):
        raise UserError(f"a {job.kind} job cannot be resumed", "start it again instead")
    if state not in ("stopped", "error", "interrupted"):
        raise UserError(f"this job is {state}; only a stopped or failed run can be resumed")
    runfiles.clear_stop(run_dir)
    runfiles.append_event(run_dir, {"type": runfiles.QUEUED, "kind": job.kind, "resume": True})
    if start_worker:
        ensure_worker()


# --- the worker process -------------------------------------------------------------------------

_spawned: list[subprocess.Popen] = []


def worker_log_path() -> Path:
    """Where a worker started by the studio writes its output."""
    return paths.data_home() / "worker.log"


def worker_running() -> bool:
    """True while the GPU lock is held: by the worker, or by a CLI command that the worker waits for."""
    from lora_studio.lock import lock_is_held

    for proc in list(_spawned):
        if proc.poll() is not None:  # reap finished workers so they do not linger as zombies
            _spawned.remove(proc)
    return lock_is_held()


def ensure_worker() -> bool:
    """Start `python -m lora_studio.worker` in the background unless one runs; True if one was started."""
    if worker_running():
        return False
    log = worker_log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The worker must import this same checkout, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.project_root()), env.get("PYTHONPATH")]))
    kwargs = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    with open(log, "ab") as out:
        _spawned.append(subprocess.Popen([sys.executable, "-m", "lora_studio.worker"], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **kwargs))
    return True


def worker_log_tail(lines: int = 12) -> str:
    """The last lines of the worker's log, to show when it died without writing an error event."""
    log = worker_log_path()
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# --- what the user sees before starting ---------------------------------------------------------

def kept_frames(config: TrainConfig) -> list:
    """The frames a run would train on (review exclusions and the validation split applied), or UserError."""
    from lora_studio.data.run_frames import trained_frames

    return trained_frames(config)


def step_budget(config: TrainConfig, frames: list) -> dict:
    """frames × repeats × epochs ÷ batch, counted per aspect bucket as the loop does."""
    from lora_studio.data.buckets import bucket_sizes, pick_bucket

    # Same bucket choice as data.buckets.cache_latents (SD1.5's VAE works on 8-pixel cells).
    if config.enable_buckets:
        buckets = bucket_sizes(config.resolution, config.min_bucket_reso, config.max_bucket_reso,
                               config.bucket_reso_steps)
    else:
        buckets = [(config.resolution // 8 * 8,) * 2]
    counts: dict = {}
    for frame in frames:
        bucket = pick_bucket(frame.width, frame.height, buckets)
        counts[bucket] = counts.get(bucket, 0) + frame.repeats
    per_epoch = sum(math.ceil(n / config.batch_size) for n in counts.values())
    return {"frames": len(frames), "images_per_epoch": sum(counts.values()), "steps_per_epoch": per_epoch,
            "total_steps": per_epoch * config.epochs, "buckets": len(counts)}


# --- following a run ----------------------------------------------------------------------------

@dataclass
class Progress:
    """Everything the monitor shows, folded from a run's events (fed in order, possibly in pieces)."""

    kind: str = ""
    state: str = "queued"
    run: str = ""
    total_steps: int = 0
    epochs: int = 0
    step: int = 0
    epoch: int = 0
    losses: list = field(default_factory=list)   # (step, raw, smoothed)
    lrs: list = field(default_factory=list)      # (step, lr_unet, lr_te)
    validation: list = field(default_factory=list)  # (step, loss, epoch): the held-out frames' loss
    samples: list = field(default_factory=list)  # (path, caption)
    checkpoints: list = field(default_factory=list)  # (path, epoch)
    probe: dict | None = None
    error: dict | None = None
    note: str = ""
    offset: int = 0
    _rate_start: tuple | None = None
    _rate_now: tuple | None = None
    _ema: float | None = None
    _ema_n: int = 0

    SMOOTHING = 0.9  # TensorBoard's default slider value

    def read_new(self, run_dir: Path) -> bool:
        """Read events appended since the last call; True if anything changed."""
        events, self.offset = runfiles.read_events(run_dir, self.offset)
        for event in events:
            self.feed(event)
        return bool(events)

    def feed(self, event: dict) -> None:
        """Fold one event into the view."""
        kind = event.get("type")
        # A sweep (or study) moved on to its next batch size; a grid's `recommendation` names its picked run instead.
        if kind != runfiles.RECOMMENDATION and event.get("run", self.run) != self.run:
            self.run = event["run"]
            self.losses, self.lrs, self._ema, self._ema_n, self._rate_start = [], [], None, 0, None
            self.validation = []
        if kind == runfiles.QUEUED:
            self.kind = event.get("kind", self.kind)
            self.state, self.error, self.note = "queued", None, "waiting for the worker"
        elif kind == runfiles.RUNNING:
            self.state, self.note = "running", "loading the model"
        elif kind == runfiles.CACHING:
            self.note = f"encoding frames {event.get('done', 0)}/{event.get('total', 0)}"
        elif kind == runfiles.STARTED:
            self.state, self.note = "running", ""
            self.total_steps = event.get("total_steps", 0)
            self.epochs = event.get("epochs", 0)
            self.step = event.get("start_step", 0)
            self._rate_start = None
        elif kind == runfiles.STEP:
            self._step(event)
        elif kind == runfiles.EPOCH:
            self.epoch = event.get("epoch", self.epoch)
        elif kind == runfiles.VALIDATION:
            # a resumed run evaluates its epochs again: the newest value of an epoch wins
            self.validation = [v for v in self.validation if v[2] != event["epoch"]] + [
                (event["step"], event["loss"], event["epoch"])]
        elif kind == runfiles.CHECKPOINT:
            self.checkpoints = [c for c in self.checkpoints if c[0] != event["path"]] + [(event["path"], event.get("epoch"))]
        elif kind == runfiles.SAMPLE:
            caption = f"epoch {event.get('epoch')}: {event.get('prompt', '')}"
            self.samples = [s for s in self.samples if s[0] != event["path"]] + [(event["path"], caption)]
        elif kind == runfiles.PROBE:
            self.probe = {k: v for k, v in event.items() if k not in ("type", "time")}
        elif kind == runfiles.WARNING:
            self.note = event.get("message", "")
        elif kind in runfiles.TERMINAL:
            self.state = kind
            self.note = ""
            if kind == runfiles.ERROR:
                self.error = {"message": event.get("message", ""), "hint": event.get("hint", "")}

    def _step(self, event: dict) -> None:
        step, loss = event["step"], event["loss"]
        if self.losses and step <= self.losses[-1][0]:
            # A resumed run repeats the steps after its last saved state: keep only the new ones.
            self.losses = [p for p in self.losses if p[0] < step]
            self.lrs = [p for p in self.lrs if p[0] < step]
            self._ema = self.losses[-1][2] if self.losses else None
        self._ema = loss if self._ema is None else self.SMOOTHING * self._ema + (1 - self.SMOOTHING) * loss
        self.losses.append((step, loss, self._ema))
        self.lrs.append((step, event.get("lr_unet", 0.0), event.get("lr_te", 0.0)))
        self.step, self.epoch = step, event.get("epoch", self.epoch)
        self.total_steps = event.get("total_steps", self.total_steps)
        now = (step, event.get("time", time.time()))
        if self._rate_start is None:
            self._rate_start = now
        self._rate_now = now

    def eta_seconds(self) -> float | None:
        """Seconds left at the speed measured since this (re)start, or None before two steps."""
        if not self._rate_start or not self._rate_now or self._rate_now[0] <= self._rate_start[0]:
            return None
        rate = (self._rate_now[0] - self._rate_start[0]) / max(1e-6, self._rate_now[1] - self._rate_start[1])
        return max(0.0, (self.total_steps - self.step) / rate)


def format_duration(seconds: float | None) -> str:
    """'1h 02m', '3m 05s', '12s' or '…' when unknown."""
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"
