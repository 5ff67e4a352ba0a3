"""Characters: a name with its last-used settings (trigger word, frame folder, recipe), kept on disk."""

from __future__ import annotations

from pathlib import Path

from lora_studio import paths
from lora_studio.config import TrainConfig, load_config, save_config
from lora_studio.errors import UserError

SETTINGS_FILE = "last-settings.toml"


def settings_path(name: str) -> Path:
    """projects/<name>/last-settings.toml."""
    if name.strip(". ") == "":
        raise UserError(f"{name!r} cannot be a character name", "use letters, digits, '-' and '_'")
    return paths.projects_dir() / name / SETTINGS_FILE


def list_characters() -> list[str]:
    """Names of characters with remembered settings, sorted."""
    root = paths.projects_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{SETTINGS_FILE}"))


def remember(config: TrainConfig) -> Path:
    """Store the full config as this character's last-used settings."""
    path = settings_path(config.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_config(config, path, header=f"last settings used for {config.name}")


def last_settings(name: str) -> TrainConfig | None:
    """The remembered settings of a character, or None for a new one."""
    path = settings_path(name)
    return load_config(path) if path.is_file() else None
