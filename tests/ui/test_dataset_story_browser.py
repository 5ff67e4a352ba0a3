"""Two Dataset-tab stories in headless Chromium (issue 19, items 5 and 7).

Bulk actions that never lose a decision made by hand and can be undone; one current dataset for the
Dataset and Train tabs, and a failed review that leaves nothing to edit by mistake.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_studio.data.review_state import ReviewState
from lora_studio.toy.dataset import write_demo_dataset

pytestmark = pytest.mark.slow

TINY_PRESET = "schema_version = 1\nresolution = 64\nmin_bucket_reso = 32\nmax_bucket_reso = 128\n"
TILES = "#dataset-gallery .thumbnail-lg"


def box(page, elem_id: str):
    """The text field inside a Gradio Textbox."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


@pytest.fixture
def frames(tmp_path) -> Path:
    """12 toy-world frames of the character plus 3 distorted ones (64 px), captioned as the tagger wrote them."""
    # The shipped demo set has 'pink bow' pruned already; this story prunes it in the tab itself.
    return write_demo_dataset(tmp_path / "tibbie-frames", n_frames=12, n_distorted=3, seed=0, pruned_tags=())


@pytest.fixture
def studio_page(studio_home, frames, tmp_path):
    """The studio as a user launches it on the frames, and a Chromium page on it."""
    from test_studio_browser import browser_page, chromium_path, running_studio

    chromium_path()  # skips at once where Chromium is missing
    (studio_home / "presets").mkdir(parents=True)
    (studio_home / "presets" / "tiny-review.toml").write_text(TINY_PRESET)
    with running_studio(studio_home, tmp_path, "--dataset", str(frames), "--name", "tibbie", "--trigger", "tibbie",
                        "--preset", "tiny-review") as url:
        with browser_page(url) as page:
            yield page


def review(page, expect, count: int) -> None:
    page.locator("#dataset-review-button").click()
    expect(page.locator(TILES)).to_have_count(count, timeout=30_000)


def show(page, expect, name: str) -> int:
    """Pick a filter; returns how many frames it shows (the count its label gives, once the gallery has it)."""
    page.locator("#dataset-filter input").click()
    option = page.get_by_role("option", name=re.compile(f"^{name} \\("))
    count = int(re.search(r"\((\d+)\)", option.inner_text())[1])
    option.click()
    expect(page.locator(TILES)).to_have_count(count, timeout=10_000)
    return count


