"""Training a character LoRA the seed's way, on a tiny real SD1.5-shaped model and real files."""

import re

import pytest
import torch

from lora_studio.config import config_from_dict
from lora_studio.errors import UserError
from lora_studio.presets import load_preset
from lora_studio.train.loop import train


def tiny_config(tiny_model_dir, frames, **changes):
    """The seed recipe scaled down to seconds: 32 px, repeat 1."""
    values = dict(base_model=str(tiny_model_dir), dataset=str(frames), name="tibbie", trigger_word="tibbie",
                  resolution=32, repeats=1, batch_size=2, epochs=2, unet_lr=1e-3, network_dim=4,
                  network_alpha=2, min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16)
    values.update(changes)
    return config_from_dict(values, load_preset("seed-recipe"))


def test_two_epochs_give_two_numbered_files_a1111_and_diffusers_can_load(tiny_model_dir, tiny_frames, tmp_path):
    events, asked = [], []  # asked: (steps, checkpoints) each time the loop asks whether to stop
    result = train(tiny_config(tiny_model_dir, tiny_frames, unet_lr=1e-2), tmp_path / "run", events.append,
                   should_stop=lambda: asked.append(tuple(sum(e["type"] == t for e in events)
                                                          for t in ("step", "checkpoint"))) or False)
    files = sorted(p.name for p in (tmp_path / "run").glob("*.safetensors"))
    assert files == ["tibbie-000001.safetensors", "tibbie-000002.safetensors"]
    assert [e["epoch"] for e in events if e["type"] == "checkpoint"] == [1, 2]
    assert result["steps"] == 8 and not result["stopped"]
    # one stop rule, asked once a step; on an epoch's last step only once the epoch's file is saved
    assert asked == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1), (8, 2)]

    from safetensors.torch import load_file

    keys = load_file(tmp_path / "run" / files[-1]).keys()
    pattern = re.compile(r"^lora_(unet|te_text_model_encoder_layers)_\w+\.(lora_down\.weight|lora_up\.weight|alpha)$")
    assert keys and all(pattern.match(k) for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in keys)

    from diffusers import StableDiffusionPipeline

    from lora_studio.models.text import hidden_states_with_clip_skip, tokenize

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(tmp_path / "run"), weight_name=files[-1], adapter_name="e2")

    def image(weight):
        pipe.set_adapters(["e2"], adapter_weights=[weight])
        with torch.no_grad():
            embeds = hidden_states_with_clip_skip(pipe.text_encoder, tokenize(pipe.tokenizer, ["tibbie, sheep"]), 2)
        return pipe(prompt_embeds=embeds, num_inference_steps=2, guidance_scale=1.0, height=32, width=32,
                    generator=torch.Generator().manual_seed(0), output_type="np").images[0]

    at_one, at_zero = image(1.0), image(0.0)
    pipe.unload_lora_weights()
    with torch.no_grad():
        embeds = hidden_states_with_clip_skip(pipe.text_encoder, tokenize(pipe.tokenizer, ["tibbie, sheep"]), 2)
    without = pipe(prompt_embeds=embeds, num_inference_steps=2, guidance_scale=1.0, height=32, width=32,
                   generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert abs(at_zero - without).max() < 1e-5
    assert abs(at_one - without).max() > 1e-3


def lr_and_loss(events):
    return [(e["step"], e["lr_unet"], e["lr_te"], round(e["loss"], 5)) for e in events if e["type"] == "step"]


def test_resume_continues_the_same_lr_curve_as_an_uninterrupted_run(tiny_model_dir, tiny_frames, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_frames, epochs=3, restart_cycles=2, batch_size=2)
    full = []
    train(config, tmp_path / "full", full.append)

    first = []
    stop_after = 6  # mid-epoch 2 (4 steps an epoch)
    result = train(config, tmp_path / "cut", first.append,
                   should_stop=lambda: sum(e["type"] == "step" for e in first) >= stop_after)
    assert result["stopped"] and result["steps"] == stop_after
    assert first[-1]["type"] == "stopped"
    second = []
    train(config, tmp_path / "cut", second.append, resume=True)
    resumed = lr_and_loss(first) + lr_and_loss(second)
    assert [s for s, *_ in resumed] == list(range(1, 13))
    assert [lr for _, lr, _, _ in resumed] == pytest.approx([lr for _, lr, _, _ in lr_and_loss(full)])
    assert min(lr for _, lr, _, _ in lr_and_loss(second)) > 0  # kohya's "LR is 0 after resume"
    assert [loss for *_, loss in resumed] == pytest.approx([loss for *_, loss in lr_and_loss(full)], rel=1e-3)


def test_excluded_and_corrupt_frames_are_not_trained(tiny_model_dir, tiny_frames, tmp_path):
    (tiny_frames / "broken.png").write_bytes(b"\x89PNG not really")
    events = []
    train(tiny_config(tiny_model_dir, tiny_frames, epochs=1), tmp_path / "run", events.append)
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("broken.png" in w for w in warnings)
    started = next(e for e in events if e["type"] == "started")
    assert started["frames"] == 8


def test_empty_dataset_folder_is_a_clear_error(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        train(tiny_config(tiny_model_dir, tmp_path / "empty"), tmp_path / "run")


def test_a_base_model_kept_loaded_comes_back_without_the_lora(tiny_model_dir, tiny_frames, tmp_path):
    from lora_studio.models.load import load_base
    from lora_studio.train.network import has_lora

    base = load_base(str(tiny_model_dir))
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    train(tiny_config(tiny_model_dir, tiny_frames, epochs=1), tmp_path / "run", base=base)
    assert not has_lora(base.unet) and not has_lora(base.text_encoder)
    after = base.unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_stop_on_an_epochs_last_step_still_writes_that_epochs_file(tiny_model_dir, tiny_frames, tmp_path):
    events = []
    config = tiny_config(tiny_model_dir, tiny_frames, epochs=2)  # 4 steps an epoch
    result = train(config, tmp_path / "run", events.append,
                   should_stop=lambda: sum(e["type"] == "step" for e in events) >= 4)
    assert result["stopped"] and result["steps"] == 4
    assert (tmp_path / "run" / "tibbie-000001.safetensors").is_file()
    train(config, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "tibbie-000002.safetensors").is_file()


def test_a_stop_on_the_very_last_step_finishes_the_run(tiny_model_dir, tiny_frames, tmp_path):
    events = []
    result = train(tiny_config(tiny_model_dir, tiny_frames, epochs=1), tmp_path / "run", events.append,
                   should_stop=lambda: sum(e["type"] == "step" for e in events) >= 4)
    assert not result["stopped"] and events[-1]["type"] == "done"
    assert (tmp_path / "run" / "tibbie-000001.safetensors").is_file()
