"""Train-tab stories in headless Chromium (issues 18 and 19): the form never trains another recipe than it shows.

What the user types or clicks → what the budget line says → what Start writes to job.toml.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PRESET = """schema_version = 1
epochs = 1
repeats = 1
batch_size = 2
resolution = 64
min_bucket_reso = 32
max_bucket_reso = 128
network_dim = 4
network_alpha = 4.0
unet_lr = 0.0005
# a one-epoch probe: DAdaptation on a tiny random model blows up (nan) over the seed's 420 images
probe_min_images = 0
"""


@pytest.fixture
def page(studio_home, tiny_model_dir, tiny_frames, tmp_path):
    """The studio on a tiny model with a one-epoch preset, and a Chromium page on it."""
    from playwright.sync_api import expect

    from test_studio_browser import browser_page, chromium_path, running_studio

    chromium_path()  # skips at once where Chromium is missing
    expect.set_options(timeout=60_000)  # a shared 2-core machine: a handler can wait seconds for a core
    (studio_home / "presets").mkdir(parents=True)
    (studio_home / "presets" / "tiny-story.toml").write_text(PRESET)
    with running_studio(studio_home, tmp_path, "--base", str(tiny_model_dir), "--dataset", str(tiny_frames),
                        "--name", "tibbie", "--trigger", "tibbie", "--preset", "tiny-story") as url:
        with browser_page(url) as page:
            yield page
    assert "Traceback" not in (tmp_path / "studio.log").read_text()  # no ComponentProcessingError or other


def field(page, name: str):
    return page.locator(f"#field-{name} input, #field-{name} textarea").first


def runs(studio_home: Path) -> list[Path]:
    return sorted((studio_home / "runs").glob("*/job.toml")) if (studio_home / "runs").is_dir() else []


def te_lr_shown(page) -> float:
    """The 'te_lr in force' number of the step-budget line."""
    return float(re.search(r"te_lr in force: ([0-9.e+-]+)", page.locator("#step-budget").inner_text())[1])


def choose_preset(page, name: str) -> None:
    page.locator("#preset input").click()
    page.get_by_role("option", name=name).click()


def test_numbers_out_of_range_or_empty_are_refused_with_their_range_and_the_budget_shows_what_start_writes(
        page, studio_home):
    from playwright.sync_api import expect

    budget, message = page.locator("#step-budget"), page.locator("#form-message")
    expect(budget).to_contain_text("÷ batch 2 = 4 steps")

    field(page, "batch_size").fill("0")
    expect(budget).to_contain_text("'batch_size' cannot be 0")
    expect(budget).to_contain_text("type a whole number from 1 to 64")
    page.locator("#start-button").click()
    expect(message).to_contain_text("'batch_size' cannot be 0")
    assert runs(studio_home) == []  # refused, not clamped to 1 and started

    field(page, "batch_size").fill("")
    expect(budget).to_contain_text("'batch_size' is empty")
    field(page, "unet_lr").fill("20")
    field(page, "batch_size").fill("8")  # GPU users train 6–8 at a time; the sweep stays 1–4
    expect(budget).to_contain_text("'unet_lr' cannot be 20")
    expect(budget).to_contain_text("a number from 0 to 10")
    field(page, "unet_lr").fill("0.0005")
    expect(budget).to_contain_text("÷ batch 8 = 1 steps")

    page.locator("#start-button").click()
    expect(message).to_contain_text("queued as")
    job = tomllib.loads(runs(studio_home)[0].read_text())
    assert job["batch_size"] == 8 and job["te_lr"] == pytest.approx(te_lr_shown(page), rel=1e-3)
    # "queued as…" describes the job only until it ends.
    expect(page.locator("#monitor-status b[data-state='done']")).to_be_visible(timeout=180_000)
    expect(message).not_to_contain_text("queued as", timeout=10_000)


def test_find_lr_then_the_preset_again_then_start_trains_the_te_lr_the_form_shows(page, studio_home):
    from playwright.sync_api import expect

    message = page.locator("#form-message")
    field(page, "te_lr").fill("0.000276")  # typed by hand before Find LR
    page.locator("#find-lr-button").click()
    expect(message).to_contain_text("Find LR put its numbers in the form", timeout=180_000)
    probe_dir = runs(studio_home)[0].parent
    probe = json.loads((probe_dir / "probe.json").read_text())
    assert float(field(page, "unet_lr").input_value()) == probe["unet_lr"]
    assert field(page, "te_lr").input_value() == ""  # auto: it follows unet_lr from now on
    expect(page.locator("#step-budget")).to_contain_text(f"te_lr in force: {probe['unet_lr'] / 10:.4g} (unet_lr ÷ 10)")
    assert not list(probe_dir.glob("*.safetensors"))  # a probe is not a run for the XY tab

    # Start now: the run trains the probe's numbers and records the probe, as a CLI run does.
    page.locator("#start-button").click()
    expect(message).to_contain_text("the run records the probe")
    from_probe = runs(studio_home)[-1].parent
    assert json.loads((from_probe / "probe.json").read_text())["d_lr"] == probe["d_lr"]

    # The preset chosen again: both LRs are the preset's, and the message says the probe's are gone.
    choose_preset(page, "tiny-story")
    expect(message).to_contain_text("no longer holds Find LR's numbers")
    expect(message).to_contain_text(f"unet_lr {probe['unet_lr']:g} → 0.0005")
    assert field(page, "unet_lr").input_value() == "0.0005" and field(page, "te_lr").input_value() == ""
    expect(page.locator("#step-budget")).to_contain_text("te_lr in force: 5e-05 (unet_lr ÷ 10)")

    page.locator("#start-button").click()
    expect(message).to_contain_text("queued as")
    expect(message).not_to_contain_text("records the probe")
    job_dir = runs(studio_home)[-1].parent
    job = tomllib.loads((job_dir / "job.toml").read_text())
    assert job["unet_lr"] == 0.0005
    assert job["te_lr"] == pytest.approx(job["unet_lr"] / job["te_lr_divisor"]) == pytest.approx(te_lr_shown(page))
    assert not (job_dir / "probe.json").exists()


def test_a_run_that_failed_before_training_offers_no_resume_and_can_be_deleted_with_its_files(
        page, studio_home, tmp_path):
    from playwright.sync_api import expect

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    field(page, "base_model").fill(str(not_a_model))
    page.locator("#start-button").click()
    expect(page.locator("#monitor-status b[data-state='error']")).to_be_visible(timeout=180_000)
    expect(page.locator("#monitor-message")).to_contain_text("not an SD1.5 diffusers folder")
    # No saved state: resuming would fail the same way with the run's own settings.
    expect(page.locator("#resume-button")).to_be_disabled()
    expect(page.locator("#form-message")).not_to_contain_text("queued as")
    run_dir = runs(studio_home)[0].parent

    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs-table")).to_contain_text(run_dir.name)
    page.get_by_text("Delete a run").click()
    page.locator("#delete-run input").click()
    page.get_by_role("option", name=run_dir.name).click()
    page.locator("#delete-run-button").click()
    expect(page.locator("#delete-message")).to_contain_text(f"Delete {run_dir.name} and everything in")
    assert run_dir.is_dir()  # nothing goes before the confirmation
    page.locator("#delete-confirm-button").click()
    expect(page.locator("#delete-message")).to_contain_text(f"Deleted {run_dir.name}")
    assert not run_dir.exists()
    expect(page.locator("#runs-table")).not_to_contain_text(run_dir.name)