def test_bulk_actions_keep_decisions_made_by_hand_say_what_they_change_and_undo(studio_page, frames, tmp_path):
    from playwright.sync_api import expect

    from test_studio_browser import screenshot_dir

    page = studio_page
    page.get_by_role("tab", name="Dataset").click()
    review(page, expect, 15)

    # Exclude every "unusual for this set" frame in one click; the line above says how many first.
    outliers = show(page, expect, "outlier")
    assert 1 <= outliers < 14
    expect(page.locator("#dataset-bulk-preview")).to_contain_text(f"Exclude all shown excludes {outliers}")
    page.locator("#dataset-exclude-shown").click()
    expect(page.locator("#dataset-kept")).to_contain_text(f"kept: {15 - outliers} of 15", timeout=10_000)
    bulk_excluded = ReviewState.load(frames).excluded_ids()
    assert len(bulk_excluded) == outliers

    # Then one frame by hand, with a reason: the first tile still kept.
    show(page, expect, "all frames")
    captions = page.locator(TILES).all_inner_texts()  # "frame_003.png · EXCLUDED · outlier"
    index = next(i for i, caption in enumerate(captions) if "EXCLUDED" not in caption)
    by_hand = captions[index].split(" · ")[0].strip()
    assert by_hand not in bulk_excluded
    page.locator(TILES).nth(index).click()
    expect(page.locator("#dataset-frame-details")).to_contain_text(f"{by_hand}", timeout=10_000)
    expect(page.locator("#dataset-frame-details")).to_contain_text("kept for training")
    box(page, "dataset-reason").fill("warped pose")
    page.locator("#dataset-exclude-button").click()
    expect(page.locator("#dataset-kept")).to_contain_text(f"kept: {14 - outliers} of 15", timeout=10_000)

    # "Keep all shown" says it leaves the frame excluded by hand, and does.
    expect(page.locator("#dataset-bulk-preview")).to_contain_text(
        f"Keep all shown keeps {outliers}; 1 frame you excluded by hand stays excluded unless ticked")
    page.locator("#dataset-keep-shown").click()
    expect(page.locator("#dataset-message")).to_contain_text("1 frame you excluded by hand stays excluded",
                                                             timeout=10_000)
    expect(page.locator("#dataset-kept")).to_contain_text("kept: 14 of 15")
    state = ReviewState.load(frames)
    assert state.excluded_ids() == {by_hand} and state.exclusion_reason(by_hand) == "warped pose"

    # Undo names what it takes back and brings the bulk exclusion back.
    expect(page.locator("#dataset-undo")).to_have_text(f"Undo: keep {outliers} frame{'s' if outliers > 1 else ''}")
    page.locator("#dataset-undo").click()
    expect(page.locator("#dataset-kept")).to_contain_text(f"kept: {14 - outliers} of 15", timeout=10_000)
    assert ReviewState.load(frames).excluded_ids() == bulk_excluded | {by_hand}

    # A batch tag edit changes the kept frames only, says so before and after, and can be undone.
    page.locator("#dataset-batch").get_by_text("Batch tag edits (kept frames only)").click()
    expect(page.locator("#dataset-batch-scope")).to_contain_text(
        f"Changes the tags of the {14 - outliers} kept frames; the {outliers + 1} frames excluded keep their tags")
    box(page, "dataset-batch-tag").fill("pink bow")
    expect(page.locator("#dataset-batch-scope")).to_contain_text(
        f"'pink bow' is in {14 - outliers} of the kept frames: Remove or Replace changes those {14 - outliers}.")
    page.locator("#dataset-remove-tag").click()
    expect(page.locator("#dataset-message")).to_contain_text(
        f"kept frames ({outliers + 1} frames excluded left as they are)", timeout=10_000)
    page.screenshot(path=str(screenshot_dir(tmp_path) / "dataset-bulk.png"), full_page=True)
    state = ReviewState.load(frames)
    assert all(state.edited_tags(fid) is None for fid in bulk_excluded | {by_hand})
    assert state.undo_text.startswith("remove 'pink bow'")
    page.locator("#dataset-undo").click()
    expect(page.locator("#dataset-message")).to_contain_text("Undone: remove 'pink bow'", timeout=10_000)
    state = ReviewState.load(frames)
    assert not any(state.edited_tags(f.name) for f in frames.glob("*.png"))
    assert state.excluded_ids() == bulk_excluded | {by_hand}


def test_one_current_dataset_for_both_tabs_and_a_failed_review_leaves_nothing_to_edit(studio_page, frames,
                                                                                       tmp_path):
    from playwright.sync_api import expect

    page = studio_page
    other = write_demo_dataset(tmp_path / "other-frames", n_frames=4, n_distorted=0, seed=1)
    page.get_by_role("tab", name="Dataset").click()
    expect(box(page, "dataset-folder")).to_have_value(str(frames))
    review(page, expect, 15)
    page.locator(TILES).first.click()
    expect(page.locator("#dataset-exclude-button")).to_be_enabled(timeout=10_000)

    # A folder that does not exist: the error shows, the gallery empties, nothing can edit the old review.
    box(page, "dataset-folder").fill(str(tmp_path / "missing"))
    page.locator("#dataset-review-button").click()
    expect(page.locator("#dataset-message")).to_contain_text("not found", timeout=10_000)
    expect(page.locator(TILES)).to_have_count(0)
    expect(page.locator("#dataset-exclude-button")).to_be_disabled()
    page.locator("#dataset-exclude-shown").click()
    expect(page.locator("#dataset-message")).to_contain_text("press Review first", timeout=10_000)
    assert ReviewState.load(frames).excluded_ids() == set()

    # Reviewing another folder makes it the Train tab's dataset too: what is reviewed is what trains.
    box(page, "dataset-folder").fill(str(other))
    review(page, expect, 4)
    page.get_by_role("tab", name="Train").click()
    expect(box(page, "field-dataset")).to_have_value(str(other))
    expect(page.locator("#step-budget")).to_contain_text("kept 4 of 4 frames", timeout=30_000)

    # And the other way: a folder typed on the Train tab is the Dataset tab's, whose old gallery goes.
    box(page, "field-dataset").fill(str(frames))
    box(page, "field-dataset").press("Tab")
    expect(page.locator("#step-budget")).to_contain_text("kept 15 of 15 frames", timeout=30_000)
    page.get_by_role("tab", name="Dataset").click()
    expect(box(page, "dataset-folder")).to_have_value(str(frames), timeout=10_000)
    expect(page.locator(TILES)).to_have_count(0)
    expect(page.locator("#dataset-message")).to_contain_text("press Review to check it")
