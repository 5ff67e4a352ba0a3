"""The worker: the one process that owns the GPU and runs jobs one at a time.

`python -m lora_studio.worker` takes a lock (one worker per studio home), marks jobs a killed
worker left half-done as interrupted, then runs queued jobs oldest first, turning the engine's
events into events.jsonl lines and the STOP file into should_stop(). It exits after a while idle.
"""

from __future__ import annotations

import argparse
import dataclasses
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

LOCK_NAME = "worker.lock"
EXIT_BUSY = 3
# Windows locks byte ranges and refuses reads of a locked one: lock a byte past the pid text.
_LOCK_OFFSET = 1024

_terminating = False


# --- the lock -----------------------------------------------------------------------------------
# An OS lock (flock / msvcrt) rather than "file exists + pid alive": the kernel drops it when the
# process dies however it dies, so a killed worker never leaves a lock behind, and no pid is ever
# signalled to test it. The file stays; it only records who holds it.

def lock_path() -> Path:
    """The lock file of this studio home."""
    return paths.data_home() / LOCK_NAME


def _try_lock(fd: int) -> bool:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _open_lock_file() -> int:
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def holder_pid() -> int | None:
    """The pid written by the worker that holds (or last held, if it was killed) the lock."""
    try:
        first = lock_path().read_text(encoding="utf-8").split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def lock_is_held() -> bool:
    """True while a live worker holds the lock (tested by trying to take it for an instant)."""
    fd = _open_lock_file()
    try:
        if _try_lock(fd):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


