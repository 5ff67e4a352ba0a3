"""A1111's `parameters` text (what PNG Info shows) and the hashes it names.

The format, as A1111's processing.create_infotext writes it:

    <prompt>
    Negative prompt: <negative>            (line left out when the negative prompt is empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, …

A value holding ',', ':' or a newline is written as a JSON string ("quoted"), as A1111's
infotext_utils.quote does; every reader of A1111 PNGs splits the last line that way.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

from lora_studio import paths, runfiles


def quote(value) -> str:
    """A1111's quoting: plain text unless it holds ',', ':' or a newline, then a JSON string."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_number(value) -> str:
    """7.0 → '7', 7.5 → '7.5': how A1111's sliders print whole numbers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_infotext(prompt: str, negative: str, params: dict) -> str:
    """The full `parameters` text: prompt, optional negative line, then 'Key: value, …' (None skipped)."""
    fields = ", ".join(f"{key}: {quote(format_number(value))}" for key, value in params.items()
                       if value is not None)
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{fields}".strip()


def generation_params(*, steps: int, sampler: str, schedule: str, cfg: float, seed: int, width: int,
                      height: int, model_hash: str | None, model: str | None, clip_skip: int,
                      lora_hashes: dict[str, str]) -> dict:
    """The generation fields in A1111's order (A1111 writes 'Clip skip' only when it is above 1)."""
    return {
        "Steps": steps,
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": float(cfg),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        # A1111's Lora extension: "alias: shorthash" pairs, alias without ':' or ','.
        "Lora hashes": ", ".join(f"{n.replace(':', '').replace(',', '')}: {h}" for n, h in lora_hashes.items())
        or None,
    }


def cell_infotext(cell, model_name: str, model_hash: str, extra: dict | None = None) -> str:
    """One XY cell's `parameters` text: its prompt, settings and every LoRA its tags name (weight 0 too)."""
    from lora_studio.generate.pipeline import parse_sampler

    sampler, schedule = parse_sampler(cell.sampler)
    hashes = {}
    for name, path, _, _ in cell.loras:
        hashes.setdefault(name, lora_hash(path))
    params = generation_params(steps=cell.steps, sampler=sampler, schedule=schedule, cfg=cell.cfg, seed=cell.seed,
                               width=cell.width, height=cell.height, model_hash=model_hash, model=model_name,
                               clip_skip=cell.clip_skip, lora_hashes=hashes)
    return build_infotext(cell.prompt, cell.negative, {**params, **(extra or {})})


def xyz_params(axes: list[tuple[str, str, str]]) -> dict:
    """The X/Y/Z script's fields for (letter, type, values-text) per axis; a Run axis lists run names.

    A grid is made to be posted: its text names runs (`bs1,bs2`), never the folders they live in,
    which would carry the user's home folder and name.
    """
    params = {"Script": "X/Y/Z plot"}
    for letter, kind, values in axes:
        if kind == "Run":
            names = [Path(v.strip()).name for v in next(csv.reader([values], skipinitialspace=True)) if v.strip()]
            values = ",".join(quote(name) for name in names)
        params[f"{letter} Type"] = kind
        params[f"{letter} Values"] = without_local_paths(values)
    return params


# an absolute path (POSIX, home-relative or Windows), up to a comma, quote or blank: its last part is group 1
_LOCAL_PATH = re.compile(r'(?<![\w.:/\\~])(?:~|[A-Za-z]:)?[/\\](?:[^\s,"/\\]+[/\\])*([^\s,"/\\]+)')


