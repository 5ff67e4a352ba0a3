"""The proof: on the shipped toy model, a LoRA trained on the demo frames makes tibbie appear.

The toy judge decides (toy/judge.py: is this the character of the kept demo frames? is there a
tree?), six seeds each; a whiter image cannot fool it the way a colour count can. The numbers this
test holds are written down in benchmarks/toy_world.md (`python benchmarks/toy_proof.py`).
"""

import pytest

from lora_studio.toy.proof import CHARACTER_PROMPT as CHARACTER
from lora_studio.toy.proof import UNSEEN_PROMPT as UNSEEN
from lora_studio.toy.proof import UNSEEN_PROMPT_WITH_TAGS as UNSEEN_WITH_TAGS


@pytest.fixture(scope="module")
def demo_run(demo_lora):
    """The demo preset trained on the demo frames, the distorted ones excluded in review (once per session)."""
    _run, lora, result = demo_lora
    return lora, result


@pytest.fixture(scope="module")
def judged(demo_run):
    """Judge counts (and the images, under "images") per (prompt, weight), rendered once for the module."""
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.judge import load_judge
    from lora_studio.toy.proof import judge_counts, kept_demo_frames, render_seeds

    lora, _ = demo_run
    judge = load_judge()
    reference = judge.reference(kept_demo_frames())
    counts = {}
    with LoraRenderer(load_base("toy")) as renderer:
        for prompt, weight in ((CHARACTER, 0.0), (CHARACTER, 0.6), (CHARACTER, 1.0), (UNSEEN, 0.6),
                               (UNSEEN_WITH_TAGS, 0.6)):
            images = render_seeds(renderer, lora, weight, prompt)
            counts[prompt, weight] = {**judge_counts(images, judge, reference), "images": images}
            print(prompt, weight, {k: v for k, v in counts[prompt, weight].items() if k != "images"})
    return counts


def test_the_judge_finds_tibbie_at_weight_one_and_not_at_weight_zero(judged):
    assert judged[CHARACTER, 0.0]["tibbie"] <= 1  # a generic sheep with a pink bow, not her
    assert judged[CHARACTER, 1.0]["tibbie"] >= 5


def test_she_is_recognised_already_at_weight_point_six(judged):
    assert judged[CHARACTER, 0.6]["tibbie"] >= 3


def test_an_unseen_pose_keeps_the_tree_at_weight_point_six(judged):
    # "sitting on tree" is never in the demo frames: the seed's question of whether the trunk survives.
    assert judged[UNSEEN, 0.6]["tree"] >= 4


def test_she_is_recognised_in_the_unseen_pose_at_weight_point_six(judged):
    assert judged[UNSEEN, 0.6]["tibbie"] >= 3


def test_her_captioned_tag_in_the_prompt_brings_her_bow_into_the_unseen_pose(judged):
    # Every demo caption says "pink bow", so the LoRA files her bow under that tag: without it in the prompt
    # the tree shows a white sheep without her bow (22 % her over 3 training × 12 sample seeds), with it 75 %.
    # (benchmarks/toy_world.md, session 15; the lines are item 3's, as in the two tests above.)
    assert judged[UNSEEN_WITH_TAGS, 0.6]["tibbie"] >= 3 and judged[UNSEEN_WITH_TAGS, 0.6]["tree"] >= 4


def test_her_fleece_white_appears_only_with_the_lora(judged):
    # The colour count, kept as a secondary view: the base never draws fleece white.
    from statistics import mean

    from lora_studio.toy.measure import character_score

    at_zero = mean(map(character_score, judged[CHARACTER, 0.0]["images"]))
    at_one = mean(map(character_score, judged[CHARACTER, 1.0]["images"]))
    print(f"fleece share: weight 0 → {at_zero:.4f}, weight 1 → {at_one:.4f}")
    assert at_zero < 0.005 and at_one > at_zero + 0.01


@pytest.mark.slow
def test_find_lr_then_start_on_the_demo_gives_a_lora_that_shows_her(tmp_path, monkeypatch):
    # The write-up's workflow as the studio runs it: a DAdaptation probe as long as the seed's one epoch
    # (the demo's 76-image epoch six times: 456 images), its d·lr ÷ 3 for Lion, TE ÷ 10.
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config, judge_counts, render_seeds
    from lora_studio.train.loop import train
    from lora_studio.train.probe import apply_probe, run_probe

    monkeypatch.setenv("LORA_STUDIO_HOME", str(tmp_path))
    config = demo_config()
    probe = run_probe(config, tmp_path / "probe")
    run = apply_probe(config, probe)
    assert run.resolved_te_lr() == pytest.approx(run.unet_lr / 10)
    train(run, tmp_path / "run")
    with LoraRenderer(load_base("toy")) as renderer:
        images = render_seeds(renderer, tmp_path / "run" / f"tibbie-{run.epochs:06d}.safetensors", 1.0, CHARACTER)
    counts = judge_counts(images)
    print(probe, counts)
    assert probe["probe_epochs"] == 6 and probe["probe_images"] == 456
    # r8 with a one-epoch probe (session 8): d·lr 0.0246 → Lion 8.2e-3, 0 of 6; six epochs: 0.0114 → 3.8e-3, 4 of 6
    assert counts["tibbie"] >= 4
