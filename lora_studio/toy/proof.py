"""The toy world's proof, shared by its test and its benchmark: train the demo LoRA, render at a weight.

The review state the exclusions go into lives in the studio's data folder (LORA_STUDIO_HOME), so
callers point that at a throwaway folder first; the user's own review of the demo set stays untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

CHARACTER_PROMPT = "tibbie, sheep, pink bow, standing, meadow"
UNSEEN_PROMPT = "tibbie, sheep, sitting on tree"  # a pose the demo frames never show
SEEDS = range(6)
SETTINGS = dict(sampler="DPM++ 2M Karras", steps=20, cfg=5.0, width=64, height=64, clip_skip=2)


def train_demo_lora(run_dir: Path, base: str = "toy") -> tuple[Path, dict]:
    """The demo preset on assets/demo-dataset with its distorted frames excluded: (last epoch's file, result)."""
    from lora_studio import paths
    from lora_studio.config import config_from_dict
    from lora_studio.data.review_state import ReviewState
    from lora_studio.presets import load_preset
    from lora_studio.train.loop import train

    dataset = paths.assets_dir() / "demo-dataset"
    distorted = json.loads((dataset / "distorted.json").read_text())
    ReviewState.load(dataset).set_kept_many(list(distorted), False, "distorted action frame")
    config = config_from_dict({"dataset": str(dataset), "name": "tibbie", "sample_prompts": [], "base_model": base},
                              load_preset("demo"))
    result = train(config, Path(run_dir))
    return Path(run_dir) / f"tibbie-{config.epochs:06d}.safetensors", result


def render_seeds(renderer, lora: Path, weight: float, prompt: str, seeds=SEEDS) -> list:
    """One image per seed of prompt with the LoRA at weight (a generate.pipeline.LoraRenderer on the base)."""
    loras = [(lora, weight, weight)] if weight else []
    return [renderer.images(loras, [prompt], [""], [seed], **SETTINGS)[0] for seed in seeds]
