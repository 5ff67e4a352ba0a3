"""The XY tab offers the grid with score badges for download once a scored plot is done."""

from lora_studio import runfiles
from lora_studio.ui import xy_progress as progress


def test_a_finished_scored_plot_offers_its_badged_grid_and_an_unscored_one_does_not(tmp_path):
    grid = tmp_path / "xy_grid-0001.png"
    grid.write_bytes(b"png")
    record = runfiles.Recorder(tmp_path)
    record({"type": runfiles.XY_DONE, "grid": str(grid), "grids": [], "rendered": 4, "reused": 0, "stopped": False,
            "downscaled": False})
    record({"type": runfiles.DONE, "grid": str(grid)})
    shown = progress.update(progress.PlotWatch().follow(str(tmp_path)))
    assert not shown["scored_file"]["interactive"]  # not scored: nothing to offer

    runfiles.scores_badged(grid).write_bytes(b"png")
    record({"type": runfiles.RECOMMENDATION, "epoch": 2, "weight": 1.0, "path": str(runfiles.scores_file(grid)),
            "reason": "epoch 2 at weight 1"})
    record({"type": runfiles.DONE, "grid": str(grid)})
    shown = progress.update(progress.PlotWatch().follow(str(tmp_path)))
    assert shown["scored_file"]["interactive"] and shown["scored_file"]["value"] == str(runfiles.scores_badged(grid))
