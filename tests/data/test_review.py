"""Reviewing a frame folder: every file listed with its flags, decisions kept outside the folder, only kept
frames trained, and the distorted-frame flags measured against the generator's own labels."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frame_helpers import draw_frame
from lora_studio.data.review import review_dataset
from lora_studio.data.review_state import ReviewState, state_path, training_frames
from lora_studio.errors import UserError


def folder_fingerprint(folder: Path) -> dict[str, str]:
    """Every file under folder with the hash of its bytes: proof that nothing there changed."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def strange_folder(folder: Path) -> Path:
    """The broken and strange files real frame folders hold, beside a few good captioned frames."""
    folder.mkdir()
    for i in range(4):
        draw_frame(folder / f"good_{i}.png", i, size=(64, 64))
        (folder / f"good_{i}.txt").write_text("tibbie, sheep, meadow")
    good = (folder / "good_0.png").read_bytes()
    (folder / "corrupt.png").write_bytes(good[:8] + bytes(range(256)) * 2)
    (folder / "notes.png").write_text("these are my notes, not a picture")
    (folder / "half.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.new("RGB", (100000, 10), (90, 90, 90)).save(folder / "strip.png")
    Image.new("CMYK", (64, 64), (0, 120, 40, 0)).save(folder / "print.jpg")
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(folder / "deep.png")
    Image.new("RGBA", (64, 64), (200, 20, 20, 100)).save(folder / "cutout.png")
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(folder / "wave.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    draw_frame(folder / "ünïcode nåme 01.png", 7, size=(64, 64))
    draw_frame(folder / "   spaces   .png", 8, size=(64, 64))
    draw_frame(folder / "no_caption.png", 9, size=(64, 64))
    draw_frame(folder / "empty_caption.png", 10, size=(64, 64))
    (folder / "empty_caption.txt").write_text("")
    (folder / "readme.md").write_text("not an image, not a frame: ignored")
    return folder


def test_every_file_of_a_strange_folder_is_listed_with_a_clear_reason(tmp_path):
    folder = strange_folder(tmp_path / "frames")
    before = folder_fingerprint(folder)

    review = review_dataset(folder, resolution=64)

    by_file = {f.id: f for f in review.frames}
    assert set(by_file) == {p.name for p in folder.iterdir() if p.suffix != ".txt" and p.suffix != ".md"}

    def flag(file, check):
        found = [f for f in by_file[file].flags if f.check == check]
        assert found, f"{file}: expected a {check} flag, got {by_file[file].flags}"
        return found[0].message

    assert "damaged image" in flag("corrupt.png", "unreadable")
    assert "the file holds text" in flag("notes.png", "unreadable")
    assert "truncated" in flag("half.png", "truncated")
    assert "too small to use: 1×1 px" in flag("dot.png", "too_small")
    assert "extreme aspect ratio 10000:1" in flag("strip.png", "aspect")
    assert "CMYK" in flag("print.jpg", "color_mode")
    assert "16-bit" in flag("deep.png", "color_mode")
    assert "flattened onto white" in flag("cutout.png", "alpha")
    assert "animated (3 frames)" in flag("wave.gif", "animated")
    assert ".gif files are not used for training" in flag("wave.gif", "skipped")
    assert "no caption file" in flag("no_caption.png", "missing_caption")
    assert "caption is empty" in flag("empty_caption.png", "empty_caption")
    for unusable in ("corrupt.png", "notes.png", "half.png", "dot.png", "wave.gif"):
        assert not by_file[unusable].trainable and not by_file[unusable].kept
    for odd_but_fine in ("print.jpg", "deep.png", "cutout.png", "ünïcode nåme 01.png", "   spaces   .png"):
        assert by_file[odd_but_fine].kept, odd_but_fine
    # Worst first: files that cannot be used lead the list.
    assert {f.id for f in review.frames[:5]} == {"corrupt.png", "notes.png", "half.png", "dot.png", "wave.gif"}
    assert review.summary() == "kept: 12 of 12 (5 files cannot be used)"
    assert folder_fingerprint(folder) == before


def test_training_on_the_strange_folder_skips_the_bad_files_with_a_message(tmp_path):
    folder = strange_folder(tmp_path / "frames")

    report = training_frames(folder)

    trained = {f.id for f in report.frames}
    skipped = dict(report.skipped)
    assert {"corrupt.png", "notes.png", "half.png", "dot.png", "wave.gif"} <= set(skipped)
    assert not trained & set(skipped)
    assert all(reason for reason in skipped.values())


def test_the_cli_prints_one_json_object_per_file(tmp_path, capsys):
    from lora_studio.cli import main

    folder = strange_folder(tmp_path / "frames")

    assert main(["review", str(folder), "--json", "--resolution", "64"]) == 0

    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 17
    row = next(r for r in rows if r["file"] == "notes.png")
    assert row["kept"] is False
    assert row["flags"][0]["check"] == "unreadable" and set(row["flags"][0]) >= {"check", "message", "value"}


def test_the_cli_text_report_lists_flags_and_the_kept_count_and_can_exclude(tmp_path, capsys, tiny_frames):
    from lora_studio.cli import main

    assert main(["review", str(tiny_frames), "--exclude", "frame_003.png", "--reason", "odd pose"]) == 0

    out = capsys.readouterr().out
    assert "frame_003.png  [excluded (odd pose)]" in out
    assert "kept: 7 of 8" in out
    assert ReviewState.load(tiny_frames).excluded_ids() == {"frame_003.png"}
    assert main(["review", str(tiny_frames), "--exclude", "nope.png"]) == 2  # a user error, one line
    # named again with a new reason: the new reason is kept, and it counts as a decision by hand
    assert main(["review", str(tiny_frames), "--exclude", "frame_003.png", "--reason", "blurred legs"]) == 0
    state = ReviewState.load(tiny_frames)
    assert state.exclusion_reason("frame_003.png") == "blurred legs" and state.excluded_by_hand("frame_003.png")


def test_a_folder_that_does_not_exist_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        review_dataset(tmp_path / "missing")


def test_decisions_and_edits_survive_a_restart_and_live_outside_the_image_folder(tiny_frames, studio_home):
    before = folder_fingerprint(tiny_frames)
    state = ReviewState.load(tiny_frames)
    state.set_kept("frame_002.png", False, reason="deformed legs")
    state.set_tags("frame_005.png", ["tibbie", "sheep", "jumping"])
    state.set_trigger_word("tibbie")

    again = ReviewState.load(tiny_frames)  # as after closing and reopening the studio

    assert again.excluded_ids() == {"frame_002.png"}
    assert again.exclusion_reason("frame_002.png") == "deformed legs"
    assert again.caption_for("frame_005.png") == "tibbie, sheep, jumping"
    assert again.caption_for("frame_001.png", "original") == "original"
    assert again.trigger_word == "tibbie"
    assert state_path(tiny_frames).is_relative_to(studio_home)
    assert folder_fingerprint(tiny_frames) == before
    assert [p.name for p in state_path(tiny_frames).parent.iterdir()] == [state_path(tiny_frames).name]  # no temp files


def test_two_folders_with_the_same_name_keep_separate_reviews(tmp_path):
    a, b = tmp_path / "one" / "frames", tmp_path / "two" / "frames"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    ReviewState.load(a).set_kept("x.png", False)

    assert state_path(a) != state_path(b)
    assert ReviewState.load(b).excluded_ids() == set()


def test_a_damaged_state_file_is_a_user_error_that_says_the_images_are_safe(tiny_frames):
    path = state_path(tiny_frames)
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")

    with pytest.raises(UserError, match="damaged") as info:
        ReviewState.load(tiny_frames)
    assert "images are not affected" in info.value.hint


def test_excluded_frames_are_not_trained_and_edited_captions_are(tiny_frames):
    state = ReviewState.load(tiny_frames)
    state.set_kept("frame_000.png", False)
    state.set_kept("frame_001.png", False)
    state.set_kept("frame_001.png", True)  # changed their mind
    state.set_tags("frame_004.png", "tibbie, sheep, close-up")

    report = training_frames(tiny_frames)

    frames = {f.id: f for f in report.frames}
    assert "frame_000.png" not in frames and "frame_001.png" in frames and len(frames) == 7
    assert frames["frame_004.png"].caption == "tibbie, sheep, close-up"
    assert frames["frame_005.png"].caption == "tibbie, sheep, pose2, white background"
    assert (tiny_frames / "frame_004.txt").read_text() == "tibbie, sheep, pose1, white background"


def test_batch_tag_edits_apply_to_every_frame_and_count_changes(tiny_frames):
    from lora_studio.data.frames import scan_frames

    frames = scan_frames(tiny_frames).frames
    state = ReviewState.load(tiny_frames)

    assert state.replace_tag_everywhere(frames, "white background", "simple background") == 8
    assert state.remove_tag_everywhere(frames, "pose0") == 3
    assert state.add_tag_everywhere(frames, "pink bow") == 8
    assert state.add_tag_everywhere(frames, "pink bow") == 0
    assert state.move_trigger_first(frames, "sheep") == 8

    again = ReviewState.load(tiny_frames)
    assert again.caption_for("frame_000.png") == "sheep, tibbie, simple background, pink bow"
    assert again.caption_for("frame_001.png") == "sheep, tibbie, pose1, simple background, pink bow"


def test_a_bulk_keep_never_overturns_an_exclusion_made_by_hand_unless_asked(tiny_frames):
    state = ReviewState.load(tiny_frames)
    state.set_kept_many(["frame_000.png", "frame_001.png"], False, "blurry")  # "Exclude all shown" on 'blur'
    state.set_kept("frame_002.png", False, "deformed legs")  # one frame, by hand
    every = [f"frame_{i:03d}.png" for i in range(8)]

    plan = state.plan_kept_many(every, True)
    assert (plan.change, plan.spared) == (["frame_000.png", "frame_001.png"], ["frame_002.png"])
    assert state.excluded_ids() == {"frame_000.png", "frame_001.png", "frame_002.png"}  # planning changes nothing
    state.set_kept_many(every, True)
    again = ReviewState.load(tiny_frames)
    assert again.excluded_ids() == {"frame_002.png"} and again.exclusion_reason("frame_002.png") == "deformed legs"

    # excluding in bulk leaves the reason given by hand; keeping with include_by_hand overturns it
    again.set_kept_many(every, False, "not her")
    assert again.exclusion_reason("frame_002.png") == "deformed legs" and again.excluded_by_hand("frame_002.png")
    assert again.exclusion_reason("frame_003.png") == "not her" and not again.excluded_by_hand("frame_003.png")
    assert again.set_kept_many(every, True, include_by_hand=True).change == every
    assert again.excluded_ids() == set()


def test_the_last_change_is_undone_once_even_after_a_restart(tiny_frames):
    from lora_studio.data.frames import scan_frames

    frames = scan_frames(tiny_frames).frames
    state = ReviewState.load(tiny_frames)
    state.set_kept("frame_002.png", False, "deformed legs")
    state.set_tags("frame_005.png", "tibbie, sheep, jumping")
    assert state.remove_tag_everywhere(frames, "sheep") == 8
    assert state.undo_text == "remove 'sheep' (8 frames)"

    restarted = ReviewState.load(tiny_frames)
    assert restarted.undo() == "remove 'sheep' (8 frames)"
    assert restarted.caption_for("frame_005.png") == "tibbie, sheep, jumping"  # the edit before it stays
    assert restarted.caption_for("frame_000.png", "tibbie, sheep, pose0") == "tibbie, sheep, pose0"
    assert restarted.exclusion_reason("frame_002.png") == "deformed legs"
    with pytest.raises(UserError, match="nothing to undo"):
        ReviewState.load(tiny_frames).undo()
    assert [f.id for f in training_frames(tiny_frames).frames if "sheep" in f.caption] == [
        f.id for f in frames if f.id != "frame_002.png"]


def test_exclusions_saved_before_bulk_marks_count_as_made_by_hand(tiny_frames):
    path = state_path(tiny_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema_version": 1, "dataset": str(tiny_frames), "trigger_word": "",
                                "frames": {"frame_001.png": {"kept": False, "reason": "odd pose"}}}))
    state = ReviewState.load(tiny_frames)
    assert state.excluded_by_hand("frame_001.png")
    assert state.set_kept_many(["frame_001.png"], True).spared == ["frame_001.png"]
    assert state.exclusion_reason("frame_001.png") == "odd pose"


