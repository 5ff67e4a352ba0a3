"""Import a video (issue 16, item 1): a few sharp, distinct frames per scene, nothing black or fading."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_studio.data import checks
from lora_studio.data.video import VideoImportOptions, import_videos, parse_ranges
from lora_studio.errors import UserError
from video_helpers import FPS, write_dissolve_video, write_toy_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def toy_video(tmp_path_factory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("video") / "episode.mp4"
    return path, write_toy_video(path)


def _scene_of(png: Path, shown: list[str]) -> str:
    seconds = float(png.stem.rsplit("_", 1)[1].rstrip("s"))
    return shown[round(seconds * FPS)]


def test_a_video_gives_sharp_distinct_frames_of_every_scene_and_no_black_or_fading_ones(toy_video, tmp_path):
    path, shown = toy_video
    steps = []
    result = import_videos([path], tmp_path / "frames", progress=lambda f, what: steps.append((f, what)))

    kept = sorted(result.written)
    scenes = {_scene_of(p, shown) for p in kept}
    assert scenes == {"meadow", "beach", "sky"}, [p.name for p in kept]  # every scene, no fade or black frame
    assert result.scenes == 5  # the cuts, and the black stretch, split the video
    facts = {p.name: checks.inspect_frame(p) for p in kept}
    assert all(f.brightness > 40 for f in facts.values())
    # The review's own duplicate check finds nothing to flag: the repeated stretches were dropped.
    assert checks.duplicate_flags(facts) == {}
    assert result.dropped["near_duplicate"] > 0 and result.dropped["black"] >= 4 and result.dropped["fade"] > 0
    for png in kept:
        assert png.with_suffix(".txt").read_text() == ""
    assert "5 scenes" in result.summary() and "black frame" in result.summary()
    assert steps[-1][0] == 1.0 and any("left" in what for _, what in steps)


def test_a_dissolve_between_two_shots_keeps_both_and_none_of_the_blended_frames(tmp_path):
    shown = write_dissolve_video(tmp_path / "dissolve.mp4")
    result = import_videos([tmp_path / "dissolve.mp4"], tmp_path / "frames")
    assert result.scenes == 2
    assert {_scene_of(p, shown) for p in result.written} == {"meadow", "night"}


def test_a_cap_a_time_range_and_a_training_size(toy_video, tmp_path):
    path, shown = toy_video
    few = import_videos([path], tmp_path / "few", VideoImportOptions(max_frames=2, size=48, square=True))
    assert 1 <= len(few.written) <= 2
    assert all(checks.inspect_frame(p).width == 48 == checks.inspect_frame(p).height for p in few.written)
    beach = import_videos([path], tmp_path / "beach", VideoImportOptions(ranges=parse_ranges("1.5-3")))
    assert {_scene_of(p, shown) for p in beach.written} == {"beach"}


def test_an_import_never_writes_into_a_folder_that_holds_files_unless_asked(toy_video, tmp_path):
    path, _ = toy_video
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep_me.png").write_bytes(b"not touched")
    with pytest.raises(UserError) as err:
        import_videos([path], folder)
    assert "already holds files" in err.value.message and "--into-existing" in err.value.hint
    assert sorted(p.name for p in folder.iterdir()) == ["keep_me.png"]

    from lora_studio.cli import main

    assert main(["frames", str(path), "--out", str(tmp_path / "new")]) == 0
    first = len(list((tmp_path / "new").glob("*.png")))
    # a second import of the same video into the same folder adds nothing new: its frames are there already
    assert main(["frames", str(path), "--out", str(tmp_path / "new"), "--into-existing"]) == 0
    assert len(list((tmp_path / "new").glob("*.png"))) == first


def test_a_damaged_video_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(UserError) as err:
        import_videos([bad], tmp_path / "out")
    assert "broken.mp4" in err.value.message
    with pytest.raises(UserError):
        parse_ranges("1:00-0:30")
