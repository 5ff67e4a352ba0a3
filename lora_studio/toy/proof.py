"""The toy world's proof, shared by its test and its benchmark: train the demo LoRA, render at a weight, judge.

The judge (toy/judge.py) decides: does an image show a sheep, a tree, and is it tibbie (the
character of the demo's kept frames)? Colour shares (toy/measure.py) are a secondary view only: a
whiter image raises them, it does not fool the judge's identity embedding.

The review state the exclusions go into lives in the studio's data folder (LORA_STUDIO_HOME), so
callers point that at a throwaway folder first; the user's own review of the demo set stays untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

CHARACTER_PROMPT = "tibbie, sheep, pink bow, standing, meadow"
BASE_SHEEP_PROMPTS = ("sheep, meadow", "sheep, lying on beach", "sheep, sitting on tree")
UNSEEN_PROMPT = "tibbie, sheep, sitting on tree"  # a pose the demo frames never show
# The same with her pruned tag added back, as CyberHarem's model cards advise when a feature is unstable
# (a table row of benchmarks/toy_proof.py).
UNSEEN_PROMPT_WITH_TAGS = "tibbie, sheep, pink bow, sitting on tree"
SEEDS = range(6)
# The proof judges a property of the recipe, not of one lucky LoRA: a change of training seed alone moves her on
# the tree as much as a change of recipe does (benchmarks/toy_world.md, session 14).
TRAINING_SEEDS = (42, 1, 2)
# The write-up's sampler settings (CFG 7), at the toy's 64 px.
SETTINGS = dict(sampler="DPM++ 2M Karras", steps=20, cfg=7.0, width=64, height=64, clip_skip=2)


def demo_config(base: str = "toy"):
    """The demo preset on assets/demo-dataset, its distorted frames excluded in review (as a user would)."""
    from lora_studio import paths
    from lora_studio.config import config_from_dict
    from lora_studio.data.review_state import ReviewState
    from lora_studio.presets import load_preset

    dataset = paths.assets_dir() / "demo-dataset"
    distorted = json.loads((dataset / "distorted.json").read_text())
    ReviewState.load(dataset).set_kept_many(list(distorted), False, "distorted action frame")
    return config_from_dict({"dataset": str(dataset), "name": "tibbie", "sample_prompts": [], "base_model": base},
                            load_preset("demo"))


def train_demo_lora(run_dir: Path, base: str = "toy", emit=lambda event: None, config=None) -> tuple[Path, dict]:
    """The demo preset on the demo frames (distorted ones excluded), or config: (last epoch's file, result)."""
    from lora_studio.train.loop import train

    config = config or demo_config(base)
    result = train(config, Path(run_dir), emit)
    return Path(run_dir) / f"tibbie-{config.epochs:06d}.safetensors", result


def render_seeds(renderer, lora: Path, weight: float, prompt: str, seeds=SEEDS, cfg: float | None = None) -> list:
    """One image per seed of prompt with the LoRA at weight (a generate.pipeline.LoraRenderer on the base)."""
    loras = [(lora, weight, weight)] if weight else []
    settings = {**SETTINGS, "cfg": SETTINGS["cfg"] if cfg is None else cfg}
    return [renderer.images(loras, [prompt], [""], [seed], **settings)[0] for seed in seeds]


def kept_demo_frames() -> list:
    """The demo dataset's frames minus its distorted ones: what the judge compares renders with."""
    from PIL import Image

    from lora_studio import paths
    from lora_studio.toy.dataset import read_distorted

    dataset = paths.assets_dir() / "demo-dataset"
    distorted = read_distorted(dataset)
    return [Image.open(p).convert("RGB") for p in sorted(dataset.glob("*.png")) if p.name not in distorted]


def judge_counts(images, judge=None, reference=None) -> dict:
    """How many images the judge tags 'sheep' and 'tree', and how many it takes for tibbie."""
    from lora_studio.toy.judge import load_judge

    judge = judge or load_judge()
    reference = reference if reference is not None else judge.reference(kept_demo_frames())
    tags = judge.tags(images)
    return {"n": len(images), "sheep": sum("sheep" in t for t in tags), "tree": sum("tree" in t for t in tags),
            "tibbie": sum(judge.same_character(images, reference=reference)),
            "similarity": [round(x, 3) for x in judge.similarity(images, reference=reference)]}
