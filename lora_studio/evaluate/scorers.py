"""The scorer backends by name, loaded only when asked (importing this loads no model)."""

from __future__ import annotations

import importlib

from lora_studio.errors import UserError

# name → (module, loader, what it is); a new backend is one line here and its module.
BACKENDS = {
    "toy": ("lora_studio.evaluate.toy", "load_toy_scorer", "the toy judge, for the built-in toy model (no download)"),
    "anime": ("lora_studio.evaluate.anime", "load_anime_scorer",
              "CCIP + a WD14 tagger + the AI-corrupt classifier (deepghs ONNX models, downloaded once)"),
}


def default_scorer_name(base_model: str) -> str:
    """The toy judge for the toy model, the anime models for every real SD1.5 base."""
    return "toy" if str(base_model).strip().lower() == "toy" else "anime"


def load_scorer(name: str, **options):
    """A scorer backend by name ('toy', 'anime')."""
    key = name.strip().lower()
    if key not in BACKENDS:
        raise UserError(f"unknown scorer {name!r}", "scorers: " + ", ".join(BACKENDS))
    module, loader, _what = BACKENDS[key]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UserError(f"the {key!r} scorer needs {exc.name!r}, which is not installed",
                        "pip install -e . installs the project's dependencies") from exc
    return getattr(mod, loader)(**options)
