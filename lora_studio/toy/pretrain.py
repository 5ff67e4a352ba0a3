"""Pretrain the toy world's base model on procedural scenes and generic sheep (never the character), on a CPU.

With no UNet flags it trains the shipped model's recipe, r23 (42 min on 2 CPU cores, benchmarks/toy_world.md):
SDXL's layout (no transformers at the 16x16 level, half the step time) and r8's three-stage chain at 10000 steps:
    python -m lora_studio.toy.pretrain --out /tmp/again --compare assets/toy-model   # regenerate and compare
    python -m lora_studio.toy.pretrain --attention-levels 0,1 --stage 3000:8e-4:0 --stage 3500:5e-4:0.3:fixed \
        --stage 2000:5e-4:0.8 --out /tmp/r8b           # SD1.5's layout and r8's chain (r8b, 62 min on 2 cores)
    python -m lora_studio.toy.pretrain --unet-steps 200 --vae-steps 100 --out /tmp/toy   # one quick stage

Two stages, as Stable Diffusion was made: first the VAE learns to reconstruct 64x64 scenes
(16x16x4 latents), then the UNet learns epsilon prediction on those latents with SD1.5's DDPM
schedule, conditioned on the CLIP text encoder with clip skip 2 (what the seed recipe trains with).

The text encoder is trained jointly with the UNet rather than left random: SD1.5's text encoder
was pretrained (CLIP), so a toy one that already separates 'tree' from 'house' is the faithful
miniature, and a LoRA's text-encoder learning rate then acts on meaningful weights. Tokens the
scenes never use (like 'tibbie') keep their random initial embeddings: the character stays unknown.

It trains on a CUDA GPU when one is at hand (--device auto), else on the CPU; the data and noise are
drawn on the CPU either way. Everything is seeded and the step counts are fixed, so a rerun gives the
same weights (bit-identical on the same machine and thread count, measured) up to floating-point noise
between machines.
--minutes caps the wall time instead (then the result depends on machine speed).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from lora_studio import paths
from lora_studio.toy.scenes import draw_abstract

# Sizes chosen so the UNet trains ~5 steps/s at batch 16 on 2 CPU cores (r23) and the whole folder
# stays under 20 MB in fp16; the text encoder is mostly its 49408-token embedding table.
# The UNet's GroupNorms get 8 groups, 4+ channels each (SD1.5: 32 groups of 10+). With diffusers'
# default of 32 groups its 32-channel layers, the output norm among them, normalise every channel
# on its own, which wipes out a channel's spatial mean: the model could not move an image's overall
# brightness from the prompt, so "night" came out as bright as "meadow" (benchmarks/toy_world.md).
TOY_UNET = dict(block_out_channels=(32, 64, 128), layers_per_block=1, attention_head_dim=8, norm_num_groups=8)
TOY_VAE = dict(block_out_channels=(32, 32, 64), mid_block_add_attention=False)
TOY_TEXT = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4)
IMAGE_SIZE = 64
# UNet levels with transformer blocks (0: the 32-channel 16x16 level; the mid block always has one).
# SD1.5 has them on all levels but the lowest; SDXL dropped its highest-resolution one for cost.
TOY_ATTENTION_LEVELS = (1,)


@dataclass(frozen=True)
class UnetStage:
    """One run of the UNet stage: its steps, learning rate (the text encoder gets half) and tag dropout.

    r8 was three runs, each continuing the last with a fresh optimizer, EMA and cosine schedule; a list
    of stages reproduces such a chain in one command.
    """

    steps: int
    lr: float
    tag_dropout: float
    tag_dropout_varies: bool = True

    @classmethod
    def parse(cls, text: str) -> "UnetStage":
        """'3000:8e-4:0' or '3500:5e-4:0.3:fixed' (steps, lr, tag dropout, 'fixed' for one rate)."""
        parts = text.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("fixed", "varies")):
            raise ValueError(f"a stage is STEPS:LR:TAG_DROPOUT[:fixed|varies], not {text!r}")
        return cls(int(parts[0]), float(parts[1]), float(parts[2]), len(parts) == 3 or parts[3] == "varies")

    def text(self) -> str:
        """The --stage form of this stage."""
        return f"{self.steps}:{self.lr:g}:{self.tag_dropout:g}" + ("" if self.tag_dropout_varies else ":fixed")


# The shipped model's UNet chain: whole captions bind tags to what they draw, a fixed 0.3 dropout then
# teaches partial captions, and captions of every length (dropout drawn from U(0, 0.8)) come last.
# r8 was three such stages as three runs (8500 steps, 8 heads on both attention levels, 62 min); r23 runs
# them in one command, 18 % longer each, on SDXL's layout, in 42 min (benchmarks/toy_world.md, session 20).
SHIPPED_STAGES = (UnetStage(3500, 8e-4, 0.0), UnetStage(4100, 5e-4, 0.3, tag_dropout_varies=False),
                  UnetStage(2400, 5e-4, 0.8))


@dataclass
class PretrainSettings:
    """Knobs of one pretraining run; the defaults are the shipped model's recipe (r23)."""

    seed: int = 0
    scenes: int = 4000           # distinct scenes (and as many abstract images for the VAE); flips double them
    sheep: int = 4000            # generic sheep scenes, UNet only (the VAE stage stays as r5 made it)
    batch_size: int = 16
    vae_steps: int = 1500
    vae_lr: float = 1e-3
    vae_from: str | None = None  # reuse the VAE of an earlier toy-model folder (skips stage 1)
    kl_weight: float = 1e-6      # as small as SD's: latents stay near-deterministic
    unet_steps: int = 3000
    unet_lr: float = 8e-4
    te_lr: float = 4e-4
    warmup_steps: int = 100
    min_snr_gamma: float = 5.0   # Min-SNR weighting converges faster at the same cost
    noise_offset: float = 0.1    # as kohya's noise_offset; see train_unet
    caption_dropout: float = 0.1  # empty captions teach the unconditional branch that CFG needs
    # Each tag but the first is left out with this chance: people prompt "sheep, meadow", not every
    # tag a caption has, and SD1.5's captions were partial too. Without it r6 drew no sheep for "sheep, meadow".
    tag_dropout: float = 0.8
    # r8: each caption draws its own dropout rate from U(0, tag_dropout), so captions of every length
    # are in the data. With one fixed rate (r7: 0.3) two-tag sheep captions were rare while short scene
    # captions ("meadow, tree") were common, and "sheep, meadow" drew a tree on a meadow in 4 of 6 seeds.
    tag_dropout_varies: bool = True
    unet_from: str | None = None  # continue from the UNet and text encoder of an earlier toy-model folder
    clip_skip: int = 2
    max_minutes: float | None = None
    # The first share of UNet steps sees whole captions (no tag dropout): r8's chain began that way (r6),
    # so tags are bound to what they draw before captions get short.
    full_captions_first: float = 0.0
    # diffusers' attention_head_dim is the head count, one for all levels or one per down level.
    unet_heads: int | tuple[int, ...] = TOY_UNET["attention_head_dim"]
    attention_levels: tuple[int, ...] = TOY_ATTENTION_LEVELS
    # White sheep in the pretraining mix (every look but hers): without them her LoRA must teach a fleece
    # colour the base never drew, and DAdaptation's d on the demo is ~30x SD1.5's scale.
    white_sheep: bool = False
    # When not empty, the UNet trains these stages in turn instead of the one that unet_steps, unet_lr and
    # tag_dropout describe (full_captions_first then applies to the first stage only).
    stages: tuple[UnetStage, ...] = SHIPPED_STAGES
    # 'auto' trains on a CUDA GPU when one is at hand, else on the CPU. Batches, noise and timesteps are
    # drawn on the CPU either way, so a GPU run sees the same data as a CPU run (up to float rounding).
    device: str = "auto"

    def unet_stages(self) -> list["PretrainSettings"]:
        """Settings for each UNet stage in turn: one, or one per entry of `stages`."""
        if not self.stages:
            return [self]
        return [replace(self, unet_steps=st.steps, unet_lr=st.lr, te_lr=st.lr / 2, tag_dropout=st.tag_dropout,
                        tag_dropout_varies=st.tag_dropout_varies, stages=(),
                        full_captions_first=self.full_captions_first if i == 0 else 0.0)
                for i, st in enumerate(self.stages)]


