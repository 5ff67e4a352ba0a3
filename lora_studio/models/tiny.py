"""Tiny SD1.5-shaped models built from configs: the same classes as SD1.5, a few MB at most.

Tests and benchmarks use these; the toy world pretrains a slightly larger one. The tokenizer is
the real CLIP BPE vocabulary shipped in assets/, so prompts tokenize exactly as in SD1.5.
"""

from __future__ import annotations

from pathlib import Path

from lora_studio import paths

# SD1.5's noise schedule (scheduler_config.json of runwayml/stable-diffusion-v1-5).
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    set_alpha_to_one=False, steps_offset=1, skip_prk_steps=True,
    prediction_type="epsilon", trained_betas=None,
)


def tokenizer_dir() -> Path:
    """The CLIP ViT-L/14 tokenizer files shipped with the project."""
    return paths.assets_dir() / "sd15-config" / "tokenizer"


def load_clip_tokenizer(path: str | Path | None = None):
    """CLIPTokenizer from a folder; model_max_length must be given or transformers 5 picks a huge one."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(path or tokenizer_dir()), model_max_length=77)


def build_tiny_components(seed: int = 0, size: str = "test") -> dict:
    """UNet, VAE, text encoder, tokenizer and scheduler with tiny random weights.

    size "test" is the smallest that still has every SD1.5 module type (for unit tests);
    size "toy" is the toy world's base model before pretraining.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    if size == "test":
        blocks, text_dim, layers, vae_blocks, sample = (32, 64), 32, 3, (32, 64), 16
    elif size == "toy":
        blocks, text_dim, layers, vae_blocks, sample = (64, 128, 128), 64, 4, (32, 64, 64), 16
    else:
        raise ValueError(f"unknown tiny size {size!r}")
    unet = UNet2DConditionModel(
        sample_size=sample, in_channels=4, out_channels=4, layers_per_block=1 if size == "test" else 2,
        block_out_channels=blocks,
        down_block_types=("CrossAttnDownBlock2D",) * (len(blocks) - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(blocks) - 1),
        cross_attention_dim=text_dim, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_blocks,
        down_block_types=("DownEncoderBlock2D",) * len(vae_blocks),
        up_block_types=("UpDecoderBlock2D",) * len(vae_blocks), norm_num_groups=32,
        sample_size=sample * 2 ** (len(vae_blocks) - 1),
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=text_dim, intermediate_size=text_dim * 4, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=text_dim,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="quick_gelu",
    ))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(),
                scheduler=PNDMScheduler(**SD15_SCHEDULER))


def save_diffusers_folder(components: dict, folder: str | Path) -> Path:
    """Write components as a standard diffusers StableDiffusionPipeline folder (model_index.json …)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)
