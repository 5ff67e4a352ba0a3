"""Auto-tag (issue 16, item 2): the tagger's tags previewed, then stored as review edits or captions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lora_studio.data import autotag
from lora_studio.data.review_state import ReviewState, training_frames
from lora_studio.errors import UserError

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo-dataset"
BACKGROUNDS = ("meadow", "beach", "sky", "night")


@pytest.fixture
def demo_frames(tmp_path) -> Path:
    """The first 12 demo frames of the character, with their captions, in a folder of our own."""
    folder = tmp_path / "tibbie"
    folder.mkdir()
    for png in sorted(DEMO.glob("frame_*.png"))[:12]:
        shutil.copy(png, folder)
        shutil.copy(png.with_suffix(".txt"), folder)
    return folder


def test_the_toy_tagger_finds_the_sheep_and_the_background_of_most_demo_frames(demo_frames):
    results = autotag.tag_frames(demo_frames, autotag.load_tagger("toy"))
    assert len(results) == 12
    sheep = sum("sheep" in r.tags for r in results)
    background = sum(any(b in r.tags for b in BACKGROUNDS if b in r.original.split(", ")) for r in results)
    assert sheep >= 11 and background >= 9, autotag.preview_lines(results)


def test_undesired_tags_stay_out_and_the_trigger_word_comes_first():
    options = autotag.TagOptions(undesired=autotag.undesired_list("white fleece, Black_Face"), trigger_word="tibbie")
    probs = {"sheep": 0.99, "white_fleece": 0.9, "black face": 0.8, "long_hair": 0.6, "^_^": 0.7, "sky": 0.1}
    assert autotag.select_tags(probs, options) == ["tibbie", "sheep", "^_^", "long hair"]
    # a tagger's own per-tag thresholds apply unless the user sets one; character tags have their own
    assert autotag.select_tags({"sky": 0.3}, autotag.TagOptions(), thresholds={"sky": 0.25}) == ["sky"]
    assert autotag.select_tags({"sky": 0.3}, autotag.TagOptions(general_threshold=0.5), {"sky": 0.25}) == []
    kinds = {"hatsune_miku": "character", "general": "rating", "smile": "general"}
    assert autotag.select_tags({"hatsune_miku": 0.8, "general": 0.9, "smile": 0.5}, autotag.TagOptions(),
                               categories=kinds) == ["smile"]


def test_tags_go_into_the_review_state_and_into_captions_only_when_asked_keeping_the_old_ones(demo_frames, capsys):
    from lora_studio.cli import main

    before = {p.name: p.read_text() for p in demo_frames.glob("*.txt")}
    assert main(["tag", str(demo_frames), "--trigger", "tibbie", "--undesired", "white fleece"]) == 0
    printed = capsys.readouterr().out
    assert "frame_000.png: tibbie, sheep" in printed and "nothing written" in printed
    assert ReviewState.load(demo_frames).edited_tags("frame_000.png") is None

    assert main(["tag", str(demo_frames), "--trigger", "tibbie", "--undesired", "white fleece", "--write", "review"]) == 0
    state = ReviewState.load(demo_frames)
    edited = [state.edited_tags(f"frame_{i:03d}.png") for i in range(12)]
    assert all(tags and tags[0] == "tibbie" and "white fleece" not in tags for tags in edited if tags)
    assert sum(tags is not None for tags in edited) >= 6
    assert {p.name: p.read_text() for p in demo_frames.glob("*.txt")} == before  # captions untouched
    trained = {f.id: f.caption for f in training_frames(demo_frames).frames}
    assert trained["frame_000.png"].startswith("tibbie, sheep")
    assert state.undo_text.startswith("auto-tag")

    assert main(["tag", str(demo_frames), "--trigger", "tibbie", "--write", "captions"]) == 0
    for name, old in before.items():
        assert (demo_frames / f"{name}.bak").read_text() == old
        assert (demo_frames / name).read_text().startswith("tibbie, ")
    # the caption files hold the tags now, so no edit is left to override them
    assert all(ReviewState.load(demo_frames).edited_tags(f"frame_{i:03d}.png") is None for i in range(12))


def test_an_unknown_or_missing_tagger_says_so():
    with pytest.raises(UserError):
        autotag.load_tagger("deepdanbooru")


def _tiny_onnx():
    """tests/evaluate/tiny_onnx.py, the anime tests' tiny WD14 stand-in (loaded by path: another test folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_onnx_for_autotag",
                                                  Path(__file__).resolve().parents[1] / "evaluate" / "tiny_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wd14_tagger_tags_frames_with_its_categories_and_thresholds(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from lora_studio.cli import main
    from lora_studio.evaluate.wd14 import DEFAULT_TAGGER_REPO

    tiny = _tiny_onnx()
    tiny.build_tagger(tmp_path / "models" / DEFAULT_TAGGER_REPO)
    monkeypatch.setenv("LORA_STUDIO_ONNX_DIR", str(tmp_path / "models"))
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (64, 64), (230, 20, 20)).save(folder / "red.png")
    Image.new("RGB", (64, 64), (20, 150, 230)).save(folder / "blue.png")  # green 150: the character at 0.75

    assert main(["tag", str(folder), "--tagger", "wd14", "--trigger", "tibbie", "--write", "review"]) == 0
    state = ReviewState.load(folder)
    assert state.edited_tags("red.png") == ["tibbie", "red theme"]  # no rating, no emoticon under 0.35
    assert state.edited_tags("blue.png") == ["tibbie", "blue theme"]  # the character is under 0.85
    assert main(["tag", str(folder), "--tagger", "wd14", "--character-threshold", "0.7"]) == 0
    assert "blue.png: blue theme, tibbie (toy)" in capsys.readouterr().out
