"""Frames in, in headless Chromium (issue 16, items 1 and 2): a video becomes frames, the frames get tags.

Import video asks before writing into a folder that holds files; Tag frames shows every frame's
tags before anything is written, then stores them in the review and, when asked, the caption files.
"""

from __future__ import annotations

import re

import pytest

from lora_studio.data.review_state import ReviewState

pytestmark = pytest.mark.slow
TILES = "#dataset-gallery .thumbnail-lg"


def box(page, elem_id: str):
    """The text field inside a Gradio Textbox."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def test_a_video_becomes_frames_whose_tags_are_previewed_then_written(studio_home, tmp_path):
    pytest.importorskip("av")
    from playwright.sync_api import expect

    from test_studio_browser import browser_page, chromium_path, running_studio
    from video_helpers import write_toy_video

    chromium_path()  # skips at once where Chromium is missing
    video = tmp_path / "episode.mp4"
    write_toy_video(video)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    frames = tmp_path / "episode-frames"
    with running_studio(studio_home, tmp_path, "--name", "tibbie", "--trigger", "tibbie") as url, \
            browser_page(url) as page:
        page.get_by_role("tab", name="Dataset").click()
        page.locator("#video-import").get_by_text("Import video").click()
        box(page, "video-paths").fill(str(video))

        # a folder that holds files: asked first, nothing written
        box(page, "video-out").fill(str(taken))
        page.locator("#video-import-button").click()
        expect(page.locator("#video-message")).to_contain_text("already holds 1 file", timeout=20_000)
        expect(page.locator("#video-confirm")).to_be_visible()
        assert [p.name for p in taken.iterdir()] == ["notes.txt"]

        box(page, "video-out").fill(str(frames))
        page.locator("#video-import-button").click()
        expect(page.locator("#video-message")).to_contain_text("5 scenes", timeout=30_000)
        expect(page.locator("#video-message")).to_contain_text("black frame")
        expect(box(page, "dataset-folder")).to_have_value(str(frames))
        written = sorted(frames.glob("*.png"))
        assert written and all(p.with_suffix(".txt").read_text() == "" for p in written)

        page.locator("#dataset-review-button").click()
        expect(page.locator(TILES)).to_have_count(len(written), timeout=30_000)

        # the preview shows a row per frame, and writes nothing
        page.locator("#autotag").get_by_text("Tag frames").click()
        page.locator("#autotag-preview").click()
        expect(page.locator("#autotag-message")).to_contain_text(f"Proposed tags for {len(written)}", timeout=30_000)
        expect(page.locator("#autotag-table")).to_contain_text("tibbie, ")
        expect(page.locator("#autotag-table")).to_contain_text("sky")
        assert ReviewState.load(frames).edited_tags(written[0].name) is None

        page.locator("#autotag-write-captions").click()
        expect(page.locator("#autotag-message")).to_contain_text("Wrote", timeout=20_000)
        captions = [p.with_suffix(".txt").read_text() for p in written]
        assert all(c.startswith("tibbie, ") for c in captions)
        assert any(b in c for c in captions for b in ("meadow", "beach", "sky"))
        # the gallery's review follows: the frames are captioned now
        expect(page.locator("#dataset-kept")).to_contain_text(f"kept: {len(written)} of {len(written)}")
        page.locator(TILES).first.click()
        expect(box(page, "dataset-tags")).to_have_value(re.compile(r"^tibbie, "), timeout=10_000)
