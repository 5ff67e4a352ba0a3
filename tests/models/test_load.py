"""A user points LoRA Studio at their SD1.5 base model: a diffusers folder, a hub id or one .safetensors file."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lora_studio.errors import UserError
from lora_studio.models.load import load_base
from lora_studio.models.single_file import load_single_file
from lora_studio.models.tiny import build_tiny_components

PARTS = ("unet", "vae", "text_encoder")


# --- the original (ldm / A1111) key layout, written by hand as the reverse of diffusers' converters
# (diffusers ships only ldm -> diffusers; its reverse script is not part of the installed package).

def unet_to_ldm(unet) -> dict:
    """Diffusers UNet weights under 'model.diffusion_model.' (mirror of convert_ldm_unet_checkpoint)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    per_block = unet.config.layers_per_block + 1
    resnet_names = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                    ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    state = unet.state_dict()
    up_has_attention = {p.split(".")[1] for p in state if p.startswith("up_blocks.") and ".attentions." in p}
    ldm = {}
    for key, value in state.items():
        p = key.split(".")
        if key in top:
            new = top[key]
        elif p[0] == "down_blocks" and p[2] in ("resnets", "attentions"):
            index = 1 + int(p[1]) * per_block + int(p[3])
            new = f"input_blocks.{index}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        elif p[0] == "down_blocks" and p[2] == "downsamplers":
            new = f"input_blocks.{(int(p[1]) + 1) * per_block}.0.op.{p[-1]}"
        elif p[0] == "mid_block":
            new = f"middle_block.{1 if p[1] == 'attentions' else 2 * int(p[2])}." + ".".join(p[3:])
        elif p[0] == "up_blocks" and p[2] in ("resnets", "attentions"):
            index = int(p[1]) * per_block + int(p[3])
            new = f"output_blocks.{index}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        elif p[0] == "up_blocks" and p[2] == "upsamplers":
            slot = 2 if p[1] in up_has_attention else 1
            new = f"output_blocks.{int(p[1]) * per_block + per_block - 1}.{slot}.conv.{p[-1]}"
        else:
            raise AssertionError(f"no ldm name for UNet key {key}")
        if ".resnets." in key:
            for diffusers_name, ldm_name in resnet_names:
                new = new.replace(f".{diffusers_name}.", f".{ldm_name}.")
        ldm["model.diffusion_model." + new] = value
    return ldm


