"""The proof: on the shipped toy model, a LoRA trained on the demo frames makes tibbie appear.

The toy judge decides (toy/judge.py: is this the character of the kept demo frames? is there a
tree?); a whiter image cannot fool it the way a colour count can. The recipe is trained on three
training seeds (the preset's 42, then 1 and 2) and each LoRA rendered on six sample seeds, so every
LoRA row counts 18 images and the lines are issue 12's fractions of them (5 of 6 → 15 of 18, 3 of 6 → 9,
4 of 6 → 12). The numbers are written down in benchmarks/toy_world.md (`python benchmarks/toy_proof.py`,
`python benchmarks/toy_rates.py` for twelve sample seeds).
"""

import pytest

from lora_studio.toy.proof import CHARACTER_PROMPT as CHARACTER
from lora_studio.toy.proof import UNSEEN_PROMPT as UNSEEN


@pytest.fixture(scope="module")
def demo_loras(demo_lora, tmp_path_factory):
    """The demo preset's LoRA (training seed 42, shared with other tests) and the same recipe on seeds 1 and 2."""
    from lora_studio.config import config_from_dict
    from lora_studio.toy.proof import TRAINING_SEEDS, demo_config, train_demo_lora

    _run, lora, _result = demo_lora
    loras = [lora]
    home = tmp_path_factory.mktemp("proof-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_STUDIO_HOME", str(home))
        for seed in TRAINING_SEEDS[1:]:
            config = config_from_dict({"seed": seed}, demo_config())
            loras.append(train_demo_lora(home / f"run-{seed}", config=config)[0])
    return loras


@pytest.fixture(scope="module")
def judged(demo_loras):
    """Judge counts (and the images, under "images") per (prompt, weight), summed over the LoRAs."""
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.judge import load_judge
    from lora_studio.toy.proof import judge_counts, kept_demo_frames, render_seeds

    judge = load_judge()
    reference = judge.reference(kept_demo_frames())
    counts = {}
    with LoraRenderer(load_base("toy")) as renderer:
        for prompt, weight in ((CHARACTER, 0.0), (CHARACTER, 0.6), (CHARACTER, 1.0), (UNSEEN, 0.6)):
            # Weight 0 is the base alone: the same images whatever the LoRA.
            images = [image for lora in (demo_loras[:1] if weight == 0 else demo_loras)
                      for image in render_seeds(renderer, lora, weight, prompt)]
            counts[prompt, weight] = {**judge_counts(images, judge, reference), "images": images}
            print(prompt, weight, {k: v for k, v in counts[prompt, weight].items() if k != "images"})
    return counts


def test_the_judge_finds_tibbie_at_weight_one_and_not_at_weight_zero(judged):
    assert judged[CHARACTER, 0.0]["n"] == 6 and judged[CHARACTER, 0.0]["tibbie"] <= 1  # a generic sheep, not her
    assert judged[CHARACTER, 1.0]["n"] == 18 and judged[CHARACTER, 1.0]["tibbie"] >= 15


def test_she_is_recognised_already_at_weight_point_six(judged):
    assert judged[CHARACTER, 0.6]["tibbie"] >= 9


def test_an_unseen_pose_keeps_the_tree_at_weight_point_six(judged):
    # "sitting on tree" is never in the demo frames: the seed's question of whether the trunk survives.
    assert judged[UNSEEN, 0.6]["tree"] >= 12


def test_she_is_recognised_in_the_unseen_pose_at_weight_point_six(judged):
    # Her bow is not captioned (the demo set prunes "pink bow"), so the trigger carries it onto the tree; with the
    # tag on every caption she was there in 22 % of renders (benchmarks/toy_world.md, session 15).
    assert judged[UNSEEN, 0.6]["tibbie"] >= 9


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
    # (the demo's 76-image epoch six times: 456 images), its d·lr ÷ 3 for Lion, the text encoder at the demo
    # preset's UNet ÷ 3 (the write-up's ÷ 10 is for SD1.5's text encoder; the toy's is 64 wide, session 20).
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config, judge_counts, render_seeds
    from lora_studio.train.loop import train
    from lora_studio.train.probe import apply_probe, run_probe

    monkeypatch.setenv("LORA_STUDIO_HOME", str(tmp_path))
    config = demo_config()
    probe = run_probe(config, tmp_path / "probe")
    run = apply_probe(config, probe)
    assert run.resolved_te_lr() == pytest.approx(run.unet_lr / 3)
    train(run, tmp_path / "run")
    with LoraRenderer(load_base("toy")) as renderer:
        images = render_seeds(renderer, tmp_path / "run" / f"tibbie-{run.epochs:06d}.safetensors", 1.0, CHARACTER)
    counts = judge_counts(images)
    print(probe, counts)
    assert probe["probe_epochs"] == 6 and probe["probe_images"] == 456
    # r8 with a one-epoch probe (session 8): d·lr 0.0246 → Lion 8.2e-3, 0 of 6; six epochs: 0.0114 → 3.8e-3, 4 of 6;
    # pruned captions, kohya's layers, 7 epochs (session 17): 0.0082 → 2.7e-3, 6 of 6
    # r23, TE ÷ 3 (session 20): 0.0096 → 3.2e-3, 4 of 6
    assert counts["tibbie"] >= 4
