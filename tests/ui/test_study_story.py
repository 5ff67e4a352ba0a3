"""The batch-size study in headless Chromium: open the panel, a mistake is refused, Start study, watch it, read the report.

The toy model on 12 of the demo frames, batch sizes 1 and 2, two epochs, weights 0 and 1: a real study
through the studio's own worker in about 25 s. The finished view's screenshot goes to
$LORA_STUDIO_SCREENSHOTS (docs/screenshots to refresh the README's) or to the test's tmp folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lora_studio import paths

pytestmark = pytest.mark.slow

PRESET = """schema_version = 1
epochs = 2
repeats = 1
batch_size = 2
resolution = 64
min_bucket_reso = 32
max_bucket_reso = 128
bucket_reso_steps = 16
optimizer = "lion"
unet_lr = 0.003
network_dim = 8
network_alpha = 4.0
sample_every_n_epochs = 0
"""


@pytest.fixture
def toy_frames(tmp_path) -> Path:
    """12 clean frames of the demo character (its distorted ones left out)."""
    demo = paths.assets_dir() / "demo-dataset"
    distorted = set(json.loads((demo / "distorted.json").read_text()))
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in [p for p in sorted(demo.glob("*.png")) if p.name not in distorted][:12]:
        shutil.copy(image, folder / image.name)
        shutil.copy(image.with_suffix(".txt"), folder / f"{image.stem}.txt")
    return folder


@pytest.fixture
def page(studio_home, toy_frames, tmp_path):
    """The studio on the toy model with a two-epoch preset, and a Chromium page on it."""
    from playwright.sync_api import expect

    from test_studio_browser import browser_page, chromium_path, running_studio

    chromium_path()  # skips at once where Chromium is missing
    expect.set_options(timeout=60_000)  # a shared 2-core machine: a handler can wait seconds for a core
    (studio_home / "presets").mkdir(parents=True)
    (studio_home / "presets" / "study-story.toml").write_text(PRESET)
    with running_studio(studio_home, tmp_path, "--base", "toy", "--dataset", str(toy_frames), "--name", "tibbie",
                        "--trigger", "tibbie", "--preset", "study-story") as url:
        with browser_page(url) as page:
            yield page
    assert "Traceback" not in (tmp_path / "studio.log").read_text()


def box(page, elem_id: str):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def test_a_study_of_batch_sizes_1_and_2_shows_its_progress_then_the_recommendation_and_the_report(
        page, studio_home, tmp_path):
    from playwright.sync_api import expect

    from test_studio_browser import screenshot_dir

    page.get_by_text("Study batch sizes").click()
    expect(box(page, "study-batch_sizes")).to_have_value("1,2,3,4")
    expect(box(page, "study-prompt-1")).to_have_attribute("placeholder", "empty = the character prompt "
                                                          "(trigger + the tags on most kept frames)")
    expect(box(page, "study-prompt-2")).to_have_value("sitting on tree")

    # A mistake is refused with what to type, and nothing is queued.
    box(page, "study-batch_sizes").fill("1,two")
    page.locator("#study-start-button").click()
    expect(page.locator("#study-message")).to_contain_text("give whole numbers, e.g. 1,2,3,4")
    assert not (studio_home / "runs").is_dir() or not list((studio_home / "runs").iterdir())

    box(page, "study-batch_sizes").fill("1,2")
    box(page, "study-prompt-3").fill("")  # two grids: the character prompt and 'sitting on tree'
    box(page, "study-weights").fill("0,1")
    page.get_by_text("More study settings").click()
    box(page, "study-steps").fill("8")
    page.locator("#study-start-button").click()
    expect(page.locator("#study-message")).to_contain_text("queued as")
    expect(page.locator("#study-message")).to_contain_text("2 runs (batch 1: 24 steps, batch 2: 12 steps), then 2 "
                                                           "grids of 2 epochs × 2 weights × 2 runs")

    # Progress in words while it runs: which run, then which grid and how many of its cells.
    status = page.locator("#study-status")
    expect(status).to_contain_text("training batch size", timeout=120_000)
    expect(status).to_contain_text("cells", timeout=120_000)
    expect(page.locator("#study-status b[data-state='done']")).to_be_visible(timeout=120_000)

    recommendation = page.locator("#study-recommendation")
    expect(recommendation).to_contain_text("Recommendation: batch size")
    study_dir = next((studio_home / "runs").glob("*-study-*"))
    study = json.loads((study_dir / "study.json").read_text())
    picked = study["recommendation"]
    assert picked["batch_size"] in (1, 2) and picked["epoch"] in (1, 2) and picked["weight"] in (0, 1)
    expect(recommendation).to_contain_text(f"batch size {picked['batch_size']} · epoch {picked['epoch']} · "
                                           f"weight {picked['weight']:g}")

    # The report itself, embedded with its images, and both files to download.
    report = page.frame_locator("#study-report-frame")
    expect(report.locator("h1")).to_contain_text("Batch-size study: tibbie")
    expect(report.locator("img").first).to_be_visible()
    assert report.locator("img").evaluate_all("imgs => imgs.filter(i => !i.complete || !i.naturalWidth).length") == 0
    expect(page.locator("#study-download-report")).to_be_enabled()
    expect(page.locator("#study-download-sheet")).to_be_enabled()
    expect(page.locator("#study-resume-button")).to_be_hidden()  # nothing to resume in a finished study
    page.locator("#study-report-box").screenshot(path=str(screenshot_dir(tmp_path) / "study-report.png"))

    # The Runs tab lists the study, and clicking it shows the study on the Train tab.
    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs-table")).to_contain_text(study_dir.name)
    page.reload()  # a reopened page shows the newest job, the finished study, from its files alone
    expect(page.locator("#study-recommendation")).to_contain_text("Recommendation: batch size")
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-table").get_by_text(study_dir.name).last.click()
    expect(page.frame_locator("#study-report-frame").locator("h1")).to_contain_text("Batch-size study: tibbie")
