"""The study panel and view without a browser: what the user types becomes a StudyConfig, events become words."""

from __future__ import annotations

import pytest

from lora_studio import jobs
from lora_studio.config import StudyConfig, TrainConfig
from lora_studio.errors import UserError
from lora_studio.ui import study_panel, study_view
from lora_studio.ui.study_view import StudyProgress, progress_text, status_html

# A study of batch sizes 2 and 4 with two prompts, as its events.jsonl holds them (times left out).
PLAN = [{"type": "queued", "kind": "study", "resume": False},
        {"type": "running", "pid": 1, "resume": False},
        {"type": "study_plan", "batch_sizes": [2, 4], "prompts": ["tibbie, sheep", "tibbie, sitting on tree"],
         "grids": 2, "lr_scaling": "same"}]
TRAIN_BS4 = [{"type": "study_stage", "stage": "train", "index": 1, "total": 2, "run": "bs4", "batch_size": 4},
             {"type": "caching", "done": 3, "total": 8, "run": "bs4", "batch_size": 4},
             {"type": "started", "total_steps": 120, "steps_per_epoch": 60, "epochs": 2, "frames": 8, "start_step": 0,
              "resumed": False, "device": "cpu", "config": {}, "run": "bs4", "batch_size": 4},
             *({"type": "step", "step": s, "epoch": 1, "loss": 0.1, "lr_unet": 1e-4, "lr_te": 1e-5, "total_steps": 120,
                "elapsed_s": 1.0, "run": "bs4", "batch_size": 4} for s in range(1, 41))]
