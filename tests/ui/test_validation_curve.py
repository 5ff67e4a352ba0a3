"""The Train tab's loss plot shows the held-out frames' loss beside the training loss, from a real run's events."""

import dataclasses

from lora_studio import jobs, runfiles
from lora_studio.ui import monitor


def test_the_loss_plot_draws_the_validation_curve_of_a_run_that_holds_frames_out(tiny_model_dir, tiny_frames, tmp_path):
    from lora_studio.train.loop import train
    from tests.train.test_loop import tiny_config

    run = tmp_path / "run"
    config = dataclasses.replace(tiny_config(tiny_model_dir, tiny_frames), validation_split=2)
    train(config, run, runfiles.Recorder(run))

    progress = jobs.Progress()
    progress.read_new(run)
    assert [epoch for _step, _loss, epoch in progress.validation] == [0, 1, 2]
    frame = monitor._loss_frame(progress)
    validation = frame[frame["curve"] == "validation"]
    assert list(validation["step"]) == [0, progress.total_steps // 2, progress.total_steps]
    assert "validation loss" in monitor._status_html(progress, "done")
    assert "validation" not in set(monitor._loss_frame(_without_validation(run))["curve"])


def _without_validation(run):
    progress = jobs.Progress()
    for event in runfiles.read_events(run)[0]:
        if event["type"] != runfiles.VALIDATION:
            progress.feed(event)
    return progress
