"""The seed's batch-size study as one job: runs per batch size, grids per prompt, scores, a recommendation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lora_studio import jobs, paths, runfiles, worker
from lora_studio.cli import main
from lora_studio.config import StudyConfig, TrainConfig, config_from_dict
from lora_studio.presets import load_preset
from lora_studio.study.run import run_study, scaled_config

WEIGHTS = "0,0.5,1"
# The demo preset, small: 2 epochs, 1 repeat, 2 of its 8 frames held out for the validation curve.
SMALL = {"epochs": 2, "repeats": 1, "validation_split": 2, "sample_prompts": []}


@pytest.fixture
def demo_frames(tmp_path) -> Path:
    """Eight clean frames of the demo character (a copy: a test never writes into assets/)."""
    source = paths.assets_dir() / "demo-dataset"
    distorted = json.loads((source / "distorted.json").read_text())
    folder = tmp_path / "tibbie"
    folder.mkdir()
    for png in [p for p in sorted(source.glob("frame_*.png")) if p.name not in distorted][:8]:
        shutil.copy(png, folder / png.name)
        shutil.copy(png.with_suffix(".txt"), folder / png.with_suffix(".txt").name)
    return folder


def small_demo(frames: Path) -> TrainConfig:
    return config_from_dict({"dataset": str(frames), "name": "tibbie", **SMALL}, load_preset("demo"))


def small_study(**changes) -> StudyConfig:
    return StudyConfig(**{"batch_sizes": [1, 2], "prompts": ["", "sitting on tree"], "weights": WEIGHTS,
                          "steps": 4, **changes})


def fingerprint(run_dir: Path) -> dict:
    """A run's step events and LoRA files, to tell whether anything trained it again."""
    steps = [e for e in runfiles.read_events(run_dir)[0] if e["type"] == runfiles.STEP]
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.glob("*.safetensors"))}
    return {"steps": len(steps), "files": files}


def test_a_queued_study_keeps_its_training_config_and_study_settings(tiny_frames):
    config = TrainConfig(name="tibbie", dataset=str(tiny_frames), trigger_word="tibbie", batch_size=2, epochs=3)
    study = StudyConfig(batch_sizes=[1, 2], prompts=["", "sitting on tree"], lr_scaling="sqrt", weights="0,0.5,1")

    job = jobs.submit_study(config, study, preset="demo", start_worker=False)

    again = jobs.load_job(job.run_dir)
    assert (again.kind, again.preset, again.batch_sizes) == ("study", "demo", [1, 2])
    assert again.config.batch_size == 2 and again.config.epochs == 3
    assert again.study == study
    assert jobs.job_state(job.run_dir) == "queued"


def test_scaling_with_the_square_root_of_the_batch_keeps_the_presets_batch_as_the_reference():
    preset = TrainConfig(batch_size=2, unet_lr=4e-3, te_lr=4e-4)
    assert scaled_config(preset, 8, "sqrt").unet_lr == pytest.approx(8e-3)
    assert scaled_config(preset, 8, "sqrt").te_lr == pytest.approx(8e-4)
    assert scaled_config(preset, 1, "same") == preset
    follows = scaled_config(TrainConfig(batch_size=1, unet_lr=1e-3), 4, "sqrt")
    assert follows.te_lr is None and follows.resolved_te_lr() == pytest.approx(2e-3 / 10)  # te follows unet


def test_lora_studio_study_trains_each_batch_size_judges_their_grids_and_names_one_run_epoch_and_weight(
        demo_frames, tmp_path, capsys):
    root = tmp_path / "study"
    args = ["study", "--dataset", str(demo_frames), "--base", "toy", "--preset", "demo", "--name", "tibbie",
            "--output", str(root), "--batch-sizes", "1,2", "--prompt", "", "--prompt", "sitting on tree",
            "--weights", WEIGHTS, "--steps", "4", "--lr-scaling", "sqrt", "--quiet"]
    args += [a for k, v in {**SMALL, "sample_every_n_epochs": 0}.items() if k != "sample_prompts"
             for a in ("--set", f"{k}={v}")]
    assert main(args) == 0
    assert "recommendation: batch size " in capsys.readouterr().out

    study = json.loads((root / runfiles.STUDY_FILE).read_text())
    assert [r["run"] for r in study["runs"]] == ["bs1", "bs2"]
    bs1, bs2 = study["runs"]
    assert bs1["state"] == bs2["state"] == "done"
    assert bs1["steps_per_epoch"] == 2 * bs2["steps_per_epoch"] == 6  # 8 frames, 2 held out
    assert bs2["unet_lr"] == pytest.approx(bs1["unet_lr"] * 2 ** 0.5)  # recorded per run, √ of the batch
    for run in study["runs"]:
        assert run["loss"][-1][0] == pytest.approx(2.0)  # against epochs, so the batch sizes line up
        assert [e for e, _ in run["epoch_loss"]] == [1, 2]
        assert [e for e, _ in run["validation"]] == [0, 1, 2]
    # the character prompt: her tags on every frame (the demo set leaves her bow to the trigger)
    assert study["prompts"][0] == "tibbie, sheep, <lora:tibbie-bs1-000001:0>"
    assert study["prompts"][1] == "tibbie, sitting on tree, <lora:tibbie-bs1-000001:0>"
    for grid in study["grids"]:
        assert grid["state"] == "done"
        with Image.open(root / grid["grid"]) as sheet:
            assert "parameters" in sheet.info  # A1111's PNG Info reads the grid
        assert sorted(grid["run_grids"]) == sorted(grid["heatmaps"]) == sorted(grid["picks"]) == ["bs1", "bs2"]
        assert all((root / path).is_file() for path in [*grid["run_grids"].values(), *grid["heatmaps"].values()])
    assert sorted(b["run"] for b in study["best"]) == ["bs1", "bs2"]
    pick = study["recommendation"]
    assert pick["run"] in ("bs1", "bs2") and pick["batch_size"] == int(pick["run"][2:])
    assert pick["epoch"] in (1, 2) and pick["weight"] in (0.5, 1.0)  # a cell that exists, the LoRA on
    assert pick["reason"].startswith(f"batch size {pick['batch_size']}, epoch {pick['epoch']}")

    events, _ = runfiles.read_events(root)
    assert events[-1]["type"] == runfiles.DONE and events[-1]["study"] == str(root / runfiles.STUDY_FILE)
    assert [p for e in events for p in runfiles.event_problems(e)] == []
    assert {e["type"] for e in events} >= {runfiles.STUDY_PLAN, runfiles.STUDY_STAGE, runfiles.RUN_DONE,
                                          runfiles.CELL, runfiles.SCORE, runfiles.STUDY_REPORT}
    assert {e.get("prompt_index") for e in events if e["type"] == runfiles.CELL} == {0, 1}


