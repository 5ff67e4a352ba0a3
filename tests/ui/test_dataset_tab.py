"""The Dataset tab: review a folder, see every frame worst first, keep/exclude, edit tags — saved at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_studio import paths
from lora_studio.config import TrainConfig
from lora_studio.data.review_state import ReviewState, state_path
from lora_studio.errors import UserError
from lora_studio.toy.dataset import read_distorted, write_demo_dataset
from lora_studio.ui import dataset_tab as tab
from lora_studio.ui import thumbnails
from lora_studio.ui.train_tab import budget_text


@pytest.fixture
def demo_frames(tmp_path) -> Path:
    """12 toy-world frames of the character plus 3 distorted ones (64 px), captioned as the tagger wrote them."""
    # The shipped demo set has 'pink bow' pruned already; this story prunes it in the tab itself.
    return write_demo_dataset(tmp_path / "tibbie-frames", n_frames=12, n_distorted=3, seed=0, pruned_tags=())


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file of a folder with a hash of its bytes: the user's files must never change."""
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def reviewed(folder: Path) -> tab.DatasetSession:
    session = tab.DatasetSession()
    tab.review_folder(session, str(folder), "", 64)
    return session


def test_every_frame_is_shown_worst_first_with_its_flags_and_why_they_matter(demo_frames):
    session = tab.DatasetSession()
    seen = []
    note = tab.review_folder(session, str(demo_frames), "", 64, progress=lambda fraction, what: seen.append((fraction, what)))

    assert "15 files" in note and "trigger word `tibbie` (guessed from the captions)" in note
    assert ("checking frame 15 of 15" in [what for _, what in seen]) and seen[-1] == (1.0, "thumbnail 15 of 15")
    assert tab.kept_text(session.review) == "**kept: 15 of 15**"
    frames = tab.shown_frames(session.review)
    assert len(frames) == 15 and frames[0].flags and not frames[-1].flags
    assert [f.badness for f in frames] == sorted((f.badness for f in frames), reverse=True)

    outliers = tab.shown_frames(session.review, "outlier")
    assert ("outlier (%d)" % len(outliers), "outlier") in tab.filter_choices(session.review)
    assert set(read_distorted(demo_frames)) & {f.id for f in outliers}, "no distorted frame is flagged"
    details = tab.frame_details(outliers[0])
    assert "**outlier** — unusual for this set" in details and "distorted action frame" in details
    assert "kept** for training" in details
    tile = thumbnails.badged(outliers[0])
    assert tile.size == (thumbnails.THUMB, thumbnails.THUMB)
    assert "outlier" in tab.badge_caption(outliers[0])
    assert [f.id for f in tab.shown_frames(session.review, "all", "file name")][:2] == ["frame_000.png", "frame_001.png"]


def test_excluding_a_flagged_frame_is_saved_at_once_and_the_kept_count_drops(demo_frames):
    before = fingerprint(demo_frames)
    session = reviewed(demo_frames)
    worst = tab.shown_frames(session.review, "flagged")[0]
    session.shown = [f.id for f in tab.shown_frames(session.review)]  # what the gallery shows
    assert tab.select_frame(session, 0) == worst.id  # a click on the first tile

    assert tab.set_kept(session, session.selected, False, "warped pose") == f"Excluded `{worst.id}`. Reason: warped pose"
    assert tab.kept_text(session.review) == "**kept: 14 of 15**"
    assert "EXCLUDED" in tab.badge_caption(worst) and "**excluded**: warped pose" in tab.frame_details(worst)
    assert [f.id for f in tab.shown_frames(session.review, "excluded")] == [worst.id]

    # Saved in the studio's data folder, read back by a new session (a restarted studio) and by training.
    assert state_path(demo_frames).is_file() and not state_path(demo_frames).is_relative_to(demo_frames)
    assert ReviewState.load(demo_frames).exclusion_reason(worst.id) == "warped pose"
    again = reviewed(demo_frames)
    assert tab.kept_text(again.review) == "**kept: 14 of 15**" and not again.review.frame(worst.id).kept
    assert "kept 14 of 15 frames" in budget_text(TrainConfig(dataset=str(demo_frames), resolution=64))

    tab.set_kept(again, worst.id, True)
    assert tab.kept_text(again.review) == "**kept: 15 of 15**"
    assert fingerprint(demo_frames) == before


