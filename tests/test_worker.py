"""The worker: one per studio, jobs one at a time, errors in words, STOP stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lora_studio import jobs, paths, runfiles, worker
from lora_studio.lock import GpuLock
from lora_studio.errors import UserError
from lora_studio.config import TrainConfig


def tiny_config(frames, model="toy", **changes) -> TrainConfig:
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=2,
                  repeats=1, batch_size=2, resolution=64, min_bucket_reso=32, max_bucket_reso=128, network_dim=4,
                  network_alpha=4.0)
    return TrainConfig(**{**values, **changes})


def start_worker_process(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(paths.project_root())}
    return subprocess.Popen([sys.executable, "-m", "lora_studio.worker", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_worker_refuses_to_start():
    first = start_worker_process("--idle-exit", "60")
    try:
        wait_until(worker.lock_is_held, what="the first worker's lock")
        second = subprocess.run([sys.executable, "-m", "lora_studio.worker", "--once"], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(paths.project_root())})
        assert second.returncode == worker.EXIT_BUSY
        assert f"another worker is already running (pid {first.pid})" in second.stderr
        assert jobs.worker_running()
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert not worker.lock_is_held()  # a clean exit releases it


def test_a_stale_lock_after_a_killed_worker_is_recovered():
    killed = start_worker_process("--idle-exit", "60")
    wait_until(worker.lock_is_held, what="the worker's lock")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert worker.holder_pid() == killed.pid  # the dead worker's pid is still written there
    assert not jobs.worker_running()

    after = subprocess.run([sys.executable, "-m", "lora_studio.worker", "--once"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHONPATH": str(paths.project_root())})
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"recovered the lock of worker pid {killed.pid}" in after.stdout
    assert worker.holder_pid() is None


def test_the_lock_refuses_a_second_holder_in_the_same_process_too():
    lock = GpuLock()
    lock.acquire()
    try:
        with pytest.raises(UserError, match="already running"):
            GpuLock().acquire(wait_s=0.2)
    finally:
        lock.release()
    assert not worker.lock_is_held()


def fake_engine(log: list, steps: int = 3):
    """Stands in for the training loop so the queue itself is what is tested."""
    def run(job, emit, should_stop, resume, bases):
        log.append((job.run_dir.name, [p.name for p in jobs.queued_jobs()]))
        emit({"type": "started", "total_steps": steps, "epochs": 1})
        for step in range(1, steps + 1):
            emit({"type": "step", "step": step, "epoch": 1, "loss": 0.1})
            if should_stop():
                emit({"type": "stopped", "step": step, "epoch": 0})
                return {"stopped": True}
        emit({"type": "done", "step": steps})
        return {"stopped": False}
    return run


def test_queued_jobs_run_one_at_a_time_oldest_first(tiny_frames):
    first = jobs.submit("train", tiny_config(tiny_frames, name="a"), start_worker=False).run_dir
    second = jobs.submit("train", tiny_config(tiny_frames, name="b"), start_worker=False).run_dir
    seen = []
    worker.serve(once=True, runners={"train": fake_engine(seen)})

    # While the first ran, the second was still waiting in the queue.
    assert seen == [(first.name, [second.name]), (second.name, [])]
    assert jobs.job_state(first) == jobs.job_state(second) == "done"
    assert [e["type"] for e in runfiles.read_events(first)[0]] == ["queued", "running", "started", "step", "step",
                                                                   "step", "done"]


def test_a_job_stopped_while_queued_never_runs(tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    jobs.stop(run_dir)
    seen = []
    worker.serve(once=True, runners={"train": fake_engine(seen)})
    assert seen == []
    assert jobs.last_event(run_dir)["before_start"] is True


def test_a_user_error_reaches_the_run_as_message_and_hint(tiny_frames):
    def no_memory(job, emit, should_stop, resume, bases):
        raise UserError("out of GPU memory", "lower batch_size or turn on gradient_checkpointing")

    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    worker.serve(once=True, runners={"train": no_memory})
    event = jobs.last_event(run_dir)
    assert (event["type"], event["message"], event["hint"]) == (
        "error", "out of GPU memory", "lower batch_size or turn on gradient_checkpointing")


def test_a_bug_fails_the_job_with_its_traceback_and_the_worker_goes_on(tiny_frames):
    def bug(job, emit, should_stop, resume, bases):
        return {}["missing"]

    broken = jobs.submit("train", tiny_config(tiny_frames, name="a"), start_worker=False).run_dir
    fine = jobs.submit("probe", tiny_config(tiny_frames, name="b"), start_worker=False).run_dir
    worker.serve(once=True, runners={"train": bug, "probe": fake_engine([])})

    event = jobs.last_event(broken)
    assert event["type"] == "error" and event["message"] == "KeyError: 'missing'"
    assert "Traceback" in (broken / "error.log").read_text() and str(broken / "error.log") in event["hint"]
    assert jobs.job_state(fine) == "done"


def test_a_job_a_killed_worker_left_running_is_marked_and_can_be_resumed(tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    for event in ({"type": "running", "pid": 999999}, {"type": "step", "step": 4, "epoch": 1, "loss": 0.2}):
        runfiles.append_event(run_dir, event)
    assert jobs.job_state(run_dir) == "interrupted"

    worker.serve(once=True, runners={})
    event = jobs.last_event(run_dir)
    assert event["type"] == "error" and "Resume" in event["hint"]

    jobs.resume(run_dir, start_worker=False)
    resumed = []

    def remember_resume(job, emit, should_stop, resume, bases):
        resumed.append(resume)
        return {}
    worker.serve(once=True, runners={"train": remember_resume})
    assert resumed == [True]
    assert jobs.job_state(run_dir) == "done"


def test_stop_ends_a_fake_run_after_its_current_step(tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir

    def stop_after_two(job, emit, should_stop, resume, bases):
        for step in range(1, 100):
            emit({"type": "step", "step": step, "epoch": 1, "loss": 0.1})
            if step == 2:
                jobs.stop(job.run_dir)
            if should_stop():
                emit({"type": "stopped", "step": step, "epoch": 0})
                return {"stopped": True}
    worker.serve(once=True, runners={"train": stop_after_two})
    assert jobs.last_event(run_dir) | {"time": 0} == {"type": "stopped", "step": 2, "epoch": 0, "time": 0}


@pytest.mark.slow
def test_stop_saves_a_real_run_and_resume_finishes_it(tiny_model_dir, tiny_frames):
    config = tiny_config(tiny_frames, model=tiny_model_dir, epochs=2, repeats=1, batch_size=2)
    run_dir = jobs.submit("train", config, start_worker=False).run_dir

    def stop_at_first_epoch():
        wait_until(lambda: (run_dir / f"{config.name}-000001.safetensors").exists(), timeout=120,
                   what="the first epoch file")
        jobs.stop(run_dir)
    stopper = threading.Thread(target=stop_at_first_epoch)
    stopper.start()
    worker.serve(once=True)
    stopper.join()

    stopped = jobs.last_event(run_dir)
    assert stopped["type"] == "stopped", stopped
    assert stopped["step"] < stopped["total_steps"]
    assert not (run_dir / f"{config.name}-000002.safetensors").exists()

    jobs.resume(run_dir, start_worker=False)
    worker.serve(once=True)
    assert jobs.job_state(run_dir) == "done", jobs.last_event(run_dir)
    assert (run_dir / f"{config.name}-000002.safetensors").exists()
    steps = [e["step"] for e in runfiles.read_events(run_dir)[0] if e["type"] == "step"]
    assert steps[-1] == stopped["total_steps"]


@pytest.mark.slow
def test_a_base_kept_loaded_between_jobs_trains_exactly_like_a_fresh_one(tiny_model_dir, tiny_frames):
    import torch
    from safetensors.torch import load_file

    config = tiny_config(tiny_frames, model=tiny_model_dir, epochs=1, repeats=1, batch_size=4)
    first = jobs.submit("train", config, start_worker=False).run_dir
    second = jobs.submit("train", config, start_worker=False).run_dir
    bases = worker.BaseCache()
    base = bases.get(str(tiny_model_dir))
    plain = {k: v.clone() for k, v in base.unet.state_dict().items()}
    for run_dir in (first, second):
        torch.manual_seed(0)  # LoRA's random init draws from the global generator
        assert worker.run_job(run_dir, bases=bases) == "done", jobs.last_event(run_dir)
        assert bases.base is base  # kept loaded, not reloaded
        assert base.unet.state_dict().keys() == plain.keys()  # no LoRA layers left behind
        assert all((base.unet.state_dict()[k] == v).all() for k, v in plain.items())

    name = f"{config.name}-000001.safetensors"
    a, b = load_file(first / name), load_file(second / name)
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_sweep_trains_one_run_per_batch_size_and_reports_them_in_one_stream(tiny_model_dir, tiny_frames):
    config = tiny_config(tiny_frames, model=tiny_model_dir, epochs=1, repeats=1)
    run_dir = jobs.submit("sweep", config, batch_sizes=[2, 4], preset="seed-recipe (edited)", start_worker=False).run_dir
    worker.serve(once=True)

    assert jobs.job_state(run_dir) == "done", jobs.last_event(run_dir)
    from lora_studio.generate.infotext import training_recipe

    for size in (2, 4):
        assert (run_dir / f"bs{size}" / f"tibbie-bs{size}-000001.safetensors").is_file()
        assert jobs.job_state(run_dir / f"bs{size}") == "done"
        # each batch size's grid can say what it was trained with
        assert training_recipe(run_dir / f"bs{size}") == {**training_recipe(run_dir / f"bs{size}"),
                                                         "preset": "seed-recipe (edited)", "batch size": str(size)}
    events = runfiles.read_events(run_dir)[0]
    assert [e["batch_size"] for e in events if e["type"] == "started"] == [2, 4]
    assert [e["type"] for e in events].count("done") == 1  # each run's own `done` arrives as `run_done`
    progress = jobs.Progress()
    progress.read_new(run_dir)
    assert progress.run == "bs4" and progress.total_steps == 2
