"""The frames a run trains on: the dataset's kept frames with their edited tags, and the trigger word in force.

Both come from the Dataset tab's review as well as from the run's config, so the training loop, the
studio's step budget and the CLI all ask here and agree.
"""

from __future__ import annotations

import dataclasses

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
