"""The toy quality model tells clean toy-world images from broken ones, on files that ship and on real renders."""

from __future__ import annotations

from PIL import Image

from lora_studio import paths
from lora_studio.toy.dataset import read_distorted


def test_the_demo_datasets_kept_frames_score_clean_and_its_distorted_frames_broken():
    from lora_studio.toy.quality import quality

    dataset = paths.assets_dir() / "demo-dataset"
    distorted = read_distorted(dataset)
    files = sorted(dataset.glob("*.png"))
    scores = dict(zip((f.name for f in files), quality(Image.open(f).convert("RGB") for f in files)))
    kept = [q for name, q in scores.items() if name not in distorted]
    bad = [scores[name] for name in distorted]
    assert all(0.0 <= q <= 1.0 for q in scores.values())
    assert sum(q >= 0.5 for q in kept) >= 0.9 * len(kept), scores
    assert sum(q < 0.5 for q in bad) >= 0.8 * len(bad), {name: scores[name] for name in distorted}


def test_renders_of_the_toy_model_without_a_lora_mostly_score_clean():
    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import SETTINGS
    from lora_studio.toy.quality import quality

    prompts = ("sheep, meadow", "sheep, lying on beach", "sheep, sitting on tree")
    with LoraRenderer(load_base("toy")) as renderer:
        images = [renderer.images([], [p], [""], [seed], **SETTINGS)[0] for p in prompts for seed in (0, 1)]
    scores = quality(images)
    assert sum(q >= 0.5 for q in scores) >= 5, scores


def test_the_shipped_card_records_held_out_accuracy_for_every_broken_kind():
    from lora_studio.toy.quality import load_quality
    from lora_studio.toy.train_quality import broken_kinds

    measured = load_quality().card["measured"]["held_out_test"]
    assert set(measured["kinds"]) == set(broken_kinds())
    assert measured["clean_above_half"] >= 0.9
    assert all(k["auc"] >= 0.9 for k in measured["kinds"].values())
    assert load_quality().quality([]) == []
