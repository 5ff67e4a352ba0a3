"""The LoRA training loop, top to bottom: setup, data, model, optimizer, loop, save.

`train(config, run_dir, emit, should_stop)` reports through `emit(event)` and asks `should_stop()`;
it knows nothing of events files, queues or Gradio (the CLI and the worker do that).
Every random draw is seeded by (seed, step), so a resumed run replays exactly what an
uninterrupted one would have done from that step on.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Callable

from lora_studio import runfiles
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError


def checkpoint_name(config: TrainConfig, epoch: int) -> str:
    """kohya's per-epoch file name: NAME-000001.safetensors."""
    return runfiles.epoch_file(config.name, epoch)


def train(config: TrainConfig, run_dir: Path, emit: Callable[[dict], None] = lambda e: None,
          should_stop: Callable[[], bool] = lambda: False, *, resume: bool = False, base=None,
          device: str | None = None) -> dict:
    """Train a LoRA per config, writing NAME-00000N.safetensors per epoch into run_dir.

    A base model passed in (the worker keeps one loaded) is handed back without the LoRA, on the
    device and in the dtype it came in.
    """
    import torch

    from lora_studio.data.run_frames import load_kept_frames, split_validation, with_review_trigger
    from lora_studio.models.load import load_base
    from lora_studio.train.network import remove_lora
    from lora_studio.train.processes import main_process_only

    config.validate()
    emit = main_process_only(emit)  # under `accelerate launch` only rank 0 writes events
    config = with_review_trigger(config)
    frames, skipped = load_kept_frames(config)  # before the model: a bad folder should fail fast
    for file, reason in skipped:
        emit({"type": runfiles.WARNING, "message": f"skipped {file}: {reason}"})
    frames, held_out = split_validation(frames, config.validation_split, config.seed)
    if base is None:
        base = load_base(config.base_model)
    placement = [(module, module.device, module.dtype) for module in (base.unet, base.vae, base.text_encoder)]
    try:
        return _train(config, Path(run_dir), emit=emit, should_stop=should_stop, resume=resume, base=base,
                      frames=frames, held_out=held_out, device=device)
    except torch.cuda.OutOfMemoryError:
        # Anywhere: moving the model, caching latents, a step, a sample.
        raise UserError("out of GPU memory", "lower batch_size, turn on gradient_checkpointing, or use "
                        "mixed_precision fp16; close other programs using the GPU") from None
    finally:
        remove_lora(base.unet, base.text_encoder)
        # Training moves the UNet and text encoder to the GPU (in half precision) and the VAE to the CPU; the
        # next job on a kept base (an XY plot) needs its parts together again, so they go back as they came.
        for module, where, dtype in placement:
            module.to(device=where)
            if module.dtype != dtype:  # diffusers warns on any dtype= for its fp32-kept modules
                module.to(dtype=dtype)