def test_excluding_every_frame_of_a_filter_in_one_click(demo_frames):
    session = reviewed(demo_frames)
    shown = tab.shown_frames(session.review, "outlier")
    session.shown = [f.id for f in shown]
    assert tab.set_kept_shown(session, False, "odd look") == f"Excluded {len(shown)} frames. **Undo** takes it back."
    assert ReviewState.load(demo_frames).excluded_ids() == set(session.shown)
    assert tab.kept_text(session.review) == f"**kept: {15 - len(shown)} of 15**"


def test_keep_all_shown_leaves_frames_excluded_by_hand_and_their_reasons_unless_ticked(demo_frames):
    session = reviewed(demo_frames)
    outliers = [f.id for f in tab.shown_frames(session.review, "outlier")]
    by_hand = next(f.id for f in session.review.frames if f.id not in outliers)
    session.shown = outliers
    tab.set_kept_shown(session, False)  # a bulk exclusion: "Keep all shown" may take it back
    tab.set_kept(session, by_hand, False, "warped pose")  # one frame, by hand, with a reason
    session.shown = [f.id for f in tab.shown_frames(session.review, "all")]

    # said before the click: what each bulk button would change here
    preview = tab.bulk_preview(session)
    assert f"**Keep all shown** keeps {len(outliers)}; 1 frame you excluded by hand stays excluded" in preview
    note = tab.set_kept_shown(session, True)
    assert note.startswith(f"Kept {len(outliers)} frame") and f"`{by_hand}` (warped pose)" in note
    state = ReviewState.load(demo_frames)
    assert state.excluded_ids() == {by_hand} and state.exclusion_reason(by_hand) == "warped pose"

    # ticked: the frame excluded by hand is kept too (and Undo brings it and its reason back)
    assert tab.set_kept_shown(session, True, include_by_hand=True).startswith("Kept 1 frame.")
    assert ReviewState.load(demo_frames).excluded_ids() == set()
    assert tab.undo(session) == "Undone: keep 1 frame."
    assert ReviewState.load(demo_frames).exclusion_reason(by_hand) == "warped pose"
    assert not session.review.frame(by_hand).kept


def test_exclude_all_shown_keeps_the_reasons_already_given_and_can_be_undone(demo_frames):
    session = reviewed(demo_frames)
    session.shown = [f.id for f in tab.shown_frames(session.review, "all")]
    tab.set_kept(session, session.shown[0], False, "warped pose")
    assert "**Exclude all shown** excludes 14" in tab.bulk_preview(session)

    note = tab.set_kept_shown(session, False, "not her")
    assert note == "Excluded 14 frames. 1 frame already excluded keeps its reason. **Undo** takes it back."
    assert ReviewState.load(demo_frames).exclusion_reason(session.shown[0]) == "warped pose"
    assert tab.kept_text(session.review) == "**kept: 0 of 15**"
    assert tab.undo_text(session) == "exclude 14 frames"
    tab.undo(session)
    assert tab.kept_text(session.review) == "**kept: 14 of 15**" and tab.undo_text(session) == ""
    with pytest.raises(UserError, match="nothing to undo"):
        tab.undo(session)


