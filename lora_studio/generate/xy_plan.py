"""The XY(Z) plot's plan: axes parsed the way A1111's X/Y/Z script writes them, and the cells they make.

A cell is A1111's idea of one image: a prompt (with its `<lora:name:w>` tags), negative prompt,
seed, sampler, steps, CFG, size and clip skip. Axes change those fields the way A1111's X/Y/Z
script does; the epoch and weight axes rewrite the run's `<lora:NAME-00000N:w>` tag, so every
cell's own `parameters` text is what A1111 would have written for it. Rendering is generate/xy.py.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from lora_studio.config import XYPlotConfig
from lora_studio.errors import UserError
from lora_studio.runfiles import EPOCH_STEM
from lora_studio.generate.grid import MAX_MEGAPIXELS
from lora_studio.generate.prompt import format_weight, prompt_sr, refuse_scheduling, set_lora_tag, split_lora_tags

EPOCH_FILE = EPOCH_STEM  # NAME-000001, the run folder's epoch file stem (runfiles.py)

# axis kind → (A1111 type label, value type)
AXIS_KINDS = {
    "epoch": ("Epoch", int),
    "weight": ("LoRA weight", float),
    "sr": ("Prompt S/R", str),
    "seed": ("Seed", int),
    "cfg": ("CFG Scale", float),
    "steps": ("Steps", int),
    "sampler": ("Sampler", str),
    "clip_skip": ("Clip skip", int),
    "run": ("Run", str),
}
AXIS_ALIASES = {"epochs": "epoch", "lora weight": "weight", "lora_weight": "weight", "prompt s/r": "sr",
                "prompt_sr": "sr", "cfg scale": "cfg", "cfg_scale": "cfg", "clip skip": "clip_skip",
                "runs": "run"}


# --- axes --------------------------------------------------------------------------------------

@dataclass
class Axis:
    """One axis: its kind and values (None for 'epoch' alone: every epoch file of the run)."""

    kind: str
    values: list | None
    text: str = ""  # the values as typed; the grid's infotext shows them as A1111 does

    @property
    def label(self) -> str:
        """A1111's name for the axis type ('Prompt S/R', 'CFG Scale', …)."""
        return AXIS_KINDS[self.kind][0]

    def value_label(self, value) -> str:
        """A column/row label, A1111 style: Prompt S/R raw, everything else 'Label: value'."""
        if self.kind == "sr":
            return str(value)
        if self.kind == "run":
            return f"{self.label}: {Path(value).name}"
        if isinstance(value, float):
            return f"{self.label}: {format_weight(value)}"
        return f"{self.label}: {value}"


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*(?:\(\s*({_NUMBER})\s*\)|\[\s*(\d+)\s*\])?\s*$")


def _expand(item: str, kind: str, cast) -> list:
    """A1111 ranges: '1-5' → 1..5, '1-9 (+2)' → 1,3,…,9, '0-1 [5]' → five evenly spaced values."""
    match = _RANGE.match(item) if cast is not str else None
    if not match:
        try:
            return [cast(item)]
        except ValueError:
            raise UserError(f"{AXIS_KINDS[kind][0]} value {item!r} is not a number",
                            "write numbers like 0.5, or ranges like 1-8, 0-1 (+0.1), 0-1 [5]") from None
    start, end = float(match.group(1)), float(match.group(2))
    if match.group(4):
        count = int(match.group(4))
        if count < 1:
            raise UserError(f"range {item!r} asks for no values")
        values = [start + (end - start) * i / max(1, count - 1) for i in range(count)]
    else:
        step = float(match.group(3)) if match.group(3) else 1.0
        if step == 0 or (end - start) * step < 0:
            raise UserError(f"range {item!r} never reaches its end", "the step must go from start towards end")
        count = int((end - start) / step + 1e-9) + 1
        values = [start + step * i for i in range(count)]
    if cast is int:
        return [int(round(v)) for v in values]
    return [round(v, 10) for v in values]


