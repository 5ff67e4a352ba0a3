"""The XY tab says, in words, what the scores recommend, and shows the heatmaps of a finished plot."""

from lora_studio import runfiles
from lora_studio.ui.xy_scores import ScoreView, scores_image, scores_text


def test_the_tab_counts_scored_cells_then_says_what_to_use(tmp_path):
    view = ScoreView()
    for x in range(2):
        view.feed({"type": runfiles.SCORE, "x": x, "y": 0, "fidelity": 0.9, "adherence": 0.7, "quality": 0.95,
                   "cached": x == 1})
    assert scores_text(view, 4).startswith("Scored 2 / 4 cells (1 from the cache) · mean fidelity 0.90")
    grid = tmp_path / "xy_grid-0001.png"
    assert scores_image(view, str(grid)) is None
    runfiles.scores_picture(grid).write_bytes(b"png")
    view.feed({"type": runfiles.RECOMMENDATION, "epoch": 6, "weight": 0.7, "path": str(runfiles.scores_file(grid)),
               "reason": "epoch 6 at weight 0.7: the character is recognised from weight 0.5"})
    assert "**Recommended:** epoch 6 at weight 0.7: the character is recognised from weight 0.5" in scores_text(view, 4)
    assert scores_image(view, str(grid)) == str(runfiles.scores_picture(grid))
