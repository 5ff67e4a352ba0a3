"""A trained LoRA becomes a kohya/A1111 file that other tools load and that means what training meant."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import warnings
from contextlib import contextmanager

import pytest
import torch

from lora_studio.config import TrainConfig
from lora_studio.data.frames import Frame
from lora_studio.errors import UserError
from lora_studio.models.load import load_diffusers_folder
from lora_studio.models.text import hidden_states_with_clip_skip, tokenize
from lora_studio.models.tiny import build_tiny_components
from lora_studio.train.lora_file import (kohya_state_dict, lora_file_hash, read_metadata, save_lora,
                                         training_metadata)
from lora_studio.train.network import add_lora, load_lora_state, lora_state
from lora_studio.train.loop import train

DIM, ALPHA = 4, 2.0  # alpha ≠ dim, so a file that got the scale wrong cannot pass

# The key shapes A1111's extensions-builtin/Lora (convert_diffusers_name_to_compvis) maps onto SD1.5 modules,
# for the layers kohya's networks.lora trains by default: in each Transformer2DModel proj_in/proj_out and
# every block's attn1/attn2 q/k/v/out and feed-forward; in CLIP each layer's self-attention and MLP.
UNET_KEY = re.compile(
    r"^lora_unet_(down_blocks_\d+_attentions_\d+|mid_block_attentions_\d+|up_blocks_\d+_attentions_\d+)"
    r"_(proj_in|proj_out|transformer_blocks_\d+_(attn[12]_(to_q|to_k|to_v|to_out_0)|ff_net_0_proj|ff_net_2))"
    r"\.(lora_down\.weight|lora_up\.weight|alpha)$")
TE_KEY = re.compile(
    r"^lora_te_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])"
    r"\.(lora_down\.weight|lora_up\.weight|alpha)$")


def pretend_trained(module, seed: int) -> None:
    """Give the LoRA non-zero up weights, as training would; fp16-exact so the fp16 file holds them as-is."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_" in name:
                p.copy_((torch.randn(p.shape, generator=gen) * 0.2).half().float())


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    """The tiny base with a LoRA on UNet and text encoder whose weights look trained."""
    base = load_diffusers_folder(tiny_model_dir)
    add_lora(base.unet, base.text_encoder, DIM, ALPHA)
    pretend_trained(base.unet, seed=1)
    pretend_trained(base.text_encoder, seed=2)
    base.unet.eval()
    base.text_encoder.eval()
    return base


@pytest.fixture(scope="module")
def lora_path(trained, tmp_path_factory):
    """The trained LoRA saved as one epoch's file."""
    path = tmp_path_factory.mktemp("run") / "tibbie-000001.safetensors"
    return save_lora(path, trained.unet, trained.text_encoder, ALPHA, {"ss_epoch": "1"})


