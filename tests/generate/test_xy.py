"""The XY plot: epoch × weight grids that are right, fast, and read back by A1111's tools."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from lora_studio.errors import UserError
from lora_studio.generate.grid import read_parameters, share_copy
from lora_studio.generate.pipeline import render
from lora_studio.generate.xy import NOT_PIXELS, SETTINGS_NOT_IN_CELLS, cell_key, xy_plot
from lora_studio.config import XYPlotConfig
from lora_studio.generate.xy_plan import XYPlan, parse_axis, plan_cells, plan_from_config
from lora_studio.train.lora_file import lora_file_hash

from a1111_infotext import parse_infotext, parse_lora_hashes
from xy_helpers import NEGATIVE, PROMPT, SIZE, STEPS, write_run


PLANNING = ("batch_size", "recipe", "max_megapixels")  # what XYPlan adds to (or resolves in) the config


def make_config(run, x="epoch", y="weight=0,0.5,1", **changes) -> XYPlotConfig:
    settings = dict(prompt=PROMPT, negative=NEGATIVE, x=x, y=y or "", run=str(run) if run else "", seed=1234,
                    steps=STEPS, size=f"{SIZE}x{SIZE}")
    return XYPlotConfig(**{**settings, **changes})


def make_plan(run, x="epoch", y="weight=0,0.5,1", **changes) -> XYPlan:
    planning = {k: changes.pop(k) for k in PLANNING if k in changes}
    return plan_from_config(make_config(run, x, y, **changes), **planning)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_axis_values_parse_like_a1111():
    assert parse_axis("weight=0,0.3,0.5,1").values == [0.0, 0.3, 0.5, 1.0]
    assert parse_axis("weight=0-1 (+0.25)").values == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_axis("cfg=5-9 [3]").values == [5.0, 7.0, 9.0]
    assert parse_axis("epoch=1-8").values == list(range(1, 9))
    assert parse_axis("seed=1-9 (+4)").values == [1, 5, 9]
    assert parse_axis('sr=sitting, "lying, on beach"').values == ["sitting", "lying, on beach"]
    assert parse_axis("Prompt S/R=a,b").kind == "sr"
    assert parse_axis("epoch").values is None  # every epoch file of the run
    with pytest.raises(UserError, match="not a number"):
        parse_axis("weight=0,half")
    with pytest.raises(UserError, match="unknown axis"):
        parse_axis("colour=red")


def test_the_grid_has_a_labelled_cell_for_every_epoch_and_weight(tiny_base, tiny_run, tmp_path):
    events = []
    result = xy_plot(tiny_base, make_plan(tiny_run), tmp_path / "out", emit=events.append)

    assert result.grid == tmp_path / "out" / "xy_grid-0001.png"
    assert len(result.cells) == 9 and all(p.parent.name == "xy_grid-0001" for p in result.cells)
    cells = [e for e in events if e["type"] == "cell"]
    assert sorted((e["x"], e["y"]) for e in cells) == [(x, y) for x in range(3) for y in range(3)]
    assert events[-1]["type"] == "xy_done" and events[-1]["grid"] == str(result.grid)

    planned = plan_cells(make_plan(tiny_run))
    assert planned.column_labels == ["Epoch: 1", "Epoch: 2", "Epoch: 3"]
    assert planned.row_labels == ["LoRA weight: 0", "LoRA weight: 0.5", "LoRA weight: 1"]

    from lora_studio.generate.grid import draw_grid

    grid = Image.open(result.grid).convert("RGB")
    _, layout = draw_grid([[Image.new("RGB", (SIZE, SIZE))] * 3] * 3, planned.column_labels, planned.row_labels)
    assert grid.size == (layout.pad_left + 3 * SIZE, layout.pad_top + 3 * SIZE)
    ink = np.asarray(grid.convert("L")) < 128
    for col in range(3):  # a dark label above every column and left of every row
        left, top, right, _ = layout.cell_box(col, 0)
        assert ink[:top, left:right].any()
    for row in range(3):
        left, top, _, bottom = layout.cell_box(0, row)
        assert ink[top:bottom, :left].any()
    for cell_file in result.cells:  # each cell of the grid is its own PNG, pixel for pixel
        x, y = int(cell_file.stem[1:3]) - 1, int(cell_file.stem[5:7]) - 1
        assert np.array_equal(pixels(grid.crop(layout.cell_box(x, y))), pixels(Image.open(cell_file)))


def test_the_weight_zero_row_is_rendered_once_and_is_the_bare_base_model(tiny_base, tiny_run, tmp_path):
    base_image = render(tiny_base, PROMPT, NEGATIVE, steps=STEPS, width=SIZE, height=SIZE, seed=1234)
    events = []
    result = xy_plot(tiny_base, make_plan(tiny_run), tmp_path, emit=events.append)

    assert (result.rendered, result.reused) == (1 + 3 * 2, 2)  # A1111 would render 9
    assert result.lora_loads == 3  # one load per epoch file, however many cells use it
    row0 = sorted((e for e in events if e["type"] == "cell" and e["y"] == 0), key=lambda e: e["x"])
    assert [e["rendered"] for e in row0].count(True) == 1
    for event in row0:
        assert np.array_equal(pixels(Image.open(event["path"])), pixels(base_image))
    weighted = [pixels(Image.open(e["path"])) for e in events if e["type"] == "cell" and e["y"] == 2]
    assert not np.array_equal(weighted[0], pixels(base_image))
    assert not np.array_equal(weighted[0], weighted[1])  # epochs differ
    # the plot leaves the base model as it found it
    after = render(tiny_base, PROMPT, NEGATIVE, steps=STEPS, width=SIZE, height=SIZE, seed=1234)
    assert np.array_equal(pixels(after), pixels(base_image))


def test_adding_a_weight_renders_only_the_new_row(tiny_base, tiny_run, tmp_path):
    first = xy_plot(tiny_base, make_plan(tiny_run, y="weight=0,1"), tmp_path)
    events = []
    again = xy_plot(tiny_base, make_plan(tiny_run, y="weight=0,0.5,1"), tmp_path, emit=events.append)

    assert first.rendered == 1 + 3 and again.rendered == 3
    assert again.grid.name == "xy_grid-0002.png"
    fresh = {(e["x"], e["y"]) for e in events if e["type"] == "cell" and e["rendered"]}
    assert fresh == {(0, 1), (1, 1), (2, 1)}
    assert events[-1] == {**events[-1], "rendered": 3, "reused": 6}
    plan_event = next(e for e in events if e["type"] == "xy_plan")
    assert plan_event["cells"] == 9 and plan_event["to_render"] == 3


def test_every_setting_of_a_cell_is_in_its_cache_key_so_a_new_axis_cannot_serve_stale_pixels(tiny_run):
    # The key is derived from the Cell's fields: changing any field that is not its place in the grid (or
    # where its LoRA tag came from) must change the key; a field added for a new axis is covered by itself.
    cell = next(c for c in plan_cells(make_plan(tiny_run, y="weight=0.5")).cells if c.active_loras())
    key = cell_key(cell, "model", "cpu:float32")
    changed = {"prompt": cell.prompt + ", night", "negative": "blurry", "seed": cell.seed + 1, "sampler": "Euler a",
               "steps": cell.steps + 1, "cfg": cell.cfg + 0.5, "width": cell.width + 8, "height": cell.height + 8,
               "clip_skip": cell.clip_skip + 1}
    for f in dataclasses.fields(cell):
        if f.name in NOT_PIXELS:
            assert cell_key(dataclasses.replace(cell, x=5, y=6, z=7), "model", "cpu:float32") == key
            continue
        assert f.name in changed, f"new Cell field {f.name!r}: add a changed value to this test"
        assert cell_key(dataclasses.replace(cell, **{f.name: changed[f.name]}), "model", "cpu:float32") != key, f.name
    # What the LoRA tags resolve to is in the key: another weight of the same file is another image.
    heavier = [(name, path, te * 2, unet * 2) for name, path, te, unet in cell.loras]
    assert cell_key(dataclasses.replace(cell, loras=heavier), "model", "cpu:float32") != key
    assert cell_key(cell, "other model", "cpu:float32") != key and cell_key(cell, "model", "cuda:float16") != key


def test_every_plot_setting_that_is_not_declared_pixel_free_changes_the_cells_cache_keys(tiny_run, tmp_path):
    # The other half of the key's guarantee: a setting reaches the pixels only through a Cell field. A new
    # XYPlotConfig field must change the planned cells (so the key sees it) or say in
    # xy.SETTINGS_NOT_IN_CELLS why it decides no pixels; one that does neither fails here.
    def keys(config) -> set[str]:
        return {cell_key(c, "model", "cpu:float32") for c in plan_cells(plan_from_config(config)).cells}

    config = make_config(tiny_run, y="weight=0,1")
    other_run = write_run(tmp_path / "other-run", epochs=(1, 2, 3), seed=1)
    changed = {"run": str(other_run), "prompt": PROMPT + ", night", "negative": "blurry", "x": "epoch=1,2",
               "y": "weight=0,0.5", "z": "seed=1,2", "sr": "sitting,standing", "seed": 1235, "sampler": "Euler a",
               "steps": STEPS + 1, "cfg": 7.5, "size": "40x40", "clip_skip": 1}
    before = keys(config)
    for f in dataclasses.fields(XYPlotConfig):
        if f.name in SETTINGS_NOT_IN_CELLS:
            assert f.name not in changed
            continue
        assert f.name in changed, (f"new XYPlotConfig field {f.name!r}: make it a Cell field (and add a changed "
                                   "value here), or say in xy.SETTINGS_NOT_IN_CELLS why it decides no pixels")
        assert keys(dataclasses.replace(config, **{f.name: changed[f.name]})) != before, f.name


def test_grid_parameters_read_back_as_a1111_infotext(tiny_base, tiny_run, tmp_path):
    plan = make_plan(tiny_run, cfg=7.0, recipe="batch size: 1, unet lr: 0.0001, epochs: 3")
    result = xy_plot(tiny_base, plan, tmp_path)
    fields = parse_infotext(read_parameters(result.grid))

    assert fields["Prompt"] == "1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"
    assert fields["Negative prompt"] == NEGATIVE
    assert {k: fields[k] for k in ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Clip skip")} == {
        "Steps": str(STEPS), "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Seed": "1234",
        "Size": f"{SIZE}x{SIZE}", "Clip skip": "2"}
    assert len(fields["Model hash"]) == 10 and fields["Model"] == tiny_base.name
    hashes = parse_lora_hashes(fields["Lora hashes"])
    assert hashes == {"tibbie-000001": lora_file_hash(tiny_run / "tibbie-000001.safetensors")}
    assert (fields["Script"], fields["X Type"], fields["X Values"], fields["Y Type"], fields["Y Values"]) == (
        "X/Y/Z plot", "Epoch", "1,2,3", "LoRA weight", "0,0.5,1")
    assert fields["Training"] == "batch size: 1, unet lr: 0.0001, epochs: 3"
    # the infotext's last line is A1111's: keys in its order
    last = read_parameters(result.grid).splitlines()[-1]
    assert last.startswith("Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 32x32, "
                           "Model hash: ")

    cell = parse_infotext(read_parameters(result.cells[-1]))  # epoch 3 at weight 1
    assert cell["Prompt"] == "1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000003:1>"
    assert parse_lora_hashes(cell["Lora hashes"]) == {
        "tibbie-000003": lora_file_hash(tiny_run / "tibbie-000003.safetensors")}
    assert "Script" not in cell


def test_a1111_style_prompt_sr_on_the_lora_tag_gives_the_same_grid(tiny_base, tiny_run, tmp_path):
    """The seed write-up's chart: X = S/R '000001,000002,000003', Y = S/R ':0>,:1>' on the tag."""
    ours = xy_plot(tiny_base, make_plan(tiny_run, y="weight=0,1"), tmp_path / "ours")
    a1111 = xy_plot(tiny_base, make_plan(tiny_run, x="sr=000001,000002,000003", y="sr=:0>,:1>"), tmp_path / "sr")
    assert a1111.rendered == 0  # every cell is one the first plot already rendered
    for mine, theirs in zip(ours.cells, a1111.cells):
        assert np.array_equal(pixels(Image.open(mine)), pixels(Image.open(theirs)))
    assert plan_cells(make_plan(tiny_run, x="sr=000001,000002,000003")).column_labels == ["000001", "000002", "000003"]


