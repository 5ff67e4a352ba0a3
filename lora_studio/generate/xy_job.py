"""An XY plot as a job: its settings (config.XYPlotConfig) in job.toml's [xy] table, and the one XY run.

`run_xy_plot` is the XY plot for everyone: the worker's xy job and `lora-studio xy` both call it on a
loaded base. The studio's tab, the job file and the CLI flags are three faces of XYPlotConfig. Nothing
here imports torch at import time: the studio validates a plot (plan_cells reads only file names)
before queueing it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Callable

from lora_studio import runfiles
from lora_studio.config import XY_DEFAULT_Y as DEFAULT_Y  # noqa: F401 (the XY tab's default Y axis)
from lora_studio.config import XYPlotConfig, dump_toml, xy_config_from_dict
from lora_studio.errors import UserError

TABLE = "xy"  # the job.toml table that holds an xy job's settings
# The seed write-up's chart prompt; {trigger} and {lora} are the run's trigger word and first epoch file.
DEFAULT_PROMPT = "masterpiece, best quality, 1girl, {trigger}, sheep, sitting on tree, <lora:{lora}:0>"


def check_plot(config: XYPlotConfig):
    """Every cell planned from the run's files as they are now (no model): user errors surface here."""
    from lora_studio.generate.xy_plan import plan_cells, plan_from_config

    return plan_cells(plan_from_config(config))


