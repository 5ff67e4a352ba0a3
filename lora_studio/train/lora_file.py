"""The LoRA file: peft weights ⇄ kohya/A1111 keys, `ss_*` metadata, atomic save, A1111's hash.

A1111, ComfyUI, Forge and diffusers all read kohya's layout:
  lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.{lora_down.weight,lora_up.weight,alpha}
  lora_te_text_model_encoder_layers_0_self_attn_q_proj.{lora_down.weight,lora_up.weight,alpha}
and scale each module by alpha / dim. The metadata keys are those of kohya sd-scripts' train_network.py
(checked against its source), which A1111's LoRA card, civitai and kohya's own tools read.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from lora_studio.errors import UserError
from lora_studio.runfiles import atomic_write
from lora_studio.train.optim import warmup_steps

# kohya writes the optimizer's class path; tools that compare runs read it that way.
OPTIMIZER_CLASSES = {
    "lion": "lion_pytorch.lion_pytorch.Lion",
    "dadapt_adam": "dadaptation.dadapt_adam.DAdaptAdam",
    "adamw": "torch.optim.adamw.AdamW",
    "prodigy": "prodigyopt.prodigy.Prodigy",
}


# diffusers' scheduler prediction_type → Stability AI's model spec (as kohya's sai_model_spec writes it).
MODELSPEC_PREDICTION = {"epsilon": "epsilon", "v_prediction": "v"}


def kohya_state_dict(unet, text_encoder, network_alpha: float) -> dict:
    """The adapters' weights under kohya/A1111 keys, with `.alpha` set to the real alpha."""
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict

    from lora_studio.train.network import ADAPTER, effective_alpha, has_lora

    peft_sd = {}
    for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
        if not has_lora(module):
            continue
        if prefix == "text_encoder." and not hasattr(module, "text_model"):
            # transformers 5 dropped CLIPTextModel's `text_model` wrapper; A1111 still expects it in keys.
            prefix = "text_encoder.text_model."
        config = module.peft_config[ADAPTER]
        alpha = effective_alpha(config.r, network_alpha)
        if abs(config.lora_alpha - alpha) > 1e-6 * max(1.0, alpha):
            raise ValueError(f"network_alpha {network_alpha} is not the alpha the adapter trained with "
                             f"({config.lora_alpha}); the file would scale the LoRA wrongly")
        for key, value in get_peft_model_state_dict(module, adapter_name=ADAPTER).items():
            peft_sd[prefix + key] = value
    if not peft_sd:
        raise ValueError("no LoRA adapter on the UNet or text encoder: call add_lora() first")

    converted = convert_state_dict_to_kohya(peft_sd)
    out = {}
    for key, value in converted.items():
        if key.endswith(".alpha"):
            # diffusers writes the rank as alpha (scale 1); kohya's LoRA trained with alpha / dim.
            rank = converted[key[: -len(".alpha")] + ".lora_down.weight"].shape[0]
            value = torch.tensor(effective_alpha(rank, network_alpha))
        # diffusers names the SDXL-era first text encoder lora_te1_; SD1.5 files use lora_te_.
        if key.startswith("lora_te1_"):
            key = "lora_te_" + key[len("lora_te1_"):]
        out[key] = value.detach().to("cpu")
    return out


def _data_sha256(blob: bytes) -> str:
    # sd-webui-additional-networks' "addnet" hash: sha256 of the tensor data after the JSON header, so
    # editing metadata does not change it. A1111 shows its first 12 hex digits in "Lora hashes".
    header_len = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(memoryview(blob)[8 + header_len:]).hexdigest()


def _model_hashes(tensors: dict, metadata: dict) -> tuple[str, str]:
    """kohya's sshs_model_hash and sshs_legacy_hash, computed the way sd-scripts does before saving."""
    from safetensors.torch import save

    blob = save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    legacy = hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]
    return _data_sha256(blob), legacy


def save_lora(path, unet, text_encoder, network_alpha: float, metadata: dict, dtype=None) -> Path:
    """Write the LoRA as a kohya-format .safetensors file (temp file + rename, never half-written)."""
    import torch
    from safetensors.torch import save

    dtype = dtype or torch.float16
    path = Path(path)
    tensors = {k: v.to(dtype).contiguous() for k, v in kohya_state_dict(unet, text_encoder, network_alpha).items()}
    metadata = {str(k): str(v) for k, v in metadata.items()}
    metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = _model_hashes(tensors, metadata)
    blob = save(tensors, metadata)

    try:
        # Temp file + fsync + rename, in the user's normal file mode (A1111/ComfyUI may run as another user).
        atomic_write(path, blob)
    except UserError:  # the disk is full: runfiles says so, with what to do
        raise
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}",
                        "check that the output folder exists, is writable and has free space") from exc
    return path


def _model_name(base_model: str) -> str:
    # kohya stores the checkpoint's file name, not its full path (paths leak user names).
    path = Path(base_model).expanduser()
    return path.name if path.exists() or path.suffix.lower() == ".safetensors" else base_model


