"""Constants and a LoRA-run writer shared by the generate tests."""

from __future__ import annotations

from pathlib import Path

SIZE = 32  # the tiny model renders 32×32 images
STEPS = 3
PROMPT = "1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"
NEGATIVE = "lowres, bad anatomy"


def write_run(folder: Path, name: str = "tibbie", epochs=(1, 2, 3), seed: int = 0) -> Path:
    """A run folder as training leaves it: NAME-00000N.safetensors written by the project's save_lora."""
    import torch

    from lora_studio.models.tiny import build_tiny_components
    from lora_studio.train.lora_file import save_lora
    from lora_studio.train.network import add_lora

    folder.mkdir(parents=True, exist_ok=True)
    parts = build_tiny_components(seed=0)
    add_lora(parts["unet"], parts["text_encoder"], network_dim=4, network_alpha=4)
    for epoch in epochs:
        # each epoch's LoRA differs, as trained epochs do (a fresh LoRA's up-weights are zero)
        gen = torch.Generator().manual_seed(seed * 100 + epoch)
        with torch.no_grad():
            for module in (parts["unet"], parts["text_encoder"]):
                for pname, p in module.named_parameters():
                    if "lora_B" in pname:
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        save_lora(folder / f"{name}-{epoch:06d}.safetensors", parts["unet"], parts["text_encoder"], 4,
                  {"ss_epoch": epoch, "ss_batch_size_per_device": 1})
    return folder