def toy_components(seed: int = 0, unet_heads: int | tuple[int, ...] | None = None,
                   attention_levels: tuple[int, ...] = TOY_ATTENTION_LEVELS) -> dict:
    """The toy model's SD1.5-class modules with random weights, before pretraining."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_studio.models.tiny import SD15_SCHEDULER, load_clip_tokenizer

    torch.manual_seed(seed)
    levels = len(TOY_UNET["block_out_channels"])
    vae_levels = len(TOY_VAE["block_out_channels"])
    text_dim = TOY_TEXT["hidden_size"]
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2 ** (vae_levels - 1), in_channels=4, out_channels=4,
        down_block_types=tuple("CrossAttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(levels)),
        up_block_types=tuple("CrossAttnUpBlock2D" if i in attention_levels else "UpBlock2D" for i in reversed(range(levels))),
        cross_attention_dim=text_dim,
        **{**TOY_UNET, "attention_head_dim": unet_heads_config(unet_heads or TOY_UNET["attention_head_dim"])},
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * vae_levels, up_block_types=("UpDecoderBlock2D",) * vae_levels,
        **TOY_VAE,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, intermediate_size=text_dim * 4, max_position_embeddings=77, projection_dim=text_dim,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="quick_gelu", **TOY_TEXT,
    ))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(),
                scheduler=PNDMScheduler(**SD15_SCHEDULER))


def unet_heads_config(heads: int | tuple[int, ...] | list[int]):
    """diffusers' attention_head_dim value: an int, or a list with one count per down level."""
    if isinstance(heads, int):
        return heads
    heads = list(heads)
    levels = len(TOY_UNET["block_out_channels"])
    if len(heads) != levels:
        raise ValueError(f"give one head count, or one per UNet level ({levels}), not {heads}")
    return heads


