"""Grids a person can read: labels never below 12 px nor cut at an edge, share copies big enough to post."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lora_studio.generate.grid import (EXIF_IFD, compose_sheet, draw_grid, read_parameters, share_copy,
                                       write_grids)
from lora_studio.generate.xy import xy_plot
from lora_studio.config import XYPlotConfig
from lora_studio.generate.xy_plan import plan_from_config

from a1111_infotext import parse_infotext
from xy_helpers import NEGATIVE, PROMPT, SIZE, STEPS, write_run

LEGIBLE_PX = 12  # the bar: every label's text at least 12 px high in the saved PNG
COLUMNS = ["Epoch: 1", "Epoch: 2", "Epoch: 3", "Epoch: 4"]
ROWS = ["LoRA weight: 0", "LoRA weight: 0.5", "LoRA weight: 1"]
RUNS = ["Run: bs1", "Run: bs2", "Run: bs3", "Run: bs4"]
PARAMETERS = "tibbie, sheep\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: toy"


def demo_cell(x: int, y: int, size: int = 64) -> Image.Image:
    """A busy cell (dark blocks too), so the checks below only pass if labels stay out of the cells."""
    rng = np.random.default_rng(10 * x + y)
    blocks = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks.repeat(8, axis=0).repeat(8, axis=1))


def cells_of(columns: int, rows: int, sheets: int, size: int = 64) -> dict:
    return {(x, y, z): demo_cell(x + z, y, size) for x in range(columns) for y in range(rows) for z in range(sheets)}


def assert_labels_legible_and_whole(png: Path, labels: list, cells: list, label_texts: list[str]) -> None:
    """Measure the saved PNG: each label's ink ≥ 12 px high, inside the image, and no ink outside the labels."""
    ink = np.asarray(Image.open(png).convert("L")) < 128
    height, width = ink.shape
    outside_cells = np.ones_like(ink)
    for cell_left, cell_top, cell_right, cell_bottom in cells:
        outside_cells[cell_top:cell_bottom, cell_left:cell_right] = False
    covered = np.zeros_like(ink)
    assert sorted(label.text for label in labels) == sorted(label_texts)
    for label in labels:
        # every word of the label is drawn (wrapping, never dropping)
        assert " ".join(line for line, _ in label.lines).split() == label.text.split()
        for line, (left, top, right, bottom) in label.lines:
            assert 0 <= left and right <= width and 0 <= top and bottom <= height, f"{line!r} crosses the edge"
            rows = np.flatnonzero(ink[top:bottom, left:right].any(axis=1))
            assert rows.size, f"{line!r} left no ink"
            assert rows[-1] - rows[0] + 1 >= LEGIBLE_PX, f"{line!r} is {rows[-1] - rows[0] + 1} px high"
            covered[max(0, top - 1):bottom + 1, max(0, left - 1):right + 1] = True
    stray = ink & outside_cells & ~covered
    assert not stray.any(), f"ink outside every label box at {np.argwhere(stray)[:3].tolist()}"
    # nothing touches the image's outer edge: no label is cut there
    edges = np.concatenate([ink[:, 0] & outside_cells[:, 0], ink[:, -1] & outside_cells[:, -1],
                            ink[0, :] & outside_cells[0, :], ink[-1, :] & outside_cells[-1, :]])
    assert not edges.any()


def cell_boxes(layout, left: int = 0, top: int = 0) -> list[tuple[int, int, int, int]]:
    """Every cell's box in the grid image, moved by (left, top) (where a grid sits in a sheet)."""
    return [(l + left, t + top, r + left, b + top) for l, t, r, b in
            (layout.cell_box(c, row) for c in range(layout.columns) for row in range(layout.rows))]


