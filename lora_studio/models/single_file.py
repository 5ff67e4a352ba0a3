"""Load one original-layout (A1111/CivitAI) SD1.5 .safetensors checkpoint, with no network.

diffusers' from_single_file converts the ldm keys; it only stays offline when given a local
config folder, so we point it at assets/sd15-config (SD1.5's config files, no weights).
Before converting we sniff the keys so an SDXL, SD2, inpainting, LoRA or VAE-only file is
refused with a sentence rather than a shape-mismatch traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from lora_studio import paths
from lora_studio.errors import UserError
from lora_studio.models.base import BaseModel, check_sd15, describe_source

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
PICK_SD15 = "pick an SD1.5 checkpoint (e.g. v1-5-pruned-emaonly.safetensors or an SD1.5 fine-tune)"


def sd15_config_dir() -> Path:
    """SD1.5's diffusers config files (unet/vae/text_encoder/scheduler/tokenizer), shipped in assets/."""
    return paths.assets_dir() / "sd15-config"


def load_single_file(path: str | Path, config_dir: str | Path | None = None):
    """Load an SD1.5 single-file checkpoint into a BaseModel, offline, with a UserError for anything unusable."""
    from lora_studio.models.tiny import load_clip_tokenizer

    path = Path(path).expanduser()
    describe_source(str(path))  # refuses pickles and missing files with the project's wording
    config_dir = Path(config_dir) if config_dir else sd15_config_dir()
    state = read_checkpoint(path)
    check_checkpoint_kind(state, path.name)
    state = with_text_model_prefix(state)

    unet = load_part("unet", state, config_dir, path.name)
    vae = load_part("vae", state, config_dir, path.name)
    text_encoder = load_part("text_encoder", state, config_dir, path.name)
    del state  # drops EMA copies and extras the parts did not take, before the caller moves to a GPU
    check_sd15(unet, text_encoder, path.name)
    scheduler_config = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    tokenizer_dir = config_dir / "tokenizer"
    tokenizer = load_clip_tokenizer(tokenizer_dir if tokenizer_dir.is_dir() else None)
    return BaseModel(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                     scheduler_config=scheduler_config, source=str(path), name=path.stem)


def read_checkpoint(path: Path) -> dict:
    """All tensors of a .safetensors file; a truncated or non-safetensors file becomes a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path.name} is not a readable .safetensors file ({exc})",
                        "the download may be incomplete or the file renamed from .ckpt; download it again") from None
    if not state:
        raise UserError(f"{path.name} holds no weights", "download the checkpoint again")
    return state


def check_checkpoint_kind(state: dict, name: str) -> None:
    """Refuse files that are not a full SD1.5 checkpoint, saying what they look like instead."""
    keys = list(state)
    if any(k.startswith("lora_") or ".lora_down." in k or ".lora_A." in k for k in keys):
        raise UserError(f"{name} is a LoRA, not a base model", PICK_SD15 + " as the base; LoRAs are what we train")
    if any(k.startswith("conditioner.") or k.startswith(UNET_PREFIX + "label_emb.") for k in keys):
        raise UserError(f"{name} is an SDXL checkpoint; LoRA Studio trains SD1.5 LoRAs", PICK_SD15)
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise UserError(f"{name} is an SD2.x checkpoint (OpenCLIP text encoder); LoRA Studio trains SD1.5 LoRAs",
                        PICK_SD15)
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        if any(k.startswith(("down_blocks.", "unet.", "encoder.", "decoder.", "text_model.")) for k in keys):
            raise UserError(f"{name} holds only part of a model in diffusers layout, not a full checkpoint",
                            "use the whole diffusers folder (the one with model_index.json), or " + PICK_SD15)
        raise UserError(f"{name} is not a Stable Diffusion checkpoint (no 'model.diffusion_model.' UNet weights)",
                        PICK_SD15)
    conv_in = state.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and conv_in.ndim == 4 and conv_in.shape[1] != 4:
        raise UserError(f"{name} is an inpainting (or other {conv_in.shape[1]}-channel) model, not a plain SD1.5",
                        PICK_SD15)
    for prefix, part in ((VAE_PREFIX, "VAE"), (CLIP_PREFIX, "text encoder")):
        if not any(k.startswith(prefix) for k in keys):
            raise UserError(f"{name} has no {part} weights (a pruned UNet-only file?)", PICK_SD15 + " with all parts")


def with_text_model_prefix(state: dict) -> dict:
    """Old checkpoints store CLIP as 'transformer.embeddings…' without 'text_model.'; diffusers expects it."""
    marker = CLIP_PREFIX + "text_model."
    if any(k.startswith(marker) for k in state):
        return state
    return {(marker + k[len(CLIP_PREFIX):] if k.startswith(CLIP_PREFIX) else k): v for k, v in state.items()}


def load_part(part: str, state: dict, config_dir: Path, name: str):
    """One SD1.5 part from the ldm state dict via diffusers' converters, with its config from config_dir.

    No torch_dtype: diffusers then casts each tensor to the freshly built model's float32, so fp16
    checkpoints load as fp32 masters (load_base casts later) and int buffers like position_ids stay ints.
    """
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    if not (config_dir / part).is_dir():
        raise UserError(f"config folder {config_dir} has no '{part}/'", "reinstall LoRA Studio (assets/sd15-config)")
    label = {"unet": "UNet", "vae": "VAE", "text_encoder": "text encoder"}[part]
    try:
        model = load_text_encoder(state, config_dir) if part == "text_encoder" else \
            load_unet_or_vae(part, state, config_dir, label, name)
    except (SingleFileComponentError, ValueError, KeyError, RuntimeError) as exc:
        # Shape mismatches (ValueError/RuntimeError) and absent blocks (KeyError) all mean "not SD1.5-shaped".
        raise UserError(f"{name}: its {label} does not match the SD1.5 layout ({str(exc).splitlines()[0][:200]})",
                        PICK_SD15) from None
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if missing:
        raise missing_weights_error(name, label, missing)
    return model


def load_unet_or_vae(part: str, state: dict, config_dir: Path, label: str, name: str):
    """Convert with diffusers' ldm converter first, so a missing weight is named instead of a meta-tensor crash."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    cls, convert = {"unet": (UNet2DConditionModel, convert_ldm_unet_checkpoint),
                    "vae": (AutoencoderKL, convert_ldm_vae_checkpoint)}[part]
    config = cls.load_config(str(config_dir / part))
    with init_empty_weights():
        expected = list(cls.from_config(config).state_dict())
    converted = convert(state, config)
    missing = [k for k in expected if converted.get(k) is None]
    if missing:
        raise missing_weights_error(name, label, missing)
    # Exactly the expected diffusers keys: from_single_file then loads them as they are.
    return cls.from_single_file({k: converted[k] for k in expected}, config=str(config_dir), subfolder=part,
                                local_files_only=True)


def load_text_encoder(state: dict, config_dir: Path):
    """CLIPTextModel via diffusers' converter, which handles transformers 5's flattened (no text_model) layout."""
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel

    return create_diffusers_clip_model_from_ldm(CLIPTextModel, state, subfolder="text_encoder",
                                                config=str(config_dir), local_files_only=True)


def missing_weights_error(name: str, label: str, missing: list[str]) -> UserError:
    """The one wording for a checkpoint that lacks weights the SD1.5 layout needs."""
    return UserError(f"{name}: the {label} is missing {len(missing)} weights (first: {missing[0]})",
                     "the file is incomplete or not SD1.5; download it again or " + PICK_SD15)