@contextmanager
def library_warnings():
    """Collect what diffusers, transformers and peft warn about (their loggers do not reach caplog)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Keep(level=logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "peft")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def tiny_pipeline(tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None,
                                                   requires_safety_checker=False)


def render(pipe, prompt: str = "tibbie, sheep, white background"):
    """A 32×32 image in 2 steps, with clip-skip-2 embeddings computed as A1111 does."""
    with torch.no_grad():
        embeds = hidden_states_with_clip_skip(pipe.text_encoder, tokenize(pipe.tokenizer, [prompt]), 2)
        negative = hidden_states_with_clip_skip(pipe.text_encoder, tokenize(pipe.tokenizer, [""]), 2)
        return pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=2, height=32,
                    width=32, generator=torch.Generator().manual_seed(0), output_type="np").images[0]


def unet_and_text_outputs(unet, text_encoder):
    """UNet noise prediction and CLIP hidden states for one fixed input."""
    gen = torch.Generator().manual_seed(7)
    latents = torch.randn(1, 4, 16, 16, generator=gen)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    ids = torch.randint(0, 49406, (1, 77), generator=gen)
    with torch.no_grad():
        return unet(latents, torch.tensor([500]), context).sample, text_encoder(ids)[0]


def test_saved_lora_has_only_a1111_keys_with_the_real_alpha_in_fp16(trained, lora_path):
    from safetensors.torch import load_file

    tensors = load_file(lora_path)
    unet_keys = [k for k in tensors if k.startswith("lora_unet_")]
    te_keys = [k for k in tensors if k.startswith("lora_te_")]
    assert len(unet_keys) + len(te_keys) == len(tensors)
    assert all(UNET_KEY.match(k) for k in unet_keys), [k for k in unet_keys if not UNET_KEY.match(k)][:3]
    assert all(TE_KEY.match(k) for k in te_keys), [k for k in te_keys if not TE_KEY.match(k)][:3]
    # kohya's count: per Transformer2DModel 2 projections, per transformer block 8 attention + 2 feed-forward
    # layers; per CLIP layer 4 attention + 2 MLP layers; each as lora_down, lora_up and alpha.
    transformers = sum(1 for _, m in trained.unet.named_modules() if type(m).__name__ == "Transformer2DModel")
    blocks = sum(1 for _, m in trained.unet.named_modules() if type(m).__name__ == "BasicTransformerBlock")
    assert transformers and len(unet_keys) == (2 * transformers + 10 * blocks) * 3
    assert len(te_keys) == trained.text_encoder.config.num_hidden_layers * 6 * 3
    assert not any("time_emb" in k or "resnets" in k for k in unet_keys)  # ResNets only with conv_dim (LoCon)
    assert all(t.dtype == torch.float16 for t in tensors.values())
    alphas = [t.item() for k, t in tensors.items() if k.endswith(".alpha")]
    assert alphas and set(alphas) == {ALPHA}
    down = tensors["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"]
    up = tensors["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"]
    assert down.shape[0] == DIM and up.shape[1] == DIM and up.abs().sum() > 0


def test_diffusers_loads_it_without_key_warnings_and_weight_scales_its_effect(tiny_model_dir, lora_path):
    pipe = tiny_pipeline(tiny_model_dir)
    before = render(pipe)
    with library_warnings() as messages:
        pipe.load_lora_weights(str(lora_path), adapter_name="tibbie")
    assert messages == []  # no missing/unexpected keys, no unconverted names
    assert "tibbie" in pipe.unet.peft_config and "tibbie" in pipe.text_encoder.peft_config

    pipe.set_adapters(["tibbie"], adapter_weights=[1.0])
    at_one = render(pipe)
    pipe.set_adapters(["tibbie"], adapter_weights=[0.0])
    at_zero = render(pipe)
    assert abs(at_one - before).max() > 1e-3
    assert abs(at_zero - before).max() < 1e-5


def test_loaded_file_acts_exactly_like_the_trained_adapters(trained, tiny_model_dir, lora_path):
    pipe = tiny_pipeline(tiny_model_dir)
    base_unet, base_text = unet_and_text_outputs(pipe.unet, pipe.text_encoder)
    pipe.load_lora_weights(str(lora_path), adapter_name="tibbie")
    loaded_unet, loaded_text = unet_and_text_outputs(pipe.unet, pipe.text_encoder)
    trained_unet, trained_text = unet_and_text_outputs(trained.unet, trained.text_encoder)

    # The weights are fp16-exact, so only the scale alpha/dim could make these differ; a wrong alpha
    # (e.g. the rank, which diffusers' converter writes) would double the LoRA's effect here.
    for base, loaded, train in ((base_unet, loaded_unet, trained_unet), (base_text, loaded_text, trained_text)):
        effect = (train - base).abs().max().item()
        assert effect > 1e-2
        assert (loaded - train).abs().max().item() < 1e-3 * effect


def test_metadata_round_trips_with_kohya_keys_and_the_probe_lr(trained, tiny_model_dir, tmp_path):
    config = TrainConfig(name="tibbie", base_model=str(tiny_model_dir), network_dim=DIM, network_alpha=ALPHA,
                         unet_lr=1e-4, optimizer="lion", trigger_word="tibbie")
    # 8 frames in kohya's 6_tibbie folder (repeat 6), five of them on a white background
    folder = tmp_path / "frames" / "6_tibbie"
    frames = [Frame(f"6_tibbie/{i}.png", folder / f"{i}.png", "tibbie, sheep" + ", white background" * (i < 5),
                    None, 6, 32, 32) for i in range(8)]
    tags = {"6_tibbie": {"tibbie": 8, "sheep": 8, "white background": 5}}
    meta = training_metadata(config, epoch=2, steps=96, frames=frames, probe_d_lr=3.2e-4,
                             training_started_at=1_700_000_000.0)
    path = save_lora(tmp_path / "tibbie-000002.safetensors", trained.unet, trained.text_encoder, ALPHA, meta)

    read = read_metadata(path)
    assert {k: read[k] for k in meta} == meta
    assert all(isinstance(v, str) for v in read.values())
    assert read["ss_network_module"] == "networks.lora"
    assert (read["ss_network_dim"], read["ss_network_alpha"]) == ("4", "2.0")
    assert (read["ss_epoch"], read["ss_steps"], read["ss_num_train_images"]) == ("2", "96", "48")
    assert read["ss_text_encoder_lr"] == str(1e-4 / 10) and read["ss_clip_skip"] == "2"
    assert read["ss_base_model_version"] == "sd_v1" and read["ss_sd_model_name"] == tiny_model_dir.name
    assert json.loads(read["ss_tag_frequency"]) == tags
    assert json.loads(read["ss_dataset_dirs"]) == {"6_tibbie": {"n_repeats": 6, "img_count": 8}}
    assert read["modelspec.prediction_type"] == "epsilon"
    assert float(read["lora_studio_probe_d_lr"]) == 3.2e-4
    # A1111 takes the LoRA's hash from sshs_model_hash when present: it must be the file's own hash.
    assert read["sshs_model_hash"][:12] == lora_file_hash(path)


def test_a_lora_of_a_v_prediction_base_says_so_in_its_model_spec(tiny_model_dir, tiny_frames, tmp_path):
    # SD2-style v-prediction bases (and v-pred SD1.5 finetunes) need it: ComfyUI and model sites read it.
    base_dir = tmp_path / "v-base"
    shutil.copytree(tiny_model_dir, base_dir)
    scheduler = base_dir / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "prediction_type": "v_prediction"}))
    config = TrainConfig(name="tibbie", base_model=str(base_dir), dataset=str(tiny_frames), epochs=1, repeats=1,
                         batch_size=4, resolution=32, min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16,
                         network_dim=DIM, network_alpha=ALPHA)
    (path,) = train(config, tmp_path / "run")["files"]
    assert read_metadata(path)["modelspec.prediction_type"] == "v"
    with pytest.raises(ValueError, match="sample"):
        training_metadata(config, epoch=1, steps=2, frames=[], prediction_type="sample")


def test_lora_hash_ignores_metadata_edits_as_a1111_does(trained, tmp_path):
    a = save_lora(tmp_path / "a.safetensors", trained.unet, trained.text_encoder, ALPHA, {"ss_epoch": "1"})
    b = save_lora(tmp_path / "b.safetensors", trained.unet, trained.text_encoder, ALPHA, {"ss_epoch": "7", "x": "y"})
    assert a.read_bytes() != b.read_bytes()
    assert re.fullmatch(r"[0-9a-f]{12}", lora_file_hash(a))
    assert lora_file_hash(a) == lora_file_hash(b)


def test_failed_write_leaves_no_partial_file(trained, tmp_path):
    target = tmp_path / "tibbie-000001.safetensors"
    target.mkdir()  # a folder squats the file name, so the final rename fails
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="cannot write"):
        save_lora(target, trained.unet, trained.text_encoder, ALPHA, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert (target / "keep.txt").read_text() == "mine"

    good = save_lora(tmp_path / "ok.safetensors", trained.unet, trained.text_encoder, ALPHA, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, good.name])


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_lora_files_are_readable_by_other_users_under_the_usual_umask(trained, tmp_path):
    # A1111 or ComfyUI often runs as another user; mkstemp's 0600 made the files unreadable to them.
    old = os.umask(0o022)
    try:
        path = save_lora(tmp_path / "tibbie-000001.safetensors", trained.unet, trained.text_encoder, ALPHA, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_new_lora_starts_as_a_no_op_and_only_it_trains():
    parts = build_tiny_components(seed=0)
    unet, text_encoder = parts["unet"], parts["text_encoder"]
    before = unet_and_text_outputs(unet, text_encoder)
    unet_params, te_params = add_lora(unet, text_encoder, DIM, ALPHA)
    after = unet_and_text_outputs(unet, text_encoder)
    assert all(torch.equal(x, y) for x, y in zip(before, after))  # up weights start at zero, as kohya's
    trainable = [n for n, p in [*unet.named_parameters(), *text_encoder.named_parameters()] if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(unet_params) + len(te_params) == len(trainable)
    assert all(p.dtype == torch.float32 for p in unet_params + te_params)


def test_frozen_text_encoder_gets_no_adapter_and_no_te_keys():
    parts = build_tiny_components(seed=0)
    unet_params, te_params = add_lora(parts["unet"], parts["text_encoder"], DIM, ALPHA, train_text_encoder=False)
    assert unet_params and te_params == []
    assert not any(p.requires_grad for p in parts["text_encoder"].parameters())
    for text_encoder in (parts["text_encoder"], None):
        keys = kohya_state_dict(parts["unet"], text_encoder, ALPHA)
        assert keys and all(k.startswith("lora_unet_") for k in keys)


def test_resume_state_restores_the_adapters_and_refuses_another_dim():
    first, second, other = (build_tiny_components(seed=0) for _ in range(3))
    add_lora(first["unet"], first["text_encoder"], DIM, ALPHA)
    pretend_trained(first["unet"], seed=3)
    pretend_trained(first["text_encoder"], seed=4)
    state = lora_state(first["unet"], first["text_encoder"])
    assert any(k.startswith("unet.") for k in state) and any(k.startswith("text_encoder.") for k in state)

    add_lora(second["unet"], second["text_encoder"], DIM, ALPHA)
    load_lora_state(second["unet"], second["text_encoder"], state)
    for x, y in zip(unet_and_text_outputs(first["unet"], first["text_encoder"]),
                    unet_and_text_outputs(second["unet"], second["text_encoder"])):
        assert torch.equal(x, y)

    add_lora(other["unet"], other["text_encoder"], DIM * 2, ALPHA)
    with pytest.raises(UserError, match="network_dim"):
        load_lora_state(other["unet"], other["text_encoder"], state)


def test_a_lora_file_tells_which_tags_every_trained_caption_had():
    # kohya's bookkeeping, summed over image folders: tags in every caption, the trigger aside
    from lora_studio.train.lora_file import tags_on_every_frame

    meta = {"ss_tag_frequency": json.dumps({"6_tibbie": {"tibbie": 3, "sheep": 3, "pink bow": 3, "beach": 1},
                                            "2_extra": {"tibbie": 1, "sheep": 1, "meadow": 1}}),
            "ss_dataset_dirs": json.dumps({"6_tibbie": {"n_repeats": 6, "img_count": 3},
                                           "2_extra": {"n_repeats": 2, "img_count": 1}})}
    assert tags_on_every_frame(meta, "Tibbie") == ["sheep"]
    assert tags_on_every_frame(meta) == ["tibbie", "sheep"]
    assert tags_on_every_frame({}) == [] and tags_on_every_frame({"ss_tag_frequency": "not json"}) == []