def test_an_edit_back_to_the_caption_file_forgets_the_edit(tiny_frames):
    from lora_studio.data.frames import scan_frames

    frames = scan_frames(tiny_frames).frames
    state = ReviewState.load(tiny_frames)
    state.add_tag_everywhere(frames, "smile")
    state.remove_tag_everywhere(frames, "smile")

    assert all(state.edited_tags(f.id) is None for f in frames)


def test_the_review_shows_edited_tags_and_checks_them(tiny_frames):
    state = ReviewState.load(tiny_frames)
    state.set_tags("frame_006.png", ["sheep", "white background"])

    review = review_dataset(tiny_frames, trigger_word="tibbie")

    frame = review.frame("frame_006.png")
    assert frame.edited and frame.tags == ["sheep", "white background"]
    assert frame.has("no_trigger")
    assert review.frame("frame_000.png").caption == "tibbie, sheep, pose0, white background"


def test_the_trigger_word_is_guessed_from_the_captions_when_not_given(tiny_frames):
    review = review_dataset(tiny_frames)

    assert review.trigger_word == "tibbie" and review.trigger_inferred


def test_a_seventy_frame_folder_reviews_in_seconds_with_progress(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(70):
        # 512×768 frames, the size of real training frames: smooth colour fields with some texture.
        small = rng.integers(0, 256, (12, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((512, 768), Image.BICUBIC)
        image.save(folder / f"frame_{i:03d}.jpg", quality=90)
        (folder / f"frame_{i:03d}.txt").write_text("tibbie, sheep")
    calls = []

    started = time.perf_counter()
    review = review_dataset(folder, progress=lambda done, total: calls.append((done, total)))
    elapsed = time.perf_counter() - started

    assert len(review.frames) == 70
    assert calls[0] == (1, 70) and calls[-1] == (70, 70)
    assert elapsed < 10, f"70 frames took {elapsed:.1f} s"  # a few seconds on a busy 2-core CPU


# Measured on these exact sets (benchmarks/review.md): 32 of 36 distorted frames flagged, 6 good frames
# flagged, so precision 0.84 and recall 0.89. Everything is seeded, so any drop is a real regression.
MEASURED_PRECISION = 32 / 38
MEASURED_RECALL = 32 / 36
# The checks that look at the picture itself; caption, size and duplicate flags say nothing about distortion.
CONTENT_CHECKS = ("outlier", "blur", "low_detail", "dark", "bright")


def test_distorted_demo_frames_are_flagged_with_the_measured_precision_and_recall(tmp_path):
    from lora_studio.toy.dataset import read_distorted, write_demo_dataset

    sets = [(40, 6, seed) for seed in range(4)] + [(64, 6, seed) for seed in range(2)]
    true_pos = false_pos = false_neg = 0
    for n_frames, n_distorted, seed in sets:
        folder = write_demo_dataset(tmp_path / f"demo-{n_frames}-{seed}", n_frames, n_distorted, seed)
        distorted = read_distorted(folder)  # the generator's labels, not the review's
        assert len(distorted) == n_distorted

        review = review_dataset(folder, resolution=64)

        for frame in review.frames:
            flagged = any(frame.has(check) for check in CONTENT_CHECKS)
            true_pos += flagged and frame.id in distorted
            false_pos += flagged and frame.id not in distorted
            false_neg += frame.id in distorted and not flagged
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / (true_pos + false_neg)
    assert precision >= MEASURED_PRECISION - 1e-9, f"precision {precision:.3f} ({true_pos} tp, {false_pos} fp)"
    assert recall >= MEASURED_RECALL - 1e-9, f"recall {recall:.3f} ({true_pos} tp, {false_neg} fn)"


def test_a_distorted_frame_says_what_was_found_and_what_to_look_for(tmp_path):
    from lora_studio.toy.dataset import read_distorted, write_demo_dataset

    folder = write_demo_dataset(tmp_path / "demo", 40, 6, seed=0)
    review = review_dataset(folder, resolution=64)

    worst = review.frames[0]
    assert worst.id in read_distorted(folder)
    outlier = next(f for f in worst.flags if f.check == "outlier")
    assert "check for a distorted action frame" in outlier.message and "mostly in its" in outlier.message
    assert outlier.value >= 0.85
