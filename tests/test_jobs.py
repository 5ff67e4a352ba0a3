"""The studio's side of jobs: queueing a run, reading where it is, budgets and progress."""

from __future__ import annotations

import json

import pytest

from lora_studio import jobs, runfiles
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError


def tiny_config(frames, model="toy", **changes) -> TrainConfig:
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie",
                  epochs=2, repeats=1, batch_size=2, resolution=64, min_bucket_reso=32, max_bucket_reso=128,
                  network_dim=4, network_alpha=4.0)
    values.update(changes)
    return TrainConfig(**values)


def test_a_submitted_job_is_queued_with_its_full_config(tiny_frames, monkeypatch):
    monkeypatch.chdir(tiny_frames.parent)
    job = jobs.submit("train", tiny_config("frames", unet_lr=3e-4), start_worker=False)

    assert job.run_dir.parent == jobs.paths.runs_dir()
    assert jobs.job_state(job.run_dir) == "queued"
    again = jobs.load_job(job.run_dir)
    assert again.kind == "train"
    assert again.config.unet_lr == 3e-4
    assert again.config.dataset == str(tiny_frames)  # made absolute for a worker in another folder


def test_a_sweep_job_remembers_its_batch_sizes_and_preset(tiny_frames):
    job = jobs.submit("sweep", tiny_config(tiny_frames), batch_sizes=[1, 3], preset="seed-recipe", start_worker=False)
    again = jobs.load_job(job.run_dir)
    assert again.batch_sizes == [1, 3]
    assert again.preset == "seed-recipe"


def test_an_unknown_job_kind_is_refused(tiny_frames):
    with pytest.raises(UserError, match="unknown job kind"):
        jobs.submit("paint", tiny_config(tiny_frames), start_worker=False)


