"""The XY tab: pick a run, Generate, watch the grid grow cell by cell, download it and its copy to post."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_studio import jobs, paths, runfiles, worker
from lora_studio.config import TrainConfig, save_config, xy_field_info
from lora_studio.errors import UserError
from lora_studio.generate.xy_job import axis_runs, check_plot
from lora_studio.ui import xy_progress as progress
from lora_studio.ui import xy_tab as tab

SIZE = 32


def tiny_train_config(model, frames, **changes) -> TrainConfig:
    """Two epochs at 32 px: a real run in about a second."""
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=2,
                  repeats=1, batch_size=2, resolution=SIZE, min_bucket_reso=16, max_bucket_reso=64,
                  bucket_reso_steps=16, network_dim=4, network_alpha=4.0, unet_lr=1e-2, sample_every_n_epochs=0,
                  sample_seed=77)
    return TrainConfig(**{**values, **changes})


@pytest.fixture
def trained(tiny_model_dir, tiny_frames) -> Path:
    """A finished training run in the studio's runs folder, trained by the worker's own code."""
    run_dir = jobs.submit("train", tiny_train_config(tiny_model_dir, tiny_frames), start_worker=False).run_dir
    assert worker.run_job(run_dir) == "done", jobs.last_event(run_dir)
    return run_dir


def fake_sweep(trained: Path, sizes=(1, 2)) -> Path:
    """A sweep job whose bsN runs hold copies of the trained files (planning reads names only)."""
    config = jobs.load_job(trained).config
    sweep = jobs.submit("sweep", config, batch_sizes=list(sizes), start_worker=False).run_dir
    for size in sizes:
        sub = sweep / f"bs{size}"
        sub.mkdir()
        save_config(TrainConfig(**{**config.to_dict(), "name": f"tibbie-bs{size}", "batch_size": size}),
                    sub / jobs.JOB_FILE)
        for epoch in (1, 2):
            shutil.copy(trained / f"tibbie-{epoch:06d}.safetensors", sub / f"tibbie-bs{size}-{epoch:06d}.safetensors")
    return sweep


def form(run: Path, **changes) -> dict:
    """The tab's fields as a user leaves them after picking the run (small, quick values)."""
    info = tab.find_run(str(run))
    defaults = {name: xy_field_info(name)["default"] for name in tab.PLAIN_FIELDS}  # fields a test leaves alone
    values = {**defaults, "run": str(run), "negative": "lowres", "x_type": "epoch", "x_values": "", "y_type": "weight",
              "y_values": "0,1", "z_runs": [], "sampler": "DPM++ 2M Karras", "steps": 2, "cfg": 7,
              "batch_size": 0, "margin": 0, "legend": True, "use_cache": True, "share": "jpeg",
              **tab.run_defaults(info, "")}
    return {**values, **changes}


def test_every_run_with_epoch_files_is_offered_and_the_fields_follow_the_picked_one(trained):
    sweep = fake_sweep(trained)
    probe = jobs.submit("probe", jobs.load_job(trained).config, start_worker=False).run_dir
    # an LR probe's DAdaptation epoch (old probes left one) is no LoRA to plot: not offered either
    shutil.copy(trained / "tibbie-000001.safetensors", probe / "tibbie-000001.safetensors")

    runs = tab.plot_runs()
    assert [r.folder for r in runs] == [sweep / "bs1", sweep / "bs2", trained]
    assert runs[0].label.endswith("/ bs1 · queued · 2 epoch files") and "· done · 2 epoch files" in runs[2].label

    fields = tab.run_defaults(runs[2], "")
    assert fields == {"prompt": "masterpiece, best quality, 1girl, tibbie, sheep, sitting on tree, "
                                "<lora:tibbie-000001:0>", "size": "32x32", "seed": 77, "clip_skip": 2}
    # The user's own prompt keeps its words; only the run's tag moves to the picked run.
    assert tab.run_defaults(runs[0], "tibbie, beach, <lora:tibbie-000002:0.5>")["prompt"] == \
        "tibbie, beach, <lora:tibbie-bs1-000001:0.5>"
    assert "`tibbie-000001` … `tibbie-000002`" in tab.run_text(runs[2])
    # What every caption tagged (from the file's kohya metadata): a prompt gets it only by naming it.
    assert "**tagged on every frame:** `sheep`, `white background` (the LoRA learned" in tab.run_text(runs[2])

    # Comparing with the sweep's runs puts every one on Z, the picked run first.
    settings = tab.read_settings(form(sweep / "bs1", z_runs=[str(sweep / "bs2")]))
    assert axis_runs(settings.z) == [str(sweep / "bs1"), str(sweep / "bs2")]
    assert check_plot(settings).z_labels == ["Run: bs1", "Run: bs2"]


