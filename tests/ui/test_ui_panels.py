"""The studio's panels without a browser: the form round-trips the config, the monitor reads run files."""

from __future__ import annotations

import os
import subprocess
import sys

import gradio as gr

from lora_studio import jobs, paths, runfiles
from lora_studio.config import FIELD_NAMES, TrainConfig
from lora_studio.ui import characters, monitor
from lora_studio.ui.form import build_fields, read_form, to_widget
from lora_studio.ui.train_tab import budget_text


def test_the_studio_never_imports_torch(tiny_frames, studio_home):
    code = ("import sys\n"
            "from lora_studio.ui.app import build_app\n"
            "from lora_studio.ui.train_tab import budget_text\n"
            "from lora_studio.config import TrainConfig\n"
            "build_app()\n"
            f"print(budget_text(TrainConfig(dataset={str(tiny_frames)!r})))\n"
            "assert 'torch' not in sys.modules, 'the UI process imported torch'\n")
    env = {**os.environ, "LORA_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(paths.project_root())}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Step budget" in result.stdout


def test_the_form_shows_and_reads_back_every_field():
    config = TrainConfig(name="tibbie", dataset="/frames", trigger_word="tibbie", batch_size=3, te_lr=None,
                         sample_prompts=["tibbie, sheep", "tibbie, beach"], unet_lr=3e-4, noise_offset=0.05)
    with gr.Blocks():
        comps = build_fields(config, FIELD_NAMES)
    data = {comp: to_widget(name, getattr(config, name)) for name, comp in comps.items()}
    assert data[comps["te_lr"]] == ""  # shown empty ("auto"), not 0, which would freeze the text encoder
    assert data[comps["sample_prompts"]] == "tibbie, sheep\ntibbie, beach"
    assert read_form(data, comps) == config


def test_the_step_budget_is_shown_before_starting(tiny_frames):
    text = budget_text(TrainConfig(dataset=str(tiny_frames), repeats=6, epochs=8, batch_size=4, resolution=64,
                                   min_bucket_reso=32, max_bucket_reso=128))
    assert "8 frames × 6 repeats × 8 epochs ÷ batch 4 = **96 steps**" in text
    assert "te_lr in force: 1e-05 (unet_lr ÷ 10)" in text


def test_a_character_remembers_its_last_settings():
    assert characters.last_settings("tibbie") is None
    characters.remember(TrainConfig(name="tibbie", trigger_word="tibbie", epochs=5))
    assert characters.last_settings("tibbie").epochs == 5
    assert characters.list_characters() == ["tibbie"]


def test_the_monitor_shows_a_run_from_its_files(tiny_frames):
    run_dir = jobs.submit("train", TrainConfig(name="tibbie", dataset=str(tiny_frames)), start_worker=False).run_dir
    for event in [{"type": "running"}, {"type": "started", "total_steps": 10, "epochs": 2},
                  *[{"type": "step", "step": s, "epoch": 1, "loss": 0.5, "lr_unet": 1e-4, "lr_te": 1e-5}
                    for s in range(1, 6)],
                  {"type": "checkpoint", "path": str(run_dir / "tibbie-000001.safetensors"), "epoch": 1},
                  {"type": "stopped", "step": 5, "epoch": 1}]:
        runfiles.append_event(run_dir, event)

    watch = monitor.Watch().follow(str(run_dir))
    shown = monitor.update(watch)
    assert "data-state='stopped'" in shown["status"] and "step 5 / 10" in shown["status"]
    assert "Resume" in shown["message"]
    assert len(shown["loss"]) == 10  # five raw and five smoothed points
    assert set(shown["lr"]["curve"]) == {"unet", "text encoder"}
    assert "tibbie-000001.safetensors" in shown["files"]
    assert monitor.update(watch) == {}  # nothing new: nothing sent to the browser


def test_a_finished_probe_says_how_its_learning_rates_were_derived():
    text = monitor.probe_text({"d_lr": 3e-4, "unet_lr": 1e-4, "te_lr": 1e-5, "probe_divisor": 3, "te_lr_divisor": 10})
    assert "peaked at **0.0003**" in text and "0.0003 ÷ 3 = **0.0001**" in text and "÷ 10 = **1e-05**" in text
    assert "over one epoch" in text
    # The demo's 38 frames at repeat 2 are probed for six epochs, as many images as the seed's one epoch.
    text = monitor.probe_text({"d_lr": 3e-3, "unet_lr": 1e-3, "te_lr": 1e-4, "probe_epochs": 6, "probe_images": 456})
    assert "peaked at **0.003** over 6 epochs (456 images, as the seed's one)" in text
