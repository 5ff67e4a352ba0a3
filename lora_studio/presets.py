"""Presets: sparse TOML files in presets/ (shipped) and the user's preset folder."""

from __future__ import annotations

import re
from pathlib import Path

from lora_studio import paths
from lora_studio.config import TrainConfig, config_from_dict, load_toml, save_config
from lora_studio.errors import UserError


def preset_dirs() -> list[Path]:
    """Search order: the user's presets shadow the shipped ones of the same name."""
    return [paths.user_presets_dir(), paths.builtin_presets_dir()]


def list_presets() -> list[str]:
    """Names of all presets, shipped and user-saved, sorted, without duplicates."""
    names = set()
    for folder in preset_dirs():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def preset_path(name_or_file: str) -> Path:
    """Resolve a preset name or a path to a .toml file."""
    candidate = Path(name_or_file)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    for folder in preset_dirs():
        path = folder / f"{name_or_file}.toml"
        if path.is_file():
            return path
    raise UserError(f"no preset named '{name_or_file}'", f"available: {', '.join(list_presets())}")


def load_preset(name_or_file: str, base: TrainConfig | None = None) -> TrainConfig:
    """Apply a preset's fields over base (or defaults); unknown fields are refused by name."""
    path = preset_path(name_or_file)
    try:
        return config_from_dict(load_toml(path), base)
    except UserError as exc:
        raise UserError(f"preset {path.name}: {exc.message}", exc.hint) from None


# Fields that say whose LoRA it is; applying a preset keeps them, so they never count as an edit.
CHARACTER_FIELDS = ("name", "trigger_word", "dataset", "base_model")


def preset_label(name: str | None, config: TrainConfig) -> str:
    """What a run says it was trained with: the preset's name, or 'name (edited)' if fields were changed."""
    if not name:
        return ""
    try:
        applied = load_preset(name, base=TrainConfig(**{f: getattr(config, f) for f in CHARACTER_FIELDS}))
    except UserError:
        return ""
    return name if applied.to_dict() == config.to_dict() else f"{name} (edited)"


def save_preset(config: TrainConfig, name: str, note: str = "") -> Path:
    """Save the config's changes from the defaults as a user preset (dataset and model left out)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name):
        raise UserError(f"preset name {name!r} is not usable as a file name", "use letters, digits, space, '-', '_'")
    folder = paths.user_presets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    portable = TrainConfig(**{**config.to_dict(), "dataset": "", "base_model": TrainConfig().base_model})
    if config.te_lr is None:
        portable.te_lr = None
    return save_config(portable, folder / f"{name}.toml", sparse=True, header=note)
