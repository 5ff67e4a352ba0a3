"""LR probe: one epoch with DAdaptation (or as many as show the seed's ~420 images), then the seed's rule
for the real run's learning rates.

The seed's probe epoch shows the model ~420 images (70 frames × repeat 6); a set whose epoch shows fewer
(the demo's 38 frames at repeat 2) is probed for as many whole epochs as reach that many, since d is still
growing after a few dozen steps and stopping there leaves it low and seed-dependent.

The found LR is d·lr read while training, as its peak over the probe: after a decaying schedule
has ended the product is 0, which is what kohya users see when they read it too late. The probe's lr
warms up over the first half of its steps, so the peak is DAdaptation's settled d, not an early jump.

The probe → run rule lives here and only here: the CLI's `--lr-from-probe`, the worker and the
studio's Train tab all call `apply_probe()`, so a run started anywhere from a probe trains the same LRs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Callable

from lora_studio import runfiles
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError

PROBE_FILE = runfiles.PROBE_FILE
# The seed write-up trains the probed LR with Lion and cosine with restarts.
RUN_OPTIMIZER = "lion"
RUN_SCHEDULER = "cosine_with_restarts"
# DAdaptation's d only grows (d = max(d, estimate)), so its first noisy estimates set it: at full lr from
# step 1 the demo's d locked within 10–15 steps at a value that varied ×2.1 over six seeds. Warming the
# lr up over half the epoch (kohya users warm DAdaptation up too) lets more gradients set it: ×1.35.
PROBE_WARMUP_RATIO = 0.5
# The seed's probe: one epoch of ~70 frames at repeat 6. DAdaptation's d keeps growing while it sees images,
# so a shorter probe stops it early: the demo's one epoch (76 images, 38 steps) gave d·lr 0.00015–0.0011 over
# five seeds on a toy base that knows white sheep (×7), too low for Lion there in one seed of five; six epochs
# (456 images) gave 0.0014–0.0068, all inside its working range; on the shipped base (which never drew white
# fleece) six epochs gave seed 42 0.0114 where one gave 0.0246 (benchmarks/toy_world.md, session 11).
# How many images is the config's probe_min_images (default 420).


def probe_epochs(images_per_epoch: int, min_images: int) -> int:
    """Whole epochs until the probe has shown min_images images: 1 for a set the seed's size or larger."""
    return max(1, math.ceil(min_images / max(1, images_per_epoch)))


def images_per_epoch(config: TrainConfig) -> int:
    """Images one training epoch shows: the kept frames not held out for validation, each times its repeats."""
    from lora_studio.data.run_frames import trained_frames

    return sum(frame.repeats for frame in trained_frames(config))


def probe_unet_lr(d_lr: float, probe_divisor: float) -> float:
    """UNet LR = d·lr ÷ probe_divisor, to four significant digits (the probe is an estimate,
    and 0.0016752125153381254 reads badly in a form, a job.toml or a shared grid's recipe)."""
    return float(f"{d_lr / probe_divisor:.4g}")


def recommended_lrs(d_lr: float, probe_divisor: float = 3.0, te_lr_divisor: float = 10.0) -> dict:
    """The seed's recipe: UNet LR = d·lr ÷ 3, text-encoder LR = UNet LR ÷ 10, Lion with cosine restarts."""
    unet_lr = probe_unet_lr(d_lr, probe_divisor)
    return {"d_lr": d_lr, "unet_lr": unet_lr, "te_lr": unet_lr / te_lr_divisor, "optimizer": RUN_OPTIMIZER,
            "scheduler": RUN_SCHEDULER, "probe_divisor": probe_divisor, "te_lr_divisor": te_lr_divisor}