def test_state_follows_the_last_event_and_a_dead_worker_means_interrupted(tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    runfiles.append_event(run_dir, {"type": "running", "pid": 1})
    runfiles.append_event(run_dir, {"type": "step", "step": 1, "epoch": 1, "loss": 0.1})
    assert jobs.job_state(run_dir, worker_alive=True) == "running"
    assert jobs.job_state(run_dir, worker_alive=False) == "interrupted"
    assert jobs.job_state(run_dir) == "interrupted"  # no worker holds the lock in this test
    runfiles.append_event(run_dir, {"type": "stopped", "step": 1, "epoch": 0})
    assert jobs.job_state(run_dir) == "stopped"


def test_the_last_event_ignores_a_half_written_line(tmp_path):
    runfiles.append_event(tmp_path, {"type": "step", "step": 1})
    with open(tmp_path / runfiles.EVENTS_FILE, "a") as fh:
        fh.write('{"type": "step", "st')
    assert jobs.last_event(tmp_path)["step"] == 1


def test_the_last_event_of_a_long_run_is_found_from_the_end(tmp_path):
    for step in range(3000):
        runfiles.append_event(tmp_path, {"type": "step", "step": step, "loss": 0.1, "note": "x" * 40})
    assert jobs.last_event(tmp_path)["step"] == 2999


def test_queued_jobs_wait_oldest_request_first_and_resumes_join_the_end(tiny_frames):
    first = jobs.submit("train", tiny_config(tiny_frames, name="a"), start_worker=False).run_dir
    second = jobs.submit("probe", tiny_config(tiny_frames, name="b"), start_worker=False).run_dir
    assert jobs.queued_jobs() == [first, second]
    runfiles.append_event(first, {"type": "stopped", "step": 3, "epoch": 0})
    assert jobs.queued_jobs() == [second]

    jobs.stop(first)  # a STOP left from the stop must not stop the resumed run
    jobs.resume(first, start_worker=False)
    assert not runfiles.stop_requested(first)
    assert jobs.queued_jobs() == [second, first]
    assert jobs.last_event(first)["resume"] is True


def test_only_a_stopped_or_failed_training_can_be_resumed(tiny_frames):
    probe = jobs.submit("probe", tiny_config(tiny_frames), start_worker=False).run_dir
    runfiles.append_event(probe, {"type": "stopped"})
    with pytest.raises(UserError, match="cannot be resumed"):
        jobs.resume(probe, start_worker=False)
    done = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    runfiles.append_event(done, {"type": "done"})
    with pytest.raises(UserError, match="only a stopped or failed"):
        jobs.resume(done, start_worker=False)


def test_step_budget_is_frames_times_repeats_times_epochs_over_batch(tiny_frames):
    config = tiny_config(tiny_frames, repeats=6, epochs=8, batch_size=4)
    budget = jobs.step_budget(config, jobs.kept_frames(config))
    assert budget["frames"] == 8
    assert budget["steps_per_epoch"] == 8 * 6 // 4
    assert budget["total_steps"] == 8 * 6 * 8 // 4


def test_inputs_a_run_would_fail_on_are_refused_before_queueing(tiny_frames, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no usable|no images|image"):
        jobs.check_inputs(tiny_config(empty))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"pickle")
    with pytest.raises(UserError, match="safetensors"):
        jobs.check_inputs(tiny_config(tiny_frames, model=ckpt))
    jobs.check_inputs(tiny_config(tiny_frames))


def events_file(run_dir, events):
    for event in events:
        runfiles.append_event(run_dir, event)


def test_progress_folds_loss_lr_files_samples_and_eta(tmp_path):
    events_file(tmp_path, [
        {"type": "queued", "kind": "train"}, {"type": "running"},
        {"type": "started", "total_steps": 10, "epochs": 2, "start_step": 0},
        *[{"type": "step", "step": s, "epoch": 1, "loss": 1.0 / s, "lr_unet": 1e-4, "lr_te": 1e-5, "time": 100.0 + s}
          for s in range(1, 6)],
        {"type": "epoch", "epoch": 1}, {"type": "checkpoint", "path": "/x/tibbie-000001.safetensors", "epoch": 1},
        {"type": "sample", "path": "/x/s.png", "epoch": 1, "prompt": "tibbie"},
    ])
    progress = jobs.Progress()
    assert progress.read_new(tmp_path)
    assert not progress.read_new(tmp_path)  # nothing new since the offset
    assert progress.state == "running"
    assert [p[0] for p in progress.losses] == [1, 2, 3, 4, 5]
    assert progress.losses[0][2] == 1.0 and progress.losses[-1][2] > progress.losses[-1][1]  # smoothed lags
    assert progress.lrs[-1] == (5, 1e-4, 1e-5)
    assert progress.checkpoints == [("/x/tibbie-000001.safetensors", 1)]
    assert progress.samples == [("/x/s.png", "epoch 1: tibbie")]
    assert progress.eta_seconds() == pytest.approx(5.0)  # 5 steps left at 1 step/s


def test_progress_after_a_resume_keeps_only_the_replayed_steps_once(tmp_path):
    events_file(tmp_path, [{"type": "step", "step": s, "epoch": 1, "loss": 0.5} for s in range(1, 8)])
    events_file(tmp_path, [{"type": "stopped"}, {"type": "queued", "resume": True},
                           {"type": "started", "total_steps": 10, "start_step": 4}])
    events_file(tmp_path, [{"type": "step", "step": s, "epoch": 1, "loss": 0.2} for s in range(5, 11)])
    progress = jobs.Progress()
    progress.read_new(tmp_path)
    assert [p[0] for p in progress.losses] == list(range(1, 11))
    assert progress.losses[-1][1] == 0.2


def test_progress_shows_an_error_with_its_hint(tmp_path):
    events_file(tmp_path, [{"type": "error", "message": "out of GPU memory", "hint": "lower batch_size"}])
    progress = jobs.Progress()
    progress.read_new(tmp_path)
    assert progress.state == "error"
    assert progress.error == {"message": "out of GPU memory", "hint": "lower batch_size"}


def test_durations_read_like_a_person_writes_them():
    assert jobs.format_duration(None) == "…"
    assert jobs.format_duration(12.4) == "12s"
    assert jobs.format_duration(185) == "3m 05s"
    assert jobs.format_duration(3720) == "1h 02m"


def test_job_toml_is_readable_toml_with_the_kind_first(tiny_frames):
    run_dir = jobs.submit("train", tiny_config(tiny_frames), start_worker=False).run_dir
    text = (run_dir / "job.toml").read_text()
    assert 'kind = "train"' in text.splitlines()[1]
    assert json.loads((run_dir / "events.jsonl").read_text().splitlines()[0])["type"] == "queued"