def parse_heads(text: str) -> int | tuple[int, ...]:
    """'8' or '2,8,8' (per level: 32, 64 and 128 channels; the mid block takes the last)."""
    counts = tuple(int(part) for part in text.split(","))
    return counts[0] if len(counts) == 1 else counts


def parse_levels(text: str) -> tuple[int, ...]:
    """'1' or '0,1': the UNet levels that get transformer blocks (0 is the largest, 16x16)."""
    return tuple(int(part) for part in text.split(","))


def draw_pretraining_scenes(n: int, seed: int, sheep: int = 0, white_sheep: bool = False):
    """n base scenes, then `sheep` generic sheep scenes, as a uint8 tensor (n, 3, 64, 64) and their tag lists."""
    from lora_studio.toy.scenes import base_scenes
    from lora_studio.toy.sheep import BASE_LOOKS, LOOKS_WITH_WHITE, sheep_scenes

    looks = LOOKS_WITH_WHITE if white_sheep else BASE_LOOKS
    scenes = list(base_scenes(n, seed, IMAGE_SIZE)) + list(sheep_scenes(sheep, seed, IMAGE_SIZE, looks))
    return as_tensor([scene.image for scene in scenes]), [scene.tags for scene in scenes]


def as_tensor(images):
    """PIL images → one uint8 tensor (n, 3, H, W)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), dtype=np.uint8) for i in images])).permute(0, 3, 1, 2).contiguous()


def character_colour_check(vae) -> dict:
    """Tibbie's colour shares in a few frames and in their VAE reconstructions (evaluation only).

    The VAE never trains on her; this says whether it can still encode her, which a LoRA needs.
    """
    import torch
    from PIL import Image

    from lora_studio.toy.character import POSES, draw_character_frame
    from lora_studio.toy.measure import character_colour_shares

    frames = [draw_character_frame(10_000 + i, pose).image for i, pose in enumerate(list(POSES) * 2)]
    with torch.no_grad():
        x = to_unit(as_tensor(frames)).to(device_of(vae))
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1).cpu()
    rebuilt = [Image.fromarray(((r.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()) for r in recon]

    def mean_shares(images):
        shares = [character_colour_shares(i) for i in images]
        return {k: round(sum(s[k] for s in shares) / len(shares), 4) for k in shares[0]}

    return {"frames": mean_shares(frames), "reconstructed": mean_shares(rebuilt)}


def training_device(name: str):
    """'auto' → CUDA when available, else CPU; any other name is taken as a torch device."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def device_of(module):
    """The device a module's weights are on."""
    return next(module.parameters()).device


