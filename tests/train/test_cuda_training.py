"""Training on a CUDA GPU: half-precision bases with fp32 LoRA weights, autocast, checkpointing, out of memory.

Marked `cuda`: without a GPU they are skipped with the reason; `python benchmarks/gpu_check.py` runs them.
"""

import math

import pytest
import torch

from lora_studio.config import config_from_dict
from lora_studio.errors import UserError
from lora_studio.models.load import load_base
from lora_studio.presets import load_preset
from lora_studio.train.loop import train

pytestmark = pytest.mark.cuda


def gpu_config(tiny_model_dir, frames, **changes):
    values = dict(base_model=str(tiny_model_dir), dataset=str(frames), name="tibbie", trigger_word="tibbie",
                  resolution=32, repeats=1, batch_size=2, epochs=2, unet_lr=1e-3, te_lr=1e-4, network_dim=4,
                  network_alpha=2, min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16)
    values.update(changes)
    return config_from_dict(values, load_preset("seed-recipe"))


def watch(base, seen: dict):
    """A should_stop that records, after the first step, how the model looks while it trains."""
    def look() -> bool:
        if not seen:
            named = list(base.unet.named_parameters()) + list(base.text_encoder.named_parameters())
            lora = [p for n, p in named if "lora_" in n]
            seen.update(lora={p.dtype for p in lora}, frozen={p.dtype for n, p in named if "lora_" not in n},
                        devices={p.device.type for p in lora}, checkpointing=base.unet.is_gradient_checkpointing)
        return False
    return look


def lora_up_norms(path):
    """How far the file's LoRA moved from its start (up-weights start at zero), for the UNet and the TE."""
    from safetensors.torch import load_file

    weights = load_file(path)
    ups = lambda prefix: sum(float(v.float().norm()) for k, v in weights.items()
                             if k.startswith(prefix) and k.endswith("lora_up.weight"))
    return ups("lora_unet_"), ups("lora_te_")


@pytest.mark.parametrize("precision, half", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_a_half_precision_base_trains_fp32_lora_weights_on_the_gpu(precision, half, tiny_model_dir, tiny_frames,
                                                                   tmp_path):
    base = load_base(str(tiny_model_dir))
    seen, events = {}, []
    result = train(gpu_config(tiny_model_dir, tiny_frames, mixed_precision=precision), tmp_path / "run",
                   events.append, watch(base, seen), base=base)
    assert next(e for e in events if e["type"] == "started")["device"].startswith("cuda")
    # The frozen base in half precision, the trained LoRA weights in fp32 (GradScaler cannot unscale fp16 ones).
    assert seen["frozen"] == {half} and seen["lora"] == {torch.float32} and seen["devices"] == {"cuda"}
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert len(losses) == result["steps"] == 8 and all(map(math.isfinite, losses))
    unet_moved, te_moved = lora_up_norms(tmp_path / "run" / "tibbie-000002.safetensors")
    assert unet_moved > 0 and te_moved > 0  # autocast's scaled gradients reached both LoRAs
    # Handed back as it came: fp32 on the CPU, all three parts together.
    assert {base.unet.dtype, base.text_encoder.dtype, base.vae.dtype} == {torch.float32}
    assert {base.unet.device.type, base.text_encoder.device.type, base.vae.device.type} == {"cpu"}


def test_gradient_checkpointing_trains_the_same_lora_text_encoder_included(tiny_model_dir, tiny_frames, tmp_path):
    runs = {}
    for checkpointing in (False, True):
        base = load_base(str(tiny_model_dir))
        seen, events = {}, []
        config = gpu_config(tiny_model_dir, tiny_frames, mixed_precision="no", gradient_checkpointing=checkpointing)
        train(config, tmp_path / f"gc-{checkpointing}", events.append, watch(base, seen), base=base)
        assert seen["checkpointing"] is checkpointing
        runs[checkpointing] = ([e["loss"] for e in events if e["type"] == "step"],
                               lora_up_norms(tmp_path / f"gc-{checkpointing}" / "tibbie-000002.safetensors"))
        assert not base.unet.is_gradient_checkpointing  # a kept base goes back to plain forward passes
    (plain_losses, plain_norms), (gc_losses, gc_norms) = runs[False], runs[True]
    # Recomputing activations changes memory, not maths; a text-encoder LoRA cut off from its gradients
    # (reentrant checkpointing with frozen inputs) would keep te norm 0.
    assert gc_losses == pytest.approx(plain_losses, rel=1e-3)
    assert gc_norms == pytest.approx(plain_norms, rel=1e-3) and gc_norms[1] > 0


def test_running_out_of_gpu_memory_is_a_user_error_that_says_what_to_do(tiny_model_dir, tiny_frames, tmp_path):
    base = load_base(str(tiny_model_dir))
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1e-6)  # a few hundred KB: moving the VAE already fails
    try:
        with pytest.raises(UserError, match="out of GPU memory") as raised:
            train(gpu_config(tiny_model_dir, tiny_frames), tmp_path / "run", base=base)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert "batch_size" in raised.value.hint and "gradient_checkpointing" in raised.value.hint


def test_a_base_kept_on_the_gpu_in_fp16_stays_there_for_the_next_job(tiny_model_dir, tiny_frames, tmp_path):
    """The XY command loads its base on the GPU in fp16; training on that base hands it back unchanged."""
    base = load_base(str(tiny_model_dir), device="cuda", dtype=torch.float16)
    train(gpu_config(tiny_model_dir, tiny_frames, epochs=1, te_lr=0.0, shuffle_caption=False), tmp_path / "run",
          base=base)
    parts = (base.unet, base.text_encoder, base.vae)
    assert {p.device.type for p in parts} == {"cuda"} and {p.dtype for p in parts} == {torch.float16}


@pytest.mark.parametrize("te_lr", [None, 0.0], ids=["text-encoder-trained", "text-embeddings-cached"])
def test_the_validation_loss_runs_under_fp16_autocast_whether_or_not_the_text_encoder_trains(
        te_lr, tiny_model_dir, tiny_frames, tmp_path):
    events = []
    config = gpu_config(tiny_model_dir, tiny_frames, mixed_precision="fp16", validation_split=2, te_lr=te_lr,
                        shuffle_caption=te_lr is None)  # frozen encoder + fixed captions: the cached-embedding path
    train(config, tmp_path / "run", events.append)
    losses = {e["epoch"]: e["loss"] for e in events if e["type"] == "validation"}
    assert sorted(losses) == list(range(config.epochs + 1)) and all(map(math.isfinite, losses.values()))
