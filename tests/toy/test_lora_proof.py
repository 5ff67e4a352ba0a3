"""The proof: on the shipped toy model, a LoRA trained on the demo frames makes tibbie appear.

Measured with lora_studio.toy.measure (her colours, a tree crown against the sky); the numbers
this test holds are written down in benchmarks/toy_world.md.
"""

from statistics import mean

import pytest

from lora_studio.toy.proof import CHARACTER_PROMPT as CHARACTER
from lora_studio.toy.proof import UNSEEN_PROMPT as UNSEEN


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo preset trained on the demo frames, the distorted ones excluded in review."""
    import os

    from lora_studio.toy.proof import train_demo_lora

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("LORA_STUDIO_HOME")
    os.environ["LORA_STUDIO_HOME"] = str(home)
    try:
        return train_demo_lora(home / "run")
    finally:
        if old is None:
            os.environ.pop("LORA_STUDIO_HOME")
        else:
            os.environ["LORA_STUDIO_HOME"] = old


def scores(lora, weight, prompt, measure):
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import render_seeds

    with LoraRenderer(load_base("toy")) as renderer:
        return [measure(image) for image in render_seeds(renderer, lora, weight, prompt)]


def test_the_character_appears_at_weight_one_and_not_at_weight_zero(demo_run):
    from lora_studio.toy.measure import character_score

    lora, _ = demo_run
    at_zero = mean(scores(lora, 0.0, CHARACTER, character_score))
    at_one = mean(scores(lora, 1.0, CHARACTER, character_score))
    print(f"character score: weight 0 → {at_zero:.4f}, weight 1 → {at_one:.4f}")
    assert at_zero < MAX_CHARACTER_AT_0
    assert at_one > at_zero + MIN_CHARACTER_GAIN


def test_an_unseen_pose_still_draws_the_tree_at_moderate_weight(demo_run):
    from lora_studio.toy.measure import character_score, tree_score

    lora, _ = demo_run
    trees = mean(scores(lora, 0.6, UNSEEN, tree_score))
    trees_without_asking = mean(scores(lora, 0.6, CHARACTER, tree_score))
    character = mean(scores(lora, 0.6, UNSEEN, character_score))
    print(f"'{UNSEEN}' at weight 0.6: tree {trees:.4f} (vs {trees_without_asking:.4f} for '{CHARACTER}'), "
          f"character {character:.4f}")
    assert trees > MIN_TREE_AT_06
    assert trees > trees_without_asking + MIN_TREE_GAIN  # the word 'tree' still works with the LoRA on
    assert character > MIN_CHARACTER_AT_06


# Measured on the shipped toy model r5 (benchmarks/toy_world.md); fleece share, 6 seeds, CFG 5.
MAX_CHARACTER_AT_0 = 0.005  # measured 0.0002
MIN_CHARACTER_GAIN = 0.02  # measured 0.0002 → 0.050
MIN_TREE_AT_06 = 0.15  # measured 0.21 (0.22 with no LoRA)
MIN_TREE_GAIN = 0.02  # measured 0.21 vs 0.10
MIN_CHARACTER_AT_06 = 0.005  # measured 0.008
