"""`lora-studio xy`: the seed's chart from one command line."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from lora_studio.errors import UserError
from lora_studio.generate.grid import read_parameters
from lora_studio.generate.xy_cli import add_xy_parser, parse_size, plan_from_args

from a1111_infotext import parse_infotext
from xy_helpers import NEGATIVE, PROMPT, SIZE


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="lora-studio")
    add_xy_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["xy", *argv])


def test_xy_command_writes_the_grid_its_cells_events_and_a_share_copy(tiny_model_dir, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "job.toml").write_text('batch_size = 1\nunet_lr = 0.0003\nepochs = 3\noptimizer = "lion"\n')
    out = tmp_path / "xy"
    args = parse(["--base", str(tiny_model_dir), "--run", str(run), "--prompt", PROMPT, "--negative", NEGATIVE,
                  "--x", "epoch", "--y", "weight=0,1", "--seed", "5", "--steps", "2", "--size", f"{SIZE}x{SIZE}",
                  "--device", "cpu", "--share", "jpeg", "--output", str(out)])
    assert args.func(args) == 0

    grid = out / "xy_grid-0001.png"
    assert grid.is_file() and len(list((out / "xy_grid-0001").glob("*.png"))) == 6
    assert (out / "xy_grid-0001-share.jpg").is_file()
    fields = parse_infotext(read_parameters(grid))
    assert fields["Seed"] == "5" and fields["Y Values"] == "0,1"
    assert fields["Training"] == "batch size: 1, unet lr: 0.0003, te lr: 3e-05, epochs: 3, optimizer: lion"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events][-3:] == ["xy_done", "share", "done"]  # as the worker's xy job writes them
    assert events[-1]["rendered"] == 4 and events[-1]["share"] == str(out / "xy_grid-0001-share.jpg")
    assert "grid: " in capsys.readouterr().out


def test_sr_values_fill_the_first_free_axis(tiny_run):
    plan = plan_from_args(parse(["--base", "toy", "--run", str(tiny_run), "--prompt", PROMPT, "--x", "epoch",
                                 "--sr", "sitting on tree,lying on beach", "--output", "out"]))
    assert plan.y.kind == "sr" and plan.y.values == ["sitting on tree", "lying on beach"]


def test_size_must_be_width_x_height():
    assert parse_size("512x768") == (512, 768)
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        parse_size("512")
