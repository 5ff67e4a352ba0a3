"""What survives: a worker killed at any moment, a full disk, two submitters racing for one GPU.

Each story runs real processes on the tiny model; the figures they prove are the issue's:
resume always finishes and loses at most the epoch in progress, no file is ever seen half-written,
a full disk ends the job in words and resumes once there is room, and two jobs never share the GPU.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_studio import jobs, lock, paths, runfiles, worker
from lora_studio.config import TrainConfig, load_toml

SIZE = 32


def tiny_config(model, frames, **changes) -> TrainConfig:
    """8 frames at 32 px, batch 4: two steps an epoch."""
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=3,
                  repeats=1, batch_size=4, resolution=SIZE, min_bucket_reso=16, max_bucket_reso=64,
                  bucket_reso_steps=16, network_dim=4, network_alpha=4.0)
    return TrainConfig(**{**values, **changes})


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(paths.project_root())}


def wait_until(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def events_of(run_dir: Path) -> list[dict]:
    return runfiles.read_events(run_dir)[0]


def assert_every_file_loads(run_dir: Path) -> list[Path]:
    """Open every file the run folder holds the way its reader does; returns atomic_write's leftover temps."""
    import torch
    from PIL import Image
    from safetensors import safe_open

    temps = []
    for path in sorted(p for p in Path(run_dir).rglob("*") if p.is_file()):
        if runfiles.is_temp(path):
            temps.append(path)  # never read by anyone; the next run holding the lock removes it
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_tensor(key)
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=False)
        elif path.suffix == ".toml":
            load_toml(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.name == runfiles.EVENTS_FILE:
            events, offset = runfiles.read_events(path.parent)
            assert events, path
            tail = path.read_bytes()[offset:]
            assert b"\n" not in tail, "only the last line may be unfinished"
    return temps


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lora_studio.worker", *args], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def latest(events: list[dict], kind: str) -> dict | None:
    return next((e for e in reversed(events) if e["type"] == kind), None)


# --- kill -9 ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_worker_killed_at_ten_random_moments_always_resumes_and_never_leaves_a_broken_file(
        tiny_model_dir, tiny_frames):
    rng = random.Random(15)  # the moments are random but the same every run
    config = tiny_config(tiny_model_dir, tiny_frames, epochs=4)
    run_dir = jobs.submit("train", config, start_worker=False).run_dir
    total = 4 * 2
    kills = []
    for attempt in range(10):
        seen = len(events_of(run_dir))
        # A moment of the run: after step N (0: while the model loads), plus up to 0.9 of a step's time,
        # which lands in the next step, an epoch's LoRA file or its training state being written. Never
        # after the last-but-one step, and scaled to this machine's speed, so the run cannot finish
        # before the kill however fast the machine is.
        after_step, fraction = rng.randrange(total - 1), rng.uniform(0.0, 0.9)
        extra = fraction * step_seconds(events_of(run_dir))

        def reached() -> bool:
            new = events_of(run_dir)[seen:]
            if after_step == 0:
                return any(e["type"] == runfiles.RUNNING for e in new)
            start = latest(new, runfiles.STARTED)
            if start is not None and after_step <= start["start_step"]:
                # This attempt resumed past the moment (its epoch was saved): the moment is now, before its
                # first step, or a resume at the last epoch would run to the end before the kill.
                return True
            return any(e["type"] in (runfiles.DONE, runfiles.ERROR) or (e["type"] == runfiles.STEP and
                       e["step"] >= after_step) for e in new)

        proc = start_worker("--once")
        try:
            wait_until(reached, timeout=600, what=f"step {after_step}")
            time.sleep(extra)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        attempt_events = events_of(run_dir)[seen:]
        assert latest(attempt_events, runfiles.ERROR) is None, latest(attempt_events, runfiles.ERROR)
        if latest(attempt_events, runfiles.DONE):
            break  # it finished before the moment came
        kills.append((after_step, round(extra, 2)))
        assert_every_file_loads(run_dir)

        assert worker.mark_interrupted() == [run_dir]  # what the next worker does on starting
        jobs.resume(run_dir, start_worker=False)

    if jobs.job_state(run_dir, False) == "queued":
        proc = start_worker("--once")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    assert jobs.last_event(run_dir)["type"] == runfiles.DONE
    assert len(kills) == 10, f"only {len(kills)} kills landed before the run finished: {kills}"

    # Every resume started at the last saved epoch: at most the epoch in progress was lost.
    per_epoch = latest(events_of(run_dir), runfiles.STARTED)["steps_per_epoch"]
    reached_step = 0
    for attempt_events in _attempts(run_dir):
        start = latest(attempt_events, runfiles.STARTED)
        if start is not None:
            assert reached_step - start["start_step"] <= per_epoch, (reached_step, start)
            assert start["start_step"] % per_epoch == 0
        steps = [e["step"] for e in attempt_events if e["type"] == runfiles.STEP]
        reached_step = max(steps, default=reached_step)
    assert reached_step == total
    assert sorted(p.name for p in run_dir.glob("*.safetensors")) == [
        runfiles.epoch_file("tibbie", e) for e in range(1, 5)]
    assert assert_every_file_loads(run_dir) == []  # the last run removed any temp a kill left