def test_prompt_sr_and_epoch_mistakes_are_reported_before_rendering(tiny_run):
    with pytest.raises(UserError, match="did not find 'standing'"):
        plan_cells(make_plan(tiny_run, y="sr=standing,lying"))
    with pytest.raises(UserError, match="epoch 9 has no LoRA file"):
        plan_cells(make_plan(tiny_run, x="epoch=1,9"))
    with pytest.raises(UserError, match="'other-000001' from the prompt is not in"):
        plan_cells(make_plan(tiny_run, x="seed=1,2", y=None, prompt="x <lora:other-000001:1>"))
    with pytest.raises(UserError, match="need a run folder"):
        plan_cells(make_plan(None, x="weight=0,1", y=None, prompt="x"))


def test_a_z_axis_over_runs_gives_a_grid_per_run_and_a_combined_sheet(tiny_base, tiny_run, tmp_path_factory,
                                                                      tmp_path):
    other = write_run(tmp_path_factory.mktemp("run-bs2"), epochs=(1, 2), seed=1)
    plan = make_plan(None, x="epoch=1,2", y="weight=0,1", z=f"run={tiny_run},{other}")
    events = []
    result = xy_plot(tiny_base, plan, tmp_path, emit=events.append)

    assert [p.name for p in result.grids] == ["xy_grid-0001-z01.png", "xy_grid-0001-z02.png"]
    assert len(result.cells) == 8 and {e.get("z") for e in events if e["type"] == "cell"} == {0, 1}
    assert result.rendered == 1 + 2 * 2  # the weight-0 row is the same base image for both runs
    sheet, one = Image.open(result.grid), Image.open(result.grids[0])
    assert sheet.width >= 2 * one.width and sheet.height > one.height  # side by side, titled
    assert parse_infotext(read_parameters(result.grid))["Z Type"] == "Run"


