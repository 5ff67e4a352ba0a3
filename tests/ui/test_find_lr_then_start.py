"""Find LR, then Start, as the Train tab does it (no browser): the run trains and records the probe's numbers."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest

from lora_studio import jobs, runfiles, worker
from lora_studio.config import TrainConfig
from lora_studio.train.lora_file import read_metadata
from lora_studio.train.probe import apply_probe, read_probe
from lora_studio.ui import monitor, xy_tab
from lora_studio.ui.train_tab import budget_text, start_job


def tiny_form(model, frames, **changes) -> TrainConfig:
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=1,
                  repeats=1, batch_size=4, resolution=32, min_bucket_reso=16, max_bucket_reso=64,
                  bucket_reso_steps=16, network_dim=4, network_alpha=4.0, unet_lr=5e-4, te_lr=2.8e-4,
                  probe_min_images=0)  # one probe epoch: a tiny random model does not survive 420 images
    return TrainConfig(**{**values, **changes}).validate()


def test_a_run_started_after_find_lr_trains_and_records_the_probe(tiny_model_dir, tiny_frames):
    form = tiny_form(tiny_model_dir, tiny_frames)
    probe_job, recorded = start_job("probe", form, start_worker=False)
    worker.serve(once=True)
    assert jobs.job_state(probe_job.run_dir) == "done" and not recorded
    # The probe leaves no epoch file: the XY tab does not offer it as a run to plot.
    assert not list(probe_job.run_dir.glob("*.safetensors"))
    assert all(run.folder != probe_job.run_dir for run in xy_tab.plot_runs())
    assert not monitor.can_resume(probe_job.run_dir)

    probe = read_probe(probe_job.run_dir)
    form = apply_probe(form, probe)  # what the form holds once Find LR finished
    run, recorded = start_job("train", form, probe_dir=str(probe_job.run_dir), start_worker=False)
    assert recorded
    worker.serve(once=True)
    assert jobs.job_state(run.run_dir) == "done", jobs.last_event(run.run_dir)

    written = tomllib.loads((run.run_dir / "job.toml").read_text())
    assert written["unet_lr"] == probe["unet_lr"]
    # job.toml spells out the te_lr in force, and the budget line showed that very number.
    assert written["te_lr"] == pytest.approx(probe["unet_lr"] / form.te_lr_divisor)
    assert f"te_lr in force: {written['te_lr']:.4g} (unet_lr ÷ 10)" in budget_text(form)
    assert json.loads((run.run_dir / "probe.json").read_text())["d_lr"] == probe["d_lr"]
    meta = read_metadata(run.run_dir / "tibbie-000001.safetensors")
    assert float(meta["lora_studio_probe_d_lr"]) == pytest.approx(probe["d_lr"])

    # Another unet_lr typed over the probe's: that run does not claim the probe.
    edited, recorded = start_job("train", dataclasses.replace(form, unet_lr=1e-3), probe_dir=str(probe_job.run_dir),
                                 start_worker=False)
    assert not recorded and not (edited.run_dir / "probe.json").exists()
    assert tomllib.loads((edited.run_dir / "job.toml").read_text())["te_lr"] == pytest.approx(1e-4)


def test_resume_is_offered_only_where_there_is_saved_state(tiny_frames, studio_home):
    failed = start_job("train", TrainConfig(name="tibbie", dataset=str(tiny_frames)), start_worker=False)[0]
    runfiles.append_event(failed.run_dir, {"type": "error", "message": "model not found", "hint": ""})
    assert not monitor.can_resume(failed.run_dir)
    assert monitor.update(monitor.Watch().follow(str(failed.run_dir)))["resume"]["interactive"] is False

    (failed.run_dir / "state").mkdir()
    (failed.run_dir / "state" / "train_state.pt").write_bytes(b"saved")
    assert monitor.can_resume(failed.run_dir)
    assert monitor.update(monitor.Watch().follow(str(failed.run_dir)))["resume"]["interactive"] is True


def test_a_sweep_started_after_find_lr_records_the_probe_in_every_batch_size(tiny_model_dir, tiny_frames, tmp_path):
    from lora_studio.train.sweep import run_sweep

    probe = {"d_lr": 0.003, "unet_lr": 0.001}
    form = apply_probe(tiny_form(tiny_model_dir, tiny_frames), probe)
    job, recorded = start_job("sweep", form, probe_dir=str(_probe_folder(tmp_path, probe)), start_worker=False)
    assert recorded and (job.run_dir / "probe.json").is_file()
    run_sweep(job.config, job.run_dir, lambda e: None, lambda: False, batch_sizes=[4])
    meta = read_metadata(job.run_dir / "bs4" / "tibbie-bs4-000001.safetensors")
    assert float(meta["lora_studio_probe_d_lr"]) == pytest.approx(0.003)


def _probe_folder(tmp_path, probe: dict):
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "probe.json").write_text(json.dumps(probe))
    return folder
