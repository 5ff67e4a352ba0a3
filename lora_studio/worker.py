"""The worker: the one process that owns the GPU and runs jobs one at a time.

`python -m lora_studio.worker` takes a lock (one worker per studio home), marks jobs a killed
worker left half-done as interrupted, then runs queued jobs oldest first, turning the engine's
events into events.jsonl lines and the STOP file into should_stop(). It exits after a while idle.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from lora_studio import jobs, paths, runfiles
from lora_studio.errors import UserError
from lora_studio.lock import GpuLock, holder_pid, lock_is_held  # noqa: F401 (holder_pid, lock_is_held: the worker's API)

EXIT_BUSY = 3

_terminating = False


def _log(text: str) -> None:
    print(f"[worker {time.strftime('%H:%M:%S')}] {text}", flush=True)


_LOGGED = (runfiles.STARTED, runfiles.CHECKPOINT, runfiles.PROBE, runfiles.STOPPED, runfiles.DONE, runfiles.ERROR)


def _log_listener(run_dir: Path):
    """A Recorder listener that puts a job's milestones into worker.log."""
    def log(event: dict) -> None:
        if event.get("type") in _LOGGED:
            detail = event.get("path") or event.get("message") or ""
            _log(f"{Path(run_dir).name}: {event['type']} {detail}".rstrip())
    return log


# --- the base model, kept between jobs ------------------------------------------------------------

class BaseCache:
    """The last base model loaded, kept so the next job (an XY plot after training) need not reload it."""

    def __init__(self):
        self.key: tuple | None = None
        self.base = None

    @staticmethod
    def _key(spec: str) -> tuple:
        path = Path(spec).expanduser()
        return (spec, path.stat().st_mtime_ns if path.exists() else None)

    def get(self, spec: str):
        """The loaded base for spec, loading it (and freeing any other) when needed."""
        from lora_studio.models.load import load_base

        key = self._key(spec)
        if key != self.key or self.base is None:
            self.drop()
            self.base = load_base(spec)
            self.key = key
        return self.base

    def clean(self) -> None:
        """Undo what a finished job did to the shared modules, so the next job sees the plain base."""
        if self.base is None:
            return
        from lora_studio.train.network import remove_lora

        remove_lora(self.base.unet, self.base.text_encoder)

    def drop(self) -> None:
        """Forget the base (after a failed job its modules may be half-changed)."""
        self.base, self.key = None, None
        import gc

        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()


# --- the job kinds ------------------------------------------------------------------------------

