"""Score badges on the grid: each cell's fidelity, adherence and quality as three small coloured boxes.

A scored grid gets a badged copy beside it, xy_grid-0001-scored.png (runfiles.scores_badged); the grid
PNG itself (and so its copy to post) carries the badges only when XYPlotConfig.badges asks. The copy is
the grid drawn again from its cell PNGs with a badge in each cell's top-left corner (generate/grid.py's
write_grids), so outside the badges it is the grid pixel for pixel, labels and `parameters` text included.
A box reads 'F83' (on small cells '83', always in the order F, A, Q): the score ×100, floored, so 49 is
below a 0.5 threshold as its colour says; the colours are the heatmaps' (evaluate/heatmap.py), turning
where the scorer's threshold is.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lora_studio import runfiles
from lora_studio.evaluate.heatmap import _colour

BADGE_SCORES = (("F", "fidelity"), ("A", "adherence"), ("Q", "quality"))


def badge_text(letter: str, value: float) -> str:
    """'F83' for a fidelity of 0.83 ('83' when the letter is ''); 1.0 shows as 99, so every box keeps two digits."""
    return f"{letter}{min(99, int(value * 100 + 1e-9)):02d}"


@functools.lru_cache(maxsize=16)
def badge_layout(cell_size: tuple[int, int]) -> tuple[int, bool, list[tuple[int, int, int, int]]]:
    """(font size, whether the boxes carry their letters, the three boxes' (left, top, right, bottom) in a cell).

    A row 'F83 A41 Q97' at the top left; where that does not fit (the toy model's 64 px cells) a row of the
    bare numbers in the same order; on a cell too narrow for that, a column. Every cell has it in one place.
    """
    from PIL import Image, ImageDraw

    from lora_studio.generate.grid import label_font

    width, height = cell_size
    # 21 px type on a 512 px cell; never below 10 px, the least that stays legible at 100 % zoom
    size = max(10, min(width, height) // 24)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, inset, gap = max(2, size // 5), max(1, size // 4), max(1, size // 6)

    def box(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=label_font(size))
        return right - left + 2 * pad, bottom - top + 2 * pad

    for letters, row in ((True, True), (False, True), (True, False)):
        box_w, box_h = box("F00" if letters else "00")
        if not row or inset + 3 * box_w + 2 * gap <= width:
            break
    if row:
        starts = [(inset + i * (box_w + gap), inset) for i in range(3)]
    else:
        starts = [(inset, inset + i * (box_h + gap)) for i in range(3)]
    return size, letters, [(x, y, min(width, x + box_w), min(height, y + box_h)) for x, y in starts]


def badge_area(cell_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around a cell's whole badge: the only pixels the badged copy changes."""
    boxes = badge_layout(tuple(cell_size))[2]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def draw_badge(image, scores: dict, thresholds: dict):
    """A copy of a cell image with its scores' badge drawn in the top-left corner."""
    from PIL import ImageDraw

    from lora_studio.generate.grid import label_font

    image = image.convert("RGB")
    size, letters, boxes = badge_layout(image.size)
    draw = ImageDraw.Draw(image)
    font = label_font(size)
    for (letter, name), box in zip(BADGE_SCORES, boxes):
        value = float(scores[name])
        # the right/bottom edges are inclusive in Pillow: one pixel in keeps the box inside badge_area
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=_colour(value, thresholds.get(name, 0.5)),
                       outline=(40, 40, 40))
        draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), badge_text(letter if letters else "", value), fill="black",
                  font=font, anchor="mm")
    return image


def write_badged(grid: Path, planned, config, data: dict) -> Path:
    """The badged copy beside a grid PNG (and the badges on the grid itself when config.badges); its path.

    `planned` is the plot's CellGrid (labels, shape, cell files), `data` its scores.json.
    """
    from PIL import Image

    from lora_studio.generate.grid import read_parameters, write_grids
    from lora_studio.generate.xy import cell_file_name
    from lora_studio.generate.xy_plan import parse_size

    grid = Path(grid)
    columns, rows, sheets = planned.shape
    scores = {(c["x"], c["y"], c.get("z", 0)): c for c in data["cells"]}
    thresholds = data.get("thresholds", {})
    cells = {}
    for cell in planned.cells:
        png = grid.with_suffix("") / cell_file_name(cell, sheets)
        if not png.is_file():
            continue  # a stopped plot's missing cell stays grey, as on the grid
        with Image.open(png) as opened:
            image = opened.convert("RGB")
        position = (cell.x, cell.y, cell.z)
        cells[position] = draw_badge(image, scores[position], thresholds) if position in scores else image
    text = read_parameters(grid) or ""
    badged = runfiles.scores_badged(grid)
    stems = [badged.stem] + ([grid.stem] if config.badges else [])
    for stem in stems:
        write_grids(cells, planned.shape, planned.column_labels, planned.row_labels, planned.z_labels,
                    parse_size(config.size), grid.parent, stem, text, margin=config.margin, legend=config.legend)
    return badged