def test_mistakes_are_shown_in_words_before_or_after_queueing(trained):
    with pytest.raises(UserError, match="pick a run"):
        tab.generate({**form(trained), "run": None}, start_worker=False)
    with pytest.raises(UserError, match="Prompt S/R"):
        tab.generate(form(trained, y_type="sr", y_values="lying on beach,sitting"), start_worker=False)
    with pytest.raises(UserError, match="steps must be a number"):
        tab.generate(form(trained, steps=None), start_worker=False)
    assert [p.name for p in jobs.list_jobs()] == [trained.name]

    # What only the model can tell (an odd size for its VAE) comes back from the worker, in words.
    job_dir, _ = tab.generate(form(trained, size="33x33"), start_worker=False)
    assert worker.run_job(job_dir) == "error"
    shown = progress.update(progress.PlotWatch().follow(str(job_dir)))
    assert "data-state='error'" in shown["status"] and "size 33x33 is not a multiple of" in shown["message"]
    assert not shown["stop"]["interactive"] and not shown["grid_file"]["interactive"]


def test_generate_queues_a_plot_and_the_tab_follows_it_cell_by_cell_to_the_download(trained):
    job_dir, text = tab.generate(form(trained), start_worker=False)
    assert "The XY plot (4 cells) is queued as" in text
    assert worker.run_job(job_dir) == "done", jobs.last_event(job_dir)

    # The grid grows: after two cells, those two are in place and the rest are grey.
    events = runfiles.read_events(job_dir)[0]
    plot, thumbs = progress.PlotProgress(), {}
    for event in events:
        plot.feed(event)
        if event["type"] == "cell":
            thumbs[(event["x"], event["y"], 0)] = progress._thumb(event["path"])
            if len(thumbs) == 2:
                break
    growing = np.asarray(progress.preview(plot, thumbs))
    status = progress.status_html(plot, "running")
    assert "cells 2 / 4" in status and "<progress value='2' max='4'>" in status
    grey = (growing == 200).all(axis=2)
    assert 2 * progress.PREVIEW_CELL ** 2 <= grey.sum() < 3 * progress.PREVIEW_CELL ** 2  # two cells still to come

    watch = progress.PlotWatch().follow(str(job_dir))
    shown = progress.update(watch)
    assert shown["job"] == str(job_dir) and [c[1] for c in shown["choices"]] == [str(job_dir)]
    assert "data-state='done'" in shown["status"] and "cells 4 / 4" in shown["status"]
    assert "3 rendered · 1 reused" in shown["status"]
    grid = job_dir / "xy_grid-0001.png"
    assert "**Grid:** `xy_grid-0001.png` — 3 cells rendered, 1 reused · 2 LoRA file loads" in shown["message"]
    assert f"`{job_dir}`" in shown["message"]
    # 32 px cells would show as a stamp: the finished grid is shown drawn larger, every cell in place
    finished = np.asarray(shown["image"])
    assert finished.shape[1] > 2 * progress.PREVIEW_CELL and (finished == 200).all(axis=2).sum() < progress.PREVIEW_CELL ** 2
    assert shown["grid_file"]["value"] == str(grid) and shown["grid_file"]["interactive"]
    assert shown["share_file"]["value"] == str(job_dir / "xy_grid-0001-share.jpg")
    assert not shown["stop"]["interactive"]
    assert progress.update(watch) == {}  # nothing new: nothing sent to the browser


