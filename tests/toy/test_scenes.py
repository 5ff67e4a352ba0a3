"""The toy world's generator: same seed, same picture; base scenes never hold the character."""

import random

import numpy as np
import pytest

from lora_studio.toy.character import POSES, TRIGGER, draw_character_frame
from lora_studio.toy.distort import DISTORTIONS, distort
from lora_studio.toy.measure import character_colour_shares, character_score
from lora_studio.toy.scenes import BACKGROUNDS, OBJECTS, draw_scene


def test_same_seed_draws_the_same_scene_and_caption():
    a, b = draw_scene(7), draw_scene(7)
    assert a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
    c, d = draw_character_frame(3, "standing"), draw_character_frame(3, "standing")
    assert c.image.tobytes() == d.image.tobytes() and c.caption == d.caption


def test_different_seeds_draw_different_scenes():
    assert len({draw_scene(seed).image.tobytes() for seed in range(10)}) == 10


def test_base_scene_captions_use_only_the_base_vocabulary_never_the_character():
    vocabulary = set(BACKGROUNDS) | set(OBJECTS)
    for seed in range(300):
        tags = draw_scene(seed).tags
        assert tags[0] in BACKGROUNDS and set(tags) <= vocabulary
        assert TRIGGER not in tags and "sheep" not in tags and "pink bow" not in tags


def test_base_scenes_never_use_the_characters_colours():
    for seed in range(150):
        shares = character_colour_shares(draw_scene(seed).image)
        assert shares["pink"] == 0 and shares["fleece"] == 0, (seed, shares)


@pytest.mark.parametrize("pose", list(POSES))
def test_every_pose_shows_her_pink_bow_and_white_fleece_with_a_matching_caption(pose):
    frame = draw_character_frame(11, pose)
    shares = character_colour_shares(frame.image)
    assert shares["pink"] > 0.003 and shares["fleece"] > 0.04, shares
    assert frame.tags[:3] == [TRIGGER, "sheep", "pink bow"] and pose in frame.caption
    assert frame.image.size == (64, 64)


def test_sitting_on_tree_draws_the_tree_and_tags_it():
    frame = draw_character_frame(5, "sitting on tree")
    assert "tree" in frame.tags
    r, g, b = (channel.astype(int) for channel in np.asarray(frame.image).transpose(2, 0, 1))
    leafy = (g > r + 40) & (g > b + 40)
    assert leafy.mean() > 0.1


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_each_distortion_changes_the_frame_but_keeps_its_size(kind):
    frame = draw_character_frame(2, "full body")
    bent = distort(frame.image, kind, random.Random(0))
    assert bent.size == frame.image.size and bent.tobytes() != frame.image.tobytes()


def test_character_score_separates_her_frames_from_base_scenes():
    assert max(character_score(draw_scene(s).image) for s in range(30)) == 0
    assert min(character_score(draw_character_frame(s).image) for s in range(30)) > 0.04


def test_generic_sheep_come_in_many_looks_but_never_hers():
    from lora_studio.toy.sheep import BASE_LOOKS, TIBBIE_LOOK, sheep_scenes

    assert TIBBIE_LOOK not in BASE_LOOKS and len(BASE_LOOKS) >= 50
    scenes = list(sheep_scenes(200, seed=3))
    for scene in scenes:
        assert scene.tags[0] == "sheep" and TRIGGER not in scene.tags
        assert "white fleece" not in scene.tags  # the base never learns her white fleece
        assert character_colour_shares(scene.image)["fleece"] == 0
    captions = {scene.caption for scene in scenes}
    for tag in ("grey fleece", "brown fleece", "cream fleece", "black fleece", "red bow", "pink bow",
                "sitting on tree", "lying on beach", "close-up", "night"):
        assert any(tag in caption for caption in captions), tag


def test_a_sheep_sitting_on_a_tree_is_drawn_on_every_background_that_has_ground():
    from lora_studio.toy.sheep import Look, draw_sheep_scene

    backgrounds = {draw_sheep_scene(s, look=Look("grey", "black"), pose="sitting on tree").tags[-2] for s in range(40)}
    assert backgrounds == {"meadow", "beach", "night"}


def test_the_shipped_demo_dataset_is_what_the_generator_draws(tmp_path):
    # Tibbie is drawn exactly as before the generic sheep existed: the demo dataset (and the review
    # benchmark measured on it) did not change.
    from lora_studio.paths import assets_dir
    from lora_studio.toy.dataset import write_demo_dataset

    out = write_demo_dataset(tmp_path / "demo", n_frames=40, n_distorted=6)
    shipped = assets_dir() / "demo-dataset"
    assert all((out / f.name).read_bytes() == f.read_bytes() for f in shipped.iterdir())


def test_pretraining_with_white_sheep_draws_white_sheep_but_never_her_look():
    # `pretrain --white-sheep`: SD1.5 knows white sheep, so the toy base may too; her combination stays unseen.
    from lora_studio.toy.pretrain import draw_pretraining_scenes
    from lora_studio.toy.sheep import LOOKS_WITH_WHITE, TIBBIE_LOOK

    assert TIBBIE_LOOK not in LOOKS_WITH_WHITE and len(LOOKS_WITH_WHITE) == 89
    _, tags = draw_pretraining_scenes(0, seed=3, sheep=300, white_sheep=True)
    white = [t for t in tags if "white fleece" in t]
    assert len(white) > 30
    assert not any("black face" in t and "pink bow" in t for t in white)
    assert any("black face" in t for t in white) and any("pink bow" in t for t in white)
    assert not any(TRIGGER in t for t in tags)
    _, default_tags = draw_pretraining_scenes(0, seed=3, sheep=300)
    assert not any("white fleece" in t for t in default_tags)
