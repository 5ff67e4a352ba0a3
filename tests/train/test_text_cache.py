"""te_lr = 0 with fixed captions: the frozen text encoder runs once per caption, not once per step."""

import pytest

from lora_studio.config import config_from_dict
from lora_studio.models.load import load_base
from lora_studio.presets import load_preset
from lora_studio.train.loop import train


def frozen_te_config(tiny_model_dir, frames, **changes):
    values = dict(base_model=str(tiny_model_dir), dataset=str(frames), name="tibbie", trigger_word="tibbie",
                  resolution=32, repeats=1, batch_size=1, epochs=2, unet_lr=1e-3, te_lr=0.0, network_dim=4,
                  network_alpha=2, min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16,
                  shuffle_caption=False, tag_dropout=0.0)
    values.update(changes)
    return config_from_dict(values, load_preset("seed-recipe"))


def counted_run(config, run_dir):
    """Train on a fresh base; how often the text encoder ran, and the step losses."""
    base = load_base(config.base_model)
    calls = []
    hook = base.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    events = []
    try:
        train(config, run_dir, events.append, base=base)
    finally:
        hook.remove()
    return len(calls), [e["loss"] for e in events if e["type"] == "step"]


def test_a_frozen_text_encoder_with_fixed_captions_runs_once_not_every_step(tiny_model_dir, tiny_frames, tmp_path):
    cached_calls, cached_losses = counted_run(frozen_te_config(tiny_model_dir, tiny_frames), tmp_path / "cached")
    # Shuffling with every tag kept in place yields the very same captions, but shuffled captions are never cached.
    every_step = frozen_te_config(tiny_model_dir, tiny_frames, shuffle_caption=True, keep_tokens=20)
    uncached_calls, uncached_losses = counted_run(every_step, tmp_path / "uncached")

    assert uncached_calls == 16  # 8 frames × 2 epochs at batch 1
    assert cached_calls == 1  # the 8 distinct captions in one batch
    # Caching changes how often the encoder runs, not what the UNet is trained on.
    assert cached_losses == pytest.approx(uncached_losses, rel=1e-4)


def test_a_trained_or_shuffled_text_encoder_is_never_cached(tiny_model_dir, tiny_frames, tmp_path):
    trained_calls, _ = counted_run(frozen_te_config(tiny_model_dir, tiny_frames, te_lr=1e-4, epochs=1), tmp_path / "te")
    dropout_calls, _ = counted_run(frozen_te_config(tiny_model_dir, tiny_frames, tag_dropout=0.5, epochs=1),
                                   tmp_path / "dropout")
    assert trained_calls == dropout_calls == 8


def test_previews_still_render_while_the_encoder_is_off_the_training_device(tiny_model_dir, tiny_frames, tmp_path):
    base = load_base(str(tiny_model_dir))
    config = frozen_te_config(tiny_model_dir, tiny_frames, epochs=1, sample_prompts=["tibbie, sheep"],
                              sample_every_n_epochs=1, sample_steps=2)
    events = []
    train(config, tmp_path / "run", events.append, base=base)
    samples = [e for e in events if e["type"] == "sample"]
    assert len(samples) == 1 and (tmp_path / "run" / "samples").is_dir()
    assert base.text_encoder.device == base.unet.device  # handed back where it came from
