"""The LoRA network: peft adapters on the layers kohya's networks.lora trains, initialised and scaled as kohya does.

kohya's LoRAModule and peft's LoRA layer compute the same thing: W·x + up(down(x)) · alpha/dim, with
`down` kaiming-uniform and `up` zero at the start (peft's init_lora_weights=True). So a file written
by lora_file.py from these adapters means in A1111 exactly what it meant while training.
"""

from __future__ import annotations

from lora_studio.errors import UserError

# kohya's networks.lora (LoRA-LierLa, its default): every Linear and 1×1 Conv2d inside these blocks, i.e. in
# SD1.5 each Transformer2DModel's proj_in/proj_out, attn1/attn2 q/k/v/out and feed-forward (ff.net.0.proj,
# ff.net.2), and CLIP's self-attention and MLP (fc1, fc2). A LoRA of attention alone has a third fewer
# modules than the files kohya users know and learns a character's shape less well.
UNET_BLOCKS = ("Transformer2DModel",)
TE_BLOCKS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")
ADAPTER = "default"


def effective_alpha(network_dim: int, network_alpha: float) -> float:
    """The alpha in force: kohya treats alpha 0 (or none) as alpha = dim, i.e. scale 1."""
    return float(network_alpha) if network_alpha else float(network_dim)


def has_lora(module) -> bool:
    """Whether a model carries our LoRA adapter."""
    return module is not None and ADAPTER in (getattr(module, "peft_config", None) or {})


def kohya_targets(module, blocks: tuple[str, ...]) -> list[str]:
    """Full names of the layers kohya's networks.lora wraps: Linear and 1×1 Conv2d inside the named blocks."""
    import torch

    names = []
    for block_name, block in module.named_modules():
        if type(block).__name__ not in blocks:
            continue
        for child_name, child in block.named_modules():
            is_1x1 = isinstance(child, torch.nn.Conv2d) and child.kernel_size == (1, 1)
            if isinstance(child, torch.nn.Linear) or is_1x1:
                names.append(f"{block_name}.{child_name}" if block_name else child_name)
    if not names:
        raise ValueError(f"no {' / '.join(blocks)} layers in {type(module).__name__}: not an SD1.5 model")
    return sorted(set(names))


def _lora_config(targets: list[str], network_dim: int, network_alpha: float):
    from peft import LoraConfig

    # Full module names (peft matches a name or a dotted suffix of one), so nothing outside kohya's blocks
    # (time embedding, ResNets) is caught.
    return LoraConfig(r=network_dim, lora_alpha=effective_alpha(network_dim, network_alpha),
                      target_modules=targets, lora_dropout=0.0, init_lora_weights=True)


def _trainable_float32(module) -> list:
    # LoRA weights are created in the base's dtype; an fp16 base would give fp16 master weights that
    # GradScaler refuses to unscale. diffusers' examples upcast the same way (cast_training_params).
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.to(torch.float32)
    return params


def add_lora(unet, text_encoder, network_dim: int, network_alpha: float,
             train_text_encoder: bool = True) -> tuple[list, list]:
    """Inject LoRA into UNet and CLIP as kohya does, freeze the base; return (unet_params, te_params)."""
    unet.requires_grad_(False)
    unet.add_adapter(_lora_config(kohya_targets(unet, UNET_BLOCKS), network_dim, network_alpha), adapter_name=ADAPTER)
    unet_params = _trainable_float32(unet)
    te_params: list = []
    if text_encoder is not None:
        text_encoder.requires_grad_(False)
        if train_text_encoder:
            text_encoder.add_adapter(_lora_config(kohya_targets(text_encoder, TE_BLOCKS), network_dim, network_alpha), adapter_name=ADAPTER)
            te_params = _trainable_float32(text_encoder)
    return unet_params, te_params


def remove_lora(unet, text_encoder) -> None:
    """Undo what training did to the base modules, so a base kept loaded by the worker is clean."""
    # Checked diffusers 0.42 / transformers 5 / accelerate: unload_lora() is diffusers-only and
    # delete_adapter() leaves peft's wrapper layers (keys renamed *.base_layer.*);
    # recurse_remove_peft_layers (what unload_lora calls) restores the base layers on any module.
    from diffusers.utils import recurse_remove_peft_layers

    # Checkpointing off first: transformers' disable also removes the input-grad hook it added for peft.
    if getattr(unet, "is_gradient_checkpointing", False):
        unet.disable_gradient_checkpointing()
    if text_encoder is not None and any(getattr(m, "gradient_checkpointing", False) for m in text_encoder.modules()):
        (getattr(text_encoder, "activation_checkpointing_disable", None) or text_encoder.gradient_checkpointing_disable)()
    for module in (unet, text_encoder):
        if module is None:
            continue
        # Always: adapters deleted elsewhere (XY plots) leave empty wrappers that has_lora() no longer sees.
        recurse_remove_peft_layers(module)
        module.__dict__.pop("peft_config", None)
        if hasattr(module, "_hf_peft_config_loaded"):
            module._hf_peft_config_loaded = False
        # accelerate.prepare() with mixed precision wraps forward on the instance; drop the wrapper.
        if "_original_forward" in module.__dict__:
            module.__dict__.pop("forward", None)
            module.__dict__.pop("_original_forward")


def lora_state(unet, text_encoder) -> dict:
    """The trainable LoRA weights in peft format ('unet.…', 'text_encoder.…'), copied to the CPU."""
    from peft.utils import get_peft_model_state_dict

    state = {}
    for prefix, module in (("unet", unet), ("text_encoder", text_encoder)):
        if has_lora(module):
            for key, value in get_peft_model_state_dict(module, adapter_name=ADAPTER).items():
                state[f"{prefix}.{key}"] = value.detach().to("cpu", copy=True)
    return state


def load_lora_state(unet, text_encoder, state: dict) -> None:
    """Put weights saved by lora_state() back into adapters made by add_lora() with the same settings."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    for prefix, module in (("unet", unet), ("text_encoder", text_encoder)):
        part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        if not part and not has_lora(module):
            continue
        if not has_lora(module):
            raise UserError(f"the saved training state has {prefix} LoRA weights but this run does not train the {prefix}",
                            "resume with the same te_lr as the original run (0 freezes the text encoder)")
        expected = set(get_peft_model_state_dict(module, adapter_name=ADAPTER))
        if set(part) != expected:
            raise UserError(f"the saved training state does not fit this run's {prefix} LoRA",
                            "resume with the settings of the original run (network_dim, te_lr)")
        try:
            set_peft_model_state_dict(module, part, adapter_name=ADAPTER)
        except RuntimeError as exc:  # shape mismatch: network_dim changed
            raise UserError(f"the saved training state does not fit this run's {prefix} LoRA: {exc}",
                            "resume with the network_dim of the original run") from None