def run_axis(folders: list[str]) -> str:
    """A Z axis over run folders, 'run=DIR1,DIR2', quoted as A1111's CSV-style values need."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([str(f) for f in folders])
    return f"run={out.getvalue()}" if folders else ""


def axis_runs(spec: str) -> list[str]:
    """The run folders of a 'run=…' axis (the inverse of run_axis); [] for any other axis."""
    kind, _, values = spec.partition("=")
    if kind.strip().lower() not in ("run", "runs") or not values.strip():
        return []
    return [v.strip() for v in next(csv.reader([values], skipinitialspace=True)) if v.strip()]


def settings_toml(config: XYPlotConfig) -> str:
    """The [xy] table as TOML text, to append to a job.toml (the base model is job.toml's base_model)."""
    return f"\n[{TABLE}]\n" + dump_toml({k: v for k, v in config.to_dict().items() if k != "base"})


def load_settings(job_dir: Path) -> XYPlotConfig:
    """The settings of an xy job folder, naming a bad field."""
    from lora_studio.config import load_toml

    values = load_toml(Path(job_dir) / runfiles.JOB_FILE)
    if TABLE not in values:
        raise UserError(f"{job_dir} is not an XY plot job (its job.toml has no [{TABLE}] table)")
    table = values[TABLE]
    if "base" in table:
        raise UserError("job.toml's [xy] table names a base", "the job's base_model says which base to use")
    missing = {"run", "prompt"} - set(table)
    if missing:
        raise UserError(f"job.toml's [{TABLE}] table lacks {', '.join(sorted(missing))}")
    return xy_config_from_dict({**table, "base": str(values.get("base_model", "toy"))})


def default_prompt(run_name: str, first_epoch_stem: str, trigger_word: str = "") -> str:
    """The chart prompt for a run, its LoRA tag at weight 0 (the axes rewrite epoch and weight)."""
    return DEFAULT_PROMPT.format(trigger=trigger_word or run_name, lora=first_epoch_stem)


# --- the one XY run -----------------------------------------------------------------------------

def run_xy_plot(config: XYPlotConfig, base, output: Path, emit: Callable[[dict], None],
                should_stop: Callable[[], bool]) -> dict:
    """Plan, render on an already-loaded base, write the grid (and share copy); the job's result."""
    from lora_studio.generate.grid import share_copy
    from lora_studio.generate.infotext import recipe_text, training_recipe
    from lora_studio.generate.xy import xy_plot

    planned = check_plot(config)
    runs = sorted({c.run.folder for c in planned.cells if c.run}, key=str)
    recipe = recipe_text([(r.name, training_recipe(r)) for r in runs])
    on_gpu = base.unet.device.type == "cuda"
    # batching only pays on a GPU; on a CPU it would also cost bit-identity with single renders
    plan = dataclasses.replace(planned.plan, recipe=recipe, batch_size=config.batch_size or (4 if on_gpu else 1))
    width, height = plan.cell_size
    # The labels go first, so a viewer can draw the grid growing before xy_plot's own events arrive.
    emit({"type": runfiles.XY_LABELS, "columns": planned.column_labels, "rows": planned.row_labels,
          "grids": planned.z_labels, "width": width, "height": height})
    scoring = None
    if config.score:
        try:
            scoring = start_scoring(config, planned)
        except UserError as exc:
            # the grid is what the user came for: a scorer that cannot load (offline, no frames) must not cost it
            emit({"type": runfiles.WARNING, "message": f"the cells are not scored: {exc.message}"
                                                       + (f" — {exc.hint}" if exc.hint else "")})
    if scoring is not None:
        emit = scoring_emit(scoring, planned, emit)
    result = xy_plot(base, plan, output, emit=emit, should_stop=should_stop, planned=planned)
    summary = {"grid": str(result.grid), "grids": [str(p) for p in result.grids], "cells": len(result.cells),
               "rendered": result.rendered, "reused": result.reused, "lora_loads": result.lora_loads,
               "downscaled": result.downscaled}
    if result.grid is not None:
        # the settings the grid was made with (its seed resolved), so `lora-studio score` can re-read its cells
        resolved = dataclasses.replace(config, seed=planned.cells[0].seed)
        runfiles.atomic_write(runfiles.xy_settings_file(result.grid),
                              f"base_model = {json.dumps(config.base)}\n" + settings_toml(resolved))
    if scoring is not None and result.grid is not None:
        summary.update(finish_scoring(scoring, result.grid, emit, planned, config))
    if config.share and result.grid is not None:
        summary["share"] = str(share_copy(result.grid, config.share))
        emit({"type": runfiles.SHARE, "path": summary["share"]})
    if result.stopped:
        emit({"type": runfiles.STOPPED, **summary})
    return {**summary, "stopped": result.stopped}


# --- scoring the cells as they arrive -------------------------------------------------------------

def start_scoring(config: XYPlotConfig, planned=None):
    """The plot's GridScoring (the scorer the settings name, or the base's default), its characters loaded."""
    from lora_studio.evaluate.grid_scores import GridScoring
    from lora_studio.evaluate.scorers import default_scorer_name, load_scorer

    scorer = load_scorer(config.scorer or default_scorer_name(config.base))
    scoring = GridScoring(scorer, beta=config.beta, dataset=config.score_dataset or None)
    if planned is not None:
        # every run's reference frames now, so a missing dataset is said before the first cell, not during
        for folder in sorted({c.run.folder for c in planned.cells if c.run is not None}, key=str) or [None]:
            scoring.character(folder)
    return scoring


def scoring_emit(scoring, planned, emit: Callable[[dict], None]) -> Callable[[dict], None]:
    """emit, plus a `score` event after every `cell` event (the cell's PNG is on disk by then)."""
    cells = {(c.x, c.y, c.z): c for c in planned.cells}
    with_z = planned.shape[2] > 1

    def emit_and_score(event: dict) -> None:
        emit(event)
        if event["type"] == runfiles.CELL:
            cell = cells[(event["x"], event["y"], event.get("z", 0))]
            record, cached = scoring.add(cell, Path(event["path"]))
            emit(scoring.event(record, cached, with_z))

    return emit_and_score


def finish_scoring(scoring, grid: Path, emit: Callable[[dict], None], planned, config: XYPlotConfig) -> dict:
    """Write the grid's scores files and badged copy, emit the recommendation; the job result's score fields."""
    from lora_studio.evaluate.badges import write_badged

    json_path, _csv_path, recommendation = scoring.write(grid)
    # before the share copy is made from the grid: with config.badges the grid itself carries them
    write_badged(grid, planned, config, json.loads(json_path.read_text()))
    if recommendation is not None:
        emit({"type": runfiles.RECOMMENDATION, "epoch": recommendation["epoch"], "weight": recommendation["weight"],
              "reason": recommendation["reason"], "path": str(json_path), "run": recommendation["run"]})
    return {"scores": str(json_path), "recommendation": recommendation["reason"] if recommendation else None}
