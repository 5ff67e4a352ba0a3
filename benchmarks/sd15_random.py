"""A full-size SD1.5 with random weights, built from the shipped assets/sd15-config (no download).

The benchmarks time and measure the real architecture (860 M UNet parameters, CLIP ViT-L/14's text
tower, the 84 M VAE); random weights cost the same per step as trained ones. `tiny=True` keeps the
same config files and classes with every width shrunk, so a CPU can run the same code in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

# Widths for tiny=True: every block type of SD1.5 is kept, only narrower and shallower.
# 8 norm groups: at 32 px the lowest UNet block is 1×1, where 32 groups of 32 channels would hold one value each.
TINY_UNET = dict(block_out_channels=[32, 32, 64, 64], layers_per_block=1, cross_attention_dim=32, norm_num_groups=8)
TINY_VAE = dict(block_out_channels=[32, 32, 32, 32], layers_per_block=1)
TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32)


def build_random_sd15(seed: int = 0, tiny: bool = False):
    """A BaseModel of SD1.5's shape with random weights, on the CPU in fp32 (as load_base returns a model)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_studio.models.load import BaseModel
    from lora_studio.models.single_file import sd15_config_dir
    from lora_studio.models.tiny import load_clip_tokenizer

    config_dir = sd15_config_dir()
    torch.manual_seed(seed)
    unet_config = UNet2DConditionModel.load_config(str(config_dir / "unet"))
    vae_config = AutoencoderKL.load_config(str(config_dir / "vae"))
    clip_values = json.loads((config_dir / "text_encoder" / "config.json").read_text())
    if tiny:
        unet_config.update(TINY_UNET)
        vae_config.update(TINY_VAE)
        clip_values.update(TINY_CLIP)
    unet = UNet2DConditionModel.from_config(unet_config)
    vae = AutoencoderKL.from_config(vae_config)
    text_encoder = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in clip_values.items() if not k.startswith("_")}))
    scheduler_config = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    return BaseModel(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(),
                     tokenizer=load_clip_tokenizer(config_dir / "tokenizer"), scheduler_config=scheduler_config,
                     source="random SD1.5" + (" (tiny widths)" if tiny else ""), name="random-sd15")


def parameter_counts(base) -> dict:
    """Millions of parameters per part, to show the model really is SD1.5-sized."""
    return {name: round(sum(p.numel() for p in getattr(base, name).parameters()) / 1e6, 1)
            for name in ("unet", "vae", "text_encoder")}


def write_frames(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """count size×size frames with tag captions: smooth random colour fields, a training set of the right shape."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(folder / f"frame_{i:03d}.png")
        (folder / f"frame_{i:03d}.txt").write_text(f"tibbie, sheep, pose{i % 3}, meadow")
    return folder