def vae_to_ldm(vae) -> dict:
    """Diffusers VAE weights under 'first_stage_model.' (mirror of convert_ldm_vae_checkpoint)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(vae.config.up_block_types)
    attention_names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
    ldm = {}
    for key, value in vae.state_dict().items():
        p = key.split(".")
        if key in top:
            new = top[key]
        elif p[1] == "down_blocks":
            new = (f"encoder.down.{p[2]}.block.{p[4]}." + ".".join(p[5:]) if p[3] == "resnets"
                   else f"encoder.down.{p[2]}.downsample.conv.{p[-1]}")
        elif p[1] == "up_blocks":
            block = n_up - 1 - int(p[2])  # ldm numbers decoder blocks from the output end
            new = (f"decoder.up.{block}.block.{p[4]}." + ".".join(p[5:]) if p[3] == "resnets"
                   else f"decoder.up.{block}.upsample.conv.{p[-1]}")
        elif p[1] == "mid_block" and p[2] == "resnets":
            new = f"{p[0]}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:])
        elif p[1] == "mid_block" and p[2] == "attentions":
            new = f"{p[0]}.mid.attn_1.{attention_names[p[4]]}.{p[-1]}"
            if value.ndim == 2:  # ldm keeps the attention projections as 1x1 convs
                value = value[:, :, None, None]
        else:
            raise AssertionError(f"no ldm name for VAE key {key}")
        ldm["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = value
    return ldm


def text_encoder_to_ldm(text_encoder) -> dict:
    """CLIP as A1111 stores it: with the 'text_model.' level that transformers 5 dropped."""
    return {"cond_stage_model.transformer.text_model." + key.removeprefix("text_model."): value
            for key, value in text_encoder.state_dict().items()}


def write_config_folder(components: dict, folder: Path) -> Path:
    """A config-only folder (no weights) like assets/sd15-config, for the tiny model's sizes."""
    components["unet"].save_config(folder / "unet")
    components["vae"].save_config(folder / "vae")
    components["text_encoder"].config.save_pretrained(folder / "text_encoder")
    components["scheduler"].save_config(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SD1.5 as one A1111-style .safetensors file, its config folder, and the original parts."""
    components = build_tiny_components(seed=1)
    folder = tmp_path_factory.mktemp("single-file")
    ldm = {**unet_to_ldm(components["unet"]), **vae_to_ldm(components["vae"]),
           **text_encoder_to_ldm(components["text_encoder"])}
    # Extras every real SD1.5 file carries and the loader must ignore.
    ldm["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    ldm["alphas_cumprod"] = torch.linspace(1, 0, 1000)
    path = folder / "tiny-sd15.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.items()}, str(path))
    return dict(path=path, ldm=ldm, config=write_config_folder(components, folder / "config"),
                components=components)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def assert_same_weights(loaded, original) -> None:
    got, want = loaded.state_dict(), original.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), [k for k in want if not torch.equal(got[k], want[k])][:3]


# --- the three ways in

def test_a_diffusers_folder_loads_as_an_sd15_base_model(tiny_model_dir):
    base = load_base(str(tiny_model_dir))
    assert base.name == tiny_model_dir.name and base.vae_scale_factor == 2
    assert base.noise_scheduler().config.beta_schedule == "scaled_linear"
    ids = base.tokenizer("tibbie, sheep", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids.shape == (1, 77) and ids[0, 0].item() == 49406


def test_a_single_file_checkpoint_loads_with_the_network_off(tiny_checkpoint, no_network):
    base = load_single_file(tiny_checkpoint["path"], config_dir=tiny_checkpoint["config"])
    for part in PARTS:
        assert_same_weights(getattr(base, part), tiny_checkpoint["components"][part])
    assert base.name == "tiny-sd15" and base.scheduler_config["beta_end"] == 0.012
    assert base.tokenizer("tibbie").input_ids[0] == 49406  # the shipped CLIP tokenizer


def test_an_fp16_checkpoint_from_an_older_exporter_still_loads_as_fp32(tiny_checkpoint, tmp_path, no_network):
    # Many CivitAI files are fp16, and pre-2023 exporters wrote CLIP without the 'text_model.' level.
    ldm = {k.replace("transformer.text_model.", "transformer."): v.half() if v.is_floating_point() else v
           for k, v in tiny_checkpoint["ldm"].items()}
    path = tmp_path / "old-fp16.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.items()}, str(path))
    base = load_single_file(path, config_dir=tiny_checkpoint["config"])
    assert all(p.dtype == torch.float32 for part in PARTS for p in getattr(base, part).parameters())
    want = tiny_checkpoint["components"]["text_encoder"].state_dict()
    got = base.text_encoder.state_dict()
    assert torch.equal(got["final_layer_norm.weight"], want["final_layer_norm.weight"].half().float())


def test_the_shipped_sd15_configs_describe_the_real_sd15():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lora_studio.models.single_file import sd15_config_dir

    folder = sd15_config_dir()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
    sizes = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, text_encoder)]
    assert sizes == [859_520_964, 83_653_863, 123_060_480]  # runwayml/stable-diffusion-v1-5
    # Its ldm layout is the one A1111 files use ('v1' marker key that diffusers itself sniffs for).
    assert "model.diffusion_model.output_blocks.11.0.skip_connection.weight" in unet_to_ldm(unet)


def make_hub_cache(cache: Path, repo_id: str, source: Path, patterns=("**/*",)) -> Path:
    """The layout huggingface_hub leaves after a download: refs/main -> snapshots/<commit>/…"""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for pattern in patterns:
        for file in source.glob(pattern):
            if file.is_file():
                (snapshot / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, snapshot / file.relative_to(source))
    return snapshot


def test_a_hub_id_loads_from_the_hugging_face_cache_offline(tiny_model_dir, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    make_hub_cache(tmp_path / "hub", "someone/tiny-sd15", tiny_model_dir)
    base = load_base("someone/tiny-sd15")
    assert base.name == "someone/tiny-sd15"
    assert_same_weights(base.unet, load_base(str(tiny_model_dir)).unet)


def test_a_hub_id_not_downloaded_yet_asks_for_the_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="not .*in the Hugging Face cache") as caught:
        load_base("someone/never-downloaded")
    assert "network on" in caught.value.hint


def test_an_sdxl_hub_repo_is_refused_from_its_configs_before_any_weights(tiny_model_dir, tmp_path, monkeypatch,
                                                                           no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = make_hub_cache(tmp_path / "hub", "someone/sdxl", tiny_model_dir, patterns=("**/*.json", "**/*.txt"))
    index = snapshot / "model_index.json"
    index.write_text(index.read_text().replace("StableDiffusionPipeline", "StableDiffusionXLPipeline"))
    with pytest.raises(UserError, match="SDXL"):
        load_base("someone/sdxl")


# --- what a user gets instead of a traceback

def test_a_ckpt_is_refused_with_how_to_convert_it(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, path)
    for load in (load_base, load_single_file):
        with pytest.raises(UserError, match="pickle") as caught:
            load(str(path))
        assert "convert" in caught.value.hint and "safetensors" in caught.value.hint


@pytest.mark.parametrize("spec", ["/nowhere/model.safetensors", "./no-such-folder", "~/nowhere/x"])
def test_a_missing_path_is_a_user_error(spec):
    with pytest.raises(UserError, match="not found"):
        load_base(spec)


def test_a_corrupt_safetensors_is_a_user_error(tiny_checkpoint, tmp_path):
    truncated = tmp_path / "half-downloaded.safetensors"
    truncated.write_bytes(tiny_checkpoint["path"].read_bytes()[:4000])
    renamed_pickle = tmp_path / "renamed.safetensors"
    torch.save({"state_dict": {}}, renamed_pickle)
    for path in (truncated, renamed_pickle):
        with pytest.raises(UserError, match="not a readable .safetensors") as caught:
            load_base(str(path))
        assert "download it again" in caught.value.hint


@pytest.mark.parametrize("marker, kind", [
    ("conditioner.embedders.1.model.positional_embedding", "SDXL"),
    ("cond_stage_model.model.token_embedding.weight", "SD2"),
    ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "LoRA"),
])
def test_sdxl_sd2_and_lora_files_are_refused_by_their_keys(tiny_checkpoint, tmp_path, marker, kind):
    path = tmp_path / f"{kind}.safetensors"
    save_file({**{k: v.contiguous() for k, v in tiny_checkpoint["ldm"].items()}, marker: torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match=kind):
        load_single_file(path, config_dir=tiny_checkpoint["config"])


def test_a_checkpoint_with_missing_weights_names_the_missing_part(tiny_checkpoint, tmp_path):
    for dropped, part in (("model.diffusion_model.out.2.weight", "UNet"),
                          ("first_stage_model.decoder.mid.attn_1.q.weight", "VAE"),
                          ("cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight", "text encoder")):
        path = tmp_path / "incomplete.safetensors"
        save_file({k: v.contiguous() for k, v in tiny_checkpoint["ldm"].items() if k != dropped}, str(path))
        with pytest.raises(UserError, match=f"the {part} is missing 1 weights"):
            load_single_file(path, config_dir=tiny_checkpoint["config"])


def test_a_checkpoint_of_another_size_does_not_fit_the_sd15_config(tiny_checkpoint):
    # Through load_base the shipped real-SD1.5 config is used: tiny weights cannot fit it.
    with pytest.raises(UserError, match="does not match the SD1.5 layout|missing"):
        load_base(str(tiny_checkpoint["path"]))


def test_the_loaders_build_on_base_and_never_import_the_dispatcher():
    # load.py picks a loader; hub.py and single_file.py import models/base.py only (no import circle)
    import ast

    from lora_studio import paths

    for name in ("hub", "single_file", "base"):
        tree = ast.parse((paths.project_root() / "lora_studio" / "models" / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert "lora_studio.models.load" not in imported, name
