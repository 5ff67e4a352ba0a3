"""The scores as heatmaps beside the grid: epoch × weight, one panel per score, the pick outlined.

Written as xy_grid-0001-scores.png next to the grid; the XY tab shows it under the recommendation.
Cells of the same (run, epoch, weight) are averaged, as the recommendation averages them.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from lora_studio import runfiles
from lora_studio.generate.prompt import format_weight

SCORES = ("fidelity", "adherence", "quality")
CELL = 34
LABEL = 64


def _colour(value: float, threshold: float) -> tuple[int, int, int]:
    # below the threshold red → amber, above it amber → green: the pass line is where the colour turns
    if value < threshold:
        t = value / max(threshold, 1e-6)
        return (200, int(60 + 120 * t), 60)
    t = (value - threshold) / max(1 - threshold, 1e-6)
    return (int(200 - 150 * t), int(180 + 20 * t), 60)


def score_table(data: dict) -> dict[str, dict[tuple, dict[str, float]]]:
    """run → {(epoch, weight): mean scores} from a scores.json."""
    sums: dict[str, dict[tuple, list]] = {}
    for c in data["cells"]:
        key = (c.get("epoch"), float(c.get("weight") or 0.0))
        sums.setdefault(c.get("run") or "", {}).setdefault(key, []).append(c)
    return {run: {k: {s: sum(m[s] for m in ms) / len(ms) for s in SCORES} for k, ms in groups.items()}
            for run, groups in sums.items()}


def draw_heatmaps(data: dict) -> Image.Image:
    """One panel per score (columns epochs, rows weights) for each run, the recommended cell outlined."""
    from lora_studio.generate.grid import _font

    font = _font(11)
    table = score_table(data)
    thresholds = data.get("thresholds", {})
    rec = data.get("recommendation") or {}
    blocks = []
    for run, groups in sorted(table.items()):
        epochs = sorted({e for e, _ in groups}, key=lambda e: (e is None, e or 0))
        weights = sorted({w for _, w in groups})
        width = LABEL + len(epochs) * CELL
        height = 18 + 16 + len(weights) * CELL
        panels = []
        for score in SCORES:
            im = Image.new("RGB", (width, height), "white")
            d = ImageDraw.Draw(im)
            d.text((2, 2), f"{score}{' · ' + run if run else ''} (pass ≥ {thresholds.get(score, 0.5):g})",
                   fill="black", font=font)
            for i, e in enumerate(epochs):
                d.text((LABEL + i * CELL + 4, 20), f"e{e}" if e is not None else "-", fill="black", font=font)
            for j, w in enumerate(weights):
                y = 34 + j * CELL
                d.text((4, y + 10), f"w {format_weight(w)}", fill="black", font=font)
                for i, e in enumerate(epochs):
                    if (e, w) not in groups:
                        continue
                    value = groups[e, w][score]
                    x = LABEL + i * CELL
                    d.rectangle((x, y, x + CELL - 2, y + CELL - 2), fill=_colour(value, thresholds.get(score, 0.5)))
                    d.text((x + 4, y + 10), f"{value:.2f}".lstrip("0") if value < 1 else "1", fill="black", font=font)
                    if rec and rec.get("epoch") == e and rec.get("weight") == w and (rec.get("run") or "") == run:
                        d.rectangle((x - 1, y - 1, x + CELL - 1, y + CELL - 1), outline="black", width=3)
            panels.append(im)
        block = Image.new("RGB", (sum(p.width for p in panels) + 12 * (len(panels) - 1), height), "white")
        x = 0
        for p in panels:
            block.paste(p, (x, 0))
            x += p.width + 12
        blocks.append(block)
    if not blocks:
        return Image.new("RGB", (LABEL, LABEL), "white")
    sheet = Image.new("RGB", (max(b.width for b in blocks), sum(b.height + 8 for b in blocks)), "white")
    y = 0
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height + 8
    return sheet


def write_heatmaps(grid: Path, data: dict) -> Path:
    """Draw and save the heatmaps beside the grid."""
    image = draw_heatmaps(data)
    path = runfiles.scores_picture(grid)
    runfiles.atomic_write(path, lambda fh: image.save(fh, format="PNG"))
    return path
