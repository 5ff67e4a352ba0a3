"""Where the studio keeps things on this machine (platformdirs), overridable for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "lora-studio"


def project_root() -> Path:
    """The source checkout (or installed package parent) holding assets/ and presets/."""
    return Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """Shipped assets: SD1.5 config files, the toy model."""
    return project_root() / "assets"


def builtin_presets_dir() -> Path:
    """Presets shipped with the project."""
    return project_root() / "presets"


def data_home() -> Path:
    """Root of the user's studio data; LORA_STUDIO_HOME overrides it (tests, portable installs)."""
    env = os.environ.get("LORA_STUDIO_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP))


def user_presets_dir() -> Path:
    """Presets the user saved from the studio."""
    return data_home() / "presets"


def runs_dir() -> Path:
    """Job folders: runs/<job-id>/ with job.toml, events.jsonl, checkpoints."""
    return data_home() / "runs"


def projects_dir() -> Path:
    """Per-character state: review decisions, last-used settings."""
    return data_home() / "projects"


def cache_dir() -> Path:
    """Caches: rendered XY cells, latents."""
    env = os.environ.get("LORA_STUDIO_HOME")
    return Path(env) / "cache" if env else Path(platformdirs.user_cache_dir(APP))
