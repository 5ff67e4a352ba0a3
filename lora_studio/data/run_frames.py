"""The frames a run trains on: the dataset's kept frames with their edited tags, and the trigger word in force.

Both come from the Dataset tab's review as well as from the run's config, so the training loop, the
studio's step budget and the CLI all ask here and agree.
"""

from __future__ import annotations

import dataclasses
import random

from lora_studio.config import TrainConfig
from lora_studio.errors import UserError


def with_review_trigger(config: TrainConfig) -> TrainConfig:
    """The config with the trigger word set in the Dataset tab when the run does not name one."""
    if config.trigger_word or not config.dataset:
        return config
    from lora_studio.data.review_state import ReviewState

    return dataclasses.replace(config, trigger_word=ReviewState.load(config.dataset).trigger_word)


def load_kept_frames(config: TrainConfig):
    """The frames the user kept in review, with their edited tags; skipped files with reasons."""
    from lora_studio.data.review_state import training_frames

    if not config.dataset:
        raise UserError("no dataset folder given", "pass --dataset DIR (a folder of images with .txt captions)")
    report = training_frames(config.dataset, caption_extension=config.caption_extension,
                             default_repeats=config.repeats)
    return report.frames, report.skipped


def trained_frames(config: TrainConfig) -> list:
    """The frames a run trains on: kept in review, minus those the validation split holds out (or UserError)."""
    frames, _skipped = load_kept_frames(config)
    trained, _held_out = split_validation(frames, config.validation_split, config.seed)
    return trained


def held_out_count(frames: int, validation_split: float) -> int:
    """How many of `frames` kept frames validation_split holds out: a fraction (< 1, at least one) or a count."""
    if validation_split <= 0:
        return 0
    if validation_split < 1:
        return max(1, round(frames * validation_split))
    return int(validation_split)


def split_validation(frames: list, validation_split: float, seed: int) -> tuple[list, list]:
    """(frames to train, frames held out for the validation loss): the same frames for the same seed and dataset.

    Frames are held out whole (never trained, not even one repeat), chosen by the run's seed from the
    frames sorted by id, so the split does not depend on the order a scan found them in.
    """
    count = held_out_count(len(frames), validation_split)
    if count == 0:
        return list(frames), []
    if count >= len(frames):
        raise UserError(f"validation_split {validation_split:g} holds out {count} of {len(frames)} kept frames, "
                        "leaving none to train on", "hold out fewer frames (e.g. 0.1, or a count like 4), or 0 for none")
    ids = sorted(frame.id for frame in frames)
    held = set(random.Random(f"{seed}-validation").sample(ids, count))
    return [f for f in frames if f.id not in held], sorted((f for f in frames if f.id in held), key=lambda f: f.id)
