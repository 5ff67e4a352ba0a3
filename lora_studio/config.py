"""Typed training config: defaults, field help, validation, TOML load/save.

This module imports nothing else from the project: it is the single truth that the CLI,
the UI form, preset files and the worker all read.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lora_studio.errors import UserError

SCHEMA_VERSION = 1

OPTIMIZERS = ("lion", "dadapt_adam", "adamw", "prodigy")
SCHEDULERS = ("cosine_with_restarts", "cosine", "constant", "constant_with_warmup", "linear")
MIXED_PRECISION = ("no", "fp16", "bf16")


def _f(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
       max: float | None = None, advanced: bool = False, factory: Any = None, **extra: Any) -> Any:
    """A dataclass field that carries its own help text, choices and range (and any face-specific extras)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "advanced": advanced, **extra}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything one training run (or LR probe) needs; field names are the user's words."""

    # What to train on
    name: str = _f("my-lora", "File name stem of the LoRA: NAME-000001.safetensors …")
    base_model: str = _f("toy", "SD1.5 base: 'toy', a hub id, a diffusers folder or one .safetensors file")
    dataset: str = _f("", "Folder of frames with .txt tag captions (kohya '6_name' subfolders allowed)")
    trigger_word: str = _f("", "Tag that names the character; put first in every caption if missing")

    # The recipe (the seed write-up's numbers)
    epochs: int = _f(8, "Passes over the (repeated) dataset; one LoRA file per epoch", min=1, max=1000)
    repeats: int = _f(6, "How often each frame is seen per epoch (a '6_name' folder overrides it)", min=1, max=1000)
    batch_size: int = _f(1, "Frames per optimizer step", min=1, max=64)
    resolution: int = _f(512, "Training side length in pixels (area of each aspect bucket)", min=16, max=2048)
    optimizer: str = _f("lion", "Optimizer", choices=OPTIMIZERS)
    unet_lr: float = _f(1e-4, "UNet learning rate (from the LR probe: d·lr ÷ probe_divisor)", min=0.0, max=10.0)
    te_lr: float | None = _f(None, "Text-encoder learning rate; empty = unet_lr ÷ te_lr_divisor; 0 = freeze the text encoder", min=0.0, max=10.0)
    scheduler: str = _f("cosine_with_restarts", "Learning-rate schedule", choices=SCHEDULERS)
    restart_cycles: int = _f(1, "Number of cosine cycles (hard restarts) over the whole run", min=1, max=100)
    warmup_steps: int = _f(0, "Linear warmup steps at the start", min=0, max=100000, advanced=True)
    warmup_ratio: float = _f(0.0, "Linear warmup as a share of all steps, when more than warmup_steps "
                                  "(kohya: lr_warmup_steps below 1)", min=0.0, max=1.0, advanced=True)
    network_dim: int = _f(32, "LoRA rank (dim)", min=1, max=1024)
    network_alpha: float = _f(16.0, "LoRA alpha; effective scale is alpha ÷ dim", min=0.0, max=1024)
    clip_skip: int = _f(2, "Use the CLIP layer this far from the end (2 = A1111 'Clip skip: 2')", min=1, max=12)
    seed: int = _f(42, "Random seed for the run", min=0, max=2**32 - 1)

    # Captions
    shuffle_caption: bool = _f(True, "Shuffle tags each step (the first keep_tokens stay put)")
    keep_tokens: int = _f(1, "Leading tags never shuffled or dropped (the trigger word)", min=0, max=75)
    tag_dropout: float = _f(0.0, "Chance to drop each non-kept tag per step", min=0.0, max=1.0, advanced=True)
    caption_extension: str = _f(".txt", "Caption file extension", advanced=True)

    # Buckets
    enable_buckets: bool = _f(True, "Aspect-ratio buckets instead of square center crops", advanced=True)
    min_bucket_reso: int = _f(256, "Smallest bucket side", min=8, max=4096, advanced=True)
    max_bucket_reso: int = _f(1024, "Largest bucket side", min=8, max=4096, advanced=True)
    bucket_reso_steps: int = _f(64, "Bucket sides are multiples of this", min=8, max=256, advanced=True)

    # Loss and speed
    noise_offset: float = _f(0.0, "Noise offset (darker darks, brighter brights); 0.05–0.1 is common", min=0.0, max=1.0, advanced=True)
    min_snr_gamma: float = _f(0.0, "Min-SNR loss weighting gamma; 0 = off, 5 is common", min=0.0, max=100.0, advanced=True)
    max_grad_norm: float = _f(1.0, "Gradient clipping; 0 = off", min=0.0, max=1000.0, advanced=True)
    mixed_precision: str = _f("fp16", "Autocast precision on CUDA (CPU always trains in fp32)", choices=MIXED_PRECISION, advanced=True)
    gradient_checkpointing: bool = _f(False, "Trade speed for memory on CUDA", advanced=True)
    validation_split: float = _f(0.0, "Kept frames held out (never trained) for a validation loss at each epoch's "
                                 "end: a fraction (0.1) or a count (4); 0 = off", min=0.0, max=100000.0, advanced=True)

    # Saving and samples
    save_every_n_epochs: int = _f(1, "Write a LoRA file every N epochs (the last epoch is always written)", min=1, max=1000)
    sample_prompts: list[str] = _f(None, "Prompts sampled after each epoch (A1111 syntax)", factory=list)
    sample_every_n_epochs: int = _f(1, "Sample every N epochs; 0 = never", min=0, max=1000, advanced=True)
    sample_steps: int = _f(20, "Sampling steps for previews", min=1, max=150, advanced=True)
    sample_seed: int = _f(29464874, "Fixed seed for previews, so epochs compare", min=0, max=2**32 - 1, advanced=True)

    # LR probe → real run
    probe_divisor: float = _f(3.0, "Real run's UNet LR = probe's d·lr ÷ this", min=0.001, max=1000)
    te_lr_divisor: float = _f(10.0, "Text-encoder LR = UNet LR ÷ this", min=0.001, max=1000)
    probe_min_images: int = _f(420, "The LR probe trains whole epochs until it has shown this many images (the seed's "
                               "one epoch: 70 frames × repeat 6); 0 = exactly one epoch", min=0, max=100000,
                               advanced=True)

    def resolved_te_lr(self) -> float:
        """The text-encoder LR in force: explicit te_lr, or unet_lr ÷ te_lr_divisor."""
        return self.unet_lr / self.te_lr_divisor if self.te_lr is None else self.te_lr

    def validate(self) -> "TrainConfig":
        """Check every field's type, range and choices; raise UserError naming the field."""
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if value is None:
                if f.name == "te_lr":
                    continue
                raise UserError(f"'{f.name}' is missing", meta.get("help", ""))
            if meta.get("choices") and value not in meta["choices"]:
                raise UserError(f"'{f.name}' is {value!r}; allowed: {', '.join(meta['choices'])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    raise UserError(f"'{f.name}' must be a finite number, got {value}")
                lo, hi = meta.get("min"), meta.get("max")
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    raise UserError(f"'{f.name}' is {value}; allowed range {lo} … {hi}")
        if self.min_bucket_reso > self.max_bucket_reso:
            raise UserError("'min_bucket_reso' is larger than 'max_bucket_reso'")
        if not self.name or any(c in self.name for c in '/\\:*?"<>|'):
            raise UserError(f"'name' {self.name!r} cannot be a file name", "use letters, digits, '-' and '_'")
        return self

    def to_dict(self) -> dict:
        """All fields as plain TOML-ready values (None left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def changed_fields(self) -> dict:
        """Only the fields that differ from the defaults (what a sparse preset holds)."""
        base = TrainConfig()
        return {k: v for k, v in self.to_dict().items() if getattr(base, k) != v}


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


def field_info(name: str) -> dict:
    """Help text, choices, range and 'advanced' flag of one field (for CLI help and the UI form)."""
    for f in fields(TrainConfig):
        if f.name == name:
            return dict(f.metadata)
    raise KeyError(name)


def _field_type(name: str) -> str:
    return {f.name: str(f.type) for f in fields(TrainConfig)}[name]


def coerce(name: str, value: Any) -> Any:
    """Turn a value from TOML, the CLI or a UI widget into the field's type, or raise UserError."""
    if name not in FIELD_NAMES:
        close = [n for n in FIELD_NAMES if n.startswith(name[:3])]
        hint = f"did you mean {', '.join(close)}?" if close else "see 'lora-studio train --help-fields'"
        raise UserError(f"unknown field '{name}'", hint)
    kind = _field_type(name)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if kind.startswith("float"):
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "auto")):
                if "None" in kind:
                    return None
                raise ValueError(value)
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind.startswith("list"):
            if isinstance(value, str):
                return [p.strip() for p in value.split("|") if p.strip()]
            return [str(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"'{name}' cannot be {value!r}", f"expected {kind}: {field_info(name)['help']}") from None


def config_from_dict(values: dict, base: TrainConfig | None = None) -> TrainConfig:
    """Apply values over a base config (defaults if none), coercing and validating each field."""
    values = dict(values)
    version = values.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise UserError(f"preset schema_version {version} is not supported (this LoRA Studio reads {SCHEMA_VERSION})",
                        "re-save the preset from this version of the studio")
    changes = {k: coerce(k, v) for k, v in values.items()}
    return dataclasses.replace(base or TrainConfig(), **changes).validate()


def parse_overrides(pairs: list[str]) -> dict:
    """Turn CLI `--set key=value` strings into a dict, keeping values as text for coerce()."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair!r} is not key=value", "for example --set batch_size=2")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_toml(path: str | Path) -> dict:
    """Read a TOML file into a dict, with a clear error for syntax mistakes."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path.name} is not valid TOML: {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def dump_toml(values: dict, header: str = "") -> str:
    """Write a flat dict as TOML (tomllib reads only; our files are flat, so a writer is a few lines)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for key, value in values.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def save_config(config: TrainConfig, path: str | Path, sparse: bool = False, header: str = "",
                preset: str = "") -> Path:
    """Write a config (or only its changes, for presets) to TOML atomically; preset labels a run's job.toml."""
    path = Path(path)
    values = {"schema_version": SCHEMA_VERSION, **({"preset": preset} if preset else {}),
              **(config.changed_fields() if sparse else config.to_dict())}
    from lora_studio.runfiles import atomic_write  # a leaf module, like errors

    return atomic_write(path, dump_toml(values, header))


def load_config(path: str | Path) -> TrainConfig:
    """Read a full or sparse config TOML file into a validated TrainConfig (a run's preset label is not a field)."""
    values = load_toml(path)
    values.pop("preset", None)
    return config_from_dict(values)


# --- the XY plot ---------------------------------------------------------------------------------

XY_SHARE_FORMATS = ("", "jpeg", "webp")
XY_SCORERS = ("", "toy", "anime")  # "" = the toy judge on the toy model, the anime models otherwise
XY_DEFAULT_Y = "weight=0,0.3,0.5,0.6,0.7,0.8,0.9,1"


@dataclass
class XYPlotConfig:
    """One XY plot of a run's epoch files: the `lora-studio xy` flags, the XY tab's form and an xy job's [xy] table.

    Axis specs are A1111's X/Y/Z script in words: 'epoch' (every epoch file), 'epoch=1-8', 'weight=0,0.5,1',
    'sr=a,b', 'seed=…', 'cfg=…', 'steps=…', 'sampler=…', 'clip_skip=…', 'run=DIR1,DIR2'
    (generate/xy_plan.py parses them). `cli` names a flag whose name is not the field's.
    """

    base: str = _f("toy", "SD1.5 base: 'toy', a diffusers folder, a .safetensors file or a hub id", cli_required=True)
    run: str = _f("", "run folder with NAME-000001.safetensors … (optional when the Z axis gives runs)")
    prompt: str = _f("", "A1111 prompt; <lora:NAME-000001:0> marks the run's LoRA", cli_required=True,
                     label="Prompt")
    negative: str = _f("", "negative prompt", label="Negative prompt")
    x: str = _f("epoch", "X axis: KIND=VALUES, e.g. weight=0,0.5,1 or epoch=1-8; 'epoch' alone is every epoch file",
                cli_required=True)
    y: str = _f(XY_DEFAULT_Y, "Y axis, same forms as X", cli_default="")
    z: str = _f("", "Z axis, e.g. run=DIR1,DIR2: one grid per value plus a combined sheet")
    sr: str = _f("", "Prompt S/R values 'find,replace1,replace2'; an axis named 'sr' without values uses them, "
                 "else they become the first free axis")
    seed: int = _f(-1, "seed for every cell (-1: one random seed); fixed, a re-run reuses cached cells",
                   min=-1, max=2**32 - 1, label="Seed")
    sampler: str = _f("DPM++ 2M Karras", "A1111 sampler name", label="Sampler")
    steps: int = _f(20, "sampling steps", min=1, max=150, label="Steps")
    cfg: float = _f(7.0, "CFG scale", min=1.0, max=30.0, label="CFG scale")
    size: str = _f("512x512", "WIDTHxHEIGHT; the run's resolution", label="Size")
    clip_skip: int = _f(2, "A1111 'Clip skip' (2 for anime models)", min=1, max=12, label="Clip skip")
    batch_size: int = _f(0, "cells rendered together when they share a LoRA state (0: 1 on a CPU, 4 on a GPU)",
                         min=0, max=64, advanced=True, label="Batch size")
    margin: int = _f(0, "pixels between cells", min=0, max=512, advanced=True, label="Grid margin (px)")
    legend: bool = _f(True, "draw the axis labels", advanced=True, cli="--no-legend", label="Draw legend")
    use_cache: bool = _f(True, "reuse cached cells (off: render every cell again)", advanced=True, cli="--no-cache",
                         label="Reuse cached cells")
    share: str = _f("jpeg", "also write a small copy to post: jpeg, webp, or empty for none",
                    choices=XY_SHARE_FORMATS, advanced=True, cli_default="", label="Copy to post")
    score: bool = _f(False, "score every cell (fidelity, adherence, quality) and recommend an epoch × weight",
                     label="Score the cells")
    scorer: str = _f("", "scorer: toy (the toy judge) or anime (CCIP + WD14 tagger + AI-corrupt); "
                     "empty: toy for the toy model, else anime", choices=XY_SCORERS, cli_default="",
                     advanced=True, label="Scorer")
    score_dataset: str = _f("", "the character's frames to compare with (empty: the run's own dataset)",
                            advanced=True, label="Character frames (dataset)")
    beta: float = _f(3.0, "F-β of fidelity and adherence that ranks the cells (β > 1 weighs fidelity more, as cyberharem)",
                     min=0.1, max=10.0, advanced=True, label="Ranking β")
    badges: bool = _f(False, "draw each cell's score badge on the grid PNG itself (and so on the copy to post); "
                      "a scored grid always gets a badged copy beside it, xy_grid-NNNN-scored.png",
                      advanced=True, label="Score badges on the grid")

    def validate(self) -> "XYPlotConfig":
        """Check types, ranges and choices (the planner checks the axes and files); UserError names the field."""
        kinds = {f.name: str(f.type) for f in fields(self)}
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            ok = {"int": isinstance(value, int) and not isinstance(value, bool), "bool": isinstance(value, bool),
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                  "str": isinstance(value, str)}[kinds[f.name]]
            if not ok:
                raise UserError(f"XY field {f.name!r} is {value!r}, expected {kinds[f.name]}")
            if meta.get("choices") and value not in meta["choices"]:
                raise UserError(f"XY field {f.name!r} is {value!r}; allowed: "
                                + ", ".join(repr(c) for c in meta["choices"]))
        return self

    def to_dict(self) -> dict:
        """Every field as a TOML-ready value."""
        return dataclasses.asdict(self)


XY_FIELD_NAMES = tuple(f.name for f in fields(XYPlotConfig))


def xy_field_info(name: str) -> dict:
    """Help text, choices, range, label and CLI form of one XY field (for the CLI flags and the XY form)."""
    for f in fields(XYPlotConfig):
        if f.name == name:
            return {**dict(f.metadata), "type": str(f.type), "default": f.default}
    raise KeyError(name)


def xy_config_from_dict(values: dict) -> XYPlotConfig:
    """An [xy] table (or any dict of XY fields) into a validated XYPlotConfig, naming an unknown field."""
    unknown = [k for k in values if k not in XY_FIELD_NAMES]
    if unknown:
        raise UserError(f"unknown XY field {unknown[0]!r}", "fields: " + ", ".join(XY_FIELD_NAMES))
    kinds = {f.name: str(f.type) for f in fields(XYPlotConfig)}
    # TOML writes 7.0 as 7.0, but a hand-edited cfg = 7 is an int: both mean the float.
    values = {k: float(v) if kinds[k] == "float" and isinstance(v, int) and not isinstance(v, bool) else v
              for k, v in values.items()}
    return XYPlotConfig(**values).validate()


# --- the batch-size study ------------------------------------------------------------------------

STUDY_LR_SCALING = ("same", "sqrt")
STUDY_DEFAULT_PROMPTS = ("", "sitting on tree", "lying on beach")


@dataclass
class StudyConfig:
    """The seed's batch-size study as one job: `lora-studio study` flags, the Train tab's study panel, [study] in job.toml.

    The training settings are a TrainConfig (the preset, at each batch size); these are the study's own:
    which batch sizes, which prompts (the trigger word and the run's <lora:…> tag are added; an empty
    prompt is the character prompt: trigger + the tags on most kept frames), and how each grid is drawn.
    """

    batch_sizes: list[int] = _f(None, "Batch sizes to train, one run each", factory=lambda: [1, 2, 3, 4],
                                label="Batch sizes")
    prompts: list[str] = _f(None, "Study prompts (up to 3): empty = the character prompt; the trigger and the LoRA "
                            "tag are added", factory=lambda: list(STUDY_DEFAULT_PROMPTS), label="Study prompts")
    weights: str = _f("0,0.3,0.5,0.6,0.7,0.8,0.9,1", "LoRA weights of every grid (its Y axis)", label="Weights")
    lr_scaling: str = _f("same", "Learning rate across batch sizes: 'same' (the seed) or 'sqrt' (unet/te LR × "
                         "√(batch ÷ the preset's batch))", choices=STUDY_LR_SCALING, label="LR across batch sizes")
    negative: str = _f("", "negative prompt of every grid", label="Negative prompt")
    seed: int = _f(1234, "fixed seed of every cell", min=0, max=2**32 - 1, label="Seed")
    # One seed per cell is the seed's grid, but a judge of one picture is a coin toss where a LoRA is
    # recognised in some seeds and not others (benchmarks/study.md): more seeds, steadier verdicts.
    seeds: int = _f(1, "seeds per cell: each grid is drawn again with seed+1, seed+2, …; a cell's scores are "
                    "their mean (each seed costs one more set of grids)", min=1, max=8, label="Seeds per cell")
    sampler: str = _f("DPM++ 2M Karras", "A1111 sampler name", label="Sampler")
    steps: int = _f(20, "sampling steps", min=1, max=150, label="Steps")
    cfg: float = _f(7.0, "CFG scale", min=1.0, max=30.0, label="CFG scale")
    scorer: str = _f("", "scorer: toy or anime; empty: toy for the toy model, else anime", choices=XY_SCORERS,
                     label="Scorer")
    beta: float = _f(3.0, "F-β of fidelity and adherence that ranks the cells", min=0.1, max=10.0, label="Ranking β")

    def validate(self) -> "StudyConfig":
        """Check the batch sizes, prompts and choices; UserError names the field."""
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 64
                                       for b in self.batch_sizes):
            raise UserError(f"study batch sizes {self.batch_sizes!r}: give 1 to 64, e.g. 1,2,3,4")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise UserError(f"study batch sizes {self.batch_sizes!r} repeat a size")
        if not 1 <= len(self.prompts) <= 3:
            raise UserError(f"a study has 1 to 3 prompts, not {len(self.prompts)}")
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise UserError(f"study field {f.name!r} is {value!r}; allowed: "
                                + ", ".join(repr(c) for c in meta["choices"]))
            lo, hi = meta.get("min"), meta.get("max")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                    (lo is not None and value < lo) or (hi is not None and value > hi)):
                raise UserError(f"study field {f.name!r} is {value}; allowed range {lo} … {hi}")
        return self

    def to_dict(self) -> dict:
        """Every field as a TOML-ready value."""
        return dataclasses.asdict(self)


STUDY_FIELD_NAMES = tuple(f.name for f in fields(StudyConfig))


def study_config_from_dict(values: dict) -> StudyConfig:
    """A [study] table (or any dict of study fields) into a validated StudyConfig, naming an unknown field."""
    unknown = [k for k in values if k not in STUDY_FIELD_NAMES]
    if unknown:
        raise UserError(f"unknown study field {unknown[0]!r}", "fields: " + ", ".join(STUDY_FIELD_NAMES))
    values = dict(values)
    if isinstance(values.get("batch_sizes"), str):  # "1,2,3,4" from a CLI flag or a text box
        try:
            values["batch_sizes"] = [int(b) for b in values["batch_sizes"].replace(" ", "").split(",") if b]
        except ValueError:
            raise UserError(f"study batch sizes {values['batch_sizes']!r}: give whole numbers, e.g. 1,2,3,4") from None
    for name in ("cfg", "beta"):
        if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
            values[name] = float(values[name])
    return StudyConfig(**values).validate()