def to_unit(batch_uint8):
    """uint8 images → floats in [-1, 1], the VAE's input range."""
    return batch_uint8.float() / 127.5 - 1.0


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Warmup then cosine decay to 10% (the factor applied to the base learning rate)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class Clock:
    """Elapsed time and an optional deadline shared by both stages."""

    def __init__(self, max_minutes: float | None):
        self.start = time.monotonic()
        self.deadline = None if max_minutes is None else self.start + max_minutes * 60

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def out_of_time(self, share: float = 1.0) -> bool:
        """True once `share` of the time budget is used (the VAE gets a share, the UNet the rest)."""
        if self.deadline is None:
            return False
        return time.monotonic() >= self.start + share * (self.deadline - self.start)


def train_vae(vae, images, s: PretrainSettings, clock: Clock, log: Callable[[str], None]) -> dict:
    """Reconstruction (L1 + MSE) with a tiny KL term, on random flipped batches."""
    import torch

    gen = torch.Generator().manual_seed(s.seed + 1)
    device = device_of(vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=s.vae_lr, weight_decay=0.0)
    vae.train()
    done, recent = 0, []
    for step in range(s.vae_steps):
        if clock.out_of_time(0.2):
            log(f"vae: time budget reached at step {step}")
            break
        for group in opt.param_groups:
            group["lr"] = s.vae_lr * cosine_lr(step, s.vae_steps, s.warmup_steps)
        idx = torch.randint(0, len(images), (s.batch_size,), generator=gen)
        x = to_unit(images[idx])
        flip = torch.rand(s.batch_size, generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        x = x.to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        rec = (recon - x).abs().mean() + (recon - x).pow(2).mean()
        loss = rec + s.kl_weight * posterior.kl().mean() / posterior.mean[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        recent.append(rec.item())
        done = step + 1
        if done % 50 == 0 or done == s.vae_steps:
            log(f"vae step {done}/{s.vae_steps} rec {sum(recent) / len(recent):.4f} [{clock.elapsed():.0f}s]")
            recent = []
    vae.eval()
    return {"vae_steps_done": done}


def as_shipped(module) -> None:
    """Round weights to fp16 and back, in place: the UNet then learns the latents of the VAE as shipped.

    The folder stores fp16 weights. Without this, a full run trains its UNet on the fp32 VAE while a
    --vae-from run uses the stored one, and the two UNets differ by ~4 % of their mean weight.
    """
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def encode_latents(vae, images, batch: int = 64):
    """Latent means and stds of every image and its mirror image; the scaling that gives unit variance."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for flip in (False, True):
            for i in range(0, len(images), batch):
                x = to_unit(images[i:i + batch]).to(device_of(vae))
                dist = vae.encode(x.flip(-1) if flip else x).latent_dist
                means.append(dist.mean.cpu())
                stds.append(dist.std.cpu())
    mean, std = torch.cat(means), torch.cat(stds)
    scaling = 1.0 / mean.std().item()
    return mean, std, scaling


def reconstruction_error(vae, images) -> float:
    """Mean absolute pixel error (0–255 scale) of encode→decode on the given images."""
    import torch

    with torch.no_grad():
        x = to_unit(images).to(device_of(vae))
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    return ((recon - x).abs().mean() * 127.5).item()


def train_unet(unet, text_encoder, tokenizer, latent_mean, latent_std, scaling, tags, s: PretrainSettings,
               clock: Clock, log: Callable[[str], None], stage: int = 0) -> dict:
    """Epsilon prediction on SD1.5's DDPM schedule, text encoder trained alongside, EMA weights kept."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from lora_studio.models.text import hidden_states_with_clip_skip, tokenize
    from lora_studio.models.tiny import SD15_SCHEDULER

    noise_scheduler = DDPMScheduler.from_config(SD15_SCHEDULER)  # ignores the PNDM-only keys
    alphas = noise_scheduler.alphas_cumprod
    device = device_of(unet)
    # Later stages draw their own batches and noise (stage 0 keeps the seeds every one-stage run had).
    gen = torch.Generator().manual_seed(s.seed + 2 + 1000 * stage)
    rng = random.Random(s.seed + 3 + 1000 * stage)
    params = [{"params": list(unet.parameters()), "lr": s.unet_lr},
              {"params": list(text_encoder.parameters()), "lr": s.te_lr}]
    # Fused AdamW and foreach EMA: 0.021 s of a step where the plain ones took 0.069 s (two cores, toy_world.md).
    opt = torch.optim.AdamW(params, weight_decay=1e-2, fused=True)
    trained = [p for group in params for p in group["params"]]
    ema = EMAModel(trained, use_ema_warmup=True, power=3 / 4, decay=0.9995, foreach=True)
    unet.train()
    text_encoder.train()
    n_images = len(tags)  # latents hold every image twice: as drawn, then mirrored
    done, recent, started = 0, [], clock.elapsed()
    for step in range(s.unet_steps):
        if clock.out_of_time():
            log(f"unet: time budget reached at step {step}")
            break
        factor = cosine_lr(step, s.unet_steps, s.warmup_steps)
        opt.param_groups[0]["lr"] = s.unet_lr * factor
        opt.param_groups[1]["lr"] = s.te_lr * factor
        idx = torch.randint(0, len(latent_mean), (s.batch_size,), generator=gen)
        eps_latent = torch.randn(latent_mean[idx].shape, generator=gen)
        latents = (latent_mean[idx] + latent_std[idx] * eps_latent) * scaling
        captions = []
        for i in idx.tolist():
            scene_tags = list(tags[i % n_images])
            if s.tag_dropout and step >= s.full_captions_first * s.unet_steps:
                rate = rng.uniform(0, s.tag_dropout) if s.tag_dropout_varies else s.tag_dropout
                scene_tags = [scene_tags[0]] + [t for t in scene_tags[1:] if rng.random() >= rate]
            rng.shuffle(scene_tags)  # LoRA training shuffles tags too; order should not matter
            captions.append("" if rng.random() < s.caption_dropout else ", ".join(scene_tags))
        noise = torch.randn(latents.shape, generator=gen)
        if s.noise_offset:
            # SD1.5's schedule leaves ~7% of the signal at t=999, so a model trained on plain noise reads
            # an image's overall brightness from the starting noise's mean (worse at 16x16 latents, whose
            # noise mean varies more). Per-channel offsets hide that mean at high t, as kohya's
            # noise_offset does. It cannot help while GroupNorm erases channel means (see TOY_UNET).
            noise = noise + s.noise_offset * torch.randn((s.batch_size, latents.shape[1], 1, 1), generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (s.batch_size,), generator=gen)
        snr = alphas[t] / (1 - alphas[t])
        weight = (torch.clamp(snr, max=s.min_snr_gamma) / snr).to(device)
        latents, noise, t = latents.to(device), noise.to(device), t.to(device)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        cond = hidden_states_with_clip_skip(text_encoder, tokenize(tokenizer, captions).to(device), s.clip_skip)
        pred = unet(noisy, t, cond).sample
        per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0, foreach=True)
        opt.step()
        ema.step(trained)
        recent.append(per_sample.mean().item())
        done = step + 1
        if done % 50 == 0 or done == s.unet_steps:
            rate = (clock.elapsed() - started) / done
            log(f"unet{f' stage {stage + 1}' if stage else ''} step {done}/{s.unet_steps} mse {sum(recent) / len(recent):.4f} "
                f"[{clock.elapsed():.0f}s, {rate:.2f}s/step]")
            recent = []
    ema.copy_to(trained)
    unet.eval()
    text_encoder.eval()
    return {"unet_steps_done": done}


def save_toy_model(components: dict, out: Path) -> Path:
    """A diffusers folder whose weights are stored in fp16 (half the size) but load as fp32.

    Configs keep dtype float32, as the hub's fp16 variants of SD1.5 do, so diffusers and
    transformers both upcast on load and the model runs in fp32 on a CPU.
    """
    from safetensors.torch import load_file, save_file

    from lora_studio.models.tiny import save_diffusers_folder

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_diffusers_folder(components, tmp)
    for weights in tmp.rglob("*.safetensors"):
        tensors = load_file(weights)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, weights,
                  metadata={"format": "pt"})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def compare_models(folder: Path, reference: Path) -> dict:
    """How far a pretrained folder's weights are from a reference folder's, per component.

    For each weights file: the largest absolute difference of any weight, and the mean absolute
    difference relative to the reference's mean absolute weight. Reruns on the same machine give 0;
    other CPUs and torch builds differ by floating-point noise that training amplifies a little.
    """
    from safetensors.torch import load_file

    report = {}
    for weights in sorted(Path(reference).rglob("*.safetensors")):
        name = str(weights.relative_to(reference))
        mine = Path(folder) / name
        if not mine.exists():
            report[weights.parent.name] = {"missing": name}
            continue
        a, b = load_file(mine), load_file(weights)
        if set(a) != set(b):
            report[weights.parent.name] = {"different_keys": sorted(set(a) ^ set(b))[:5]}
            continue
        max_abs, diff_sum, ref_sum, count = 0.0, 0.0, 0.0, 0
        for key, ref in b.items():
            if not ref.is_floating_point():
                continue
            delta = (a[key].float() - ref.float()).abs()
            max_abs = max(max_abs, delta.max().item())
            diff_sum += delta.sum().item()
            ref_sum += ref.float().abs().sum().item()
            count += ref.numel()
        report[weights.parent.name] = {"max_abs_diff": max_abs,
                                       "relative_mean_diff": diff_sum / ref_sum if ref_sum else 0.0,
                                       "weights": count}
    return report