def training_metadata(config, *, epoch: int, steps: int, frames: list, probe_d_lr: float | None = None,
                      training_started_at: float | None = None, num_batches_per_epoch: int | None = None,
                      max_train_steps: int | None = None, prediction_type: str = "epsilon",
                      base_model_hash: str | None = None, session_id: int | None = None,
                      validation_loss: float | None = None, validation_frames: int = 0) -> dict[str, str]:
    """kohya's ss_* metadata for one epoch's file (all values strings), plus lora_studio_* extras.

    The dataset bookkeeping is kohya's, counted from the frames trained on: ss_tag_frequency
    ({image folder name: {tag: count}}), ss_dataset_dirs ({folder: {"n_repeats", "img_count"}}) and
    ss_num_train_images (which counts repeats); frames held out for the validation loss are not among them.
    prediction_type is the base's noise scheduler's
    (diffusers' "epsilon" or "v_prediction").
    """
    from lora_studio import __version__
    from lora_studio.data.captions import tag_frequency
    from lora_studio.train.network import effective_alpha

    if prediction_type not in MODELSPEC_PREDICTION:
        raise ValueError(f"prediction type {prediction_type!r}: LoRA files describe only "
                         + ", ".join(MODELSPEC_PREDICTION))
    dataset_dirs: dict = {}
    for frame in frames:
        entry = dataset_dirs.setdefault(frame.path.parent.name, {"n_repeats": frame.repeats, "img_count": 0})
        entry["img_count"] += 1
    alpha = effective_alpha(config.network_dim, config.network_alpha)
    meta = {
        "ss_output_name": config.name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": config.network_dim,
        "ss_network_alpha": alpha,
        "ss_epoch": epoch,
        "ss_steps": steps,
        "ss_num_epochs": config.epochs,
        "ss_num_train_images": sum(frame.repeats for frame in frames),
        "ss_batch_size_per_device": config.batch_size,
        "ss_gradient_accumulation_steps": 1,
        "ss_optimizer": OPTIMIZER_CLASSES.get(config.optimizer, config.optimizer),
        "ss_learning_rate": config.unet_lr,
        "ss_unet_lr": config.unet_lr,
        "ss_text_encoder_lr": config.resolved_te_lr(),
        "ss_lr_scheduler": config.scheduler,
        "ss_lr_warmup_steps": warmup_steps(config, max_train_steps or steps),
        "ss_max_grad_norm": config.max_grad_norm,
        # kohya parses --resolution into a (width, height) tuple and writes its repr.
        "ss_resolution": (config.resolution, config.resolution),
        "ss_enable_bucket": config.enable_buckets,
        "ss_min_bucket_reso": config.min_bucket_reso,
        "ss_max_bucket_reso": config.max_bucket_reso,
        "ss_clip_skip": config.clip_skip,
        "ss_seed": config.seed,
        "ss_shuffle_caption": config.shuffle_caption,
        "ss_keep_tokens": config.keep_tokens,
        "ss_caption_tag_dropout_rate": config.tag_dropout,
        "ss_noise_offset": config.noise_offset,
        "ss_min_snr_gamma": config.min_snr_gamma,
        "ss_mixed_precision": config.mixed_precision,
        "ss_gradient_checkpointing": config.gradient_checkpointing,
        "ss_cache_latents": True,
        "ss_full_fp16": False,
        "ss_v2": False,
        "ss_base_model_version": "sd_v1",
        "ss_sd_model_name": _model_name(config.base_model),
        "ss_tag_frequency": json.dumps(tag_frequency(frames), ensure_ascii=False),
        "ss_training_finished_at": time.time(),
        # Stability AI's model spec, which ComfyUI and model sites read for the architecture.
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "stable-diffusion-v1/lora",
        "modelspec.implementation": "diffusers",
        "modelspec.title": f"{config.name}-{epoch:06d}",
        "modelspec.resolution": f"{config.resolution}x{config.resolution}",
        "modelspec.prediction_type": MODELSPEC_PREDICTION[prediction_type],
        "lora_studio_version": __version__,
    }
    optional = {
        "ss_training_started_at": training_started_at,
        "ss_session_id": session_id,
        "ss_num_batches_per_epoch": num_batches_per_epoch,
        "ss_max_train_steps": max_train_steps,
        "ss_dataset_dirs": json.dumps(dataset_dirs, ensure_ascii=False),
        "ss_new_sd_model_hash": base_model_hash,
        "lora_studio_probe_d_lr": probe_d_lr,
        "lora_studio_trigger_word": config.trigger_word or None,
        # kohya's argument names for the split; the loss at this epoch is ours (kohya only logs it)
        "ss_validation_split": config.validation_split or None,
        "ss_validation_seed": config.seed if config.validation_split else None,
        "lora_studio_validation_frames": validation_frames or None,
        "lora_studio_validation_loss": validation_loss,
    }
    meta.update({k: v for k, v in optional.items() if v is not None})
    if training_started_at is not None:
        meta["modelspec.date"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(training_started_at))
    return {k: str(v) for k, v in meta.items()}


def read_metadata(path) -> dict[str, str]:
    """The metadata of a .safetensors file (empty if it has none); no torch needed."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"LoRA file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            return dict(fh.metadata() or {})
    except SafetensorError as exc:
        raise UserError(f"{path.name} is not a readable .safetensors file: {exc}") from None


def tags_on_every_frame(metadata: dict[str, str], trigger_word: str = "") -> list[str]:
    """The tags every trained caption had, the trigger aside, from kohya's ss_tag_frequency and ss_dataset_dirs."""
    from lora_studio.data.captions import tags_in_every_caption

    # Files without the dataset bookkeeping give [].
    try:
        frequency = json.loads(metadata.get("ss_tag_frequency") or "{}")
        dirs = json.loads(metadata.get("ss_dataset_dirs") or "{}")
        total = sum(int(d["img_count"]) for d in dirs.values())
        counts: dict[str, int] = {}
        for folder_tags in frequency.values():
            for tag, n in folder_tags.items():
                counts[tag] = counts.get(tag, 0) + int(n)
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    return tags_in_every_caption(counts, total, trigger_word)


def lora_file_hash(path) -> str:
    """A1111's short LoRA hash ('Lora hashes' in infotext): sha256 of the tensor data, 12 hex digits."""
    path = Path(path)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        fh.seek(8 + header_len)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]