def apply_probe(config: TrainConfig, probe: dict) -> TrainConfig:
    """The real run's config: the probe's UNet LR, te_lr 'auto' (unet_lr ÷ te_lr_divisor), Lion, cosine restarts.

    te_lr stays auto rather than a number, so it keeps following the rule when unet_lr is changed later.
    """
    return dataclasses.replace(config, unet_lr=probe_unet_lr(probe["d_lr"], config.probe_divisor), te_lr=None,
                               optimizer=RUN_OPTIMIZER, scheduler=RUN_SCHEDULER).validate()


def follows_probe(config: TrainConfig, probe: dict) -> bool:
    """True while config still trains what apply_probe() made of this probe (so a run records the probe)."""
    return (config.unet_lr == probe_unet_lr(probe["d_lr"], config.probe_divisor) and config.te_lr is None
            and config.optimizer == RUN_OPTIMIZER and config.scheduler == RUN_SCHEDULER)


def record_probe(probe_dir: str | Path, run_dir: str | Path) -> Path:
    """Copy the probe's probe.json into a run folder: its LoRA files then carry the found d·lr (as CLI runs do)."""
    return runfiles.atomic_write(Path(run_dir) / PROBE_FILE, (Path(probe_dir) / PROBE_FILE).read_bytes())


def probe_config(config: TrainConfig, images: int | None = None) -> TrainConfig:
    """The probe's own settings: the user's data and network, DAdaptAdam at lr 1.0, warmed up, for one epoch
    (or, given the images one epoch shows, as many as probe_epochs() says)."""
    epochs = 1 if images is None else probe_epochs(images, config.probe_min_images)
    return dataclasses.replace(config, epochs=epochs, optimizer="dadapt_adam", unet_lr=1.0, te_lr=1.0,
                               scheduler="constant_with_warmup", warmup_steps=0,
                               warmup_ratio=PROBE_WARMUP_RATIO, sample_prompts=[]).validate()


def run_probe(config: TrainConfig, run_dir: Path, emit: Callable[[dict], None] = lambda e: None,
              should_stop: Callable[[], bool] = lambda: False, base=None) -> dict:
    """Train one DAdaptation epoch, record the peak d·lr, write run_dir/probe.json and return it.

    The probe's own LoRA file and training state are deleted: a probe is not a run to plot or resume,
    and its epoch file would show up in the XY tab's run list as if it were one.
    """
    from lora_studio.train.loop import train

    run_dir = Path(run_dir)
    peak = {"d_lr": 0.0}

    def watch(event: dict) -> None:
        if event.get("type") == runfiles.STEP:
            peak["d_lr"] = max(peak["d_lr"], float(event["lr_unet"]))
        if event.get("type") == runfiles.CHECKPOINT:
            return  # the file is removed below; no event may point at it
        emit(event)

    images = images_per_epoch(config)
    probe = probe_config(config, images)
    try:
        train(probe, run_dir, watch, should_stop, base=base)
    finally:
        for path in run_dir.glob("*.safetensors"):
            if runfiles.EPOCH_STEM.match(path.stem):
                path.unlink()
        if (run_dir / runfiles.STATE_DIR).is_dir():
            shutil.rmtree(run_dir / runfiles.STATE_DIR)
    if peak["d_lr"] <= 0:
        raise UserError("the LR probe found no learning rate (it stopped before its first step)",
                        "let the probe run its whole epoch")
    result = {**recommended_lrs(peak["d_lr"], config.probe_divisor, config.te_lr_divisor),
              "probe_epochs": probe.epochs, "probe_images": images * probe.epochs}
    runfiles.atomic_write(run_dir / PROBE_FILE, json.dumps(result, indent=2))
    emit({"type": runfiles.PROBE, **result})
    return result


def read_probe(run_dir: str | Path) -> dict:
    """Read a finished probe's recommendation, with a clear error if there is none."""
    path = Path(run_dir) / PROBE_FILE
    if not path.is_file():
        raise UserError(f"no LR probe result in {run_dir}", "run 'lora-studio probe' first, or pick the probe's folder")
    return json.loads(path.read_text(encoding="utf-8"))