def pretrain(out: Path, s: PretrainSettings, log: Callable[[str], None] = print) -> dict:
    """Draw scenes, train the VAE, then the UNet and text encoder; save the folder; return a summary."""
    import torch

    clock = Clock(s.max_minutes)
    device = training_device(s.device)
    log(f"toy pretrain: {asdict(s)} device={device} threads={torch.get_num_threads()}")
    components = toy_components(s.seed, s.unet_heads, s.attention_levels)
    # The VAE learns from scenes and abstract shapes only (SD's VAE did not learn from the UNet's data
    # either); the UNet also learns generic sheep, as SD1.5 knows 'sheep' before any character LoRA.
    images, tags = draw_pretraining_scenes(s.scenes, s.seed, s.sheep, s.white_sheep)
    vae_images = images[:s.scenes]
    held_out, _ = draw_pretraining_scenes(64, s.seed + 999)
    abstract = as_tensor([draw_abstract(s.seed * 1_000_003 + i, IMAGE_SIZE) for i in range(s.scenes)])
    log(f"drew {s.scenes} scenes, {s.sheep} sheep scenes and {len(abstract)} abstract images [{clock.elapsed():.0f}s]")
    if s.vae_from:
        from diffusers import AutoencoderKL

        components["vae"] = AutoencoderKL.from_pretrained(Path(s.vae_from) / "vae").float().eval().to(device)
        summary = {"vae_from": s.vae_from}
    else:
        summary = train_vae(components["vae"].to(device), torch.cat([vae_images, abstract]), s, clock, log)
    as_shipped(components["vae"])
    summary["vae_seconds"] = round(clock.elapsed())
    summary["vae_mean_abs_error_255"] = round(reconstruction_error(components["vae"], held_out), 2)
    summary["vae_character_colours"] = character_colour_check(components["vae"])
    log(f"vae held-out mean abs error {summary['vae_mean_abs_error_255']} / 255; "
        f"character colour shares {summary['vae_character_colours']}")
    mean, std, scaling = encode_latents(components["vae"], images)
    components["vae"].register_to_config(scaling_factor=scaling)
    log(f"latent scaling factor {scaling:.4f} [{clock.elapsed():.0f}s]")
    if s.unet_from:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        components["unet"] = UNet2DConditionModel.from_pretrained(Path(s.unet_from) / "unet").float()
        components["text_encoder"] = CLIPTextModel.from_pretrained(Path(s.unet_from) / "text_encoder").float()
        summary["unet_from"] = s.unet_from
    components["unet"].to(device)
    components["text_encoder"].to(device)
    done = 0
    for stage, settings in enumerate(s.unet_stages()):
        done += train_unet(components["unet"], components["text_encoder"], components["tokenizer"],
                           mean, std, scaling, tags, settings, clock, log, stage)["unet_steps_done"]
        summary[f"unet_seconds_after_stage_{stage + 1}"] = round(clock.elapsed())
    summary["unet_steps_done"] = done
    summary["total_seconds"] = round(clock.elapsed())
    summary["scaling_factor"] = scaling
    summary["device"] = str(device)
    for name in ("vae", "unet", "text_encoder"):
        components[name].to("cpu")
    save_toy_model(components, out)
    (out / "toy_pretrain.json").write_text(json.dumps({"settings": asdict(s), "summary": summary}, indent=2) + "\n")
    log(f"saved {out} [{summary['total_seconds']}s]: {summary}")
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m lora_studio.toy.pretrain [--out DIR] [--unet-steps N] …"""
    defaults = PretrainSettings()
    parser = argparse.ArgumentParser(prog="python -m lora_studio.toy.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=paths.assets_dir() / "toy-model", help="diffusers folder to write")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--scenes", type=int, default=defaults.scenes)
    parser.add_argument("--sheep", type=int, default=defaults.sheep, help="generic sheep scenes (UNet only)")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=None,
                        help=f"train one UNet stage of this many steps instead of the shipped chain ({defaults.unet_steps} with --unet-lr or --tag-dropout alone)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--noise-offset", type=float, default=defaults.noise_offset)
    parser.add_argument("--vae-from", default=None, help="reuse the VAE of this toy-model folder")
    parser.add_argument("--unet-from", default=None, help="continue from the UNet and text encoder of this toy-model folder")
    parser.add_argument("--unet-lr", type=float, default=None, help=f"one stage's LR (default {defaults.unet_lr:g})")
    parser.add_argument("--tag-dropout", type=float, default=None,
                        help="chance to leave out each tag but the first (the most, with --tag-dropout-varies)")
    parser.add_argument("--tag-dropout-varies", action=argparse.BooleanOptionalAction, default=None,
                        help="draw each caption's dropout rate from U(0, --tag-dropout) (r8) instead of a fixed one (r7)")
    parser.add_argument("--full-captions-first", type=float, default=defaults.full_captions_first,
                        help="share of UNet steps (from the start) trained on whole captions, no tag dropout")
    parser.add_argument("--unet-heads", type=parse_heads, default=defaults.unet_heads,
                        help="attention heads per UNet attention layer: one count, or one per level ('2,8,8')")
    parser.add_argument("--attention-levels", type=parse_levels,
                        default=defaults.attention_levels,
                        help="UNet levels with transformer blocks: '0,1' (SD1.5's layout) or '1' (SDXL's: none at the "
                             "16x16 level, half the step time)")
    parser.add_argument("--stage", type=UnetStage.parse, action="append", default=None, metavar="STEPS:LR:DROPOUT[:fixed]",
                        help="train the UNet in these stages, in turn (repeatable; without it and without "
                             "--unet-steps, --unet-lr, --tag-dropout the shipped chain: "
                             + " ".join(st.text() for st in SHIPPED_STAGES) + ")")
    parser.add_argument("--white-sheep", action=argparse.BooleanOptionalAction, default=defaults.white_sheep,
                        help="also pretrain on white sheep (every look but the character's)")
    parser.add_argument("--device", default=defaults.device, help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' …")
    parser.add_argument("--minutes", type=float, default=None, help="stop early after this many minutes")
    parser.add_argument("--preview", type=Path, default=None, help="also render a grid of base prompts to this PNG")
    parser.add_argument("--compare", type=Path, default=None,
                        help="afterwards, report how far the weights are from this toy-model folder (e.g. the shipped one)")
    args = parser.parse_args(argv)
    # Any one-stage flag means one stage (its other knobs at their defaults); none means the shipped chain.
    given = {key: value for key, value in {"unet_steps": args.unet_steps, "unet_lr": args.unet_lr,
                                            "tag_dropout": args.tag_dropout,
                                            "tag_dropout_varies": args.tag_dropout_varies}.items() if value is not None}
    stages = tuple(args.stage) if args.stage else () if given else SHIPPED_STAGES
    settings = PretrainSettings(seed=args.seed, scenes=args.scenes, sheep=args.sheep, vae_steps=args.vae_steps,
                                batch_size=args.batch_size, max_minutes=args.minutes, noise_offset=args.noise_offset,
                                vae_from=args.vae_from, unet_from=args.unet_from, **given,
                                te_lr=given.get("unet_lr", defaults.unet_lr) / 2,
                                full_captions_first=args.full_captions_first, unet_heads=args.unet_heads,
                                attention_levels=args.attention_levels,
                                white_sheep=args.white_sheep, device=args.device, stages=stages)

    def log(line: str) -> None:
        print(line, flush=True)

    pretrain(args.out, settings, log)
    if args.preview:
        from lora_studio.toy.preview import render_prompt_grid

        render_prompt_grid(args.out, args.preview)
        log(f"preview: {args.preview}")
    if args.compare:
        for component, numbers in compare_models(args.out, args.compare).items():
            log(f"compare {component}: {numbers}")


if __name__ == "__main__":
    main()