GRID_2 = [{"type": "study_stage", "stage": "xy", "index": 1, "total": 2},
          {"type": "xy_plan", "cells": 64, "columns": 8, "rows": 8, "grids": 1, "to_render": 60, "grid": "g.png",
           "prompt_index": 1},
          *({"type": "cell", "x": i % 8, "y": i // 8, "z": 0, "path": f"c{i}.png", "rendered": True, "prompt_index": 1}
            for i in range(38)),
          *({"type": "score", "x": i % 8, "y": i // 8, "z": 0, "fidelity": 0.5, "adherence": 0.5, "quality": 0.9,
             "cached": False, "prompt_index": 1} for i in range(37))]
REPORT = [{"type": "study_stage", "stage": "report", "index": 0, "total": 1},
          {"type": "study_report", "study": "/s/study.json", "report": "/s/report.html", "sheet": "/s/report.png",
           "recommendation": "recognised from 0.5 and the tree survives to 0.8"},
          {"type": "done", "study": "/s/study.json", "report": "/s/report.html", "sheet": "/s/report.png",
           "recommendation": "recognised from 0.5 and the tree survives to 0.8", "runs": ["/s/bs2", "/s/bs4"]}]


def progress_after(events, prompts=("", "sitting on tree")) -> StudyProgress:
    p = StudyProgress(prompts=list(prompts))
    for event in events:
        p.feed(event)
    return p


def test_the_study_says_in_words_which_run_trains_which_grid_is_drawn_and_what_it_recommends():
    assert progress_text(progress_after(PLAN[:1]), "queued") == "waiting for the worker"
    assert progress_text(progress_after(PLAN[:2]), "running") == "loading the model"
    assert progress_text(progress_after(PLAN + TRAIN_BS4[:1]), "running") == \
        "training batch size 4 (run 2 of 2) — starting"

    caching = progress_after(PLAN + TRAIN_BS4[:2])
    assert progress_text(caching, "running") == "training batch size 4 (run 2 of 2) — encoding frames 3/8"
    training = progress_after(PLAN + TRAIN_BS4)
    assert progress_text(training, "running") == "training batch size 4 (run 2 of 2) — step 40/120"
    assert "<progress value='40' max='120'>" in status_html(training, "running")

    # The grid's prompt as the user typed it (the events carry it with the trigger and LoRA tag added).
    drawing = progress_after(PLAN + TRAIN_BS4 + GRID_2)
    assert progress_text(drawing, "running") == "grid 2 of 2 'sitting on tree': 37/64 cells scored"
    assert "<progress value='37' max='64'>" in status_html(drawing, "running")
    first = progress_after(PLAN + [{**e, "prompt_index": 0} if "prompt_index" in e else e for e in GRID_2[:3]])
    assert progress_text(first, "running") == "grid 1 of 2 the character prompt: 1/64 cells rendered"

    done = progress_after(PLAN + TRAIN_BS4 + GRID_2 + REPORT)
    assert done.state == "done" and done.report == "/s/report.html"
    # The event carries the reason; study.json the pick it is about (read once by the view).
    assert study_view.message_text(done, "done") == "**Recommendation:** recognised from 0.5 and the tree survives to 0.8"
    done.recommendation = {"batch_size": 2, "run": "bs2", "epoch": 2, "weight": 0.7,  # study.json's pick
                           "reason": "recognised from 0.5 and the tree survives to 0.8"}
    assert study_view.message_text(done, "done") == (
        "**Recommendation: batch size 2 · epoch 2 · weight 0.7**\n\nrecognised from 0.5 and the tree survives to 0.8")
    assert "<progress" not in status_html(done, "done")


def test_a_failed_study_shows_its_error_and_a_run_finishing_is_not_the_study_finishing():
    p = progress_after(PLAN + TRAIN_BS4 + [{"type": "run_done", "run": "bs4", "batch_size": 4}])
    assert p.state == "running" and p.runs_done == {4}
    p.feed({"type": "error", "message": "the toy judge is missing", "hint": "reinstall"})
    assert study_view.message_text(p, "error") == "⚠️ **the toy judge is missing** — reinstall"


def test_the_panel_reads_batch_sizes_prompts_and_numbers_or_says_what_is_wrong():
    defaults = {"batch_sizes": "1, 2", "prompts": ["", "sitting on tree", ""], "lr_scaling": "sqrt",
                "weights": "0,0.5,1", "negative": "", "seed": "7", "sampler": "Euler a", "steps": "4", "cfg": "7",
                "scorer": "toy", "beta": "3"}
    study = study_panel.read_study(defaults)
    assert study == StudyConfig(batch_sizes=[1, 2], prompts=["", "sitting on tree"], lr_scaling="sqrt",
                                weights="0,0.5,1", seed=7, sampler="Euler a", steps=4, scorer="toy")
    for change, words in (({"batch_sizes": ""}, "study batch sizes are empty"),
                          ({"batch_sizes": "1,two"}, "give whole numbers"),
                          ({"batch_sizes": "2,2"}, "repeat a size"),
                          ({"steps": "2.5"}, "'Steps' is 2.5"),
                          ({"seed": ""}, "'Seed' is empty"),
                          ({"steps": "0"}, "allowed range 1 … 150")):
        with pytest.raises(UserError, match=words):
            study_panel.read_study({**defaults, **change})


def test_start_study_queues_the_forms_config_with_the_te_lr_in_force_and_the_plan_in_words(tiny_frames):
    config = TrainConfig(name="tibbie", dataset=str(tiny_frames), trigger_word="tibbie", epochs=2, repeats=1,
                         batch_size=2, unet_lr=1e-3, te_lr=None)
    study = StudyConfig(batch_sizes=[1, 2], prompts=["", "sitting on tree"], weights="0,0.5,1")
    assert study_panel.plan_text(config, study) == ("2 runs (batch 1: 16 steps, batch 2: 8 steps), then 2 grids of "
                                                   "2 epochs × 3 weights × 2 runs")
    job = study_panel.submit_study(config, study, preset_label="demo (edited)", start_worker=False)
    again = jobs.load_job(job.run_dir)
    assert again.kind == "study" and again.study == study and again.preset == "demo (edited)"
    assert again.config.te_lr == pytest.approx(1e-4)  # spelled out, as Start writes it
    assert study_view.is_study(job.run_dir)
    watch = study_view.StudyWatch()
    shown = study_view.update(watch, str(job.run_dir))
    assert shown["visible"] is True and "waiting for the worker" in shown["status"]
    assert watch.progress.prompts == ["", "sitting on tree"]
    assert study_view.update(watch, None) == {"visible": False}


def test_the_monitor_beside_the_study_keeps_the_last_runs_loss_curve_through_the_grids():
    p = jobs.Progress()
    for event in PLAN + TRAIN_BS4 + GRID_2 + [{"type": "recommendation", "epoch": 2, "weight": 1.0, "reason": "",
                                               "path": "g.png", "run": "bs2", "prompt_index": 1}]:
        p.feed(event)
    assert p.run == "bs4" and len(p.losses) == 40  # the grid's pick names a run; it is no new training


def test_a_study_with_two_seeds_says_which_seeds_grid_it_draws_and_its_plan_counts_both(tiny_frames):
    plan = [*PLAN[:2], {**PLAN[2], "seeds": [1234, 1235]}]
    second_seed = [{"type": "study_stage", "stage": "xy", "index": 1, "total": 2, "prompt_index": 1, "seed_index": 1},
                   *({**e, "seed_index": 1} for e in GRID_2[1:12])]
    p = progress_after(plan + GRID_2 + second_seed)
    assert progress_text(p, "running") == "grid 2 of 2 'sitting on tree', seed 2 of 2: 10/64 cells rendered"
    assert "<progress value='10' max='64'>" in status_html(p, "running")

    config = TrainConfig(name="tibbie", dataset=str(tiny_frames), trigger_word="tibbie", epochs=2, repeats=1,
                         batch_size=2)
    study = StudyConfig(batch_sizes=[1, 2], prompts=["", "sitting on tree"], weights="0,0.5,1", seeds=2)
    assert study_panel.plan_text(config, study) == ("2 runs (batch 1: 16 steps, batch 2: 8 steps), then 4 grids "
                                                   "(2 prompts × 2 seeds) of 2 epochs × 3 weights × 2 runs")