def without_local_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part (`/home/ann/runs/bs1` → `bs1`).

    The last guard before a file leaves the machine; the fields themselves should name things.
    """
    home = str(Path.home())
    if len(home) > 1:
        text = text.replace(home, "~")
    return _LOCAL_PATH.sub(lambda m: m.group(1), text)


# --- hashes ------------------------------------------------------------------------------------

def _hash_cache_path() -> Path:
    return paths.cache_dir() / "hashes.json"


_MEMO: dict[tuple, str] = {}


def _cached(key: str, files: list[Path], compute) -> str:
    """compute() once per (key, size and mtime of files); a 2-4 GB checkpoint takes seconds to hash."""
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    memo_key = (key, json.dumps(stamp))
    if memo_key not in _MEMO:
        _MEMO[memo_key] = _cached_on_disk(key, stamp, compute)
    return _MEMO[memo_key]


def _cached_on_disk(key: str, stamp: list, compute) -> str:
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if entry and entry.get("stamp") == stamp:
        return entry["hash"]
    value = compute()
    cache[key] = {"stamp": stamp, "hash": value}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=0), encoding="utf-8")
    tmp.replace(cache_file)
    return value


def _sha256_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_hash(base) -> str:
    """A1111's 'Model hash' (first 10 hex digits of the checkpoint's sha256).

    For a diffusers folder, which A1111 cannot load, it is the sha256 of its weight files in order;
    for anything else (a hub id without a local path) the sha256 of its name.
    """
    source = Path(str(base.source)).expanduser()
    files = [source] if source.is_file() else sorted(source.glob("*/*.safetensors")) if source.is_dir() else []
    if files:
        return _cached(f"model:{source.resolve()}", files, lambda: _sha256_files(files))[:10]
    return hashlib.sha256(str(base.source).encode()).hexdigest()[:10]


def lora_hash(path: Path) -> str:
    """A1111's short LoRA hash for 'Lora hashes' (sha256 of the tensor data, 12 hex digits)."""
    from lora_studio.train.lora_file import lora_file_hash

    path = Path(path)
    return _cached(f"lora:{path.resolve()}", [path], lambda: lora_file_hash(path))


# --- the training recipe, for sharing a grid ---------------------------------------------------

def training_recipe(run_dir: Path) -> dict[str, str]:
    """Preset, batch size, LRs, epochs … of a run: from its job.toml, else its LoRA files' ss_* metadata."""
    import tomllib

    run_dir = Path(run_dir)
    job = run_dir / runfiles.JOB_FILE
    if job.is_file():
        try:
            with job.open("rb") as fh:
                values = tomllib.load(fh)
        except tomllib.TOMLDecodeError:
            values = {}
        if values:
            unet_lr = values.get("unet_lr")
            te_lr = values.get("te_lr")
            if te_lr is None and unet_lr is not None:
                te_lr = unet_lr / values.get("te_lr_divisor", 10.0)
            return _recipe(values.get("preset"), values.get("batch_size"), unet_lr, te_lr, values.get("epochs"),
                           values.get("optimizer"), values.get("network_dim"), values.get("network_alpha"))
    from lora_studio.train.lora_file import read_metadata

    files = sorted(run_dir.glob("*.safetensors"))
    if not files:
        return {}
    meta = read_metadata(files[-1])
    optimizer = meta.get("ss_optimizer", "")
    return _recipe(None, meta.get("ss_batch_size_per_device"), meta.get("ss_unet_lr"), meta.get("ss_text_encoder_lr"),
                   meta.get("ss_num_epochs"), optimizer.rsplit(".", 1)[-1] or None, meta.get("ss_network_dim"),
                   meta.get("ss_network_alpha"))


def _recipe(preset, batch_size, unet_lr, te_lr, epochs, optimizer, dim, alpha) -> dict[str, str]:
    def number(value) -> str:
        try:
            return f"{float(value):.3g}" if not float(value).is_integer() or float(value) < 1 else str(int(float(value)))
        except (TypeError, ValueError):
            return str(value)

    # a preset started from a file is named by the file's name: its folder is the user's
    preset = without_local_paths(str(preset)) if preset is not None else None
    items = {"preset": preset, "batch size": batch_size, "unet lr": unet_lr, "te lr": te_lr, "epochs": epochs,
             "optimizer": optimizer, "dim": dim, "alpha": alpha}
    return {k: number(v) if k not in ("preset", "optimizer") else str(v) for k, v in items.items() if v is not None}


def recipe_text(recipes: list[tuple[str, dict[str, str]]]) -> str:
    """'batch size: 1, unet lr: 0.0001, …' for one run; 'bs1 (…); bs2 (…)' for several."""
    parts = [", ".join(f"{k}: {v}" for k, v in recipe.items()) for _, recipe in recipes]
    if len(recipes) == 1:
        return parts[0]
    return "; ".join(f"{label} ({part})" for (label, _), part in zip(recipes, parts) if part)
