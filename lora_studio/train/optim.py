"""Optimizer and learning-rate schedule for a run, by the names used in presets."""

from __future__ import annotations

from lora_studio.config import TrainConfig


def make_optimizer(config: TrainConfig, unet_params: list, te_params: list):
    """Lion, DAdaptAdam, AdamW or Prodigy over two parameter groups with their own LRs."""
    groups = [{"params": unet_params, "lr": config.unet_lr, "name": "unet"}]
    te_lr = config.resolved_te_lr()
    if te_params and te_lr > 0:
        groups.append({"params": te_params, "lr": te_lr, "name": "text_encoder"})
    if config.optimizer == "lion":
        from lion_pytorch import Lion

        return Lion(groups, lr=config.unet_lr, betas=(0.9, 0.99), weight_decay=0.0)
    if config.optimizer == "dadapt_adam":
        import dadaptation

        # DAdaptation estimates one step size d for all groups; each group's lr multiplies it,
        # so the probe preset sets every lr to 1.0 as kohya's docs advise.
        return dadaptation.DAdaptAdam(groups, lr=config.unet_lr, decouple=True, weight_decay=0.0)
    if config.optimizer == "prodigy":
        from prodigyopt import Prodigy

        return Prodigy(groups, lr=config.unet_lr, weight_decay=0.0)
    if config.optimizer == "adamw":
        import torch

        return torch.optim.AdamW(groups, lr=config.unet_lr, weight_decay=0.01)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # config.validate() rules this out


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    """The run's warmup in steps: warmup_steps, or warmup_ratio of all steps if that is more."""
    return max(config.warmup_steps, round(config.warmup_ratio * total_steps))


def make_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """The LR schedule over the whole run; cosine_with_restarts restarts restart_cycles times (hard)."""
    from diffusers.optimization import get_scheduler

    extra = {}
    if config.scheduler == "cosine_with_restarts":
        # Only this schedule reads num_cycles as restarts; plain cosine reads it as waves (0.5 = one decay).
        extra["num_cycles"] = config.restart_cycles
    return get_scheduler(config.scheduler, optimizer=optimizer, num_warmup_steps=warmup_steps(config, total_steps),
                         num_training_steps=total_steps, **extra)


def effective_lrs(optimizer) -> tuple[float, float]:
    """The step size each group really takes: lr, times d for DAdaptation/Prodigy (kohya logs it as 'd*lr')."""
    lrs = []
    for group in optimizer.param_groups:
        lrs.append(float(group["lr"]) * float(group.get("d", 1.0)))
    unet = lrs[0]
    te = lrs[1] if len(lrs) > 1 else 0.0
    return unet, te
