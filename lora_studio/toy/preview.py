"""Render prompts with a toy base model: a quick look at what pretraining taught it."""

from __future__ import annotations

from pathlib import Path

BASE_PROMPTS = (
    "meadow, tree", "meadow, house, sun", "beach, sun", "beach, rock",
    "sky, sun", "night, moon", "night, house", "meadow, rock",
)


def render(base, prompts: list[str], seed: int = 0, steps: int = 20, cfg: float = 7.0,
           sampler: str = "DPM++ 2M Karras", clip_skip: int = 2) -> list:
    """One 64x64 image per prompt (seeds seed, seed+1, …) the way the studio samples: A1111 settings."""
    from lora_studio.generate.pipeline import render as render_one

    size = base.vae_scale_factor * base.unet.config.sample_size
    return [render_one(base, prompt, sampler=sampler, steps=steps, cfg=cfg, width=size, height=size,
                       seed=seed + i, clip_skip=clip_skip) for i, prompt in enumerate(prompts)]


def contact_sheet(images: list, columns: int, scale: int = 2):
    """Images side by side in rows, upscaled with nearest-neighbour so pixels stay visible."""
    from PIL import Image

    w, h = images[0].width * scale, images[0].height * scale
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, image in enumerate(images):
        sheet.paste(image.resize((w, h), Image.NEAREST), ((i % columns) * w, (i // columns) * h))
    return sheet


def render_prompt_grid(model_dir: Path, out_png: Path, prompts=BASE_PROMPTS, seeds: int = 3) -> Path:
    """A grid: one column per prompt, one row per seed."""
    from lora_studio.models.load import load_diffusers_folder

    base = load_diffusers_folder(Path(model_dir))
    rows = [render(base, list(prompts), seed=seed * 100) for seed in range(seeds)]
    contact_sheet([image for row in rows for image in row], columns=len(prompts)).save(out_png)
    return out_png
