"""The XY(Z) plot: cells (generate/xy_plan.py) → images → labelled grid, fast by construction.

Speed: the base model is loaded once by the caller; each LoRA file is loaded once as an adapter
and switched by weight; cells are cached on disk by everything that decides their pixels (a LoRA
at weight 0 is not part of that, so the weight-0 row is one image per prompt/seed, not one per
epoch); cells that share a LoRA state can be rendered as one batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from lora_studio import paths, runfiles
from lora_studio.generate.prompt import split_lora_tags
from lora_studio.generate.xy_plan import Cell, CellGrid, XYPlan, plan_cells

# Bump when rendering changes, so cached cells of the old code are not reused.
CACHE_VERSION = 2
# The Cell fields that do not decide its pixels: its place in the grid, and where its LoRA tags came from
# (the files' hashes and weights, from active_loras(), are in the key instead). Every other field is in
# the key, so a field a new axis adds to Cell can never serve stale cached pixels.
NOT_PIXELS = ("x", "y", "z", "run", "epoch", "weight", "loras")
# The XYPlotConfig fields that reach no Cell field, and why none of them decides a cell's pixels. Every
# other field must change the planned cells (test_xy checks it field by field): a new setting that
# decides pixels must become a Cell field, so the key above covers it, or the test fails.
SETTINGS_NOT_IN_CELLS = {
    "base": "its model hash is in the key",
    "batch_size": "cells of one LoRA state drawn together are the same images",
    "margin": "the grid's layout",
    "legend": "the grid's layout",
    "use_cache": "whether the cache is read",
    "share": "the copy to post",
    "score": "the judging after rendering",
    "scorer": "the judging after rendering",
    "score_dataset": "the judging after rendering",
    "beta": "the judging after rendering",
    "badges": "drawn on the grid after rendering",
}


def cell_key(cell: Cell, model_hash: str, device: str) -> str:
    """Everything that decides a cell's pixels; equal keys are the same image."""
    from lora_studio.generate.infotext import lora_hash
    from lora_studio.generate.pipeline import parse_sampler

    settings = {}
    for f in fields(cell):
        if f.name in NOT_PIXELS:
            continue
        value = getattr(cell, f.name)
        if f.name in ("prompt", "negative"):
            value = split_lora_tags(value)[0]  # its <lora:…> tags are the loras below
        elif f.name == "sampler":
            value = parse_sampler(value)  # A1111's aliases of one sampler are one image
        elif f.type == "float":
            value = float(value)  # cfg 7 and 7.0
        settings[f.name] = value
    loras = sorted((lora_hash(p), te, un) for p, te, un in cell.active_loras())
    return hashlib.sha256(json.dumps([CACHE_VERSION, model_hash, device, loras, settings], sort_keys=True,
                                     default=str).encode()).hexdigest()


def cache_path(key: str) -> Path:
    """Where a rendered cell is kept between plots."""
    return paths.cache_dir() / "xy-cells" / key[:2] / f"{key}.png"


# --- rendering ---------------------------------------------------------------------------------

@dataclass
class XYResult:
    """What a plot produced: grid files, cell files and how much work it took."""

    grid: Path | None
    grids: list[Path]
    cells: list[Path]
    rendered: int
    reused: int
    stopped: bool = False
    downscaled: bool = False
    lora_loads: int = 0


def cell_file_name(cell: Cell, sheets: int) -> str:
    """A cell's PNG inside xy_grid-NNNN/: x01-y01.png, z02-x01-y01.png when there are several sheets."""
    prefix = f"z{cell.z + 1:02d}-" if sheets > 1 else ""
    return f"{prefix}x{cell.x + 1:02d}-y{cell.y + 1:02d}.png"


def next_grid_number(output: Path) -> int:
    """A1111-style numbering: one more than the highest xy_grid-NNNN in the folder."""
    prefix = runfiles.XY_GRID_PREFIX
    numbers = [int(m.group(1)) for p in output.glob(prefix + "*") if (m := re.match(re.escape(prefix) + r"(\d{4,})", p.name))]
    return max(numbers, default=0) + 1


def _batches(keys: list[str], cells_by_key: dict[str, list[Cell]], size: int) -> list[list[str]]:
    # Cells can share a batch when only prompt, negative and seed differ.
    groups: dict[tuple, list[str]] = {}
    for key in keys:
        c = cells_by_key[key][0]
        signature = (tuple(c.active_loras()), c.sampler, c.steps, c.cfg, c.width, c.height, c.clip_skip)
        groups.setdefault(signature, []).append(key)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), max(1, size))]