def _train(config: TrainConfig, run_dir: Path, *, emit, should_stop, resume: bool, base, frames: list,
           held_out: list, device: str | None) -> dict:
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    from lora_studio.data.buckets import cache_latents, epoch_batches, steps_per_epoch
    from lora_studio.data.captions import join_tags, shuffle_and_drop
    from lora_studio.models.text import hidden_states_with_clip_skip, tokenize
    from lora_studio.train.lora_file import save_lora, training_metadata
    from lora_studio.train.network import add_lora, load_lora_state, lora_state
    from lora_studio.train.optim import effective_lrs, make_optimizer, make_scheduler
    from lora_studio.train.processes import agreed_stop
    from lora_studio.train.text_cache import CaptionEmbeddings, captions_are_fixed
    from lora_studio.train.validation import ValidationSet

    run_dir.mkdir(parents=True, exist_ok=True)
    started_at = time.time()

    # --- setup: devices and precision (accelerate handles one GPU, several via `accelerate launch`, or CPU)
    use_cpu = device == "cpu" or not torch.cuda.is_available()
    train_te = config.resolved_te_lr() > 0
    # Clip skip 2 leaves CLIP's last layer (and its LoRA) out of the loss; DDP must be told, or it waits for those grads.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=train_te and config.clip_skip > 1)
    # split_batches: the loop deals each process its share of the batches itself, so accelerate must step the
    # LR schedule once per optimizer step, not once per process (it would end the schedule halfway at 2 GPUs).
    # One process trains many runs (the worker, a sweep, the tests); accelerate keeps the first one's mixed
    # precision process-wide and refuses another. Forget it; the process group (PartialState) stays.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision="no" if use_cpu else config.mixed_precision, cpu=use_cpu,
                              kwargs_handlers=[ddp], dataloader_config=DataLoaderConfiguration(split_batches=True))
    is_main = accelerator.is_main_process
    rank, processes = accelerator.process_index, accelerator.num_processes
    should_stop = agreed_stop(accelerator, should_stop)  # all processes stop at the same step

    # --- model
    unet, vae, text_encoder, tokenizer = base.unet, base.vae, base.text_encoder, base.tokenizer
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    vae.to(accelerator.device, dtype=torch.float32)
    emit({"type": runfiles.CACHING, "done": 0, "total": len(frames) + len(held_out)})
    items = cache_latents(
        frames + held_out, vae, resolution=config.resolution, enable_buckets=config.enable_buckets,
        min_bucket_reso=config.min_bucket_reso, max_bucket_reso=config.max_bucket_reso,
        bucket_reso_steps=config.bucket_reso_steps, trigger_word=config.trigger_word,
        device=accelerator.device,
        progress=lambda i, n: emit({"type": runfiles.CACHING, "done": i, "total": n}),
    )
    vae.to("cpu")  # latents are cached: the VAE is not needed on the GPU while training
    for item in items:  # 64 KB a 512 px frame: on the GPU once, not copied there every step
        item.latent = item.latent.to(accelerator.device)
    items, held_items = items[:len(frames)], items[len(frames):]

    if accelerator.mixed_precision in ("fp16", "bf16"):
        # The frozen base in half precision halves its memory; add_lora keeps the LoRA weights in fp32.
        half = torch.float16 if accelerator.mixed_precision == "fp16" else torch.bfloat16
        unet.to(accelerator.device, dtype=half)
        text_encoder.to(accelerator.device, dtype=half)
    torch.manual_seed(config.seed)  # the LoRA's random init: same config, same files
    unet_params, te_params = add_lora(unet, text_encoder, config.network_dim, config.network_alpha, train_te)
    if not use_cpu and config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if train_te:
            text_encoder.gradient_checkpointing_enable()

    # --- optimizer and schedule over the whole run
    per_epoch = math.ceil(steps_per_epoch(items, config.batch_size) / accelerator.num_processes)
    total_steps = per_epoch * config.epochs
    optimizer = make_optimizer(config, unet_params, te_params)
    scheduler = make_scheduler(config, optimizer, total_steps)
    unet, text_encoder, optimizer, scheduler = accelerator.prepare(unet, text_encoder, optimizer, scheduler)
    noise_scheduler = base.noise_scheduler()
    validation = None  # only the main process evaluates it (it alone writes events and files)
    if held_items and is_main:
        validation = ValidationSet(held_items, seed=config.seed,
                                   num_train_timesteps=noise_scheduler.config.num_train_timesteps)
    text_embeddings = validation_embeddings = None
    if not train_te and captions_are_fixed(config):
        # A frozen encoder and fixed captions: each caption's embedding once, then the encoder leaves the GPU.
        with accelerator.autocast():
            text_embeddings = CaptionEmbeddings(text_encoder, tokenizer, config.clip_skip, [
                join_tags(shuffle_and_drop(item.tags, config.keep_tokens, False, 0.0, random.Random()))
                for item in items], accelerator.device)
            if validation is not None:
                validation_embeddings = CaptionEmbeddings(text_encoder, tokenizer, config.clip_skip,
                                                          validation.captions, accelerator.device)
        text_encoder.to("cpu")
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(accelerator.device)

    step = 0
    state_path = runfiles.state_path(run_dir)
    if resume:
        if not state_path.is_file():
            raise UserError(f"nothing to resume in {run_dir}: no saved training state",
                            "start a new run, or pick the folder of a run that was stopped")
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("processes", 1) != processes:
            raise UserError(f"this run was stopped while training in {state.get('processes', 1)} processes, "
                            f"not {processes}", f"resume it with --num_processes {state.get('processes', 1)}")
        if state["total_steps"] != total_steps:
            raise UserError("the dataset or settings changed since this run was stopped; resuming would "
                            "change the LR schedule", "start a new run, or restore the old frames/settings")
        load_lora_state(accelerator.unwrap_model(unet), accelerator.unwrap_model(text_encoder), state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]

    emit({"type": runfiles.STARTED, "total_steps": total_steps, "steps_per_epoch": per_epoch, "epochs": config.epochs,
          "frames": len(frames), "start_step": step, "resumed": bool(resume), "device": str(accelerator.device),
          "config": config.to_dict()})

    def save_state() -> None:
        if not is_main:
            return
        state_path.parent.mkdir(exist_ok=True)
        state = {"step": step, "total_steps": total_steps, "processes": processes,
                 "lora": lora_state(accelerator.unwrap_model(unet), accelerator.unwrap_model(text_encoder)),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        runfiles.atomic_write(state_path, lambda fh: torch.save(state, fh))

    def validate(epoch: int) -> float | None:
        if validation is None:
            return None
        te = accelerator.unwrap_model(text_encoder)

        def embed(captions):
            if validation_embeddings is not None:
                return validation_embeddings(captions)
            return hidden_states_with_clip_skip(te, tokenize(tokenizer, captions).to(accelerator.device),
                                                config.clip_skip)

        te_was_training = te.training
        te.eval()
        try:
            loss = validation.loss(accelerator.unwrap_model(unet), embed, noise_scheduler, accelerator.autocast)
        finally:
            te.train(te_was_training)
        emit({"type": runfiles.VALIDATION, "epoch": epoch, "step": step, "loss": loss, "frames": len(validation)})
        return loss

    def save_epoch(epoch: int, validation_loss: float | None) -> None:
        if not is_main:
            return
        path = run_dir / checkpoint_name(config, epoch)
        meta = training_metadata(config, epoch=epoch, steps=step, frames=frames, probe_d_lr=_probe_d_lr(run_dir),
                                 training_started_at=started_at, num_batches_per_epoch=per_epoch,
                                 max_train_steps=total_steps,
                                 prediction_type=noise_scheduler.config.prediction_type,
                                 validation_loss=validation_loss, validation_frames=len(held_items))
        save_lora(path, accelerator.unwrap_model(unet), accelerator.unwrap_model(text_encoder) if train_te else None,
                  config.network_alpha, meta)
        emit({"type": runfiles.CHECKPOINT, "path": str(path), "epoch": epoch, "step": step})

    # --- the loop
    if step == 0:
        validate(0)  # the base alone (the LoRA starts at zero): where the curve starts
    unet.train()
    text_encoder.train(train_te)
    last_loss = float("nan")
    stopped = False
    try:
        for epoch in range(step // per_epoch, config.epochs):
            # The batch order of an epoch depends only on (seed, epoch), so a resume can skip into it.
            batches = epoch_batches(items, config.batch_size, random.Random(f"{config.seed}-{epoch}"))
            batches = batches[accelerator.process_index::accelerator.num_processes]
            # Under DDP every process must take the same number of steps or the gradient sync hangs.
            batches = (batches + batches[:per_epoch - len(batches)])[:per_epoch]
            for batch in batches[step - epoch * per_epoch:]:
                # Each process draws its own noise; alone (rank 0 of 1) the draws are the single-process ones.
                rng = random.Random(f"{config.seed}-step-{step}" + (f"-rank-{rank}" if rank else ""))
                gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step * processes + rank)
                captions = [join_tags(shuffle_and_drop(item.tags, config.keep_tokens, config.shuffle_caption,
                                                       config.tag_dropout, rng)) for item in batch]
                latents = torch.stack([item.latent for item in batch]).to(accelerator.device)
                noise = torch.randn(latents.shape, generator=gen).to(latents.device)
                if config.noise_offset:
                    noise += config.noise_offset * torch.randn(latents.shape[:2] + (1, 1), generator=gen).to(latents.device)
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(batch),),
                                          generator=gen).to(latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                with accelerator.autocast():
                    if text_embeddings is not None:
                        embeds = text_embeddings(captions)
                    else:
                        ids = tokenize(tokenizer, captions).to(accelerator.device)
                        with torch.set_grad_enabled(train_te):
                            embeds = hidden_states_with_clip_skip(text_encoder, ids, config.clip_skip)
                    pred = unet(noisy, timesteps, embeds).sample
                target = noise if noise_scheduler.config.prediction_type == "epsilon" else \
                    noise_scheduler.get_velocity(latents, noise, timesteps)
                loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                if config.min_snr_gamma:
                    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
                    loss = loss * torch.clamp(snr, max=config.min_snr_gamma) / snr
                loss = loss.mean()
                accelerator.backward(loss)
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(unet_params + (te_params if train_te else []), config.max_grad_norm)
                lr_unet, lr_te = effective_lrs(optimizer)  # the LR this step used (d·lr for DAdaptation)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                # The loss reported is the mean over all processes' batches (the loss of the whole step).
                last_loss = float(accelerator.reduce(loss.detach(), "mean") if processes > 1 else loss.detach())
                if not math.isfinite(last_loss):
                    raise UserError(f"the loss became {last_loss} at step {step}",
                                    "lower unet_lr (or run Find LR), or turn mixed_precision to 'no'")
                if is_main:
                    emit({"type": runfiles.STEP, "step": step, "epoch": epoch + 1, "loss": last_loss,
                          "lr_unet": lr_unet, "lr_te": lr_te if train_te else 0.0, "total_steps": total_steps,
                          "elapsed_s": round(time.time() - started_at, 3)})
                # The one stop rule, asked once a step: right after the step, except on an epoch's last step,
                # where it is asked once the epoch has saved its file, state and samples (below), so a stop
                # asked meanwhile still keeps them. Once a step, so every process asks equally often.
                if step < (epoch + 1) * per_epoch and should_stop():
                    stopped = True
                    break
            if stopped:
                break
            epoch_done = epoch + 1
            emit({"type": runfiles.EPOCH, "epoch": epoch_done, "step": step})
            validation_loss = validate(epoch_done)
            if epoch_done % config.save_every_n_epochs == 0 or epoch_done == config.epochs:
                save_epoch(epoch_done, validation_loss)
            save_state()
            if is_main and config.sample_prompts and config.sample_every_n_epochs and (
                    epoch_done % config.sample_every_n_epochs == 0 or epoch_done == config.epochs):
                _sample(config, base, accelerator, unet, text_encoder, run_dir, epoch_done, emit)
            if should_stop():  # the epoch's last step's turn of the one stop rule
                stopped = step < total_steps
                break
    except OSError as exc:
        if runfiles.is_disk_full(exc):
            raise runfiles.disk_full_error(run_dir) from None
        raise

    if stopped:
        save_state()
        emit({"type": runfiles.STOPPED, "step": step, "epoch": step // per_epoch, "total_steps": total_steps})
    else:
        emit({"type": runfiles.DONE, "step": step, "epochs": config.epochs, "loss": last_loss,
              "elapsed_s": round(time.time() - started_at, 3)})
    return {"steps": step, "total_steps": total_steps, "stopped": stopped,
            "files": sorted(str(p) for p in run_dir.glob(f"{config.name}-*.safetensors"))}


def _probe_d_lr(run_dir: Path) -> float | None:
    """The d·lr found by the LR probe this run's LRs came from, if any (recorded by the CLI/worker)."""
    import json

    path = run_dir / runfiles.PROBE_FILE
    if path.is_file():
        return json.loads(path.read_text()).get("d_lr")
    return None


def _sample(config, base, accelerator, unet, text_encoder, run_dir: Path, epoch: int, emit) -> None:
    """Render the preset's sample prompts with the LoRA as it is now, at a fixed seed."""
    import torch

    from lora_studio.generate.pipeline import render

    samples = run_dir / runfiles.SAMPLES_DIR
    samples.mkdir(exist_ok=True)
    unet.eval()
    text_encoder.eval()
    base.vae.to(accelerator.device)
    te_device = base.text_encoder.device  # the CPU while the run uses cached text embeddings
    base.text_encoder.to(accelerator.device)
    try:
        with torch.no_grad():
            for i, prompt in enumerate(config.sample_prompts):
                size = config.resolution
                image = render(base, prompt, sampler="DPM++ 2M Karras", steps=config.sample_steps, cfg=7.0,
                               width=size, height=size, seed=config.sample_seed, clip_skip=config.clip_skip)
                path = runfiles.atomic_write(samples / runfiles.sample_file(config.name, epoch, i),
                                             lambda fh, image=image: image.save(fh, format="PNG"))
                emit({"type": runfiles.SAMPLE, "path": str(path), "epoch": epoch, "prompt": prompt})
    finally:
        base.vae.to("cpu")
        base.text_encoder.to(te_device)
        unet.train()
        text_encoder.train(config.resolved_te_lr() > 0)