def test_a_failed_review_clears_the_gallery_and_nothing_edits_the_previous_folder(demo_frames, tmp_path):
    session = reviewed(demo_frames)
    with pytest.raises(UserError, match="not found"):
        tab.review_folder(session, str(tmp_path / "missing"))
    assert session.review is None and session.shown == [] and session.selected is None
    for act in (lambda: tab.set_kept(session, "frame_000.png", False),
                lambda: tab.set_kept_shown(session, True),
                lambda: tab.batch_edit(session, "remove", tag="sheep")):
        with pytest.raises(UserError, match="press Review first"):
            act()
    (tmp_path / "empty").mkdir()
    reviewed_again = reviewed(demo_frames)
    with pytest.raises(UserError):
        tab.review_folder(reviewed_again, str(tmp_path / "empty"))
    assert reviewed_again.review is None
    assert not state_path(demo_frames).exists()  # the first folder's review was never touched


def test_a_review_of_another_folder_than_the_box_names_is_not_edited(demo_frames, tmp_path):
    session = reviewed(demo_frames)
    other = write_demo_dataset(tmp_path / "other-frames", n_frames=4, n_distorted=0, seed=1)
    with pytest.raises(UserError, match="press Review to check the folder in the box"):
        tab.set_kept(session, "frame_000.png", False, folder=str(other))
    assert tab.set_kept(session, "frame_000.png", False, folder=str(demo_frames) + "/").startswith("Excluded")


