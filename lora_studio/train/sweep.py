"""The batch-size sweep of the seed write-up: one training run per batch size, each in its own folder bsN.

`run_sweep` is the one sweep: the CLI (`lora-studio sweep`) and the worker's sweep job both call it.
Each sub-run is a complete run folder (job.toml, events.jsonl, LoRA files, state/); its events are
also forwarded into the sweep's own stream, tagged with `run` and `batch_size`, so one monitor can
follow the whole sweep. A sub-run that finished is skipped when the sweep runs again, so a stopped
sweep continues with the batch size it was on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from lora_studio import runfiles
from lora_studio.config import TrainConfig, save_config

SWEEP_BATCH_SIZES = (1, 2, 3, 4)


def resumable(run_dir: Path, emit: Callable[[dict], None]) -> bool:
    """A run can resume only from saved state; one stopped in its first epoch starts over (and says so)."""
    if runfiles.state_path(run_dir).is_file():
        return True
    emit({"type": runfiles.WARNING, "message": "no saved state yet (stopped in the first epoch): starting from step 0"})
    return False


def sweep_config(config: TrainConfig, batch_size: int) -> TrainConfig:
    """One sub-run's config: the sweep's, at this batch size, named NAME-bsN."""
    return dataclasses.replace(config, batch_size=batch_size, name=f"{config.name}-bs{batch_size}").validate()


def run_sweep(config: TrainConfig, root: Path, emit: Callable[[dict], None], should_stop: Callable[[], bool], *,
              batch_sizes=SWEEP_BATCH_SIZES, resume: bool = False, preset: str = "", base=None,
              listen: Callable[[Path], Callable[[dict], None] | None] = lambda run_dir: None) -> dict:
    """Train each batch size not yet finished into root/bsN; stop at a stopped sub-run ({'stopped': True}).

    resume continues a stopped sub-run from its saved state; base is a loaded base model to share
    (loaded once here if None); listen(run_dir) may give each sub-run's recorder a listener of its own.
    """
    from lora_studio.models.load import load_base
    from lora_studio.train.loop import train

    root = Path(root)
    runs = []
    for batch_size in [int(b) for b in batch_sizes]:
        sub_config = sweep_config(config, batch_size)
        name = runfiles.sweep_subrun(batch_size)
        run_dir = root / name
        runs.append(str(run_dir))
        last = runfiles.last_event(run_dir)
        if last is not None and last.get("type") == runfiles.DONE:
            continue  # finished before the sweep was stopped and started again
        run_dir.mkdir(parents=True, exist_ok=True)
        runfiles.clear_stop(run_dir)
        save_config(sub_config, run_dir / runfiles.JOB_FILE, preset=preset)
        if (root / runfiles.PROBE_FILE).is_file():  # LRs from a probe: each sub-run's LoRA files carry its d·lr
            runfiles.atomic_write(run_dir / runfiles.PROBE_FILE, (root / runfiles.PROBE_FILE).read_bytes())

        def forward(event: dict, name=name, size=batch_size) -> None:
            # A sub-run's `done` must not end the sweep's own event stream.
            kind = runfiles.RUN_DONE if event.get("type") == runfiles.DONE else event.get("type")
            emit({**event, "type": kind, "run": name, "batch_size": size})

        recorder = runfiles.Recorder(run_dir, forward, listen(run_dir))
        sub_resume = resume and last is not None and resumable(run_dir, recorder)
        if base is None:
            base = load_base(sub_config.base_model)  # once: train() hands it back without the LoRA
        result = train(sub_config, run_dir, recorder, should_stop, resume=sub_resume, base=base)
        if result.get("stopped"):
            return {"runs": runs, "stopped": True}
    return {"runs": runs}
