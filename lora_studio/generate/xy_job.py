"""An XY plot as a studio job: its settings in job.toml's [xy] table, rendered by the worker.

XYSettings holds the `lora-studio xy` flags under the flags' own names (`x`, `y`, `z`, `sr`, `size`, …),
so the studio's tab, the job file and the CLI are three faces of one set of fields; the plan is built
by the CLI's own plan_from_args. Nothing here imports torch at import time: the studio validates a
plot (plan_cells reads only file names) before queueing it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from lora_studio.config import dump_toml
from lora_studio.errors import UserError

TABLE = "xy"  # the job.toml table that holds an xy job's settings
SHARE_FORMATS = ("", "jpeg", "webp")
DEFAULT_Y = "weight=0,0.3,0.5,0.6,0.7,0.8,0.9,1"
# The seed write-up's chart prompt; {trigger} and {lora} are the run's trigger word and first epoch file.
DEFAULT_PROMPT = "masterpiece, best quality, 1girl, {trigger}, sheep, sitting on tree, <lora:{lora}:0>"


@dataclass
class XYSettings:
    """One XY plot of a run, in the words of `lora-studio xy` (see its --help for every field)."""

    base: str
    run: str
    prompt: str
    negative: str = ""
    x: str = "epoch"
    y: str = DEFAULT_Y
    z: str = ""
    sr: str = ""
    seed: int = -1
    sampler: str = "DPM++ 2M Karras"
    steps: int = 20
    cfg: float = 7.0
    size: str = "512x512"
    clip_skip: int = 2
    batch_size: int = 0  # 0: 1 on a CPU (bit-identical to single renders), 4 on a GPU
    margin: int = 0
    legend: bool = True
    use_cache: bool = True
    share: str = "jpeg"  # also write a copy small enough to post: jpeg, webp, or "" for none

    def to_plan(self):
        """The XYPlan these fields describe, built exactly as the CLI builds it from its flags."""
        from lora_studio.generate.xy_cli import plan_from_args

        if not self.x.strip():
            raise UserError("the plot has no X axis", "for example x = \"epoch\" (every epoch file of the run)")
        if self.share not in SHARE_FORMATS:
            raise UserError(f"share format {self.share!r} is unknown", "jpeg, webp, or empty for none")
        args = argparse.Namespace(**{f.name: getattr(self, f.name) for f in fields(self)})
        args.x, args.y, args.z, args.sr = (v.strip() or None for v in (self.x, self.y, self.z, self.sr))
        args.no_legend, args.no_cache = not self.legend, not self.use_cache
        return plan_from_args(args)

    def check(self):
        """Every cell planned from the run's files as they are now (no model): user errors surface here."""
        from lora_studio.generate.xy_plan import plan_cells

        return plan_cells(self.to_plan())

    def table(self) -> dict:
        """The [xy] table of job.toml: every field but the base model, which job.toml names already."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "base"}


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


def settings_toml(settings: XYSettings) -> str:
    """The [xy] table as TOML text, to append to a job.toml."""
    return f"\n[{TABLE}]\n" + dump_toml(settings.table())


def settings_from_table(table: dict, base: str) -> XYSettings:
    """An [xy] table (and the job's base model) back into XYSettings, naming a bad field."""
    types = {f.name: f.type for f in fields(XYSettings)}
    values = {"base": base}
    for key, value in table.items():
        if key not in types or key == "base":
            raise UserError(f"unknown XY field {key!r} in job.toml", "fields: " + ", ".join(types))
        kind = types[key]
        ok = {"int": isinstance(value, int) and not isinstance(value, bool), "bool": isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": isinstance(value, str)}[kind]
        if not ok:
            raise UserError(f"XY field {key!r} is {value!r}, expected {kind}")
        values[key] = float(value) if kind == "float" else value
    missing = {"run", "prompt"} - set(values)
    if missing:
        raise UserError(f"job.toml's [{TABLE}] table lacks {', '.join(sorted(missing))}")
    return XYSettings(**values)


def load_settings(job_dir: Path) -> XYSettings:
    """The settings of an xy job folder."""
    from lora_studio.config import load_toml

    values = load_toml(Path(job_dir) / "job.toml")
    if TABLE not in values:
        raise UserError(f"{job_dir} is not an XY plot job (its job.toml has no [{TABLE}] table)")
    return settings_from_table(values[TABLE], str(values.get("base_model", "toy")))


def default_prompt(run_name: str, first_epoch_stem: str, trigger_word: str = "") -> str:
    """The chart prompt for a run, its LoRA tag at weight 0 (the axes rewrite epoch and weight)."""
    return DEFAULT_PROMPT.format(trigger=trigger_word or run_name, lora=first_epoch_stem)


# --- the worker side -----------------------------------------------------------------------------

def run_xy_plot(settings: XYSettings, base, output: Path, emit: Callable[[dict], None],
              should_stop: Callable[[], bool]) -> dict:
    """Plan, render on an already-loaded base, write the grid (and share copy); the job's result."""
    from lora_studio.generate.grid import share_copy
    from lora_studio.generate.infotext import recipe_text, training_recipe
    from lora_studio.generate.xy import xy_plot

    plan = settings.to_plan()
    planned = settings.check()
    runs = sorted({c.run.folder for c in planned.cells if c.run}, key=str)
    recipe = recipe_text([(r.name, training_recipe(r)) for r in runs])
    on_gpu = base.unet.device.type == "cuda"
    plan = dataclasses.replace(plan, recipe=recipe, batch_size=settings.batch_size or (4 if on_gpu else 1))
    # The labels go first, so a viewer can draw the grid growing before xy_plot's own events arrive.
    emit({"type": "xy_labels", "columns": planned.column_labels, "rows": planned.row_labels,
          "grids": planned.z_labels, "width": plan.width, "height": plan.height})
    result = xy_plot(base, plan, output, emit=emit, should_stop=should_stop, planned=planned)
    summary = {"grid": str(result.grid), "grids": [str(p) for p in result.grids], "cells": len(result.cells),
               "rendered": result.rendered, "reused": result.reused, "lora_loads": result.lora_loads}
    if settings.share and result.grid is not None:
        summary["share"] = str(share_copy(result.grid, settings.share))
        emit({"type": "share", "path": summary["share"]})
    if result.stopped:
        emit({"type": "stopped", **summary})
    return {**summary, "stopped": result.stopped}
