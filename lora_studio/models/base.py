"""What every SD1.5 loader shares: the BaseModel it returns, the spec classifier, the diffusers-folder
loader and the SD1.5 check.

load.py picks the loader for a spec; hub.py and single_file.py build on this module and never import
load.py, so the imports run one way: load → hub, single_file → base.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_studio.errors import UserError


@dataclass
class BaseModel:
    """The parts of an SD1.5 model that training and sampling use."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    source: str
    name: str

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for SD1.5)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def noise_scheduler(self):
        """DDPM with the model's own beta schedule: what SD1.5 was trained with."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    def pipeline(self):
        """A StableDiffusionPipeline sharing these modules (no copies)."""
        from diffusers import StableDiffusionPipeline
        from diffusers import DPMSolverMultistepScheduler

        return StableDiffusionPipeline(
            unet=self.unet, vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
            scheduler=DPMSolverMultistepScheduler.from_config(self.scheduler_config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )

    def to(self, device, dtype=None) -> "BaseModel":
        """Move all modules to a device (and dtype) in place."""
        for module in (self.unet, self.vae, self.text_encoder):
            if dtype is None:  # diffusers warns about fp32 modules whenever dtype= is passed, even None
                module.to(device=device)
            else:
                module.to(device=device, dtype=dtype)
        return self


def describe_source(spec: str) -> str:
    """Classify a base-model spec: 'toy', 'folder', 'single_file' or 'hub'."""
    if spec == "toy":
        return "toy"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        raise UserError(
            f"{path.name} is a pickle checkpoint; LoRA Studio only loads .safetensors (pickles can run code)",
            "convert it once, e.g. with A1111's 'Checkpoint Merger' (safetensors output) or "
            "diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py",
        )
    if path.suffix.lower() == ".safetensors":
        if not path.is_file():
            raise UserError(f"model file not found: {path}", "check the path to your .safetensors checkpoint")
        return "single_file"
    if path.is_absolute() or spec.startswith((".", "~")) or "\\" in spec or spec.count("/") != 1:
        raise UserError(f"base model not found: {spec}",
                        "give 'toy', a diffusers folder, a .safetensors file, or a hub id like 'org/model'")
    return "hub"


def load_diffusers_folder(folder: Path, name: str | None = None) -> BaseModel:
    """Load the parts of a diffusers StableDiffusionPipeline folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from lora_studio.models.tiny import load_clip_tokenizer

    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / part).is_dir():
            raise UserError(f"{folder} is not an SD1.5 diffusers folder: '{part}/' is missing",
                            "point at the folder holding model_index.json, or at a .safetensors file")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        vae = AutoencoderKL.from_pretrained(folder / "vae")
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
    except (OSError, ValueError, EnvironmentError) as exc:
        raise UserError(f"cannot read the model in {folder}: {exc}",
                        "the folder may be incomplete; re-download or re-convert it") from None
    check_sd15(unet, text_encoder, str(folder))
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return BaseModel(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(folder / "tokenizer"),
                     scheduler_config=scheduler_config, source=str(folder), name=name or folder.name)


def check_sd15(unet, text_encoder, source: str) -> None:
    """Refuse SDXL/SD2 models early: their LoRAs are a different shape."""
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        raise UserError(f"{source} is an SDXL model; LoRA Studio trains SD1.5 LoRAs", "pick an SD1.5 checkpoint")
    if getattr(text_encoder.config, "hidden_act", "quick_gelu") != "quick_gelu":
        raise UserError(f"{source} is an SD2.x model (OpenCLIP text encoder); LoRA Studio trains SD1.5 LoRAs",
                        "pick an SD1.5 checkpoint")
    if unet.config.in_channels != 4:
        raise UserError(f"{source} is an inpainting (or other {unet.config.in_channels}-channel) model, "
                        "not a plain SD1.5", "pick an SD1.5 checkpoint")
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise UserError(f"{source}: UNet and text encoder do not fit together (not an SD1.5 model)",
                        "pick an SD1.5 checkpoint")