def parse_axis(spec: str, sr_values: str | None = None) -> Axis:
    """'weight=0,0.3,1', 'epoch' (all), 'epoch=1-8', 'sr=01,02', 'seed=1-4', 'run=DIR1,DIR2' → Axis."""
    kind_text, eq, values_text = spec.partition("=")
    kind = " ".join(kind_text.split()).lower()
    kind = AXIS_ALIASES.get(kind, kind)
    if kind not in AXIS_KINDS:
        raise UserError(f"unknown axis {kind_text.strip()!r}", "axes: " + ", ".join(AXIS_KINDS))
    if kind == "sr" and not eq and sr_values:
        values_text = sr_values
    if not values_text.strip():
        if kind == "epoch":
            return Axis("epoch", None, "")
        raise UserError(f"axis {kind_text.strip()!r} has no values", f"write it like {kind}=value1,value2")
    # A1111 reads axis values as one CSV row, so a quoted value may hold commas
    items = [v.strip() for v in next(csv.reader([values_text], skipinitialspace=True)) if v.strip()]
    cast = AXIS_KINDS[kind][1]
    values: list = []
    for item in items:
        values.extend(_expand(item, kind, cast))
    if kind == "sampler":
        from lora_studio.generate.pipeline import parse_sampler

        for value in values:
            parse_sampler(value)
    if not values:
        raise UserError(f"axis {kind_text.strip()!r} has no values", f"write it like {kind}=value1,value2")
    return Axis(kind, values, values_text.strip())


# --- runs and their LoRA files -----------------------------------------------------------------

@dataclass
class RunLoras:
    """The LoRA files of one run folder: NAME-000001.safetensors … plus any other .safetensors."""

    folder: Path
    files: dict[str, Path]  # stem (lower case) → file
    epochs: dict[int, Path]
    name: str

    def epoch_stem(self, epoch: int) -> str:
        """The file stem (A1111's LoRA name) of an epoch."""
        if epoch not in self.epochs:
            have = ", ".join(str(e) for e in sorted(self.epochs)) or "none yet"
            raise UserError(f"epoch {epoch} has no LoRA file in {self.folder}", f"epochs there: {have}")
        return self.epochs[epoch].stem

    def find(self, name: str) -> Path | None:
        """The file a `<lora:name:…>` tag refers to (by file stem, any case), if in this run."""
        return self.files.get(name.lower())

    def owns(self, tag_name: str) -> bool:
        """Whether a tag names this run's LoRA (any epoch, or the bare name)."""
        match = EPOCH_FILE.match(tag_name)
        stem = match.group("name") if match else tag_name
        return stem.lower() == self.name.lower()


def run_loras(folder: Path | str) -> RunLoras:
    """Scan a run folder (and its direct subfolders) for LoRA files; a running run has fewer."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"run folder not found: {folder}", "give the folder holding NAME-000001.safetensors …")
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*/*.safetensors"))
    files = {p.stem.lower(): p for p in reversed(found)}  # top level wins
    epochs: dict[int, Path] = {}
    names = set()
    for path in found:
        match = EPOCH_FILE.match(path.stem)
        if match:
            names.add(match.group("name"))
            epochs.setdefault(int(match.group("epoch")), path)
    if len(names) > 1:
        raise UserError(f"{folder} holds epoch files of several LoRAs: {', '.join(sorted(names))}",
                        "give each run its own folder")
    name = names.pop() if names else (found[0].stem if found else folder.name)
    return RunLoras(folder, files, epochs, name)


# --- the plan ----------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """'512x512' → (512, 512)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT", "for example --size 512x512")
    return int(match.group(1)), int(match.group(2))


def plan_from_config(config: XYPlotConfig, *, batch_size: int | None = None, recipe: str = "",
                     max_megapixels: float = MAX_MEGAPIXELS) -> "XYPlan":
    """The XYPlan an XYPlotConfig describes (no model loaded, so mistakes are reported at once).

    batch_size: the config's 0 (automatic) resolved for the device (default: the config's, else 1).
    """
    config.validate()
    if not config.x.strip():
        raise UserError("the plot has no X axis", "for example x = \"epoch\" (every epoch file of the run)")
    sr = config.sr.strip() or None
    axes = [parse_axis(spec, sr) if spec.strip() else None for spec in (config.x, config.y, config.z)]
    if sr and not any(a is not None and a.kind == "sr" for a in axes):
        free = next((i for i, a in enumerate(axes) if a is None), None)
        if free is None:
            raise UserError("--sr needs a free axis, but X, Y and Z are all used", "drop one axis or write it as sr=…")
        axes[free] = parse_axis("sr", sr)
    if axes[2] is not None and axes[1] is None:
        axes[1], axes[2] = axes[2], None
    parse_size(config.size)  # a bad size is said now, not when the first cell is drawn
    return XYPlan(config, axes[0], axes[1], axes[2], batch_size=batch_size or config.batch_size or 1,
                  recipe=recipe, max_megapixels=max_megapixels)


