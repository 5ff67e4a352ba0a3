"""Labelled grids in the look of A1111's X/Y/Z plot, PNGs carrying `parameters`, and share copies.

The layout follows A1111's images.draw_grid_annotations: font size (w + h) / 25 of one cell, row
labels in a left band 3/4 of a cell wide, column labels above, long labels wrapped on words and
shrunk until they fit. Written with Pillow only (no library draws annotated image grids).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A1111's default "Maximum image size" for grids, in megapixels (Settings → Saving images).
MAX_MEGAPIXELS = 200
USER_COMMENT = 0x9286  # EXIF UserComment, where A1111 keeps `parameters` in JPEG and WebP files
EXIF_IFD = 0x8769


@dataclass
class GridLayout:
    """Where the cells sit in a drawn grid (for cropping a cell back out, or the UI's overlays)."""

    cell_width: int
    cell_height: int
    pad_left: int
    pad_top: int
    margin: int
    columns: int
    rows: int

    def cell_box(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one cell in the grid image."""
        left = self.pad_left + (self.cell_width + self.margin) * col
        top = self.pad_top + (self.cell_height + self.margin) * row
        return left, top, left + self.cell_width, top + self.cell_height


def label_font(size: int):
    """DejaVu Sans (shipped by most Linux systems, and A1111's fallback) or Pillow's own font."""
    from PIL import ImageFont

    size = max(6, int(size))
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _wrap(draw, text: str, font, width: float) -> list[str]:
    lines = [""]
    for word in text.split():
        candidate = f"{lines[-1]} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not lines[-1]:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _line_height(draw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text or " ", font=font)
    return box[3] - box[1]


def _draw_lines(draw, center_x: float, top: float, lines: list[str], font_size: int, width: float,
                spacing: int) -> None:
    for line in lines:
        font = label_font(font_size)
        size = font_size
        while draw.textlength(line, font=font) > width and size > 6:
            size -= 1
            font = label_font(size)
        height = _line_height(draw, line, label_font(font_size))
        draw.text((center_x, top + height / 2), line, font=font, fill=(0, 0, 0), anchor="mm")
        top += height + spacing


def draw_grid(cells: list[list], column_labels: list[str], row_labels: list[str], *, margin: int = 0,
              legend: bool = True):
    """Cells (rows of PIL images, all one size) with column labels above and row labels left.

    Returns (image, layout). legend=False draws the bare cells, as A1111's "Draw legend" off.
    """
    from PIL import Image, ImageDraw

    rows, columns = len(cells), len(cells[0])
    width, height = cells[0][0].size
    font_size = (width + height) // 25
    spacing = max(1, font_size // 2)
    font = label_font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    show_rows = legend and any(row_labels)
    show_columns = legend and any(column_labels)
    pad_left = width * 3 // 4 if show_rows else 0
    column_lines = [_wrap(measure, t, font, width) for t in column_labels] if show_columns else []
    row_lines = [_wrap(measure, t, font, pad_left) for t in row_labels] if show_rows else []

    def block_height(lines: list[str]) -> int:
        return sum(_line_height(measure, line, font) for line in lines) + spacing * (len(lines) - 1)

    pad_top = max(block_height(lines) for lines in column_lines) + spacing * 2 if column_lines else 0
    layout = GridLayout(width, height, pad_left, pad_top, margin, columns, rows)
    grid = Image.new("RGB", (pad_left + columns * width + margin * (columns - 1),
                             pad_top + rows * height + margin * (rows - 1)), "white")
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            grid.paste(cell.convert("RGB"), layout.cell_box(c, r)[:2])
    draw = ImageDraw.Draw(grid)
    for c, lines in enumerate(column_lines):
        left = layout.cell_box(c, 0)[0]
        _draw_lines(draw, left + width / 2, pad_top / 2 - block_height(lines) / 2, lines, font_size, width, spacing)
    for r, lines in enumerate(row_lines):
        top = layout.cell_box(0, r)[1]
        _draw_lines(draw, pad_left / 2, top + height / 2 - block_height(lines) / 2, lines, font_size, pad_left, spacing)
    return grid, layout


def draw_sheet(grids: list, titles: list[str], *, margin: int = 0, legend: bool = True):
    """Several grids side by side with a title above each: A1111's combined X/Y/Z sheet (Z = runs)."""
    from PIL import Image

    width = max(g.width for g in grids)
    height = max(g.height for g in grids)
    padded = []
    for g in grids:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(g, (0, 0))
        padded.append(canvas)
    sheet, _ = draw_grid([padded], titles, [""], margin=margin, legend=legend)
    return sheet


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


def save_share_copy(image, path: Path, parameters: str, *, max_side: int = 2048, quality: int = 88) -> Path:
    """A JPEG or WebP (by suffix) small enough to post, parameters in EXIF UserComment like A1111."""
    from PIL import Image

    path = Path(path)
    image = image.convert("RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    exif = Image.Exif()
    # piexif's UserComment "unicode" encoding, which A1111 writes and reads: prefix + UTF-16-BE
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + parameters.encode("utf-16-be")
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "JPEG"
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=fmt, quality=quality, exif=exif)
    tmp.replace(path)
    return path


def share_copy(grid_png: Path, fmt: str = "jpeg", max_side: int = 2048) -> Path:
    """Next to a grid PNG, a JPEG or WebP copy to post, carrying the same `parameters` text."""
    from PIL import Image

    grid_png = Path(grid_png)
    suffix = {"jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}[fmt.lower()]
    with Image.open(grid_png) as image:
        image.load()
        text = image.info.get("parameters", "")
    return save_share_copy(image, grid_png.with_name(grid_png.stem + "-share" + suffix), text, max_side=max_side)