def test_a_stop_request_ends_the_plot_with_a_partial_grid(tiny_base, tiny_run, tmp_path):
    events = []
    result = xy_plot(tiny_base, make_plan(tiny_run), tmp_path, emit=events.append,
                     should_stop=lambda: sum(e["type"] == "cell" for e in events) >= 2)
    assert result.stopped and result.grid.is_file()
    assert result.rendered < 7 and events[-1]["stopped"] is True


def test_a_grid_over_the_size_limit_is_saved_downscaled_with_full_size_cells(tiny_base, tiny_run, tmp_path):
    result = xy_plot(tiny_base, make_plan(tiny_run, max_megapixels=0.005), tmp_path)
    assert result.downscaled
    assert Image.open(result.grid).width * Image.open(result.grid).height <= 5000
    assert Image.open(result.cells[0]).size == (SIZE, SIZE)


def test_share_writes_a_small_copy_that_keeps_the_parameters(tiny_base, tiny_run, tmp_path):
    result = xy_plot(tiny_base, make_plan(tiny_run, recipe="batch size: 2, epochs: 3"), tmp_path)
    for fmt in ("jpeg", "webp"):
        copy = share_copy(result.grid, fmt, max_side=64)
        assert max(Image.open(copy).size) <= 64
        assert read_parameters(copy) == read_parameters(result.grid)
        assert parse_infotext(read_parameters(copy))["Training"] == "batch size: 2, epochs: 3"


def test_cells_sharing_a_lora_state_can_render_as_one_batch(tiny_base, tiny_run, tmp_path):
    plan = make_plan(tiny_run, x="seed=1-4", y="weight=0.7", use_cache=False)
    single = xy_plot(tiny_base, plan, tmp_path / "single")
    batched = xy_plot(tiny_base, make_plan(tiny_run, x="seed=1-4", y="weight=0.7", use_cache=False, batch_size=4),
                      tmp_path / "batched")
    assert batched.rendered == single.rendered == 4
    images = [[pixels(Image.open(p)).astype(int) for p in r.cells] for r in (single, batched)]
    # each image keeps its own seed in a batch; batched maths may round the last bit differently
    for one, many in zip(*images):
        assert np.abs(one - many).max() <= 2
    assert not np.array_equal(images[1][0], images[1][1])


def test_random_seeds_on_a_seed_axis_are_fixed_before_drawing(tiny_run):
    planned = plan_cells(make_plan(tiny_run, x="seed=-1,-1", y=None))
    seeds = [c.seed for c in planned.cells]
    assert -1 not in seeds and planned.column_labels == [f"Seed: {s}" for s in seeds]
