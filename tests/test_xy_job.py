"""An XY plot as a studio job: queued with its fields in job.toml, rendered by the worker after training."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from lora_studio import jobs, runfiles, worker
from lora_studio.config import TrainConfig, load_toml
from lora_studio.errors import UserError
from lora_studio.generate.grid import read_parameters
from lora_studio.config import XYPlotConfig
from lora_studio.generate.xy_job import axis_runs, load_settings, run_axis, run_xy_plot

SIZE = 32
PROMPT = "1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"


def tiny_train_config(model, frames, **changes) -> TrainConfig:
    """Two epochs at 32 px: a real run in about a second."""
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=2,
                  repeats=1, batch_size=2, resolution=SIZE, min_bucket_reso=16, max_bucket_reso=64,
                  bucket_reso_steps=16, network_dim=4, network_alpha=4.0, unet_lr=1e-2, sample_every_n_epochs=0)
    return TrainConfig(**{**values, **changes})


def plot_settings(run_dir, model, **changes) -> XYPlotConfig:
    values = dict(base=str(model), run=str(run_dir), prompt=PROMPT, negative="lowres", y="weight=0,1", seed=7,
                  steps=2, size=f"{SIZE}x{SIZE}")
    return XYPlotConfig(**{**values, **changes})


@pytest.fixture
def trained(tiny_model_dir, tiny_frames):
    """A finished train job in the studio's runs folder, and the worker's base cache that trained it."""
    bases = worker.BaseCache()
    run_dir = jobs.submit("train", tiny_train_config(tiny_model_dir, tiny_frames), start_worker=False).run_dir
    assert worker.run_job(run_dir, bases=bases) == "done", jobs.last_event(run_dir)
    return run_dir, bases


def test_the_plot_settings_are_written_to_the_job_and_read_back(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tibbie-000001.safetensors").write_bytes(b"")  # planning reads names only
    settings = plot_settings(run_dir, tiny_model_dir, negative='say "no"', cfg=5.5, share="webp",
                             z=run_axis([str(run_dir)]))
    job = jobs.submit_xy(settings, start_worker=False)

    values = load_toml(job.run_dir / jobs.JOB_FILE)
    assert values["kind"] == "xy" and values["base_model"] == str(tiny_model_dir)
    assert values["xy"]["y"] == "weight=0,1" and values["xy"]["steps"] == 2
    assert load_settings(job.run_dir) == settings
    assert jobs.load_job(job.run_dir).kind == "xy" and jobs.job_state(job.run_dir) == "queued"
    assert axis_runs(settings.z) == [str(run_dir)]
    assert axis_runs(run_axis(["/a, b/run", "/c"])) == ["/a, b/run", "/c"]  # a comma in a folder survives


def test_a_mistake_in_the_fields_is_refused_before_anything_is_queued(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tibbie-000001.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="Prompt S/R"):
        jobs.submit_xy(plot_settings(run_dir, tiny_model_dir, y="sr=lying on beach,sitting"), start_worker=False)
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        jobs.submit_xy(plot_settings(run_dir, tiny_model_dir, size="big"), start_worker=False)
    with pytest.raises(UserError, match="sampler"):
        jobs.submit_xy(plot_settings(run_dir, tiny_model_dir, sampler="Magic"), start_worker=False)
    assert jobs.list_jobs() == []


def test_an_xy_job_after_training_reuses_the_loaded_base_and_writes_grid_events_and_share_copy(
        trained, tiny_model_dir):
    run_dir, bases = trained
    base = bases.base
    job = jobs.submit_xy(plot_settings(run_dir, tiny_model_dir), start_worker=False)
    assert worker.run_job(job.run_dir, bases=bases) == "done", jobs.last_event(job.run_dir)
    assert bases.base is base  # the base training loaded, not a reload
    for module in (base.unet, base.text_encoder):  # and handed on plain: no adapter layers left behind
        assert not [k for k in module.state_dict() if "lora" in k or "base_layer" in k]

    events = runfiles.read_events(job.run_dir)[0]
    types = [e["type"] for e in events]
    assert types[:4] == ["queued", "running", "xy_labels", "xy_plan"] and types[-3:] == ["xy_done", "share", "done"]
    labels = events[2]
    assert labels["columns"] == ["Epoch: 1", "Epoch: 2"] and labels["rows"] == ["LoRA weight: 0", "LoRA weight: 1"]
    cells = [e for e in events if e["type"] == "cell"]
    assert len(cells) == 4 and sum(e["rendered"] for e in cells) == 3  # the weight-0 row is one render
    done = events[-1]
    assert (done["rendered"], done["reused"], done["cells"]) == (3, 1, 4)

    grid = job.run_dir / "xy_grid-0001.png"
    assert done["grid"] == str(grid) and Image.open(grid).width > 2 * SIZE
    assert "Script: X/Y/Z plot" in read_parameters(grid) and "batch size: 2" in read_parameters(grid)
    assert done["share"] == str(job.run_dir / "xy_grid-0001-share.jpg")
    assert read_parameters(done["share"]) == read_parameters(grid)
    assert len(list((job.run_dir / "xy_grid-0001").glob("*.png"))) == 4


def test_stop_ends_a_plot_early_with_the_cells_so_far_in_its_grid(trained, tiny_model_dir, tmp_path):
    run_dir, bases = trained
    events = []

    def two_cells_done() -> bool:
        return sum(e["type"] == "cell" for e in events) >= 2

    result = run_xy_plot(plot_settings(run_dir, tiny_model_dir, use_cache=False), bases.base, tmp_path / "xy",
                       events.append, should_stop=two_cells_done)
    bases.clean()
    assert result["stopped"] and result["cells"] == 2
    assert events[-1]["type"] == "stopped" and (tmp_path / "xy" / "xy_grid-0001.png").is_file()
    assert json.loads(json.dumps(result)) == result  # the worker writes it into the `done`/`stopped` event
