"""The demo dataset a newcomer trains on: captioned frames, a few distorted ones named in a sidecar."""

import pytest
from PIL import Image

from lora_studio.errors import UserError
from lora_studio.paths import assets_dir
from lora_studio.toy.character import TRIGGER
from lora_studio.toy.dataset import DISTORTED_SIDECAR, read_distorted, write_demo_dataset
from lora_studio.toy.distort import DISTORTIONS
from lora_studio.toy.measure import character_colour_shares


def test_demo_dataset_pairs_every_frame_with_a_tag_caption(tmp_path):
    out = write_demo_dataset(tmp_path / "demo", n_frames=12, n_distorted=3, pruned_tags=())
    frames = sorted(out.glob("*.png"))
    assert [f.name for f in frames] == [f"frame_{i:03d}.png" for i in range(15)]
    for frame in frames:
        caption = frame.with_suffix(".txt").read_text().strip()
        assert caption.startswith(f"{TRIGGER}, sheep, pink bow, ")


def test_the_demo_set_leaves_her_own_bow_to_the_trigger_word(tmp_path):
    # Pruned as character-LoRA guides advise, so "tibbie" carries the bow into prompts that do not name it.
    tagged = write_demo_dataset(tmp_path / "tagged", n_frames=6, n_distorted=2, pruned_tags=())
    pruned = write_demo_dataset(tmp_path / "pruned", n_frames=6, n_distorted=2)
    for caption in sorted(pruned.glob("*.txt")):
        tags = caption.read_text().strip().split(", ")
        assert tags[:2] == [TRIGGER, "sheep"] and "pink bow" not in tags
        assert [t for t in (tagged / caption.name).read_text().strip().split(", ") if t != "pink bow"] == tags
        assert (pruned / caption.name).with_suffix(".png").read_bytes() == \
            (tagged / caption.name).with_suffix(".png").read_bytes()


def test_distorted_sidecar_lists_only_existing_frames_and_known_kinds(tmp_path):
    out = write_demo_dataset(tmp_path / "demo", n_frames=10, n_distorted=5)
    distorted = read_distorted(out)
    assert len(distorted) == 5 and set(distorted.values()) == set(DISTORTIONS)
    assert all((out / name).is_file() for name in distorted)


def test_distortion_is_never_mentioned_in_captions(tmp_path):
    out = write_demo_dataset(tmp_path / "demo", n_frames=8, n_distorted=5)
    words = ("warp", "stretch", "crop", "smear", "blur", "upside", "distort")
    for caption in out.glob("*.txt"):
        assert not any(word in caption.read_text() for word in words)


def test_demo_dataset_frames_show_the_characters_colours(tmp_path):
    out = write_demo_dataset(tmp_path / "demo", n_frames=12, n_distorted=0)
    for frame in out.glob("*.png"):
        shares = character_colour_shares(Image.open(frame))
        assert shares["pink"] > 0.003 and shares["fleece"] > 0.04, (frame.name, shares)


def test_demo_dataset_is_the_same_for_the_same_seed(tmp_path):
    a = write_demo_dataset(tmp_path / "a", n_frames=6, n_distorted=2, seed=3)
    b = write_demo_dataset(tmp_path / "b", n_frames=6, n_distorted=2, seed=3)
    for frame in a.glob("*"):
        assert frame.read_bytes() == (b / frame.name).read_bytes()


def test_demo_dataset_refuses_a_folder_that_already_holds_files(tmp_path):
    (tmp_path / "mine.png").write_bytes(b"")
    with pytest.raises(UserError, match="not empty"):
        write_demo_dataset(tmp_path)


def test_shipped_demo_dataset_is_what_the_generator_writes(tmp_path):
    shipped = assets_dir() / "demo-dataset"
    fresh = write_demo_dataset(tmp_path / "demo")
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in fresh.iterdir())
    assert read_distorted(shipped) == read_distorted(fresh)
    for frame in fresh.glob("*.png"):
        assert Image.open(frame).tobytes() == Image.open(shipped / frame.name).tobytes()
        assert frame.with_suffix(".txt").read_text() == (shipped / frame.name).with_suffix(".txt").read_text()
    assert (shipped / DISTORTED_SIDECAR).is_file()