def test_the_dataset_tab_follows_the_train_tabs_folder_and_drops_a_review_of_another(demo_frames, tmp_path):
    from lora_studio.ui import current_dataset

    session = tab.DatasetSession()
    assert current_dataset.follow_train_tab(session, str(demo_frames)) == str(demo_frames)
    tab.review_folder(session, str(demo_frames), "", 64)
    assert current_dataset.reviewed(session, str(demo_frames)) == str(demo_frames)
    assert current_dataset.follow_train_tab(session, str(demo_frames)) is None  # unchanged: the review stays
    assert session.review is not None
    assert current_dataset.follow_train_tab(session, str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
    assert session.review is None  # the gallery never shows a folder the Train tab will not train


def test_tag_edits_are_saved_beside_the_review_and_the_tag_checks_follow_at_once(demo_frames):
    before = fingerprint(demo_frames)
    session = reviewed(demo_frames)
    frame = session.review.frame("frame_004.png")
    assert frame.tags[0] == "tibbie" and not frame.has("no_trigger")

    tab.save_tags(session, frame.id, "sheep, pink bow, standing")
    frame = session.review.frame("frame_004.png")
    assert frame.edited and frame.tags == ["sheep", "pink bow", "standing"]
    assert frame.has("no_trigger") and "tags edited here" in tab.frame_details(frame)
    assert ReviewState.load(demo_frames).edited_tags(frame.id) == ["sheep", "pink bow", "standing"]

    tab.reset_tags(session, frame.id)
    frame = session.review.frame("frame_004.png")
    assert not frame.edited and not frame.has("no_trigger") and frame.tags[0] == "tibbie"
    assert fingerprint(demo_frames) == before


def test_batch_tag_edits_reach_every_kept_frame_and_leave_excluded_ones_alone(demo_frames):
    before = fingerprint(demo_frames)
    session = reviewed(demo_frames)
    tab.set_kept(session, "frame_003.png", False, "warped pose")
    assert tab.batch_scope(session.review).startswith(
        "Changes the tags of the **14 kept frames**; the 1 frame excluded keeps its tags.")

    assert tab.batch_scope(session.review, "pink bow").endswith(
        "'pink bow' is in 14 of the kept frames: Remove or Replace changes those 14.")
    # The tags a prompt must repeat: on every kept frame, the trigger word aside.
    assert "On every kept frame: 'sheep', 'pink bow'. A LoRA learns what these show under the tags, not under " \
           "'tibbie': prompts must name them to get it" in tab.batch_scope(session.review)
    assert tab.batch_edit(session, "remove", tag="pink bow") == (
        "Removed 'pink bow' from 14 kept frames (1 frame excluded left as it is).")
    assert "On every kept frame: 'sheep'." in tab.batch_scope(session.review)
    assert all("pink bow" not in f.tags for f in session.review.frames if f.kept)
    assert "pink bow" in session.review.frame("frame_003.png").tags
    assert ReviewState.load(demo_frames).edited_tags("frame_003.png") is None
    tab.set_kept(session, "frame_003.png", True)
    assert tab.batch_edit(session, "replace", tag="sheep", new_tag="lamb") == (
        "Replaced 'sheep' with 'lamb' in 15 kept frames.")
    assert all("lamb" in f.tags and "sheep" not in f.tags for f in session.review.frames)

    # A new trigger word: first flagged missing everywhere, then added first to every caption and remembered.
    tab.save_tags(session, "frame_000.png", "lamb, tibbie, standing")
    assert session.review.frame("frame_000.png").has("trigger_not_first")
    assert tab.batch_edit(session, "move_trigger_first", trigger_word="tibbie") == "Put 'tibbie' first in 1 kept frame."
    assert not session.review.frame("frame_000.png").has("trigger_not_first")
    assert tab.batch_edit(session, "add_trigger", trigger_word="tibby") == "Added 'tibby' to 15 kept frames."
    assert all(f.tags[0] == "tibby" and not f.has("no_trigger") for f in session.review.frames)
    assert ReviewState.load(demo_frames).trigger_word == "tibby"
    with pytest.raises(UserError, match="no tag given"):
        tab.batch_edit(session, "remove", tag=" ")
    assert fingerprint(demo_frames) == before


def test_broken_files_are_listed_as_unusable_and_cannot_be_excluded(demo_frames):
    (demo_frames / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (demo_frames / "notes.png").write_text("this is text, not a picture")
    session = reviewed(demo_frames)
    assert tab.kept_text(session.review) == "**kept: 15 of 15 (2 files cannot be used)**"
    unusable = tab.shown_frames(session.review, "unusable")
    assert {f.id for f in unusable} == {"broken.png", "notes.png"}
    assert ("cannot be used (2)", "unusable") in tab.filter_choices(session.review)
    for frame in unusable:
        assert "CANNOT USE" in tab.badge_caption(frame)
        assert thumbnails.badged(frame).size == (thumbnails.THUMB, thumbnails.THUMB)
        assert "cannot be used for training" in tab.frame_details(frame)
        with pytest.raises(UserError, match="cannot be used for training"):
            tab.set_kept(session, frame.id, False)


def test_a_duplicate_frame_shows_its_pair(demo_frames):
    import gradio as gr
    import shutil

    shutil.copy(demo_frames / "frame_004.png", demo_frames / "frame_004 copy.png")
    shutil.copy(demo_frames / "frame_004.txt", demo_frames / "frame_004 copy.txt")
    session = reviewed(demo_frames)
    with gr.Blocks():
        with gr.Tab("Dataset") as page:
            shown = tab.build(page)
    copy = next(f for f in session.review.frames if f.has("duplicate") and f.id == "frame_004 copy.png")
    session.selected = copy.id
    updates = tab.frame_updates(shown, session)
    assert "(see `frame_004.png`)" in updates[shown.details]
    assert updates[shown.pair].visible and updates[shown.pair].label == "its duplicate: frame_004.png"
    assert updates[shown.pair].value is not None and updates[shown.tags].startswith("tibbie, sheep")


def test_asking_before_reviewing_or_without_a_folder_says_what_to_do(tmp_path):
    session = tab.DatasetSession()
    with pytest.raises(UserError, match="press Review first"):
        tab.set_kept(session, "frame_000.png", False)
    with pytest.raises(UserError, match="no dataset folder given"):
        tab.review_folder(session, "  ")
    with pytest.raises(UserError, match="not found"):
        tab.review_folder(session, str(tmp_path / "missing"))


def test_reviewing_in_the_studio_never_imports_torch(demo_frames, studio_home):
    # A caption over 75 bytes makes the review count CLIP tokens: the tokenizer must come without torch too.
    (demo_frames / "frame_001.txt").write_text("tibbie, " + ", ".join(f"detail number {i}" for i in range(30)))
    code = ("import sys\n"
            "from lora_studio.ui.app import build_app\n"
            "from lora_studio.ui import dataset_tab as tab, thumbnails\n"
            "build_app()\n"
            "s = tab.DatasetSession()\n"
            f"tab.review_folder(s, {str(demo_frames)!r}, '', 64)\n"
            "[thumbnails.badged(f) for f in s.review.frames]\n"
            "tab.save_tags(s, 'frame_001.png', 'tibbie, ' + ', '.join(f'more detail {i}' for i in range(40)))\n"
            "assert s.review.frame('frame_001.png').has('long_caption')\n"
            "assert 'torch' not in sys.modules, 'the Dataset tab imported torch'\n"
            "print(tab.kept_text(s.review))\n")
    env = {**os.environ, "LORA_STUDIO_HOME": str(studio_home), "PYTHONPATH": str(paths.project_root()),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "kept: 15 of 15" in result.stdout


# ---------------------------------------------------------------------------------------------
# In the browser (same pattern as test_studio_browser.py)

TINY_PRESET = "schema_version = 1\nresolution = 64\nmin_bucket_reso = 32\nmax_bucket_reso = 128\n"


@pytest.fixture
def studio_on_demo_frames(studio_home, demo_frames, tmp_path):
    """launch.py as a user runs it, on the demo frames, with a preset for 64 px training."""
    from test_studio_browser import running_studio

    (studio_home / "presets").mkdir(parents=True)
    (studio_home / "presets" / "tiny-review.toml").write_text(TINY_PRESET)
    with running_studio(studio_home, tmp_path, "--dataset", str(demo_frames), "--name", "tibbie",
                        "--trigger", "tibbie", "--preset", "tiny-review") as url:
        yield url


@pytest.mark.slow
def test_review_the_folder_and_exclude_a_flagged_frame_in_the_browser(studio_on_demo_frames, demo_frames, tmp_path):
    from test_studio_browser import chromium_path, screenshot_dir

    executable = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    shots = screenshot_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(studio_on_demo_frames)
            expect(page.locator("#step-budget")).to_contain_text("kept 15 of 15 frames", timeout=30_000)

            page.get_by_role("tab", name="Dataset").click()
            expect(page.locator("#dataset-folder textarea, #dataset-folder input")).to_have_value(str(demo_frames))
            page.locator("#dataset-review-button").click()
            expect(page.locator("#dataset-kept")).to_contain_text("kept: 15 of 15", timeout=30_000)
            expect(page.locator("#dataset-gallery .thumbnail-lg")).to_have_count(15)

            # The first tile is the worst frame: click it, read its flags, exclude it with a reason.
            page.locator("#dataset-gallery .thumbnail-lg").first.click()
            expect(page.locator("#dataset-frame-details")).to_contain_text("kept for training", timeout=10_000)
            frame_id = page.locator("#dataset-frame-details code").first.inner_text()
            page.locator("#dataset-reason textarea, #dataset-reason input").fill("distorted pose")
            page.locator("#dataset-exclude-button").click()
            expect(page.locator("#dataset-kept")).to_contain_text("kept: 14 of 15", timeout=10_000)
            expect(page.locator("#dataset-frame-details")).to_contain_text("excluded: distorted pose")
            page.screenshot(path=str(shots / "dataset.png"), full_page=True)

            state = ReviewState.load(demo_frames)
            assert state.excluded_ids() == {frame_id} and state.exclusion_reason(frame_id) == "distorted pose"

            page.get_by_role("tab", name="Train").click()
            expect(page.locator("#step-budget")).to_contain_text("kept 14 of 15 frames", timeout=30_000)
        finally:
            browser.close()