def run_train(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """One training run in the job folder."""
    from lora_studio.train.loop import train
    from lora_studio.train.sweep import resumable

    resume = resume and resumable(job.run_dir, emit)
    return train(job.config, job.run_dir, emit, should_stop, resume=resume, base=bases.get(job.config.base_model))


def run_probe_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """The LR probe: one DAdaptation epoch; writes probe.json and a `probe` event."""
    from lora_studio.train.probe import run_probe

    return run_probe(job.config, job.run_dir, emit, should_stop, base=bases.get(job.config.base_model))


def run_sweep_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """One training run per batch size, each in its own folder bsN (train.sweep.run_sweep, as the CLI runs it)."""
    from lora_studio.train.sweep import SWEEP_BATCH_SIZES, run_sweep

    return run_sweep(job.config, job.run_dir, emit, should_stop, batch_sizes=job.batch_sizes or SWEEP_BATCH_SIZES,
                     resume=resume, preset=job.preset, base=bases.get(job.config.base_model),
                     listen=lambda run_dir: _log_listener(run_dir))


def run_xy_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """An XY plot of a run's epoch files into the job folder, on the base kept loaded since training."""
    from lora_studio.generate.xy_job import load_settings, run_xy_plot

    base = bases.get(job.config.base_model)
    result = run_xy_plot(load_settings(job.run_dir), base, job.run_dir, emit, should_stop)
    bases.clean()  # the plot's adapters leave peft wrapper layers; the next job needs the plain base
    return result


def run_study_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """The batch-size study: a run per batch size, a scored grid per prompt, the report (study.run.run_study)."""
    from lora_studio.config import StudyConfig
    from lora_studio.study.run import run_study

    base = bases.get(job.config.base_model)
    result = run_study(job.config, job.study or StudyConfig(), job.run_dir, emit, should_stop, preset=job.preset,
                       base=base, resume=resume)
    bases.clean()  # the grids' adapters leave peft wrapper layers; the next job needs the plain base
    return result


RUNNERS: dict[str, Callable] = {"train": run_train, "probe": run_probe_job, "sweep": run_sweep_job, "xy": run_xy_job,
                                "study": run_study_job}


def _hint_for(exc: BaseException, log: Path) -> str:
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return "out of memory: lower batch_size or resolution, or turn on gradient_checkpointing"
    return f"this looks like a bug in LoRA Studio; the traceback is in {log}"


def run_job(run_dir: Path, runners: dict | None = None, bases: BaseCache | None = None) -> str:
    """Run one queued job to its end and return its final state (done, stopped or error)."""
    run_dir = Path(run_dir)
    runners = RUNNERS if runners is None else runners
    bases = bases or BaseCache()
    resume = bool((jobs.last_event(run_dir) or {}).get("resume"))
    record = runfiles.Recorder(run_dir, _log_listener(run_dir))
    if runfiles.stop_requested(run_dir):  # stopped while still waiting in the queue
        record({"type": runfiles.STOPPED, "step": 0, "epoch": 0, "before_start": True})
        return "stopped"
    runfiles.remove_stale_temps(run_dir)  # a worker killed mid-write left them; we hold the lock now
    record({"type": runfiles.RUNNING, "pid": os.getpid(), "resume": resume})
    try:
        job = jobs.load_job(run_dir)
        if job.kind not in runners:
            raise UserError(f"this worker cannot run '{job.kind}' jobs", f"it knows {', '.join(runners)}")
        result = runners[job.kind](job, record, lambda: _terminating or runfiles.stop_requested(run_dir), resume,
                                   bases)
        bases.clean()
        if not record.ended:
            # a study writes no inner `stopped` into its stream: its result says it stopped
            final = runfiles.STOPPED if record.stopped or (result or {}).get("stopped") else runfiles.DONE
            record({"type": final, **json.loads(json.dumps(result or {}, default=str))})
    except UserError as exc:
        bases.drop()
        record({"type": runfiles.ERROR, "message": exc.message, "hint": exc.hint})
    except Exception as exc:  # any bug: the job fails with its traceback on disk, the worker goes on
        bases.drop()
        log = runfiles.atomic_write(run_dir / runfiles.ERROR_LOG, traceback.format_exc())
        record({"type": runfiles.ERROR, "message": f"{type(exc).__name__}: {exc}", "hint": _hint_for(exc, log),
                "log": str(log)})
    return record.last_type or "error"


def mark_interrupted() -> list[Path]:
    """Jobs a dead worker left running get an error event saying how to continue."""
    marked = []
    for run_dir in jobs.list_jobs():
        if jobs.job_state(run_dir, worker_alive=False) == "interrupted":
            runfiles.append_event(run_dir, {
                "type": runfiles.ERROR, "message": "the worker stopped while this job was running",
                "hint": "press Resume to continue from the last saved epoch; see worker.log for why it stopped"})
            marked.append(run_dir)
    return marked


def serve(idle_exit: float = 600.0, once: bool = False, poll: float = 0.5, runners: dict | None = None,
          handle_signals: bool = False) -> int:
    """Hold the lock and run queued jobs until idle for idle_exit seconds (or the queue is empty, once)."""
    global _terminating
    lock = GpuLock()
    stale = lock.acquire()
    _terminating = False
    previous = {}
    if handle_signals:
        def terminate(signum, frame):
            global _terminating
            _terminating = True  # the running job stops cleanly (resumable), then the worker exits
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, terminate)
    try:
        _log(f"started (pid {os.getpid()}, studio home {paths.data_home()})")
        if stale:
            _log(f"recovered the lock of worker pid {stale}, which ended without releasing it")
        for run_dir in mark_interrupted():
            _log(f"{run_dir.name}: marked as interrupted")
        bases = BaseCache()
        idle_since = time.monotonic()
        while not _terminating:
            waiting = jobs.queued_jobs()
            if waiting:
                _log(f"{waiting[0].name}: picked up")
                lock.set_job(waiting[0].name)  # a refused CLI command names it
                run_job(waiting[0], runners, bases)
                lock.set_job("")
                idle_since = time.monotonic()
                continue
            if once or time.monotonic() - idle_since > idle_exit:
                break
            time.sleep(poll)
        return 0
    finally:
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _log("exiting")


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m lora_studio.worker [--once] [--idle-exit SECONDS]."""
    parser = argparse.ArgumentParser(prog="python -m lora_studio.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run what is queued, then exit")
    parser.add_argument("--idle-exit", type=float, default=600.0, metavar="SECONDS",
                        help="exit after this long with nothing queued (default 600)")
    args = parser.parse_args(argv)
    try:
        return serve(idle_exit=args.idle_exit, once=args.once, handle_signals=True)
    except UserError as exc:
        print(f"lora-studio worker: {exc}", file=sys.stderr)
        return EXIT_BUSY


if __name__ == "__main__":
    sys.exit(main())