@dataclass
class XYPlan:
    """An XY plot as the planner reads it: its XYPlotConfig (the one truth), the axes parsed, what planning adds."""

    config: XYPlotConfig
    x: Axis
    y: Axis | None = None
    z: Axis | None = None
    batch_size: int = 1  # the config's batch_size with 0 (automatic) resolved for the device
    recipe: str = ""  # the training recipe, written into the grid's text as 'Training: "…"'
    max_megapixels: float = MAX_MEGAPIXELS  # A1111's grid size limit: a larger grid is saved downscaled

    @property
    def cell_size(self) -> tuple[int, int]:
        """(width, height) of every cell, from the config's 'WIDTHxHEIGHT'."""
        return parse_size(self.config.size)

    @property
    def run(self) -> Path | None:
        """The run folder whose epoch files the axes pick (None when a Z axis over runs gives them)."""
        return Path(self.config.run) if self.config.run.strip() else None


@dataclass
class Cell:
    """One image of the grid: A1111's settings for it and the LoRA files its tags resolve to."""

    x: int
    y: int
    z: int
    prompt: str
    negative: str
    seed: int
    sampler: str
    steps: int
    cfg: float
    width: int
    height: int
    clip_skip: int
    run: RunLoras | None = None
    epoch: int | None = None
    weight: float | None = None
    loras: list[tuple[str, Path, float, float]] = field(default_factory=list)  # (tag name, file, te, unet)

    def active_loras(self) -> list[tuple[Path, float, float]]:
        """The LoRAs that change pixels (weight 0 changes nothing)."""
        return [(p, te, un) for _, p, te, un in self.loras if te or un]


@dataclass
class CellGrid:
    """The planned cells of one XY(Z) plot and the axes' labels."""

    plan: XYPlan
    axes: list[Axis]  # x, then y and z when given, with resolved values
    cells: list[Cell]
    column_labels: list[str]
    row_labels: list[str]
    z_labels: list[str]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(columns, rows, grids)."""
        return len(self.column_labels), len(self.row_labels), len(self.z_labels)


def _apply(cell: Cell, axis: Axis, value, runs: dict) -> Cell:
    if axis.kind == "sr":
        prompt, negative = prompt_sr(cell.prompt, cell.negative, axis.values[0], value)
        return replace(cell, prompt=prompt, negative=negative)
    if axis.kind == "seed":
        return replace(cell, seed=value)
    if axis.kind == "run":
        return replace(cell, run=runs[value])
    changes = {"epoch": "epoch", "weight": "weight", "cfg": "cfg", "steps": "steps", "sampler": "sampler",
               "clip_skip": "clip_skip"}
    return replace(cell, **{changes[axis.kind]: value})


def _subject_tag(prompt: str, runs: list[RunLoras]) -> int | None:
    """Index of the first lora tag that names a run's LoRA (any epoch): the tag the axes rewrite."""
    _, tags = split_lora_tags(prompt)
    for i, tag in enumerate(tags):
        if any(r.owns(tag.name) or r.find(tag.name) for r in runs):
            return i
    return None


def _finish(cell: Cell, runs: list[RunLoras], rewrites_tag: bool) -> Cell:
    """Point the run's tag at the cell's epoch and weight, then resolve every tag to a file."""
    prompt = cell.prompt
    if rewrites_tag:
        if cell.run is None:
            raise UserError("the epoch and weight axes need a run folder", "give --run RUN_DIR")
        index = _subject_tag(prompt, runs)
        if index is None:
            last = max(cell.run.epochs) if cell.run.epochs else None
            if last is None:
                raise UserError(f"no NAME-000001.safetensors files in {cell.run.folder}",
                                "wait for the first epoch to finish, or pick another run")
            prompt = f"{prompt.rstrip().rstrip(',')}, <lora:{cell.run.epoch_stem(last)}:1>"
            index = _subject_tag(prompt, runs)
        tag = split_lora_tags(prompt)[1][index]
        epoch = cell.epoch
        if epoch is None:
            match = EPOCH_FILE.match(tag.name)
            own = int(match.group("epoch")) if match else None
            epoch = own if own in cell.run.epochs else (max(cell.run.epochs) if cell.run.epochs else None)
        if epoch is None:
            raise UserError(f"no NAME-000001.safetensors files in {cell.run.folder}",
                            "wait for the first epoch to finish, or pick another run")
        prompt = set_lora_tag(prompt, index, name=cell.run.epoch_stem(epoch), weight=cell.weight)
    refuse_scheduling(prompt)
    refuse_scheduling(cell.negative)
    loras = []
    for tag in split_lora_tags(prompt)[1]:
        path = cell.run.find(tag.name) if cell.run else None
        if path is None:
            where = f"in {cell.run.folder}" if cell.run else "(no run folder given)"
            raise UserError(f"LoRA {tag.name!r} from the prompt is not {where}",
                            "tags name a file stem of the run, e.g. <lora:NAME-000001:1>")
        loras.append((tag.name, path, tag.te_weight, tag.unet_weight))
    return replace(cell, prompt=prompt, loras=loras)


