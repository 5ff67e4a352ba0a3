"""report.png: a study's report as one PNG sheet to post, at most MAX_SIDE pixels on a side.

Top to bottom: the recommendation, what is not finished yet, the runs' table, the loss charts, each
prompt's heatmaps and picks, and each prompt's combined grid downscaled into what height is left.
The recommendation and the summary are also in the PNG's "lora_studio_study" text chunk (JSON), so a
program reads them without looking at pixels. Drawn with Pillow, as everything else here.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from lora_studio import runfiles
from lora_studio.generate.grid import label_font
from lora_studio.study import curves
from lora_studio.study.report import (TABLE_COLUMNS, grid_state, headline, heatmap_files, pick_text, run_rows,
                                      study_complete, study_file, summary_lines, unfinished)

MAX_SIDE = 4096
WIDTH = 1600
PAD = 24
TEXT_CHUNK = "lora_studio_study"
MIN_GRID_HEIGHT = 360  # below this a grid is a smudge: the sheet grows (then shrinks as a whole) instead


def _wrap(text: str, font, width: int) -> list[str]:
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and measure.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def text_block(lines: list[str], size: int = 16, *, fill="black", background="white", width: int = WIDTH) -> Image.Image:
    """Lines of text wrapped into width, on a background."""
    font = label_font(size)
    wrapped = [w for line in lines for w in (_wrap(line, font, width - 2 * PAD) or [""])]
    step = int(size * 1.45)
    image = Image.new("RGB", (width, step * len(wrapped) + 12), background)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(wrapped):
        draw.text((PAD, 6 + i * step), line, fill=fill, font=font)
    return image


def table_block(rows: list[dict], width: int = WIDTH) -> Image.Image:
    """The runs' table: batch size, LRs, best cell; the recommended run's row shaded."""
    font, bold = label_font(15), label_font(16)
    columns = (*TABLE_COLUMNS, "state")
    widths = [100, 70, 90, 90, 70, 70, 90, 100, 80, 70]
    widths.append(width - 2 * PAD - sum(widths))
    step = 26
    image = Image.new("RGB", (width, step * (len(rows) + 1) + 8), "white")
    draw = ImageDraw.Draw(image)
    for r, row in enumerate([None, *rows]):
        y = 4 + r * step
        if row is not None and row["recommended"]:
            draw.rectangle((PAD, y, width - PAD, y + step - 2), fill=(226, 242, 226))
        x = PAD
        for column, w in zip(columns, widths):
            text = column if row is None else row[column]
            if column == "state":
                text = _wrap(text, font, w - 8)[0] if text else ""
            draw.text((x + 4, y + 4), text, fill="black", font=bold if row is None else font)
            x += w
        draw.line((PAD, y + step - 2, width - PAD, y + step - 2), fill=(210, 210, 210))
    return image


def _row_of(images: list[Image.Image], width: int = WIDTH, gap: int = 20) -> Image.Image:
    """Images laid out left to right, wrapping into rows of at most width (each shrunk to fit if wider)."""
    fitted = []
    for im in images:
        if im.width > width - 2 * PAD:
            scale = (width - 2 * PAD) / im.width
            im = im.resize((int(im.width * scale), max(1, int(im.height * scale))), Image.LANCZOS)
        fitted.append(im)
    rows, row, used = [], [], PAD
    for im in fitted:
        if row and used + im.width > width - PAD:
            rows.append(row)
            row, used = [], PAD
        row.append(im)
        used += im.width + gap
    if row:
        rows.append(row)
    height = sum(max(im.height for im in r) + gap for r in rows)
    sheet = Image.new("RGB", (width, max(height, 1)), "white")
    y = 0
    for r in rows:
        x = PAD
        for im in r:
            sheet.paste(im.convert("RGB"), (x, y))
            x += im.width + gap
        y += max(im.height for im in r) + gap
    return sheet


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(1.0, width / image.width, height / image.height)
    if scale >= 1.0:
        return image
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.LANCZOS)


def draw_sheet(study: dict, study_dir: Path) -> Image.Image:
    """The report as one image."""
    study_dir = Path(study_dir)
    runs = study.get("runs", [])
    blocks = [text_block([f"Batch-size study: {study.get('name', '')}"], 30),
              text_block([headline(study)], 21, background=(232, 244, 232))]
    if not study_complete(study):
        blocks.append(text_block(["Not finished; the report shows what the study has so far:", *unfinished(study)],
                                 15, background=(255, 246, 224)))
    blocks += [text_block(summary_lines(study)[:1], 15, fill=(70, 70, 70)), table_block(run_rows(study))]
    validation = curves.validation_chart(runs)
    if validation is None:
        validation = text_block(["No validation loss: no run held frames out (validation_split = 0)."], 15,
                                fill=(150, 80, 0), width=curves.CHART_SIZE[0])
    blocks.append(_row_of([curves.loss_chart(runs), validation]))
    blocks.append(text_block([curves.LOSS_CAPTION], 13, fill=(90, 90, 90)))
    grids = study.get("grids", [])
    for grid in grids:
        number = grid.get("prompt_index", 0) + 1
        blocks.append(text_block([f"Prompt {number}: {grid.get('prompt', '')} — {grid_state(grid)}"], 18))
        blocks.append(text_block([f"{r.get('run')} pick: {pick_text((grid.get('picks') or {}).get(r.get('run')), r)}"
                                  for r in runs], 14))
        pictures = [_open(path) for _names, path, _rel in heatmap_files(study_dir, grid, runs) if path is not None]
        if pictures:
            blocks.append(_row_of(pictures))
    sheets = [(grid, study_file(study_dir, grid.get("grid"))) for grid in grids]
    sheets = [(grid, path) for grid, path in sheets if path is not None]
    used = sum(b.height for b in blocks) + 40 * len(sheets)
    room = max(MIN_GRID_HEIGHT, (MAX_SIDE - used) // max(1, len(sheets)))
    for grid, path in sheets:
        number = grid.get("prompt_index", 0) + 1
        blocks.append(text_block([f"Prompt {number}, every batch size side by side"], 18))
        blocks.append(_row_of([_fit(_open(path), WIDTH - 2 * PAD, room)]))
    sheet = Image.new("RGB", (WIDTH, sum(b.height for b in blocks) + PAD), "white")
    y = 0
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height
    if max(sheet.size) > MAX_SIDE:
        sheet.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return sheet


def sheet_text(study: dict) -> str:
    """The "lora_studio_study" text chunk: the recommendation, the summary and the best cells as JSON."""
    return json.dumps({"name": study.get("name", ""), "headline": headline(study),
                       "recommendation": study.get("recommendation"), "summary": summary_lines(study),
                       "best": study.get("best") or [], "lr_scaling": study.get("lr_scaling"),
                       "batch_sizes": study.get("batch_sizes", []), "prompts": study.get("prompts", [])},
                      ensure_ascii=False)


def save_sheet(study: dict, study_dir: Path, path: Path) -> Path:
    """Draw the sheet and write it (atomically) with its text chunk."""
    image = draw_sheet(study, study_dir)
    info = PngInfo()
    info.add_text(TEXT_CHUNK, sheet_text(study))
    return runfiles.atomic_write(path, lambda fh: image.save(fh, format="PNG", pnginfo=info, optimize=True))
