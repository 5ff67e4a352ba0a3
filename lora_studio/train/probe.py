"""LR probe: one epoch with DAdaptation, then the seed's rule for the real run's learning rates.

The found LR is d·lr read while training, as its peak over the probe: after a decaying schedule
has ended the product is 0, which is what kohya users see when they read it too late.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from lora_studio.config import TrainConfig
from lora_studio.errors import UserError

PROBE_FILE = "probe.json"


def recommended_lrs(d_lr: float, probe_divisor: float = 3.0, te_lr_divisor: float = 10.0) -> dict:
    """The seed's recipe: UNet LR = d·lr ÷ 3, text-encoder LR = UNet LR ÷ 10, Lion with cosine restarts."""
    unet_lr = d_lr / probe_divisor
    return {"d_lr": d_lr, "unet_lr": unet_lr, "te_lr": unet_lr / te_lr_divisor, "optimizer": "lion",
            "scheduler": "cosine_with_restarts", "probe_divisor": probe_divisor, "te_lr_divisor": te_lr_divisor}


def probe_config(config: TrainConfig) -> TrainConfig:
    """The probe's own settings: the user's data and network, one epoch of DAdaptAdam at lr 1.0."""
    return dataclasses.replace(config, epochs=1, optimizer="dadapt_adam", unet_lr=1.0, te_lr=1.0,
                               scheduler="constant", warmup_steps=0, sample_prompts=[]).validate()


def run_probe(config: TrainConfig, run_dir: Path, emit: Callable[[dict], None] = lambda e: None,
              should_stop: Callable[[], bool] = lambda: False, base=None) -> dict:
    """Train one DAdaptation epoch, record the peak d·lr, write run_dir/probe.json and return it."""
    from lora_studio.train.loop import train

    run_dir = Path(run_dir)
    peak = {"d_lr": 0.0}

    def watch(event: dict) -> None:
        if event.get("type") == "step":
            peak["d_lr"] = max(peak["d_lr"], float(event["lr_unet"]))
        emit(event)

    train(probe_config(config), run_dir, watch, should_stop, base=base)
    if peak["d_lr"] <= 0:
        raise UserError("the LR probe found no learning rate (it stopped before its first step)",
                        "let the probe run its whole epoch")
    result = recommended_lrs(peak["d_lr"], config.probe_divisor, config.te_lr_divisor)
    tmp = run_dir / (PROBE_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    tmp.replace(run_dir / PROBE_FILE)
    emit({"type": "probe", **result})
    return result


def read_probe(run_dir: str | Path) -> dict:
    """Read a finished probe's recommendation, with a clear error if there is none."""
    path = Path(run_dir) / PROBE_FILE
    if not path.is_file():
        raise UserError(f"no LR probe result in {run_dir}", "run 'lora-studio probe' first, or pick the probe's folder")
    return json.loads(path.read_text(encoding="utf-8"))


def apply_probe(config: TrainConfig, probe: dict) -> TrainConfig:
    """The real run's config with the probe's LRs, Lion and cosine with restarts."""
    unet_lr = probe["d_lr"] / config.probe_divisor
    return dataclasses.replace(config, unet_lr=unet_lr, te_lr=unet_lr / config.te_lr_divisor,
                               optimizer="lion", scheduler="cosine_with_restarts").validate()
