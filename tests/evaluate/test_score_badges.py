"""Score badges: a scored grid gets a copy with each cell's F/A/Q on it; the grid and its copy to post stay clean."""

import dataclasses

import numpy as np
from PIL import Image

from lora_studio import runfiles

PROMPT = "tibbie, sheep, pink bow, standing, meadow, <lora:tibbie-000001:0>"


def pixels(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB")).astype(int)


def far(share, near, other, where) -> bool:
    """Whether a share copy (shrunk back to the grid's size) is much nearer `near` than `other` at `where`."""
    image = Image.open(share).convert("RGB")
    image = pixels(image.resize((near.shape[1], near.shape[0]), Image.Resampling.BOX))
    return np.abs(image - near)[where].mean() < np.abs(image - other)[where].mean() / 4


def badge_mask(planned, config) -> tuple[np.ndarray, list]:
    """Where the badges may sit in the grid image, and each cell's badge box in grid coordinates."""
    from lora_studio.evaluate.badges import badge_area
    from lora_studio.generate.grid import blank_cell, draw_grid
    from lora_studio.generate.xy_plan import parse_size

    size = parse_size(config.size)
    columns, rows, _ = planned.shape
    grid, layout = draw_grid([[blank_cell(*size)] * columns] * rows, planned.column_labels, planned.row_labels,
                             margin=config.margin, legend=config.legend)
    mask = np.zeros((grid.height, grid.width), bool)
    boxes = []
    left, top, right, bottom = badge_area(size)
    for cell in planned.cells:
        x0, y0 = layout.cell_box(cell.x, cell.y)[:2]
        box = (x0 + left, y0 + top, x0 + right, y0 + bottom)
        mask[box[1]:box[3], box[0]:box[2]] = True
        boxes.append(box)
    return mask, boxes


def test_a_scored_grid_gets_a_badged_copy_and_the_grid_and_its_copy_to_post_stay_clean(demo_lora, tmp_path, capsys):
    from lora_studio.cli import main
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.grid import read_parameters
    from lora_studio.generate.xy_job import check_plot, run_xy_plot
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config

    demo_config()  # the demo's review state, as the run was trained
    run, _lora, _ = demo_lora
    config = XYPlotConfig(base="toy", run=str(run), prompt=PROMPT, x="epoch=4,7", y="weight=0,1", size="64x64",
                          seed=3, cfg=5.0, score=True, share="jpeg")
    base = load_base("toy")
    result = run_xy_plot(config, base, tmp_path / "plot", lambda event: None, lambda: False)

    grid = result["grid"]
    badged = runfiles.scores_badged(grid)
    assert badged.name == "xy_grid-0001-scored.png" and badged.is_file()
    assert Image.open(badged).size == Image.open(grid).size
    assert read_parameters(badged) == read_parameters(grid)

    plain, with_badges = pixels(grid), pixels(badged)
    mask, boxes = badge_mask(check_plot(config), config)
    changed = np.abs(plain - with_badges).max(axis=2) > 0
    assert not changed[~mask].any()  # labels, cells and borders are the grid's, pixel for pixel
    for left, top, right, bottom in boxes:  # every cell carries its badge
        assert changed[top:bottom, left:right].mean() > 0.3
    # the copy to post shows no badge: where the badges would be, it is the plain grid (up to JPEG's losses)
    badge_pixels = mask[..., None].repeat(3, axis=2)
    assert far(result["share"], plain, with_badges, badge_pixels)

    # `lora-studio score` writes the badged copy of an existing grid too
    badged.unlink()
    assert main(["score", str(tmp_path / "plot")]) == 0
    assert f"grid with score badges: {badged}" in capsys.readouterr().out
    assert np.array_equal(pixels(badged), with_badges)

    # badges = true puts them on the grid itself (and so on its copy to post); cells and scores come from the caches
    again = run_xy_plot(dataclasses.replace(config, badges=True), base, tmp_path / "badged", lambda event: None,
                        lambda: False)
    assert again["rendered"] == 0
    assert np.array_equal(pixels(again["grid"]), with_badges)
    assert read_parameters(again["grid"]) == read_parameters(grid)
    assert far(again["share"], with_badges, plain, badge_pixels)
