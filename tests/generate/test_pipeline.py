"""Sampling: A1111 sampler names, A1111 prompt embeddings with clip skip, seeds, training previews."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lora_studio.errors import UserError
from lora_studio.generate.pipeline import (encode_prompts, make_scheduler, parse_sampler, render, sampler_names)
from lora_studio.models.text import hidden_states_with_clip_skip, tokenize

from xy_helpers import NEGATIVE, SIZE, STEPS

REQUIRED = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC"]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a1111_sampler_names_become_diffusers_schedulers(tiny_base):
    expected = {"Euler a": "EulerAncestralDiscreteScheduler", "Euler": "EulerDiscreteScheduler",
                "DPM++ 2M": "DPMSolverMultistepScheduler", "DDIM": "DDIMScheduler", "UniPC": "UniPCMultistepScheduler"}
    assert set(REQUIRED) <= set(sampler_names())
    for name, cls in expected.items():
        assert type(make_scheduler(name, tiny_base.scheduler_config)).__name__ == cls
    karras = make_scheduler("DPM++ 2M Karras", tiny_base.scheduler_config)
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    assert parse_sampler("dpm++ 2m karras") == ("DPM++ 2M", "Karras")  # as A1111 1.9 writes it
    assert parse_sampler("Euler a") == ("Euler a", "Automatic")


def test_unknown_samplers_and_schedules_are_clear_errors():
    with pytest.raises(UserError, match=re.escape("unknown sampler 'DPM++ 9M'")):
        parse_sampler("DPM++ 9M")
    with pytest.raises(UserError, match="Karras schedule is not available for Euler a"):
        parse_sampler("Euler a Karras")


def test_dpmpp_sde_karras_needs_torchsde_and_says_so(tiny_base):
    from diffusers.utils import is_torchsde_available

    if is_torchsde_available():
        scheduler = make_scheduler("DPM++ SDE Karras", tiny_base.scheduler_config, [5])
        assert scheduler.config.use_karras_sigmas and scheduler.noise_sampler_seed == 5
    else:
        with pytest.raises(UserError, match="pip install torchsde"):
            make_scheduler("DPM++ SDE Karras", tiny_base.scheduler_config)


@pytest.mark.parametrize("sampler", ["DPM++ 2M Karras", "Euler a", "DDIM", "UniPC"])
def test_same_seed_same_image_other_seed_other_image(tiny_base, sampler):
    def image(seed):
        return pixels(render(tiny_base, "1girl, (tibbie:1.2), sheep", NEGATIVE, sampler=sampler, steps=STEPS,
                             width=SIZE, height=SIZE, seed=seed))

    first = image(42)
    assert first.shape == (SIZE, SIZE, 3)
    assert np.array_equal(first, image(42))
    assert not np.array_equal(first, image(43))


def test_clip_skip_2_is_the_penultimate_layer_after_the_final_norm(tiny_base):
    te, tok = tiny_base.text_encoder, tiny_base.tokenizer
    ids = tokenize(tok, ["1girl, tibbie"])
    with torch.no_grad():
        ours = encode_prompts(te, tok, ["1girl, tibbie"], clip_skip=2)
        hidden = te(ids, output_hidden_states=True).hidden_states[-2]
        expected = te.final_layer_norm(hidden)
        last = encode_prompts(te, tok, ["1girl, tibbie"], clip_skip=1)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(last, hidden_states_with_clip_skip(te, ids, 1), atol=1e-6)
    assert not torch.allclose(ours, last)


def test_attention_weights_scale_the_words_tokens_and_keep_the_mean():
    from lora_studio.models.tiny import build_tiny_components

    parts = build_tiny_components(seed=0)
    te, tok = parts["text_encoder"], parts["tokenizer"]
    with torch.no_grad():
        te.final_layer_norm.bias.fill_(0.3)  # like a trained CLIP, whose states do not average to 0
        plain, weighted, explicit_one = encode_prompts(te, tok, ["red apple", "(red apple:1.5)", "(red apple:1)"], 2)
    assert torch.equal(plain, explicit_one)
    assert not torch.allclose(plain, weighted)
    # A1111's "Original" emphasis: scale the weighted tokens, then restore the prompt's mean
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    ratio = weighted.norm(dim=-1) / plain.norm(dim=-1)
    assert ratio[1].item() == pytest.approx(1.5 * ratio[5].item(), rel=1e-5)  # 'red' vs padding
    assert ratio[2].item() == pytest.approx(1.5 * ratio[0].item(), rel=1e-5)  # 'apple' vs start token


def test_attention_weights_stay_finite_when_the_states_average_to_zero(tiny_base):
    with torch.no_grad():
        weighted = encode_prompts(tiny_base.text_encoder, tiny_base.tokenizer, ["(red apple:1.5)"], 2)
    assert torch.isfinite(weighted).all()


def test_long_prompts_and_their_negative_get_the_same_number_of_77_token_blocks(tiny_base):
    from lora_studio.generate.pipeline import conditioning

    long_prompt = ", ".join(["red apple"] * 40)  # about 120 tokens: two chunks
    cond, uncond = conditioning(tiny_base, [long_prompt], ["lowres"], clip_skip=2)
    assert cond.shape == uncond.shape == (1, 154, tiny_base.text_encoder.config.hidden_size)


def test_a_size_off_the_latent_grid_is_a_clear_error(tiny_base):
    with pytest.raises(UserError, match="not a multiple"):
        render(tiny_base, "x", steps=1, width=33, height=32)


def test_training_previews_use_the_adapters_active_on_the_model():
    """The loop's per-epoch samples: the LoRA being trained changes them; with it off they are the base's."""
    from lora_studio.models.load import BaseModel
    from lora_studio.models.tiny import SD15_SCHEDULER, build_tiny_components
    from lora_studio.train.network import add_lora

    parts = build_tiny_components(seed=0)
    base = BaseModel(parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"], dict(SD15_SCHEDULER),
                     source="memory", name="tiny")
    settings = dict(steps=STEPS, width=SIZE, height=SIZE, seed=7, clip_skip=2)
    before = pixels(render(base, "tibbie", NEGATIVE, **settings))
    add_lora(base.unet, base.text_encoder, network_dim=4, network_alpha=4)
    base.unet.train()
    assert np.array_equal(before, pixels(render(base, "tibbie", NEGATIVE, **settings)))  # fresh LoRA: up = 0
    with torch.no_grad():
        for name, p in base.unet.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    trained = pixels(render(base, "tibbie <lora:ignored:1>", NEGATIVE, **settings))
    assert not np.array_equal(before, trained)
    assert base.unet.training  # the loop's train/eval state is left as it was