def test_labels_of_a_64_px_grid_are_12_px_high_and_whole(tmp_path):
    main, _, _ = write_grids(cells_of(4, 3, 1), (4, 3, 1), COLUMNS, ROWS, [""], (64, 64), tmp_path, "grid",
                             PARAMETERS)
    _, layout = draw_grid([[demo_cell(x, y) for x in range(4)] for y in range(3)], COLUMNS, ROWS)

    assert_labels_legible_and_whole(main, layout.labels, cell_boxes(layout), COLUMNS + ROWS)
    # the row labels sit left of the cells, the column labels above them
    for label in layout.labels:
        left, top, right, bottom = label.box
        assert right <= layout.pad_left or bottom <= layout.pad_top


def test_the_combined_sheet_of_four_runs_keeps_every_label_whole_and_legible(tmp_path):
    main, per_run, _ = write_grids(cells_of(4, 3, 4), (4, 3, 4), COLUMNS, ROWS, RUNS, (64, 64), tmp_path, "grid",
                                   PARAMETERS)
    grids = [draw_grid([[demo_cell(x + z, y) for x in range(4)] for y in range(3)], COLUMNS, ROWS) for z in range(4)]
    _, layout = compose_sheet([g for g, _ in grids], RUNS, layouts=[lay for _, lay in grids])
    # the sheet's images are the sub-grids' cells, where each sub-grid sits in the sheet
    cells = [box for z, (_, inner) in enumerate(grids) for box in cell_boxes(inner, *layout.cell_box(z, 0)[:2])]

    assert_labels_legible_and_whole(main, layout.labels, cells, RUNS + 4 * (COLUMNS + ROWS))
    for grid_file, (_, inner) in zip(per_run, grids):
        assert_labels_legible_and_whole(grid_file, inner.labels, cell_boxes(inner), COLUMNS + ROWS)


def test_a_label_too_long_for_its_cell_is_wrapped_and_broken_not_shrunk_away(tmp_path):
    long_word = "masterpiece_best_quality_sitting_on_tree"
    main, _, _ = write_grids(cells_of(2, 1, 1), (2, 1, 1), [long_word, "lying on beach"], ["x"], [""], (64, 64),
                             tmp_path, "grid", PARAMETERS)
    _, layout = draw_grid([[demo_cell(0, 0), demo_cell(1, 0)]], [long_word, "lying on beach"], ["x"])
    label = next(lab for lab in layout.labels if lab.text == long_word)
    assert "".join(line for line, _ in label.lines) == long_word and len(label.lines) > 1
    for _, (left, _, right, _) in label.lines:  # each piece stays above its own cell
        assert layout.cell_box(0, 0)[0] <= left and right <= layout.cell_box(0, 0)[2]
    image = np.asarray(Image.open(main).convert("L")) < 128
    for _, (left, top, right, bottom) in label.lines:
        rows = np.flatnonzero(image[top:bottom, left:right].any(axis=1))
        assert rows[-1] - rows[0] + 1 >= LEGIBLE_PX - 3  # lowercase only: x-height plus ascenders


def test_big_cells_keep_a1111s_layout():
    """512 px cells: A1111's font (w + h) / 25 = 40 and a row band 3/4 of a cell wide."""
    blank = Image.new("RGB", (512, 512), "grey")
    _, layout = draw_grid([[blank, blank]], ["Epoch: 1", "Epoch: 2"], ["LoRA weight: 1"])
    assert layout.pad_left == 384
    assert {label.font_size for label in layout.labels} == {40}


def test_the_copy_to_post_enlarges_64_px_cells_to_256_px_with_sharp_pixels(tmp_path):
    main, _, _ = write_grids(cells_of(4, 3, 1), (4, 3, 1), COLUMNS, ROWS, [""], (64, 64), tmp_path, "grid",
                             PARAMETERS)
    grid = Image.open(main).convert("RGB")
    for fmt in ("jpeg", "webp"):
        path = share_copy(main, fmt)
        copy = Image.open(path).convert("RGB")
        assert copy.size == (grid.width * 4, grid.height * 4)
        nearest = np.asarray(grid.resize(copy.size, Image.Resampling.NEAREST)).astype(int)
        smooth = np.asarray(grid.resize(copy.size, Image.Resampling.BICUBIC)).astype(int)
        got = np.asarray(copy).astype(int)
        # closer to whole-pixel squares than to a smoothed enlargement (the lossy format adds a little noise)
        assert np.abs(got - nearest).mean() < np.abs(got - smooth).mean()
        assert read_parameters(path) == PARAMETERS


