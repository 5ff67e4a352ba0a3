"""Aspect-ratio buckets, VAE latents cached once per image, and the batches of one epoch.

Follows kohya's sd-scripts: buckets of about resolution² pixels with sides in steps of
bucket_reso_steps, each image in the bucket closest to its aspect ratio, resized to cover it and
center-cropped; batches hold one bucket's images, so every latent in a batch has the same shape.
Buckets are (width, height), as in kohya.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lora_studio.data.captions import ensure_trigger_first, split_tags
from lora_studio.data.frames import Frame, open_rgb
from lora_studio.errors import UserError

if TYPE_CHECKING:
    import torch


@dataclass
class TrainItem:
    """One frame ready to train: its bucket, its cached latent (4 x h/f x w/f, scaled, on CPU) and its tags."""

    frame: Frame
    bucket: tuple[int, int]
    latent: "torch.Tensor"
    tags: list[str]


def bucket_sizes(resolution: int, min_reso: int, max_reso: int, step: int) -> list[tuple[int, int]]:
    """kohya's make_bucket_resolutions: (w, h) with w*h <= resolution², sides multiples of step, sorted."""
    if step <= 0:
        raise UserError(f"'bucket_reso_steps' is {step}; it must be positive")
    square = (resolution // step) * step
    if square == 0:
        raise UserError(f"'resolution' {resolution} is smaller than 'bucket_reso_steps' {step}",
                        "raise the resolution or lower bucket_reso_steps")
    max_area = resolution * resolution
    sizes = {(square, square)}
    # Rounded onto the step grid so every side stays a multiple of it (kohya asserts this instead).
    low, high = math.ceil(min_reso / step) * step, max_reso // step * step
    width = low
    while width <= high:
        height = min(high, (max_area // width) // step * step)
        if height >= low:
            sizes.add((width, height))
            sizes.add((height, width))
        width += step
    return sorted(sizes)


def pick_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket closest to the image's aspect ratio (the larger one on a tie)."""
    # Compared as log-ratios so 2:1 and 1:2 are equally far from square (kohya subtracts plain ratios).
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def load_training_pixels(frame: Frame, bucket: tuple[int, int]) -> "torch.Tensor":
    """The frame as a 3 x H x W tensor in [-1, 1]: resized to cover the (W, H) bucket, then center-cropped."""
    import torch
    from PIL import Image

    bucket_w, bucket_h = bucket
    try:
        img = open_rgb(frame.path)
    except OSError as exc:
        raise UserError(f"{frame.id} could not be read ({exc})", "it changed since the scan; check the file") from None
    scale = max(bucket_w / img.width, bucket_h / img.height)
    size = (max(bucket_w, round(img.width * scale)), max(bucket_h, round(img.height * scale)))
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    left, top = (img.width - bucket_w) // 2, (img.height - bucket_h) // 2
    img = img.crop((left, top, left + bucket_w, top + bucket_h))
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(bucket_h, bucket_w, 3)
    return pixels.permute(2, 0, 1).float() / 127.5 - 1.0


def cache_latents(frames: list[Frame], vae, *, resolution: int, enable_buckets: bool, min_bucket_reso: int,
                  max_bucket_reso: int, bucket_reso_steps: int, trigger_word: str = "", device="cpu",
                  dtype=None, progress: Callable[[int, int], None] | None = None) -> list[TrainItem]:
    """VAE-encode every frame once into its bucket's latent; progress(done, total) after each image."""
    import torch

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if enable_buckets:
        if bucket_reso_steps % factor:
            raise UserError(f"'bucket_reso_steps' {bucket_reso_steps} is not a multiple of {factor}",
                            f"the VAE works on {factor}-pixel cells; use 64 (kohya's default)")
        buckets = bucket_sizes(resolution, min_bucket_reso, max_bucket_reso, bucket_reso_steps)
    else:
        side = resolution // factor * factor
        buckets = [(side, side)]
    dtype = dtype or next(vae.parameters()).dtype
    scaling = vae.config.scaling_factor
    items = []
    with torch.no_grad():
        for i, frame in enumerate(frames):
            bucket = pick_bucket(frame.width, frame.height, buckets)
            pixels = load_training_pixels(frame, bucket).unsqueeze(0).to(device, dtype)
            # The mean, not a sample: a cached sample would freeze one draw of noise for every epoch.
            latent = vae.encode(pixels).latent_dist.mean[0] * scaling
            if not torch.isfinite(latent).all():
                raise UserError(f"the VAE gave NaN/inf latents for {frame.id}",
                                "SD1.5's VAE overflows in fp16; encode in float32 (mixed_precision 'no' for the VAE)")
            tags = ensure_trigger_first(split_tags(frame.caption), trigger_word)
            items.append(TrainItem(frame=frame, bucket=bucket, latent=latent.float().cpu(), tags=tags))
            if progress:
                progress(i + 1, len(frames))
    return items


def epoch_batches(items: list[TrainItem], batch_size: int, rng: random.Random) -> list[list[TrainItem]]:
    """One epoch: every item `repeats` times, shuffled within its bucket, cut into batches, batches shuffled."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    by_bucket: dict[tuple[int, int], list[TrainItem]] = {}
    for item in items:
        by_bucket.setdefault(item.bucket, []).extend([item] * item.frame.repeats)
    batches = []
    for bucket in sorted(by_bucket):
        pool = by_bucket[bucket]
        rng.shuffle(pool)
        # A bucket's remainder is a smaller batch, as in kohya (nothing dropped, nothing padded).
        batches += [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
    rng.shuffle(batches)
    return batches


def steps_per_epoch(items: list[TrainItem], batch_size: int) -> int:
    """len(epoch_batches(items, batch_size, rng)) without building them."""
    counts: dict[tuple[int, int], int] = {}
    for item in items:
        counts[item.bucket] = counts.get(item.bucket, 0) + item.frame.repeats
    return sum(math.ceil(n / batch_size) for n in counts.values())
