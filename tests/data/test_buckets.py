"""Aspect-ratio buckets, latents cached once per image, and what one epoch's batches hold."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from PIL import Image

from frame_helpers import draw_frame
from lora_studio.data.buckets import (
    TrainItem, bucket_sizes, cache_latents, epoch_batches, load_training_pixels, pick_bucket, steps_per_epoch,
)
from lora_studio.data.frames import Frame, scan_frames
from lora_studio.errors import UserError


@pytest.fixture(scope="module")
def tiny_vae():
    from lora_studio.models.tiny import build_tiny_components

    return build_tiny_components(seed=0)["vae"].eval()


def test_sd15_buckets_hold_at_most_512_squared_pixels_on_a_64_pixel_grid():
    buckets = bucket_sizes(512, 256, 1024, 64)

    assert (512, 512) in buckets and (768, 320) in buckets and (320, 768) in buckets
    assert all(w * h <= 512 * 512 for w, h in buckets)
    assert all(w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert all(256 <= min(w, h) and max(w, h) <= 1024 for w, h in buckets)


def test_a_resolution_below_the_bucket_step_is_a_user_error():
    with pytest.raises(UserError, match="bucket_reso_steps"):
        bucket_sizes(32, 256, 1024, 64)


def test_a_wide_image_gets_a_wide_bucket_and_a_tall_one_a_tall_bucket():
    buckets = bucket_sizes(512, 256, 1024, 64)

    wide_w, wide_h = pick_bucket(1920, 1080, buckets)
    tall_w, tall_h = pick_bucket(1080, 1920, buckets)

    assert wide_w > wide_h and abs(wide_w / wide_h - 16 / 9) < 0.2
    assert (tall_w, tall_h) == (wide_h, wide_w)
    assert pick_bucket(700, 700, buckets) == (512, 512)


def test_training_pixels_cover_the_bucket_and_are_center_cropped(tmp_path):
    path = tmp_path / "wide.png"
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (25, 0, 35, 20))  # a white stripe in the middle
    image.save(path)
    frame = Frame("wide.png", path, "", None, 1, 60, 20)

    pixels = load_training_pixels(frame, (16, 16))

    assert pixels.shape == (3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert pixels[:, :, 8].mean() > 0.9  # the crop is centered on the white middle
    assert pixels[:, :, 0].mean() < -0.5 and pixels[:, :, -1].mean() < -0.5


def test_each_image_is_encoded_once_into_a_latent_of_its_buckets_shape(tmp_path, tiny_vae):
    (tmp_path / "6_tibbie").mkdir()
    for i, size in enumerate([(32, 32), (64, 32), (32, 64), (40, 30)]):
        draw_frame(tmp_path / "6_tibbie" / f"{i}.png", i, size=size)
        (tmp_path / "6_tibbie" / f"{i}.txt").write_text("sheep, smile")
    frames = scan_frames(tmp_path).frames
    encoded, progress = [], []
    original_encode = tiny_vae.encode

    def counting_encode(pixels, *args, **kwargs):
        encoded.append(pixels.shape[0])
        return original_encode(pixels, *args, **kwargs)

    tiny_vae.encode = counting_encode
    try:
        items = cache_latents(frames, tiny_vae, resolution=32, enable_buckets=True, min_bucket_reso=16,
                              max_bucket_reso=64, bucket_reso_steps=8, trigger_word="tibbie",
                              progress=lambda i, n: progress.append((i, n)))
    finally:
        del tiny_vae.encode

    assert sum(encoded) == len(frames) == 4  # once per image, although each repeats 6 times
    assert progress[-1] == (4, 4) and len(progress) == 4
    factor = 2 ** (len(tiny_vae.config.block_out_channels) - 1)
    for item in items:
        width, height = item.bucket
        assert width * height <= 32 * 32
        assert item.latent.shape == (4, height // factor, width // factor)
        assert item.tags == ["tibbie", "sheep", "smile"]
    buckets = {item.frame.id: item.bucket for item in items}
    assert buckets["6_tibbie/1.png"][0] > buckets["6_tibbie/1.png"][1]
    assert buckets["6_tibbie/2.png"][0] < buckets["6_tibbie/2.png"][1]


def test_without_buckets_every_frame_is_trained_square(tiny_frames, tiny_vae):
    frames = scan_frames(tiny_frames).frames[:2]

    items = cache_latents(frames, tiny_vae, resolution=24, enable_buckets=False, min_bucket_reso=16,
                          max_bucket_reso=64, bucket_reso_steps=8)

    assert {item.bucket for item in items} == {(24, 24)}
    assert items[0].latent.shape == (4, 12, 12)


def test_a_bucket_step_the_vae_cannot_divide_is_a_user_error(tiny_frames, tiny_vae):
    frames = scan_frames(tiny_frames).frames[:1]
    with pytest.raises(UserError, match="bucket_reso_steps"):
        cache_latents(frames, tiny_vae, resolution=32, enable_buckets=True, min_bucket_reso=9,
                      max_bucket_reso=63, bucket_reso_steps=9)


def _items(tmp_path, buckets_and_repeats):
    """Train items with given buckets and repeats; latents are placeholders of the right shape."""
    items = []
    for i, (bucket, repeats) in enumerate(buckets_and_repeats):
        frame = Frame(f"{i}.png", tmp_path / f"{i}.png", "", None, repeats, *bucket)
        items.append(TrainItem(frame, bucket, torch.zeros(4, bucket[1] // 8, bucket[0] // 8), []))
    return items


def test_every_frame_appears_repeats_times_per_epoch_in_single_bucket_batches(tmp_path):
    items = _items(tmp_path, [((512, 512), 6)] * 5 + [((768, 320), 6)] * 2 + [((320, 768), 3)])

    for batch_size in (1, 2, 3, 4):
        batches = epoch_batches(items, batch_size, random.Random(0))

        assert len(batches) == steps_per_epoch(items, batch_size)
        seen = Counter(item.frame.id for batch in batches for item in batch)
        assert seen == {item.frame.id: item.frame.repeats for item in items}
        assert all(len({item.bucket for item in batch}) == 1 for batch in batches)
        assert all(1 <= len(batch) <= batch_size for batch in batches)


def test_epoch_batches_are_shuffled_but_reproducible(tmp_path):
    items = _items(tmp_path, [((512, 512), 6)] * 4 + [((768, 320), 6)] * 4)

    def order(seed):
        return [[item.frame.id for item in batch] for batch in epoch_batches(items, 2, random.Random(seed))]

    assert order(1) == order(1)
    assert order(1) != order(2)
    # The seed's recipe, 70 frames x 6 repeats at batch 1, is 420 steps an epoch.
    assert steps_per_epoch(_items(tmp_path, [((512, 512), 6)] * 70), 1) == 420
