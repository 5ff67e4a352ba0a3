"""Labelled grids in the look of A1111's X/Y/Z plot, PNGs carrying `parameters`, and share copies.

The layout follows A1111's images.draw_grid_annotations: font size (w + h) / 25 of one cell, row
labels in a left band 3/4 of a cell wide, column labels above, long labels wrapped on words and
shrunk until they fit. Written with Pillow only (no library draws annotated image grids).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# A1111's default "Maximum image size" for grids, in megapixels (Settings → Saving images).
MAX_MEGAPIXELS = 200
# The least height of a label's capitals, in pixels of the saved PNG: legible at 100 % zoom.
MIN_TEXT_PX = 12
USER_COMMENT = 0x9286  # EXIF UserComment, where A1111 keeps `parameters` in JPEG and WebP files
EXIF_IFD = 0x8769


@dataclass
class Label:
    """One drawn label: its text, the font size used and the box of every line's ink in the grid image."""

    text: str
    font_size: int
    lines: list[tuple[str, tuple[int, int, int, int]]]  # (line, (left, top, right, bottom))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) around all of the label's lines."""
        boxes = [b for _, b in self.lines]
        return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


@dataclass
class GridLayout:
    """Where the cells and labels sit in a drawn grid (for cropping a cell back out, or the UI's overlays)."""

    cell_width: int
    cell_height: int
    pad_left: int
    pad_top: int
    margin: int
    columns: int
    rows: int
    labels: list[Label] = field(default_factory=list)

    def cell_box(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one cell in the grid image."""
        left = self.pad_left + (self.cell_width + self.margin) * col
        top = self.pad_top + (self.cell_height + self.margin) * row
        return left, top, left + self.cell_width, top + self.cell_height


def label_font(size: int):
    """DejaVu Sans (shipped by most Linux systems, and A1111's fallback) or Pillow's own font."""
    return _font(max(6, int(size)))


@functools.lru_cache(maxsize=64)
def _font(size: int):
    # fitting a label tries several sizes per line; loading the TrueType file each time dominated drawing
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


@functools.cache
def min_font_size() -> int:
    """The smallest font size whose capitals are MIN_TEXT_PX high: labels are never drawn smaller."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for size in range(MIN_TEXT_PX, 4 * MIN_TEXT_PX):
        left, top, right, bottom = measure.textbbox((0, 0), "H", font=label_font(size))
        if bottom - top >= MIN_TEXT_PX:
            return size
    return 4 * MIN_TEXT_PX


def _fit(draw, text: str, font_size: int, width: float) -> list[tuple[str, int]]:
    """Lines of `text` no wider than `width`, as (line, font size).

    Words wrap as in A1111; a word too wide alone is shrunk, never below min_font_size(), and
    beyond that broken between letters, so no line ever leaves its band.
    """
    font = label_font(font_size)
    words, lines = text.split(), []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current or not lines:
        lines.append(current)
    fitted = []
    floor = min(font_size, min_font_size())
    for line in lines:
        size = font_size
        while draw.textlength(line, font=label_font(size)) > width and size > floor:
            size -= 1
        if draw.textlength(line, font=label_font(size)) <= width:
            fitted.append((line, size))
            continue
        piece = ""
        for char in line:
            if piece and draw.textlength(piece + char, font=label_font(size)) > width:
                fitted.append((piece, size))
                piece = char.lstrip()
            else:
                piece += char
        if piece:
            fitted.append((piece, size))
    return fitted


def _line_step(font_size: int, spacing: int) -> int:
    ascent, descent = label_font(font_size).getmetrics()
    return ascent + descent + spacing


def _block_height(lines: list[tuple[str, int]], font_size: int, spacing: int) -> int:
    return len(lines) * _line_step(font_size, spacing) - spacing if lines else 0


def _draw_label(draw, text: str, lines: list[tuple[str, int]], center_x: float, top: float, font_size: int,
                spacing: int) -> Label:
    drawn = []
    step = _line_step(font_size, spacing)
    for line, size in lines:
        font = label_font(size)
        # anchor "ma": x is the middle of the line, y the top of its ascender
        position = (center_x, top + (step - spacing - sum(font.getmetrics())) / 2)
        draw.text(position, line, font=font, fill=(0, 0, 0), anchor="ma")
        drawn.append((line, tuple(int(v) for v in draw.textbbox(position, line, font=font, anchor="ma"))))
        top += step
    return Label(text, font_size, drawn)


def draw_grid(cells: list[list], column_labels: list[str], row_labels: list[str], *, margin: int = 0,
              legend: bool = True):
    """Cells (rows of PIL images, all one size) with column labels above and row labels left.

    The font follows A1111 ((w + h) / 25 of a cell) but never goes below min_font_size(); the row
    band is 3/4 of a cell wide, or wider when a word of a row label needs it, so small cells keep
    whole, readable labels. Returns (image, layout). legend=False draws the bare cells, as A1111's
    "Draw legend" off.
    """
    from PIL import Image, ImageDraw

    rows, columns = len(cells), len(cells[0])
    width, height = cells[0][0].size
    font_size = max((width + height) // 25, min_font_size())
    spacing = max(1, font_size // 4)
    pad = max(2, font_size // 4)  # clear space between a label and the image edge or a neighbour
    font = label_font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    show_rows = legend and any(row_labels)
    show_columns = legend and any(column_labels)
    pad_left, row_lines = 0, []
    if show_rows:
        # A1111's band is 3/4 of a cell; it widens (up to two cells, or 8 letters) until every word of
        # every row label fits and every label fits beside its own row, so rows never overlap.
        widest = max(width * 3 // 4 - 2 * pad, max(2 * width, 8 * font_size))
        band = min(widest, max([width * 3 // 4 - 2 * pad] + [int(measure.textlength(w, font=font)) + 1
                                                            for t in row_labels for w in t.split()]))
        while True:
            row_lines = [_fit(measure, t, font_size, band) for t in row_labels]
            tallest = max(_block_height(lines, font_size, spacing) for lines in row_lines)
            if tallest <= height - pad or band >= widest:
                break
            band = min(widest, band + max(4, font_size // 2))
        pad_left = band + 2 * pad
    column_lines = [_fit(measure, t, font_size, width - pad) for t in column_labels] if show_columns else []

    pad_top = max(_block_height(lines, font_size, spacing) for lines in column_lines) + 2 * pad if column_lines else 0
    layout = GridLayout(width, height, pad_left, pad_top, margin, columns, rows)
    grid = Image.new("RGB", (pad_left + columns * width + margin * (columns - 1),
                             pad_top + rows * height + margin * (rows - 1)), "white")
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            grid.paste(cell.convert("RGB"), layout.cell_box(c, r)[:2])
    draw = ImageDraw.Draw(grid)
    for c, (text, lines) in enumerate(zip(column_labels, column_lines)):
        if text:
            left = layout.cell_box(c, 0)[0]
            top = pad_top / 2 - _block_height(lines, font_size, spacing) / 2
            layout.labels.append(_draw_label(draw, text, lines, left + width / 2, top, font_size, spacing))
    for r, (text, lines) in enumerate(zip(row_labels, row_lines)):
        if text:
            top = layout.cell_box(0, r)[1] + height / 2 - _block_height(lines, font_size, spacing) / 2
            layout.labels.append(_draw_label(draw, text, lines, pad_left / 2, max(0, top), font_size, spacing))
    return grid, layout


def compose_sheet(grids: list, titles: list[str], *, margin: int = 0, legend: bool = True,
                  layouts: list[GridLayout] | None = None):
    """Several grids side by side with a title above each: A1111's combined X/Y/Z sheet (Z = runs).

    Returns (sheet, layout); given the grids' own layouts, the sheet's layout lists their labels too,
    moved to where they sit in the sheet.
    """
    from PIL import Image

    width = max(g.width for g in grids)
    height = max(g.height for g in grids)
    padded = []
    for g in grids:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(g, (0, 0))
        padded.append(canvas)
    # a gap between the grids, so one grid's edge never touches the next one's row labels
    sheet, layout = draw_grid([padded], titles, [""], margin=max(margin, min_font_size()), legend=legend)
    for z, inner in enumerate(layouts or []):
        left, top = layout.cell_box(z, 0)[:2]
        for label in inner.labels:
            moved = [(line, (b[0] + left, b[1] + top, b[2] + left, b[3] + top)) for line, b in label.lines]
            layout.labels.append(Label(label.text, label.font_size, moved))
    return sheet, layout


def draw_sheet(grids: list, titles: list[str], *, margin: int = 0, legend: bool = True):
    """Several grids side by side with a title above each: A1111's combined X/Y/Z sheet (Z = runs)."""
    return compose_sheet(grids, titles, margin=margin, legend=legend)[0]


def write_grids(cells: dict, shape: tuple[int, int, int], column_labels: list[str], row_labels: list[str],
                z_labels: list[str], cell_size: tuple[int, int], output: Path, stem: str, parameters: str, *,
                margin: int = 0, legend: bool = True, max_megapixels: float = MAX_MEGAPIXELS):
    """Draw and save an XY(Z) plot from {(x, y, z): image}; missing cells are grey.

    One Z value: output/STEM.png. Several: STEM-z01.png … per value and STEM.png, the combined sheet.
    Returns (main file, per-Z files, whether anything was saved downscaled).
    """
    columns, rows, sheets = shape
    blank = blank_cell(*cell_size)
    grids = []
    for z in range(sheets):
        rows_of_cells = [[cells.get((x, y, z), blank) for x in range(columns)] for y in range(rows)]
        grids.append(draw_grid(rows_of_cells, column_labels, row_labels, margin=margin, legend=legend)[0])
    downscaled = False
    files = []
    if sheets > 1:
        for z, grid in enumerate(grids):
            grid, smaller = limit_size(grid, max_megapixels)
            downscaled |= smaller
            files.append(save_png(grid, Path(output) / f"{stem}-z{z + 1:02d}.png", parameters))
        main = draw_sheet(grids, z_labels, margin=margin, legend=legend)
    else:
        main = grids[0]
    main, smaller = limit_size(main, max_megapixels)
    return save_png(main, Path(output) / f"{stem}.png", parameters), files, downscaled or smaller


def blank_cell(width: int, height: int):
    """A grey placeholder for a cell not rendered yet (a stopped or growing grid)."""
    from PIL import Image

    return Image.new("RGB", (width, height), (200, 200, 200))


def limit_size(image, max_megapixels: float = MAX_MEGAPIXELS):
    """Downscale a grid over A1111's maximum image size; returns (image, was_downscaled)."""
    from PIL import Image

    pixels = image.width * image.height
    limit = max_megapixels * 1_000_000
    if pixels <= limit:
        return image, False
    scale = (limit / pixels) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS), True


def save_png(image, path: Path, parameters: str) -> Path:
    """Save a PNG with A1111's `parameters` text chunk (what PNG Info and civitai read)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)
    return path


def read_parameters(path: Path) -> str | None:
    """The `parameters` text of a PNG, or the EXIF UserComment of a JPEG/WebP (as A1111 reads them)."""
    from PIL import Image

    with Image.open(path) as image:
        if "parameters" in image.info:
            return image.info["parameters"]
        comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if not comment:
        return None
    if comment.startswith(b"UNICODE\0"):
        return comment[8:].decode("utf-16-be")
    return comment[8:].decode("utf-8", errors="replace") if comment[:8].strip(b"\0") else comment.decode(
        "utf-8", errors="replace")


# A posted 64 px grid is unreadable: a share copy's cells are enlarged to at least this many pixels.
SHARE_MIN_CELL = 256
# The largest side each format can hold (WebP's limit; JPEG's is 65535).
FORMAT_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}


def save_share_copy(image, path: Path, parameters: str, *, max_side: int | None = None, quality: int = 88) -> Path:
    """A JPEG or WebP (by suffix), parameters in EXIF UserComment like A1111; fitted into max_side if given."""
    from PIL import Image

    path = Path(path)
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "JPEG"
    image = image.convert("RGB")
    max_side = min(max_side or FORMAT_MAX_SIDE[fmt], FORMAT_MAX_SIDE[fmt])
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    exif = Image.Exif()
    # piexif's UserComment "unicode" encoding, which A1111 writes and reads: prefix + UTF-16-BE
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + parameters.encode("utf-16-be")
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=fmt, quality=quality, exif=exif)
    tmp.replace(path)
    return path


def cell_size_of(parameters: str) -> tuple[int, int] | None:
    """The cell size a grid's `parameters` text names ('Size: 64x64'), or None."""
    match = re.search(r"(?:^|, )Size: (\d+)x(\d+)(?:,|$)", parameters.strip().rsplit("\n", 1)[-1])
    return (int(match[1]), int(match[2])) if match else None


def share_copy(grid_png: Path, fmt: str = "jpeg", max_side: int | None = None,
               min_cell: int = SHARE_MIN_CELL) -> Path:
    """Next to a grid PNG, a JPEG or WebP copy to post, carrying its `parameters` text without local paths.

    Cells smaller than `min_cell` are enlarged by a whole factor with nearest-neighbour (each pixel a
    sharp square, as the model drew it; the labels grow with them); larger grids stay as they are
    unless `max_side` (or the format) asks for less.
    """
    from PIL import Image

    from lora_studio.generate.infotext import without_local_paths

    grid_png = Path(grid_png)
    suffix = {"jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}[fmt.lower()]
    with Image.open(grid_png) as image:
        image.load()
        text = image.info.get("parameters", "")
    cell = cell_size_of(text)
    if cell and min(cell) < min_cell:
        factor = math.ceil(min_cell / min(cell))
        while factor > 1 and image.width * image.height * factor ** 2 > MAX_MEGAPIXELS * 1_000_000:
            factor -= 1  # a giant grid of tiny cells stays within A1111's grid size limit
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return save_share_copy(image, grid_png.with_name(grid_png.stem + "-share" + suffix), without_local_paths(text),
                           max_side=max_side)
