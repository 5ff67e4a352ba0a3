"""Load an SD1.5 base model: 'toy', a diffusers folder, a hub id, or one .safetensors file.

Everything returns a BaseModel (models/base.py): the four SD1.5 parts plus a DDPM noise scheduler for
training. This module only picks the loader; the loaders import base.py, never this module.
"""

from __future__ import annotations

from pathlib import Path

from lora_studio import paths
from lora_studio.errors import UserError
from lora_studio.models.base import (BaseModel, check_sd15, describe_source,  # noqa: F401 (callers import them here)
                                     load_diffusers_folder)
from lora_studio.models.hub import load_hub_model
from lora_studio.models.single_file import load_single_file


def toy_model_dir() -> Path:
    """The toy world's pretrained base model, shipped as a diffusers folder."""
    return paths.assets_dir() / "toy-model"


def load_base(spec: str, device: str = "cpu", dtype=None) -> BaseModel:
    """Load a base model from any supported spec, with a clear UserError when it cannot."""
    kind = describe_source(spec)
    if kind == "toy":
        folder = toy_model_dir()
        if not (folder / "model_index.json").is_file():
            raise UserError("the toy model is not in assets/toy-model",
                            "regenerate it with 'python -m lora_studio.toy.pretrain'")
        base = load_diffusers_folder(folder, name="toy")
    elif kind == "folder":
        base = load_diffusers_folder(Path(spec).expanduser())
    elif kind == "single_file":
        base = load_single_file(Path(spec).expanduser())
    else:
        base = load_hub_model(spec)
    return base.to(device, dtype)