def plan_cells(plan: XYPlan) -> CellGrid:
    """Every cell of the plot with its final prompt and LoRA files; all user errors surface here."""
    from lora_studio.generate.pipeline import parse_sampler

    config = plan.config
    width, height = plan.cell_size
    parse_sampler(config.sampler)
    for name, value, low, high in (("steps", config.steps, 1, 150), ("clip skip", config.clip_skip, 1, 12),
                                   ("batch size", plan.batch_size, 1, 64), ("width", width, 8, 4096),
                                   ("height", height, 8, 4096)):
        if not low <= value <= high:
            raise UserError(f"{name} is {value}; allowed {low} … {high}")
    axes = [a for a in (plan.x, plan.y, plan.z) if a is not None]
    run_values = [v for a in axes if a.kind == "run" for v in a.values]
    runs = {v: run_loras(v) for v in run_values}
    base_run = run_loras(plan.run) if plan.run else (runs[run_values[0]] if run_values else None)
    all_runs = list(runs.values()) + ([base_run] if base_run else [])

    resolved = []
    for axis in axes:
        if axis.kind == "epoch" and axis.values is None:
            source = base_run if base_run else None
            if not source or not source.epochs:
                raise UserError("no epoch files to plot", "give --run RUN_DIR with NAME-000001.safetensors files")
            epochs = sorted(source.epochs)
            axis = Axis("epoch", epochs, ",".join(str(e) for e in epochs))
        if axis.kind == "seed" and -1 in axis.values:
            # A1111 picks random seeds before drawing, so labels and infotext show the real ones
            seeds = [random.randrange(2**32) if v == -1 else v for v in axis.values]
            axis = replace(axis, values=seeds, text=",".join(str(v) for v in seeds))
        resolved.append(axis)
    kinds = [a.kind for a in resolved]
    repeated = {k for k in kinds if kinds.count(k) > 1 and k != "sr"}  # several S/R axes are fine, as in A1111
    if repeated:
        raise UserError(f"two axes are both '{repeated.pop()}'", "only Prompt S/R may be on more than one axis")

    seed = random.randrange(2**32) if config.seed == -1 else config.seed
    # every XYPlotConfig field that decides pixels reaches the cell here (xy.SETTINGS_NOT_IN_CELLS lists the rest)
    start = Cell(0, 0, 0, config.prompt, config.negative, seed, config.sampler, config.steps, config.cfg, width,
                 height, config.clip_skip, run=base_run)
    rewrites_tag = any(k in ("epoch", "weight", "run") for k in kinds)
    x_axis = resolved[0]
    y_axis = resolved[1] if len(resolved) > 1 else None
    z_axis = resolved[2] if len(resolved) > 2 else None
    cells = []
    for zi, zv in enumerate(z_axis.values if z_axis else [None]):
        for yi, yv in enumerate(y_axis.values if y_axis else [None]):
            for xi, xv in enumerate(x_axis.values):
                cell = replace(start, x=xi, y=yi, z=zi)
                # A1111 applies X, then Y, then Z to a copy of the settings
                for axis, value in ((x_axis, xv), (y_axis, yv), (z_axis, zv)):
                    if axis is not None:
                        cell = _apply(cell, axis, value, runs)
                cells.append(_finish(cell, all_runs, rewrites_tag))
    return CellGrid(
        plan, resolved, cells,
        [x_axis.value_label(v) for v in x_axis.values],
        [y_axis.value_label(v) for v in y_axis.values] if y_axis else [""],
        [z_axis.value_label(v) for v in z_axis.values] if z_axis else [""],
    )
