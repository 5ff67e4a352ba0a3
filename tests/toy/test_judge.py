"""The toy judge: a tagger and an identity model for the toy world, shipped, small, never trained on tibbie."""

import pytest
from PIL import Image

from lora_studio.toy.character import POSES, draw_character_frame
from lora_studio.toy.scenes import draw_scene
from lora_studio.toy.sheep import TIBBIE_LOOK, Look, draw_sheep_scene


@pytest.fixture(scope="module")
def judge():
    from lora_studio.toy.judge import load_judge

    return load_judge()


@pytest.fixture(scope="module")
def tibbie(judge):
    from lora_studio.toy.proof import kept_demo_frames

    return judge.reference(kept_demo_frames())


def test_the_judge_ships_small_beside_the_toy_model():
    from lora_studio.toy.judge import judge_dir

    size = sum(f.stat().st_size for f in judge_dir().rglob("*") if f.is_file())
    assert size <= 5 * 2**20


def test_the_judge_never_trained_on_tibbies_look(judge):
    assert TIBBIE_LOOK.name in judge.card["summary"]["held_out_looks"]
    assert judge.card["summary"]["train_looks"] >= 50  # identity learned across many characters


def test_tags_name_the_background_and_whether_a_sheep_is_there(judge):
    scenes = [draw_scene(70_000 + i) for i in range(20)] + [draw_sheep_scene(70_000 + i) for i in range(20)]
    tags = judge.tags([s.image for s in scenes])
    background_right = sum(s.tags[0] in t if "sheep" not in s.tags else True for s, t in zip(scenes, tags))
    sheep_right = sum(("sheep" in t) == ("sheep" in s.tags) for s, t in zip(scenes, tags))
    assert sheep_right >= 38 and background_right >= 36


def test_tags_read_a_sheeps_look(judge):
    looks = [Look("grey", "black", "red"), Look("brown", "cream", "none"), Look("cream", "brown", "blue")]
    right = total = 0
    for k, look in enumerate(looks):
        images = [draw_sheep_scene(71_000 + 100 * k + i, look=look, pose="full body").image for i in range(6)]
        for tags in judge.tags(images):
            right += sum(tag in tags for tag in look.tags())
            total += len(look.tags())
    assert right >= 0.85 * total


@pytest.mark.parametrize("pose", list(POSES))
def test_new_frames_of_tibbie_are_recognised_in_every_pose(judge, tibbie, pose):
    frames = [draw_character_frame(60_000 + i, pose).image for i in range(6)]
    assert sum(judge.same_character(frames, reference=tibbie)) >= 5


def test_other_sheep_that_share_one_or_two_of_her_features_are_not_her(judge, tibbie):
    # A pink bow alone, a black face alone, white fleece alone: none of these is tibbie.
    lookalikes = [Look("grey", "black", "pink"), Look("cream", "black", "pink"), Look("white", "brown", "pink"),
                  Look("white", "black", "red"), Look("white", "cream", "none"), Look("black", "black", "pink")]
    images = [draw_sheep_scene(72_000 + 10 * k + i, look=look).image
              for k, look in enumerate(lookalikes) for i in range(4)]
    assert sum(judge.same_character(images, reference=tibbie)) <= 3


def test_a_whiter_image_does_not_fool_the_judge(judge, tibbie):
    from lora_studio.toy.measure import character_score

    grey = [draw_sheep_scene(73_000 + i, look=Look("grey", "black", "pink")).image for i in range(8)]
    whitened = [Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), 0.85) for image in grey]
    assert sum(map(character_score, whitened)) > sum(map(character_score, grey)) + 0.5  # the colour count is fooled
    assert sum(judge.same_character(whitened, reference=tibbie)) <= 1


def test_training_the_judge_again_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    from lora_studio.toy.train_judge import JudgeSettings, train_judge

    settings = JudgeSettings(sheep_images=12, scene_images=4, steps=2, batch_size=4, eval_sheep=8,
                             identity_refs=2, identity_queries=2)
    cards = [train_judge(tmp_path / name, settings, log=lambda line: None) for name in ("first", "again")]
    first, again = (load_file(tmp_path / name / "judge.safetensors") for name in ("first", "again"))
    assert set(first) == set(again) and all((first[k] == again[k]).all() for k in first)
    assert cards[0]["identity_threshold"] == cards[1]["identity_threshold"]
    assert "identity_on_held_out_looks" in cards[0]["measured"]