def xy_plot(base, plan: XYPlan, output: Path | str, *, emit: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, planned: CellGrid | None = None) -> XYResult:
    """Render an XY(Z) plot into output/: xy_grid-NNNN.png, its cells in xy_grid-NNNN/, events via emit."""
    from PIL import Image

    from lora_studio.generate.grid import save_png, write_grids
    from lora_studio.generate.infotext import cell_infotext, xyz_params
    from lora_studio.generate.infotext import model_hash as compute_model_hash
    from lora_studio.generate.pipeline import LoraRenderer, check_size

    emit = emit or (lambda event: None)
    should_stop = should_stop or (lambda: False)
    grid_plan = planned or plan_cells(plan)
    check_size(base, *plan.cell_size)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    number = next_grid_number(output)
    stem = runfiles.xy_grid_stem(number)
    cell_dir = output / stem
    cell_dir.mkdir()
    columns, rows, sheets = grid_plan.shape

    model_hash = compute_model_hash(base)
    device = f"{base.unet.device.type}:{str(base.unet.dtype).removeprefix('torch.')}"
    cells_by_key: dict[str, list[Cell]] = {}
    for cell in grid_plan.cells:
        cells_by_key.setdefault(cell_key(cell, model_hash, device), []).append(cell)
    images: dict[str, object] = {}
    if plan.config.use_cache:
        for key in cells_by_key:
            if cache_path(key).is_file():
                with Image.open(cache_path(key)) as cached:
                    images[key] = cached.convert("RGB")
    to_render = [k for k in cells_by_key if k not in images]
    emit({"type": runfiles.XY_PLAN, "cells": len(grid_plan.cells), "columns": columns, "rows": rows, "grids": sheets,
          "to_render": len(to_render), "grid": str(output / f"{stem}.png")})

    cell_files: dict[tuple[int, int, int], Path] = {}
    rendered_keys: set[str] = set()

    def deliver(key: str, fresh: bool) -> None:
        for i, cell in enumerate(cells_by_key[key]):
            path = save_png(images[key], cell_dir / cell_file_name(cell, sheets),
                            cell_infotext(cell, base.name, model_hash))
            cell_files[(cell.x, cell.y, cell.z)] = path
            event = {"type": runfiles.CELL, "x": cell.x, "y": cell.y, "path": str(path), "rendered": fresh and i == 0}
            if sheets > 1:
                event["z"] = cell.z
            emit(event)

    for key in cells_by_key:
        if key in images:
            deliver(key, fresh=False)

    stopped = False
    renderer = LoraRenderer(base) if to_render else None
    try:
        for batch in _batches(to_render, cells_by_key, plan.batch_size):
            if should_stop():
                stopped = True
                break
            first = [cells_by_key[k][0] for k in batch]
            c0 = first[0]
            batch_images = renderer.images(
                c0.active_loras(), [c.prompt for c in first], [c.negative for c in first], [c.seed for c in first],
                sampler=c0.sampler, steps=c0.steps, cfg=c0.cfg, width=c0.width, height=c0.height,
                clip_skip=c0.clip_skip)
            for key, image in zip(batch, batch_images):
                images[key] = image
                rendered_keys.add(key)
                cache_path(key).parent.mkdir(parents=True, exist_ok=True)
                runfiles.atomic_write(cache_path(key), lambda fh, image=image: image.save(fh, format="PNG"))
                deliver(key, fresh=True)
    finally:
        loads = renderer.loads if renderer else 0
        if renderer:
            renderer.close()

    # --- the grid(s): the first cell's parameters plus the X/Y/Z description, as A1111 writes them
    key_of = {(c.x, c.y, c.z): k for k, cs in cells_by_key.items() for c in cs}
    letters = ["X", "Y", "Z"]
    axes_info = [(letters[i], a.label, a.text or ",".join(str(v) for v in a.values)) for i, a in enumerate(grid_plan.axes)]
    extra = {**xyz_params(axes_info), "Training": plan.recipe or None}
    grid_text = cell_infotext(grid_plan.cells[0], base.name, model_hash, extra)
    main_file, grid_files, downscaled = write_grids(
        {pos: images[key] for pos, key in key_of.items() if key in images}, grid_plan.shape,
        grid_plan.column_labels, grid_plan.row_labels, grid_plan.z_labels, plan.cell_size,
        output, stem, grid_text, margin=plan.config.margin, legend=plan.config.legend,
        max_megapixels=plan.max_megapixels)
    rendered = len(rendered_keys)
    delivered = len(cell_files)
    result = XYResult(main_file, grid_files, [cell_files[k] for k in sorted(cell_files, key=lambda t: (t[2], t[1], t[0]))],
                      rendered, delivered - rendered, stopped, downscaled, loads)
    emit({"type": runfiles.XY_DONE, "grid": str(main_file), "grids": [str(p) for p in grid_files], "rendered": rendered,
          "reused": delivered - rendered, "stopped": stopped, "downscaled": downscaled})
    return result