class WorkerLock:
    """Held for the worker's whole life; acquire() refuses while another worker lives."""

    def __init__(self):
        self.fd: int | None = None

    def acquire(self, wait_s: float = 2.0) -> int | None:
        """Take the lock, or raise UserError; returns the pid of a dead worker whose lock was left."""
        fd = _open_lock_file()
        # A short wait: lock_is_held() in the studio takes the lock for an instant to test it.
        deadline = time.monotonic() + wait_s
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                os.close(fd)
                pid = holder_pid()
                raise UserError(f"another worker is already running{f' (pid {pid})' if pid else ''}",
                                "jobs are queued for it; there is never more than one worker per studio")
            time.sleep(0.1)
        stale = holder_pid()  # a pid still written there belongs to a worker that died holding it
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return stale if stale != os.getpid() else None

    def release(self) -> None:
        """Clear the pid (a clean exit leaves no stale record) and drop the lock."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None


# --- recording events ---------------------------------------------------------------------------

class Recorder:
    """emit() for the engine: appends events to the run folder (and forwards a sweep's to its parent)."""

    def __init__(self, run_dir: Path, forward: Callable[[dict], None] | None = None):
        self.run_dir = Path(run_dir)
        self.forward = forward
        self.last_type: str | None = None
        self.stopped = False

    def __call__(self, event: dict) -> None:
        runfiles.append_event(self.run_dir, event)
        self.last_type = event.get("type")
        self.stopped = self.stopped or self.last_type == "stopped"
        if self.forward:
            self.forward(event)
        if self.last_type in ("started", "checkpoint", "probe", "stopped", "done", "error"):
            detail = event.get("path") or event.get("message") or ""
            _log(f"{self.run_dir.name}: {self.last_type} {detail}".rstrip())

    @property
    def ended(self) -> bool:
        """True once the last event written is a final one."""
        return self.last_type in jobs.TERMINAL


def _log(text: str) -> None:
    print(f"[worker {time.strftime('%H:%M:%S')}] {text}", flush=True)


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

def _resumable(run_dir: Path, emit) -> bool:
    """A run can resume only from saved state; one killed in its first epoch starts over."""
    from lora_studio.train.loop import STATE_FILE

    if (Path(run_dir) / "state" / STATE_FILE).is_file():
        return True
    emit({"type": "warning", "message": "no saved state yet (stopped in the first epoch): starting from step 0"})
    return False


def run_train(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """One training run in the job folder."""
    from lora_studio.train.loop import train

    resume = resume and _resumable(job.run_dir, emit)
    return train(job.config, job.run_dir, emit, should_stop, resume=resume, base=bases.get(job.config.base_model))


def run_probe_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """The LR probe: one DAdaptation epoch; writes probe.json and a `probe` event."""
    from lora_studio.train.probe import run_probe

    return run_probe(job.config, job.run_dir, emit, should_stop, base=bases.get(job.config.base_model))


def run_sweep(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """One training run per batch size, each in its own folder bsN (as `lora-studio sweep` does)."""
    from lora_studio.config import save_config
    from lora_studio.train.loop import train

    runs = []
    for batch_size in job.batch_sizes or jobs.SWEEP_BATCH_SIZES:
        config = dataclasses.replace(job.config, batch_size=batch_size,
                                     name=f"{job.config.name}-bs{batch_size}").validate()
        run_dir = job.run_dir / f"bs{batch_size}"
        runs.append(str(run_dir))
        last = jobs.last_event(run_dir)
        if last is not None and last.get("type") == "done":
            continue  # finished before the sweep was stopped and resumed
        run_dir.mkdir(exist_ok=True)
        save_config(config, run_dir / jobs.JOB_FILE, preset=job.preset)

        def forward(event: dict, size=batch_size) -> None:
            # A sub-run's `done` must not end the sweep's own event stream.
            kind = "run_done" if event.get("type") == "done" else event.get("type")
            emit({**event, "type": kind, "run": f"bs{size}", "batch_size": size})

        recorder = Recorder(run_dir, forward)
        sub_resume = resume and last is not None and _resumable(run_dir, recorder)
        result = train(config, run_dir, recorder, should_stop, resume=sub_resume, base=bases.get(config.base_model))
        bases.clean()
        if result.get("stopped"):
            return {"runs": runs, "stopped": True}
    return {"runs": runs}


def run_xy_job(job: jobs.Job, emit, should_stop, resume: bool, bases: BaseCache) -> dict:
    """An XY plot of a run's epoch files into the job folder, on the base kept loaded since training."""
    from lora_studio.generate.xy_job import load_settings, render_xy

    base = bases.get(job.config.base_model)
    result = render_xy(load_settings(job.run_dir), base, job.run_dir, emit, should_stop)
    bases.clean()  # the plot's adapters leave peft wrapper layers; the next job needs the plain base
    return result


RUNNERS: dict[str, Callable] = {"train": run_train, "probe": run_probe_job, "sweep": run_sweep, "xy": run_xy_job}


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
    record = Recorder(run_dir)
    if runfiles.stop_requested(run_dir):  # stopped while still waiting in the queue
        record({"type": "stopped", "step": 0, "epoch": 0, "before_start": True})
        return "stopped"
    record({"type": "running", "pid": os.getpid(), "resume": resume})
    try:
        job = jobs.load_job(run_dir)
        if job.kind not in runners:
            raise UserError(f"this worker cannot run '{job.kind}' jobs", f"it knows {', '.join(runners)}")
        result = runners[job.kind](job, record, lambda: _terminating or runfiles.stop_requested(run_dir), resume,
                                   bases)
        bases.clean()
        if not record.ended:
            final = "stopped" if record.stopped else "done"
            record({"type": final, **json.loads(json.dumps(result or {}, default=str))})
    except UserError as exc:
        bases.drop()
        record({"type": "error", "message": exc.message, "hint": exc.hint})
    except Exception as exc:  # any bug: the job fails with its traceback on disk, the worker goes on
        bases.drop()
        log = run_dir / "error.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        record({"type": "error", "message": f"{type(exc).__name__}: {exc}", "hint": _hint_for(exc, log),
                "log": str(log)})
    return record.last_type or "error"


def mark_interrupted() -> list[Path]:
    """Jobs a dead worker left running get an error event saying how to continue."""
    marked = []
    for run_dir in jobs.list_jobs():
        if jobs.job_state(run_dir, worker_alive=False) == "interrupted":
            runfiles.append_event(run_dir, {
                "type": "error", "message": "the worker stopped while this job was running",
                "hint": "press Resume to continue from the last saved epoch; see worker.log for why it stopped"})
            marked.append(run_dir)
    return marked


def serve(idle_exit: float = 600.0, once: bool = False, poll: float = 0.5, runners: dict | None = None,
          handle_signals: bool = False) -> int:
    """Hold the lock and run queued jobs until idle for idle_exit seconds (or the queue is empty, once)."""
    global _terminating
    lock = WorkerLock()
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
                run_job(waiting[0], runners, bases)
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