def every_text_field(path: Path) -> list[str]:
    """Every text a shared file carries: PNG text chunks, and every EXIF field of every IFD."""
    with Image.open(path) as image:
        texts = [str(v) for v in image.info.values() if isinstance(v, (str, bytes))]
        texts += [str(v) for v in getattr(image, "text", {}).values()]
        exif = image.getexif()
        fields = dict(exif)
        for ifd in (EXIF_IFD, 0x8825):  # the Exif and GPS sub-IFDs, where present
            if ifd in exif:
                fields.update(exif.get_ifd(ifd))
    for value in fields.values():
        if isinstance(value, bytes):
            texts.append(value[8:].decode("utf-16-be", errors="replace") if value.startswith(b"UNICODE\0")
                         else value.decode("latin-1"))
        else:
            texts.append(str(value))
    return texts


def test_a_z_axis_grid_and_its_share_copies_name_runs_never_local_paths(tiny_base, tmp_path):
    runs = tmp_path / "home" / getpass.getuser() / "lora-studio" / "runs" / "tibbie-sweep"
    bs1 = write_run(runs / "bs1", epochs=(1, 2))
    bs2 = write_run(runs / "bs2", epochs=(1, 2), seed=1)
    config = XYPlotConfig(prompt=PROMPT, negative=NEGATIVE, x="epoch=1,2", y="weight=0,1", z=f"run={bs1},{bs2}",
                          seed=1234, steps=STEPS, size=f"{SIZE}x{SIZE}")
    plan = plan_from_config(config, recipe="bs1 (batch size: 1); bs2 (batch size: 2)")
    result = xy_plot(tiny_base, plan, tmp_path / "xy")
    copies = [share_copy(result.grid, "jpeg"), share_copy(result.grid, "webp")]
    shared = [result.grid, *result.grids, *copies]

    assert parse_infotext(read_parameters(result.grid))["Z Values"] == "bs1,bs2"
    absolute = re.compile(r"(?<![\w:])(/[\w.-]+){2,}|[A-Za-z]:\\")
    for path in shared:
        texts = every_text_field(path)
        assert any("Z Values" in t for t in texts), f"{path.name} lost its parameters"
        for text in texts:
            assert str(tmp_path) not in text and str(Path.home()) not in text
            assert f"/{getpass.getuser()}/" not in text and not absolute.search(text), (path.name, text)
    for copy in copies:  # 32 px cells are posted at 256 px
        assert Image.open(copy).width == Image.open(result.grid).width * (256 // SIZE)


def test_a_recipe_started_from_a_preset_file_names_the_file_not_its_folder(tmp_path):
    from lora_studio.generate.infotext import training_recipe

    (tmp_path / "job.toml").write_text('preset = "/home/ann/presets/tiny.toml (edited)"\nbatch_size = 2\n'
                                       'unet_lr = 0.0005\nepochs = 8\n')
    assert training_recipe(tmp_path) == {"preset": "tiny.toml (edited)", "batch size": "2", "unet lr": "0.0005",
                                         "te lr": "5e-05", "epochs": "8"}


@pytest.mark.parametrize("text, expected", [
    ('Z Values: "/home/ann/lora-studio/runs/sweep/bs1,/home/ann/lora-studio/runs/sweep/bs2"', 'Z Values: "bs1,bs2"'),
    ("Model: C:\\Users\\ann\\models\\anything.safetensors", "Model: anything.safetensors"),
    ("1girl, solo/duo, S/R, <lora:tibbie-000001:0.5>", "1girl, solo/duo, S/R, <lora:tibbie-000001:0.5>"),
])
def test_the_last_guard_cuts_any_absolute_path_to_its_name(text, expected):
    from lora_studio.generate.infotext import without_local_paths

    assert without_local_paths(text) == expected
