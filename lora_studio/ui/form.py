"""The training form, built from TrainConfig's own field metadata (help, choices, range, advanced).

A new config field appears here without touching this file. Handlers get the form as a dict of
field name → value, never as a positional list.
"""

from __future__ import annotations

from dataclasses import fields

import gradio as gr

from lora_studio.config import TrainConfig, coerce, config_from_dict, field_info
from lora_studio.errors import UserError

# What a hobbyist sets for every character (the list); the rest is folded away.
ESSENTIAL = ("base_model", "dataset", "trigger_word", "epochs", "repeats", "batch_size", "unet_lr", "te_lr",
             "optimizer", "scheduler")
LABELS = {
    "base_model": "base_model (checkpoint: 'toy', a .safetensors file, a diffusers folder or a hub id)",
    "dataset": "dataset (frame folder)",
    "te_lr": "te_lr (empty = unet_lr ÷ te_lr_divisor)",
    "sample_prompts": "sample_prompts (one per line)",
}


_KINDS = {f.name: str(f.type) for f in fields(TrainConfig)}


def label(name: str) -> str:
    """The field's own name is its label, as in TOML and `--set` (a few get a reminder)."""
    return LABELS.get(name, name)


def range_words(name: str) -> str:
    """A numeric field's range as the user reads it: 'a whole number from 1 to 64'."""
    info = field_info(name)
    what = "a whole number" if _KINDS[name] == "int" else "a number"
    lo, hi = (_plain(info.get(k)) for k in ("min", "max"))
    if lo is not None and hi is not None:
        return f"{what} from {lo} to {hi}"
    return what + (f" of at least {lo}" if lo is not None else f" up to {hi}" if hi is not None else "")


def _plain(number) -> str | None:
    """4294967295, 0.001 or 10 (not 4.29497e+09 or 10.0)."""
    if number is None:
        return None
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _component(name: str, kind: str, value):
    info = field_info(name)
    common = {"label": label(name), "info": info["help"], "elem_id": f"field-{name}"}
    if info.get("choices"):
        return gr.Dropdown(list(info["choices"]), value=value, **common)
    if kind == "bool":
        return gr.Checkbox(value=value, **common)
    # Numbers get no minimum/maximum/precision here: Gradio would clamp or round a typed value silently,
    # or fail in preprocessing with a traceback and no message. read_form() refuses it with the range instead.
    if kind == "int":
        return gr.Number(value=value, step=1, **common)
    if kind.startswith("float") and "None" in kind:
        # gr.Number shows None as 0, which for te_lr means "freeze": an empty text box keeps "auto" visible.
        return gr.Textbox(value=value, placeholder="auto", **common)
    if kind.startswith("float"):
        return gr.Number(value=value, step=1e-6, **common)
    if kind.startswith("list"):
        return gr.Textbox(value=value, lines=3, **common)
    return gr.Textbox(value=value, **common)


def to_widget(name: str, value):
    """A config value as its widget shows it."""
    if name == "sample_prompts":
        return "\n".join(value or [])
    if _KINDS[name] == "float | None":
        return "" if value is None else f"{value:g}"
    return value


def build_fields(config: TrainConfig, names) -> dict:
    """Create one component per field name (in the current layout context), keyed by name."""
    return {name: _component(name, _KINDS[name], to_widget(name, getattr(config, name))) for name in names}


def values_of(config: TrainConfig, components: dict) -> dict:
    """Output dict {component: value} that shows config in the form."""
    return {comp: to_widget(name, getattr(config, name)) for name, comp in components.items()}


def read_form(data: dict, components: dict) -> TrainConfig:
    """The validated config from a handler's {component: value}; UserError names a bad field."""
    values = {}
    for name, comp in components.items():
        value = data[comp]
        if name == "sample_prompts":
            value = [line.strip() for line in (value or "").splitlines() if line.strip()]
        elif _KINDS[name] in ("int", "float") or (_KINDS[name] == "float | None" and not _is_auto(value)):
            value = _number(name, value)
        values[name] = value
    return config_from_dict(values)


def _is_auto(value) -> bool:
    return value is None or str(value).strip().lower() in ("", "auto", "none")


def _number(name: str, value):
    """A typed number, refused (never clamped) when empty or out of the field's range."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"'{name}' is empty", f"type {range_words(name)}")
    number = coerce(name, value)
    info = field_info(name)
    if (info.get("min") is not None and number < info["min"]) or (info.get("max") is not None and number > info["max"]):
        raise UserError(f"'{name}' cannot be {_plain(number)}", f"type {range_words(name)}")
    return number