def test_the_tab_checks_a_plot_without_importing_torch(trained, studio_home):
    code = ("import sys\n"
            "from lora_studio.ui import xy_tab\n"
            "from lora_studio.generate.xy_job import check_plot\n"
            "run = xy_tab.plot_runs()[0]\n"
            "values = {'run': str(run.folder), 'x_type': 'epoch', 'y_type': 'weight', 'y_values': '0,0.5,1',\n"
            "          'sampler': 'Euler a', 'steps': 20, 'cfg': 7, 'batch_size': 0, 'margin': 0,\n"
            "          **xy_tab.run_defaults(run, '')}\n"
            "print(len(check_plot(xy_tab.read_settings(values)).cells))\n"
            "assert 'torch' not in sys.modules, 'the UI process imported torch'\n")
    env = {**os.environ, "LORA_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(paths.project_root())}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "6"


def test_pasting_the_write_ups_parameters_fills_the_form_and_says_what_it_left_out(trained):
    seed_text = (Path(__file__).parents[1] / "generate" / "seed_infotexts.txt").read_text(encoding="utf-8")
    text = [b for b in seed_text.split("\n\n") if b.startswith("Prompt:")][1]
    values, said = tab.paste_fields(text, str(trained))
    assert values == {
        "prompt": "masterpiece, best quality, high detail, highres, 1girl, Tibbie, sheep, <lora:Tibbie1-000001:0>, "
                  "sitting on tree, looking at viewer",
        "negative": values["negative"], "seed": 487059718, "steps": 20, "cfg": 7.0, "size": "512x512",
        "clip_skip": 2, "sampler": "DPM++ 2M Karras", "x_type": "sr", "x_values": "01,02,03,04,05,06,07,08",
        "y_type": "sr", "y_values": ":0,:0.3,:0.5,:0.6,:0.7,:0.8,:0.9,:1"}
    assert values["negative"].startswith("lowres, bad anatomy, bad hands")
    assert "Not used from the pasted text: Model hash; Model (cuteyukimixAdorable_neochapter3); VAE hash" in said
    # the picked run made tibbie-00000N files, not the write-up's Tibbie1: said before Generate fails on it
    assert "`Tibbie1-000001` is not a file of the run" in said and "<lora:tibbie-000001:…>" in said
    with pytest.raises(UserError, match="nothing pasted"):
        tab.paste_fields("  ", str(trained))


# --- in the browser ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_pick_a_run_generate_and_download_the_grid_in_the_browser(trained, tiny_model_dir, studio_home, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from test_studio_browser import chromium_path, running_studio, screenshot_dir

    executable = chromium_path()
    with running_studio(studio_home, tmp_path, "--base", str(tiny_model_dir), "--name", "tibbie") as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1200})
                page.goto(url)
                page.get_by_role("tab", name="XY plot").click()
                page.locator("#xy-run input").click()
                page.get_by_role("option", name=trained.name).click()
                expect(page.locator("#xy-prompt textarea")).to_have_value(
                    "masterpiece, best quality, 1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>")
                expect(page.locator("#xy-size textarea, #xy-size input").first).to_have_value("32x32")
                page.locator("#xy-y-values textarea, #xy-y-values input").first.fill("0,0.5,1")
                page.locator("#xy-steps input[type=number]").fill("4")
                page.locator("#xy-steps input[type=number]").press("Enter")

                page.locator("#xy-generate").click()
                expect(page.locator("#xy-message")).to_contain_text("The XY plot (6 cells) is queued as")
                expect(page.locator("#xy-status b[data-state='done']")).to_be_visible(timeout=120_000)
                expect(page.locator("#xy-status")).to_contain_text("cells 6 / 6")
                expect(page.locator("#xy-grid img")).to_be_visible()
                with page.expect_download() as download:
                    page.locator("#xy-download-grid").click()
                assert download.value.suggested_filename == "xy_grid-0001.png"
                page.screenshot(path=str(screenshot_dir(tmp_path) / "xy.png"), full_page=True)
            finally:
                browser.close()



@pytest.mark.slow
def test_the_epoch_count_follows_training_and_a_pasted_mistake_replaces_the_old_grid_in_the_browser(
        trained, tiny_model_dir, studio_home, tmp_path):
    import re

    from playwright.sync_api import expect

    from test_studio_browser import browser_page, running_studio, screenshot_dir

    job_dir, _ = tab.generate(form(trained), start_worker=False)  # an earlier plot: the tab opens on its grid
    assert worker.run_job(job_dir) == "done", jobs.last_event(job_dir)
    seed_text = (Path(__file__).parents[1] / "generate" / "seed_infotexts.txt").read_text(encoding="utf-8")
    pasted = [b for b in seed_text.split("\n\n") if b.startswith("Prompt:")][0]
    with running_studio(studio_home, tmp_path, "--base", str(tiny_model_dir), "--name", "tibbie") as url, \
            browser_page(url) as page:
        page.get_by_role("tab", name="XY plot").click()
        info = page.locator("#xy-run-info")
        expect(info).to_contain_text("epoch files: 2 (")
        expect(info).to_contain_text("tagged on every frame: sheep, white background")
        expect(page.locator("#xy-grid img")).to_be_visible()

        # The run trains on: its third epoch file lands while the tab is open, and the tab says so.
        shutil.copy(trained / "tibbie-000002.safetensors", trained / "tibbie-000003.safetensors")
        expect(info).to_contain_text("epoch files: 3 (", timeout=15_000)
        expect(info).to_contain_text("tibbie-000003")
        expect(page.locator("#xy-run input")).to_have_value(re.compile("3 epoch files"))

        # Paste the write-up's parameters: the form fills, and what it leaves out is said.
        page.locator("#xy-paste-box").get_by_text("Paste parameters").click()
        page.locator("#xy-paste textarea").fill(pasted)
        page.locator("#xy-paste-fill").click()
        expect(page.locator("#xy-prompt textarea")).to_have_value(re.compile(r"<lora:Tibbie1-000001:0>$"))
        expect(page.locator("#xy-x-values textarea, #xy-x-values input").first).to_have_value("01,02,03,04,05,06,07,08")
        note = page.locator("#xy-paste-note")
        expect(note).to_contain_text("Not used from the pasted text: Model hash; Model (cuteyukimixAdorable")
        expect(note).to_contain_text("is not a file of the run")

        # Generate anyway: the mistake takes the old grid's place at the top of the result pane.
        page.locator("#xy-generate").click()
        message = page.locator("#xy-message")
        expect(message).to_contain_text("LoRA 'Tibbie1-000001' from the prompt is not in")
        expect(message).to_be_in_viewport()
        expect(page.locator("#xy-grid img")).to_have_count(0)
        expect(page.locator("#xy-status")).to_contain_text("Not queued")
        expect(page.locator("#xy-download-grid")).to_be_disabled()
        page.screenshot(path=str(screenshot_dir(tmp_path) / "xy-mistake.png"), full_page=False)
