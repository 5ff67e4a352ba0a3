"""A study's loss charts as PNG images: every batch size's training loss and validation loss against epochs.

Drawn with Pillow, as the grids and heatmaps are: matplotlib is not a dependency, and Gradio's LinePlot
needs a browser, which a report PNG and an offline HTML file have not. X is the epoch, not the step, so
runs of different batch sizes (different steps per epoch) line up. One function per chart, so the
report, the engine and the studio draw the same pictures.
"""

from __future__ import annotations

import bisect
import math

from PIL import Image, ImageDraw

from lora_studio.generate.grid import label_font

# One colour per run, the same in every chart of a report (matplotlib's tab10, readable on white).
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
CHART_SIZE = (700, 410)
SMOOTH_WINDOW = 1.0  # epochs: the training line is the mean loss of the last epoch's worth of steps
LOSS_CAPTION = ("Training loss against epochs (x = step ÷ steps per epoch, so every batch size spans the same "
                "width). Lines: the mean loss of the steps within the epoch before each point (one step's loss is "
                "too noisy to read); dots: each epoch's mean loss, where the line ends that epoch.")
VALIDATION_CAPTION = ("Validation loss against epochs: the held-out frames' loss at fixed timesteps and noise, "
                      "LoRA at weight 1 (epoch 0: before training).")


def run_colour(index: int) -> tuple[int, int, int]:
    """The colour of the index-th run of a study."""
    return PALETTE[index % len(PALETTE)]


def smoothed(points: list, window: float = SMOOTH_WINDOW) -> list[tuple[float, float]]:
    """A trailing moving average of (x, y) points over a window of x units (the same span for every run).

    Trailing, not centred: at a whole epoch e the line is the mean of epoch e's own steps (x in (e-1, e]),
    the same number as that epoch's dot, so the line and the dots never disagree.
    """
    points = sorted((float(x), float(y)) for x, y in points)
    xs = [x for x, _ in points]
    sums = [0.0]
    for _, y in points:
        sums.append(sums[-1] + y)
    out = []
    for i, x in enumerate(xs):
        lo = bisect.bisect_right(xs, x - window + 1e-9)
        hi = bisect.bisect_right(xs, x + 1e-9)
        out.append((x, (sums[hi] - sums[lo]) / (hi - lo)))
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering lo..hi (1, 2 or 5 × a power of ten apart)."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_text(value: float) -> str:
    return f"{value:.4g}"


def line_chart(series: list[dict], *, title: str, x_label: str, y_label: str, size: tuple[int, int] = CHART_SIZE,
               note: str = "") -> Image.Image:
    """Lines (and dots) on shared axes with a legend; series: {label, colour, line: [(x, y)], dots: [(x, y)]}."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = label_font(15), label_font(12)
    left, right, top, bottom = 64, width - 150, 34, height - 46
    draw.text((left, 8), title, fill="black", font=font)
    points = [p for s in series for p in (*s.get("line", ()), *s.get("dots", ()))]
    if not points:
        draw.text((left, height // 2), note or "nothing to draw yet", fill=(90, 90, 90), font=font)
        return image
    x_lo, x_hi = 0.0, max(1.0, math.ceil(max(x for x, _ in points)))
    y_lo, y_hi = min(y for _, y in points), max(y for _, y in points)
    pad = (y_hi - y_lo) * 0.06 or abs(y_hi) * 0.1 or 0.1
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))

    x_ticks = [t for t in nice_ticks(x_lo, x_hi, min(10, int(x_hi - x_lo) or 1)) if float(t).is_integer()]
    for t in x_ticks:
        x, _ = at(t, y_lo)
        draw.line((x, top, x, bottom), fill=(232, 232, 232))
        draw.text((x, bottom + 4), _tick_text(t), fill="black", font=small, anchor="ma")
    for t in nice_ticks(y_lo, y_hi, 5):
        if not y_lo <= t <= y_hi:
            continue
        _, y = at(x_lo, t)
        draw.line((left, y, right, y), fill=(232, 232, 232))
        draw.text((left - 6, y), _tick_text(t), fill="black", font=small, anchor="rm")
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    draw.text(((left + right) / 2, height - 18), x_label, fill="black", font=small, anchor="ma")
    draw.text((4, top - 20), y_label, fill="black", font=small)
    for s in series:
        line = [at(x, y) for x, y in s.get("line", ())]
        if len(line) > 1:
            draw.line(line, fill=s["colour"], width=2, joint="curve")
        for x, y in (at(x, y) for x, y in s.get("dots", ())):
            draw.ellipse((x - 3.5, y - 3.5, x + 3.5, y + 3.5), fill=s["colour"], outline="white")
    for i, s in enumerate(series):
        y = top + 8 + i * 20
        draw.line((right + 12, y + 7, right + 34, y + 7), fill=s["colour"], width=3)
        draw.text((right + 40, y), s["label"], fill="black", font=small)
    if note:
        draw.text((left + 6, top + 6), note, fill=(90, 90, 90), font=small)
    return image


def run_label(run: dict) -> str:
    """A run's name in a legend: 'batch 2'."""
    return f"batch {run['batch_size']}"


def loss_chart(runs: list[dict], size: tuple[int, int] = CHART_SIZE) -> Image.Image:
    """Every run's training loss against epochs, overlaid: the smoothed per-step loss and the epoch means (LOSS_CAPTION)."""
    series = [{"label": run_label(r), "colour": run_colour(i), "line": smoothed(r.get("loss") or []),
               "dots": [(e, v) for e, v in r.get("epoch_loss") or []]}
              for i, r in enumerate(runs) if r.get("loss") or r.get("epoch_loss")]
    return line_chart(series, title="Training loss (mean over the last epoch of steps)", x_label="epoch", y_label="loss",
                      size=size, note="" if series else "no run has trained a step yet")


def has_validation(runs: list[dict]) -> bool:
    """True when some run has a validation loss."""
    return any(r.get("validation") for r in runs)


def validation_chart(runs: list[dict], size: tuple[int, int] = CHART_SIZE) -> Image.Image | None:
    """Every run's validation loss against epochs, overlaid (VALIDATION_CAPTION); None when no run has one."""
    if not has_validation(runs):
        return None
    series = [{"label": run_label(r), "colour": run_colour(i), "line": [(e, v) for e, v in r["validation"]],
               "dots": [(e, v) for e, v in r["validation"]]}
              for i, r in enumerate(runs) if r.get("validation")]
    return line_chart(series, title="Validation loss", x_label="epoch", y_label="loss", size=size)
