"""The seed's batch-size study as one job: runs per batch size, grids per prompt, scores, a recommendation."""

from __future__ import annotations

from lora_studio import jobs
from lora_studio.config import StudyConfig, TrainConfig


def test_a_queued_study_keeps_its_training_config_and_study_settings(tiny_frames):
    config = TrainConfig(name="tibbie", dataset=str(tiny_frames), trigger_word="tibbie", batch_size=2, epochs=3)
    study = StudyConfig(batch_sizes=[1, 2], prompts=["", "sitting on tree"], lr_scaling="sqrt", weights="0,0.5,1")

    job = jobs.submit_study(config, study, preset="demo", start_worker=False)

    again = jobs.load_job(job.run_dir)
    assert (again.kind, again.preset, again.batch_sizes) == ("study", "demo", [1, 2])
    assert again.config.batch_size == 2 and again.config.epochs == 3
    assert again.study == study
    assert jobs.job_state(job.run_dir) == "queued"
