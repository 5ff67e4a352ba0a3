"""What a study's files say: each run's curves, each grid's pick per run, every run's best cell, the recommendation.

Everything here reads files the runs and grids already wrote (events.jsonl, xy_grid-NNNN-scores.json)
and ranks with evaluate/recommend.py, the rule every XY grid uses; run.py puts the answers in study.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lora_studio import runfiles
from lora_studio.evaluate.recommend import group_cells, recommend
from lora_studio.evaluate.scorer import Thresholds

_RUN = re.compile(r"^bs(\d+)$")


def run_state(run_dir: Path) -> str:
    """done, stopped or pending (not started, or cut off without a final event)."""
    last = runfiles.last_event(run_dir)
    kind = last.get("type") if last else None
    return kind if kind in (runfiles.DONE, runfiles.STOPPED) else "pending"


def run_curves(run_dir: Path) -> dict:
    """A run's loss per step (x in epochs, so batch sizes line up), mean loss per epoch, validation loss, time."""
    events, _ = runfiles.read_events(run_dir)
    per_epoch_steps, epochs, total_steps = 0, 0, 0
    losses: dict[int, tuple[int, float]] = {}  # step → (epoch, loss); a resumed run repeats steps: the last wins
    validation: dict[int, float] = {}
    elapsed, segment = 0.0, 0.0
    timed = False
    for event in events:
        kind = event.get("type")
        if kind == runfiles.STARTED:
            per_epoch_steps, epochs = event["steps_per_epoch"], event["epochs"]
            total_steps = event["total_steps"]
            elapsed, segment = elapsed + segment, 0.0  # each (re)start counts its own clock from zero
        elif kind == runfiles.STEP:
            losses[event["step"]] = (event["epoch"], float(event["loss"]))
            segment, timed = float(event.get("elapsed_s", segment)), True
        elif kind == runfiles.VALIDATION:
            validation[int(event["epoch"])] = float(event["loss"])
        elif kind == runfiles.DONE and "elapsed_s" in event:
            segment, timed = float(event["elapsed_s"]), True
    per_epoch = max(1, per_epoch_steps)
    steps = sorted(losses)
    by_epoch: dict[int, list[float]] = {}
    for step in steps:
        by_epoch.setdefault(losses[step][0], []).append(losses[step][1])
    return {"steps": total_steps, "steps_per_epoch": per_epoch_steps, "epochs": epochs,
            "elapsed_s": round(elapsed + segment, 3) if timed else None,
            "loss": [[round(step / per_epoch, 4), _short(losses[step][1])] for step in steps],
            "epoch_loss": [[epoch, _short(sum(v) / len(v))] for epoch, v in sorted(by_epoch.items())],
            "validation": [[epoch, _short(loss)] for epoch, loss in sorted(validation.items())]}


def _short(loss: float) -> float:
    # five significant digits: a curve needs no more, and study.json of 4 × 640 steps stays small
    return float(f"{loss:.5g}")


def in_words(reason: str) -> str:
    """A recommendation's reason with its run named as a person would: 'bs2 epoch 6 …' → 'batch size 2, epoch 6 …'."""
    return re.sub(r"\bbs(\d+) (?=epoch|the LoRA)", r"batch size \1, ", reason)


def batch_size_of(run: str) -> int | None:
    """bs2 → 2 (a study's run folder names its batch size)."""
    match = _RUN.match(run or "")
    return int(match.group(1)) if match else None


def thresholds_of(scores: dict) -> Thresholds:
    """The pass lines a grid's scores were judged by (scores.json's 'thresholds')."""
    return Thresholds(**scores.get("thresholds", {}))


def run_pick(cells: list[dict], thresholds: Thresholds, beta: float) -> dict | None:
    """One run's pick {epoch, weight, reason} from its cells; None when no cell has the LoRA on."""
    found = recommend(cells, thresholds, beta)
    if found is None:
        return None
    return {"epoch": found["epoch"], "weight": found["weight"], "reason": in_words(found["reason"])}


def run_heatmap(grid: Path, scores: dict, run: str, cells: list[dict], pick: dict | None) -> Path:
    """A run's own heatmaps (its cells only, its pick outlined) beside the grid: xy_grid-0001-bs1-scores.png."""
    from lora_studio.evaluate.heatmap import draw_heatmaps

    image = draw_heatmaps({**scores, "cells": cells, "recommendation": {**(pick or {}), "run": run}})
    return runfiles.atomic_write(runfiles.run_scores_picture(grid, run), lambda fh: image.save(fh, format="PNG"))


def best_cells(cells: list[dict], thresholds: Thresholds, beta: float, runs: list[str]) -> list[dict]:
    """Every run's best (epoch, weight) over all its cells of all prompts, with its mean scores."""
    groups, _failed = group_cells(cells, thresholds)
    out = []
    for run in runs:
        found = recommend([c for c in cells if c.get("run") == run], thresholds, beta)
        if found is None:
            continue
        group = next((g for g in groups if (g.run, g.epoch, g.weight) == (run, found["epoch"], found["weight"])), None)
        out.append({"batch_size": batch_size_of(run), "run": run, "epoch": found["epoch"], "weight": found["weight"],
                    "fidelity": round(group.fidelity, 4) if group else None,
                    "adherence": round(group.adherence, 4) if group else None,
                    "quality": round(group.quality, 4) if group else None, "f": found["f_beta"]})
    return out


def overall_recommendation(cells: list[dict], thresholds: Thresholds, beta: float, best: list[dict]) -> dict | None:
    """The study's answer over every cell of every run, its reason in words and set against the runner-up."""
    found = recommend(cells, thresholds, beta)
    if found is None:
        return None
    reason = in_words(found["reason"])
    others = sorted((b for b in best if b["run"] != found["run"] and b["epoch"] is not None), key=lambda b: -b["f"])
    if found["epoch"] is not None and others:
        runner = others[0]
        reason += (f"; next best: batch size {runner['batch_size']}, epoch {runner['epoch']} at weight "
                   f"{_weight(runner['weight'])} (F-β {runner['f']:.2f} against {found['f_beta']:.2f})")
    return {"batch_size": batch_size_of(found["run"]), "run": found["run"], "epoch": found["epoch"],
            "weight": found["weight"], "reason": reason}


def _weight(value: float) -> str:
    from lora_studio.generate.prompt import format_weight

    return format_weight(value)


def load_scores(path: Path) -> dict | None:
    """A grid's scores.json, or None when the grid was not scored."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