def test_a_stopped_study_job_resumes_without_training_a_finished_run_or_rendering_a_cached_cell_again(
        demo_frames):
    config, study = small_demo(demo_frames), small_study(prompts=["sitting on tree"])
    root = jobs.submit_study(config, study, preset="demo", start_worker=False).run_dir

    def stop_after_the_first_run(job, emit, should_stop, resume, bases):  # the Stop button, pressed on time
        seen = []
        return worker.run_study_job(job, lambda e: (seen.append(e["type"]), emit(e)),
                                    lambda: runfiles.RUN_DONE in seen, resume, bases)

    assert worker.run_job(root, runners={"study": stop_after_the_first_run}) == "stopped"
    assert jobs.last_event(root)["study"] == str(root / runfiles.STUDY_FILE)
    assert [r["state"] for r in json.loads((root / runfiles.STUDY_FILE).read_text())["runs"]] == ["done", "stopped"]
    assert not runfiles.study_grid_dir(root, 0).exists()  # the grids wait for every run
    before, offset = fingerprint(root / "bs1"), runfiles.read_events(root)[1]

    jobs.resume(root, start_worker=False)
    assert worker.run_job(root) == "done", jobs.last_event(root)

    events = runfiles.read_events(root, offset)[0]
    assert fingerprint(root / "bs1") == before  # the finished run was not trained again
    assert {e["run"] for e in events if e["type"] == runfiles.STEP} == {"bs2"}
    first_plot = [e for e in events if e["type"] == runfiles.XY_PLAN]
    done = jobs.last_event(root)

    events.clear()
    again = run_study(config, study, root, events.append, lambda: False, preset="demo")

    assert not [e for e in events if e["type"] == runfiles.STEP]
    assert [e["to_render"] for e in events if e["type"] == runfiles.XY_PLAN] == [0]  # every cell from the cache
    assert [e["cells"] for e in events if e["type"] == runfiles.XY_PLAN] == [p["cells"] for p in first_plot]
    assert again["recommendation"] == done["recommendation"]


def test_a_study_with_two_seeds_per_cell_draws_every_grid_twice_and_judges_the_mean_of_both(demo_frames, tmp_path):
    from lora_studio.study import results
    from lora_studio.study.report import report_html

    root, events = tmp_path / "study", []
    result = run_study(small_demo(demo_frames), small_study(batch_sizes=[1], prompts=[""], seeds=2), root,
                       events.append, lambda: False, preset="demo")

    study = json.loads((root / runfiles.STUDY_FILE).read_text())
    assert study["seeds"] == [1234, 1235]
    grid = study["grids"][0]
    assert grid["state"] == "done" and [g["seed"] for g in grid["seed_grids"]] == [1235]
    second = grid["seed_grids"][0]
    assert second["grid"].startswith("grids/p1-seed2/")
    with Image.open(root / grid["grid"]) as one, Image.open(root / second["grid"]) as two:
        assert "Seed: 1234" in one.info["parameters"] and "Seed: 1235" in two.info["parameters"]
    plans = [e for e in events if e["type"] == runfiles.XY_PLAN]
    assert [e["seed_index"] for e in plans] == [0, 1] and plans[0]["cells"] == plans[1]["cells"]
    assert [p for e in events for p in runfiles.event_problems(e)] == []

    # the pick is the one of both seeds' cells together, not of either seed alone
    pooled = [c for path in (grid["scores"], second["scores"]) for c in json.loads((root / path).read_text())["cells"]]
    thresholds = results.thresholds_of(json.loads((root / grid["scores"]).read_text()))
    assert grid["picks"]["bs1"] == results.run_pick(pooled, thresholds, 3.0)
    assert result["recommendation"] == study["recommendation"]["reason"]
    page = report_html(study, root)
    assert "seeds 1234, 1235: every score is the mean over them" in page and "Prompt 1, seed 1235" in page
