"""The LR probe and its one rule for the real run: d·lr ÷ probe_divisor → unet_lr, te_lr auto (÷ te_lr_divisor)."""

import json

import pytest

from lora_studio.config import TrainConfig, config_from_dict
from lora_studio.presets import load_preset
from lora_studio.train.probe import apply_probe, follows_probe, recommended_lrs, run_probe


def tiny_config(tiny_model_dir, frames, **changes):
    """The seed recipe scaled down to seconds: 32 px, repeat 1, a probe of exactly one epoch."""
    values = dict(base_model=str(tiny_model_dir), dataset=str(frames), name="tibbie", trigger_word="tibbie",
                  resolution=32, repeats=1, batch_size=2, epochs=2, unet_lr=1e-3, network_dim=4,
                  network_alpha=2, min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16, probe_min_images=0)
    values.update(changes)
    return config_from_dict(values, load_preset("seed-recipe"))


def test_the_probe_rule_sets_unet_lr_and_leaves_te_lr_following_it():
    # A typed te_lr and AdamW before Find LR: the probe's run is the seed's (Lion, TE = UNet ÷ 10).
    before = TrainConfig(unet_lr=5e-4, te_lr=2.8e-4, optimizer="adamw", scheduler="constant")
    run = apply_probe(before, {"d_lr": 0.00828})
    assert run.unet_lr == 0.00276 and run.te_lr is None  # "auto": it keeps following unet_lr
    assert run.resolved_te_lr() == pytest.approx(0.000276)
    assert (run.optimizer, run.scheduler) == ("lion", "cosine_with_restarts")
    assert follows_probe(run, {"d_lr": 0.00828})
    # The preset chosen again puts its own unet_lr back: the form no longer holds the probe's numbers.
    assert not follows_probe(TrainConfig(unet_lr=5e-4, optimizer="lion"), {"d_lr": 0.00828})


def test_the_probe_file_and_the_rule_agree():
    found = recommended_lrs(0.0016752125153381254, probe_divisor=3, te_lr_divisor=10)
    run = apply_probe(TrainConfig(), found)
    # Four significant digits: the probe is an estimate, and the form, job.toml and grids read it.
    assert found["unet_lr"] == run.unet_lr == 0.0005584
    assert found["te_lr"] == pytest.approx(run.resolved_te_lr())


def test_probe_divisors_are_preset_fields():
    config = TrainConfig(probe_divisor=4, te_lr_divisor=5)
    real = apply_probe(config, {"d_lr": 0.02})
    assert real.unet_lr == pytest.approx(0.005) and real.resolved_te_lr() == pytest.approx(0.001)
    assert real.optimizer == "lion" and real.scheduler == "cosine_with_restarts"


def test_the_lr_probe_recommends_its_peak_dlr_over_three_and_leaves_no_lora_file(tiny_model_dir, tiny_frames,
                                                                                   tmp_path):
    events = []
    run_dir = tmp_path / "probe"
    result = run_probe(tiny_config(tiny_model_dir, tiny_frames), run_dir, events.append)
    found = [e["lr_unet"] for e in events if e["type"] == "step"]
    assert len(found) == 4  # one epoch: 8 frames, repeat 1, batch 2
    assert result["d_lr"] == pytest.approx(max(found)) and result["d_lr"] > 0
    assert result["unet_lr"] == pytest.approx(result["d_lr"] / 3, rel=1e-3)
    assert result["te_lr"] == pytest.approx(result["unet_lr"] / 10)
    assert json.loads((run_dir / "probe.json").read_text()) == result
    assert events[-1] == {"type": "probe", **result}
    # A probe is not a run to plot or resume: no epoch file, no state, no event pointing at one.
    assert list(run_dir.glob("*.safetensors")) == [] and not (run_dir / "state").exists()
    assert not [e for e in events if e["type"] == "checkpoint"]


def test_a_probe_on_a_small_set_trains_whole_epochs_until_it_has_seen_as_many_images_as_the_seeds(
        tiny_model_dir, tiny_frames, tmp_path):
    # The seed probes one epoch of ~70 frames at repeat 6 (420 images); the demo's epoch shows 76, and
    # DAdaptation's d is still growing after so few. A 70-frame set at any batch size keeps one epoch.
    from lora_studio.train.probe import probe_epochs

    assert probe_epochs(70 * 6, 420) == 1 and probe_epochs(38 * 2, 420) == 6 and probe_epochs(8, 0) == 1
    events = []
    result = run_probe(tiny_config(tiny_model_dir, tiny_frames, probe_min_images=20), tmp_path / "probe", events.append)
    started = next(e for e in events if e["type"] == "started")
    assert started["epochs"] == 3 and started["total_steps"] == 12  # 8 frames, repeat 1, batch 2: 24 images
    assert (result["probe_epochs"], result["probe_images"]) == (3, 24)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3]


def test_frames_held_out_for_validation_do_not_count_as_probe_images(tiny_frames):
    from lora_studio.train.probe import images_per_epoch

    assert images_per_epoch(TrainConfig(dataset=str(tiny_frames), repeats=6)) == 8 * 6
    assert images_per_epoch(TrainConfig(dataset=str(tiny_frames), repeats=6, validation_split=2)) == 6 * 6


def test_the_probe_warms_its_lr_up_over_half_its_epoch_so_an_early_jump_does_not_set_d():
    # DAdaptation's d never shrinks: at full lr from the first step, the first noisy gradients fix it.
    import torch

    from lora_studio.train.optim import make_scheduler, warmup_steps
    from lora_studio.train.probe import probe_config

    config = probe_config(TrainConfig(dataset="frames"))
    assert warmup_steps(config, 38) == 19
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(config, optimizer, 38)
    lrs = []
    for _ in range(38):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:19] == sorted(lrs[:19]) and lrs[18] < 1.0
    assert lrs[19:] == [1.0] * 19  # the second half reads DAdaptation's d at lr 1, as kohya's docs advise


def test_a_warmup_ratio_counts_in_steps_of_the_whole_run_like_kohyas_fractional_warmup():
    from lora_studio.train.optim import warmup_steps

    assert warmup_steps(TrainConfig(warmup_ratio=0.1), 3000) == 300
    assert warmup_steps(TrainConfig(warmup_steps=500, warmup_ratio=0.1), 3000) == 500
    assert warmup_steps(TrainConfig(), 3000) == 0