def step_seconds(events: list[dict], default: float = 0.2) -> float:
    """The median time between two step events of one attempt (how long a step takes here)."""
    gaps, previous = [], None
    for event in events:
        if event["type"] == runfiles.RUNNING:
            previous = None
        elif event["type"] == runfiles.STEP:
            if previous is not None:
                gaps.append(event["time"] - previous)
            previous = event["time"]
    return sorted(gaps)[len(gaps) // 2] if gaps else default


def _attempts(run_dir: Path) -> list[list[dict]]:
    """The run's events split at each pick-up by a worker."""
    attempts: list[list[dict]] = []
    for event in events_of(run_dir):
        if event["type"] == runfiles.RUNNING or not attempts:
            attempts.append([])
        attempts[-1].append(event)
    return attempts


# --- a full disk ------------------------------------------------------------------------------------

LIMITED_WORKER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from lora_studio.worker import main
sys.exit(main(["--once"]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_ends_the_job_in_words_keeps_the_folder_loadable_and_resumes_when_there_is_room(
        tiny_model_dir, tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_model_dir, tiny_frames), start_worker=False).run_dir

    def first_epoch_only(job, emit, should_stop, resume, bases):
        seen = []
        return worker.run_train(job, lambda e: (seen.append(e["type"]), emit(e)),
                                lambda: runfiles.EPOCH in seen, resume, bases)

    assert worker.run_job(run_dir, runners={**worker.RUNNERS, "train": first_epoch_only}) == "stopped"
    first_file = run_dir / runfiles.epoch_file("tibbie", 1)
    saved = first_file.read_bytes()

    # The disk fills up: no file may grow past 20 kB, so epoch 2's LoRA file (~45 kB) cannot be written.
    limit = 20_000
    assert len(saved) > limit and (run_dir / runfiles.EVENTS_FILE).stat().st_size < limit // 2
    jobs.resume(run_dir, start_worker=False)
    limited = subprocess.run([sys.executable, "-c", LIMITED_WORKER.format(limit=limit)], env=child_env(),
                             capture_output=True, text=True, timeout=300)
    assert limited.returncode == 0, limited.stdout + limited.stderr
    error = jobs.last_event(run_dir)
    assert error["type"] == runfiles.ERROR, error
    assert error["message"].startswith("the disk is full while writing")
    assert "free some space" in error["hint"] and "resume" in error["hint"]
    assert "Traceback" not in limited.stdout + limited.stderr  # a user error, not a crash
    assert assert_every_file_loads(run_dir) == []  # the half-written epoch-2 file was removed
    assert sorted(p.name for p in run_dir.glob("*.safetensors")) == [first_file.name]
    assert first_file.read_bytes() == saved

    # Space is back: the run continues from epoch 1's state and finishes.
    jobs.resume(run_dir, start_worker=False)
    assert worker.run_job(run_dir) == "done", jobs.last_event(run_dir)
    started = latest(events_of(run_dir), runfiles.STARTED)
    assert started["resumed"] and started["start_step"] == started["steps_per_epoch"]
    assert len(list(run_dir.glob("*.safetensors"))) == 3
    assert_every_file_loads(run_dir)


# --- two submitters, one GPU ------------------------------------------------------------------------

def busy_interval(run_dir: Path) -> tuple[float, float]:
    """From the moment a job took the GPU (picked up, or its first event for a CLI run) to its end."""
    events = events_of(run_dir)
    start = next((e for e in events if e["type"] == runfiles.RUNNING), events[0])
    end = next(e for e in reversed(events) if e["type"] in runfiles.TERMINAL)
    return start["time"], end["time"]


def assert_one_after_the_other(intervals: dict[str, tuple[float, float]]) -> None:
    ordered = sorted(intervals.items(), key=lambda item: item[1][0])
    for (first, (_, end)), (then, (start, _)) in zip(ordered, ordered[1:]):
        assert end <= start, f"{first} ({intervals[first]}) overlaps {then} ({intervals[then]})"


def stop_worker() -> None:
    """End the worker the test's jobs started (it would otherwise wait idle for ten minutes)."""
    pid = lock.holder_pid()
    if pid and lock.lock_is_held():
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not lock.lock_is_held(), what="the worker to exit")


def cli(*args: str, wait: bool = True):
    command = [sys.executable, "-m", "lora_studio.cli", *args]
    if wait:
        return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def train_args(model, frames, *extra: str) -> list[str]:
    return ["train", "--dataset", str(frames), "--base", str(model), "--name", "tibbie", "--quiet",
            "--set", f"resolution={SIZE}", "--set", "repeats=1", "--set", "batch_size=4", "--set", "epochs=2",
            "--set", "network_dim=4", "--set", "min_bucket_reso=16", "--set", "max_bucket_reso=64",
            "--set", "bucket_reso_steps=16", *extra]


@pytest.mark.slow
def test_a_cli_queue_and_a_studio_submit_racing_both_run_one_after_the_other(tiny_model_dir, tiny_frames):
    try:
        # Both submit at the same moment, and both may start a worker: one gets the lock, the other exits.
        other = cli(*train_args(tiny_model_dir, tiny_frames, "--queue"), wait=False)
        mine = jobs.submit("train", tiny_config(tiny_model_dir, tiny_frames, epochs=2)).run_dir
        out, _ = other.communicate(timeout=120)
        assert other.returncode == 0, out
        wait_until(lambda: len(jobs.list_jobs()) == 2 and all(
            jobs.job_state(j, True) == "done" for j in jobs.list_jobs()), timeout=300, what="both jobs to finish")
    finally:
        stop_worker()
    assert_one_after_the_other({j.name: busy_interval(j) for j in jobs.list_jobs()})
    assert mine in jobs.list_jobs()


@pytest.mark.slow
def test_a_cli_training_holds_the_gpu_the_studios_job_waits_and_the_cli_is_refused_while_the_worker_runs(
        tiny_model_dir, tiny_frames, tmp_path):
    first = tmp_path / "cli-run"
    try:
        direct = cli(*train_args(tiny_model_dir, tiny_frames, "--output", str(first)), wait=False)
        wait_until(lambda: (h := lock.holder()) is not None and h.kind == lock.CLI, what="the CLI to take the GPU")
        # The studio's job trains until it is stopped, so the refusal below is seen while it runs.
        studio = jobs.submit("train", tiny_config(tiny_model_dir, tiny_frames, epochs=500)).run_dir
        assert jobs.job_state(studio) == "queued"  # the GPU is the CLI's: no worker could start
        out, _ = direct.communicate(timeout=300)
        assert direct.returncode == 0, out

        # The CLI's exit started the worker for the job that waited; while it runs, a CLI run is refused.
        wait_until(lambda: any(e["type"] == runfiles.STEP for e in events_of(studio)), what="the studio's job")
        refused = cli(*train_args(tiny_model_dir, tiny_frames, "--output", str(tmp_path / "refused")))
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines()[-1] == (
            f"lora-studio: error: the studio's worker is running {studio.name} — "
            "use --queue to add this to its queue, or wait")
        assert "Traceback" not in refused.stderr
        queued = cli(*train_args(tiny_model_dir, tiny_frames, "--queue"))
        assert queued.returncode == 0, queued.stderr
        jobs.stop(studio)
        wait_until(lambda: len(jobs.list_jobs()) == 2 and all(
            jobs.job_state(j, True) in ("done", "stopped") for j in jobs.list_jobs()), timeout=300,
                   what="the studio's and the queued job")
    finally:
        stop_worker()
    assert not (tmp_path / "refused").exists()
    assert jobs.job_state(studio, True) == "stopped"
    intervals = {"cli": busy_interval(first), **{j.name: busy_interval(j) for j in jobs.list_jobs()}}
    assert_one_after_the_other(intervals)
    assert intervals["cli"][1] <= intervals[studio.name][0]  # the studio's job waited for the CLI's
