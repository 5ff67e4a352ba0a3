"""Judging a grid the way the write-up's author does by eye, on cells the toy world's generator drew.

The generator knows the truth of every drawn cell (is it tibbie? is she on the tree?), so the scores
and the recommendation can be checked against it exactly, with no rendering.
"""

import json

import pytest

from lora_studio.toy.sheep import Look, TIBBIE_LOOK, draw_sheep_scene

PROMPT = "masterpiece, best quality, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"
WEIGHTS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EPOCHS = (1, 2, 3)
LOOKALIKE = Look("cream", "black", "pink")  # one feature from her: the judge must not take it for her


def truth(epoch: int, weight: float) -> tuple[bool, bool]:
    """What the drawn cell shows: (is it her, is she sitting on the tree)."""
    her = epoch >= 2 and weight >= 0.5
    on_tree = weight <= 0.8
    return her, on_tree


@pytest.fixture
def drawn_grid(tmp_path):
    """An epoch × weight grid of drawn cells (three seeds each) and the GridScoring of the demo character."""
    from lora_studio.generate.xy_plan import Cell
    from lora_studio.toy.proof import demo_config

    demo_config()  # excludes the demo's distorted frames in this test's review state
    cells = []
    for x, epoch in enumerate(EPOCHS):
        for y, weight in enumerate(WEIGHTS):
            her, on_tree = truth(epoch, weight)
            for z, seed in enumerate((11, 12, 13)):
                # epochs 2 and 3 draw the same images: equal scores, so the earlier epoch must win
                scene = draw_sheep_scene(seed * 100 + y, look=TIBBIE_LOOK if her else LOOKALIKE,
                                         pose="sitting on tree" if on_tree else "standing")
                png = tmp_path / f"z{z}-x{x}-y{y}.png"
                scene.image.save(png)
                cell = Cell(x=x, y=y, z=z, prompt=PROMPT, negative="", seed=seed, sampler="DPM++ 2M Karras",
                            steps=20, cfg=7.0, width=64, height=64, clip_skip=2, epoch=epoch, weight=weight)
                cells.append((cell, png))
    return cells


def _scoring():
    from lora_studio import paths
    from lora_studio.evaluate.grid_scores import GridScoring
    from lora_studio.evaluate.scorers import load_scorer

    return GridScoring(load_scorer("toy"), dataset=paths.assets_dir() / "demo-dataset")


def test_cells_that_show_her_score_high_fidelity_and_lookalikes_low(drawn_grid):
    scoring = _scoring()
    records = [(truth(c.epoch, c.weight), scoring.add(c, png)[0]) for c, png in drawn_grid]
    threshold = scoring.scorer.thresholds.fidelity
    hers = [r["fidelity"] for (her, _), r in records if her]
    others = [r["fidelity"] for (her, _), r in records if not her]
    assert sum(f >= threshold for f in hers) >= 0.8 * len(hers)
    assert sum(f < threshold for f in others) >= 0.9 * len(others)
    assert all(0.0 <= r[key] <= 1.0 for _, r in records for key in ("fidelity", "adherence", "quality"))


def test_a_cell_that_keeps_the_tree_scores_higher_adherence_than_one_that_lost_it(drawn_grid):
    scoring = _scoring()
    records = [(truth(c.epoch, c.weight), scoring.add(c, png)[0]) for c, png in drawn_grid]
    # the character's own tags (tibbie, sheep, pink bow) and boilerplate are not asked of adherence
    assert records[0][1]["asked"] == ["sitting on tree"]
    on_tree = [r["adherence"] for (_, tree), r in records if tree]
    lost = [r["adherence"] for (_, tree), r in records if not tree]
    assert min(on_tree) > max(lost)


def test_the_recommendation_falls_where_the_generator_put_her_on_the_tree(drawn_grid, tmp_path):
    from lora_studio import runfiles

    scoring = _scoring()
    for cell, png in drawn_grid:
        scoring.add(cell, png)
    grid = tmp_path / "xy_grid-0001.png"
    json_path, csv_path, rec = scoring.write(grid)
    assert json_path == runfiles.scores_file(grid) and csv_path.is_file()
    # she is there from weight 0.5 (epochs 2 and 3) and on the tree up to 0.8: the pick is inside that window,
    # at the earliest of the epochs that show her equally
    assert rec["epoch"] == 2 and 0.5 <= rec["weight"] <= 0.8, rec
    assert "recognised from weight 0.5" in rec["reason"] and "'sitting on tree' survives up to 0.8" in rec["reason"]
    epoch_one = next(e for e in rec["per_epoch"] if e["epoch"] == 1)
    assert epoch_one["recognised_from"] is None
    data = json.loads(json_path.read_text())
    assert data["scorer"] == "toy" and len(data["cells"]) == len(drawn_grid)
    assert data["recommendation"]["reason"] == rec["reason"]
    assert set(data["cells"][0]) >= {"x", "y", "epoch", "weight", "prompt", "seed", "fidelity", "adherence", "quality"}
    assert csv_path.read_text().splitlines()[0].startswith("x,y,z,run,epoch,weight,prompt,seed,fidelity")


def test_a_scored_cell_is_not_scored_again(drawn_grid):
    first = _scoring()
    for cell, png in drawn_grid[:6]:
        assert first.add(cell, png)[1] is False
    again = _scoring()
    for cell, png in drawn_grid[:6]:
        record, cached = again.add(cell, png)
        assert cached and record == first.cells[(cell.x, cell.y, cell.z)]
    assert again.scored == 0


def test_broken_cells_are_never_recommended():
    from lora_studio.evaluate.recommend import recommend
    from lora_studio.evaluate.scorer import Thresholds

    cells = [{"epoch": 1, "weight": 0.7, "fidelity": 0.99, "adherence": 0.99, "quality": 0.1},
             {"epoch": 2, "weight": 0.6, "fidelity": 0.8, "adherence": 0.7, "quality": 0.9},
             {"epoch": 2, "weight": 0.0, "fidelity": 0.9, "adherence": 0.9, "quality": 0.9}]
    rec = recommend(cells, Thresholds(0.75, 0.5, 0.5))
    assert (rec["epoch"], rec["weight"]) == (2, 0.6)  # not the broken cell, not weight 0 (the base alone)
    assert "1 broken cell counted as misses" in rec["reason"]


def test_a_weight_broken_in_most_of_its_pictures_is_not_picked_for_the_one_that_passed():
    # Four pictures of epoch 6 at 0.9 (two prompts × two seeds), three of them broken: judged on all four,
    # it loses to epoch 5 at 1, clean in every picture, though its one clean picture scores higher.
    from lora_studio.evaluate.recommend import recommend
    from lora_studio.evaluate.scorer import Thresholds

    mostly_broken = [{"epoch": 6, "weight": 0.9, "fidelity": f, "adherence": 1.0, "quality": q}
                     for f, q in ((0.94, 0.92), (0.65, 0.01), (0.05, 0.45), (0.03, 0.07))]
    clean = [{"epoch": 5, "weight": 1.0, "fidelity": 0.76, "adherence": 0.98, "quality": 0.99} for _ in range(4)]
    rec = recommend(mostly_broken + clean, Thresholds(0.7061, 0.5, 0.5))
    assert (rec["epoch"], rec["weight"]) == (5, 1.0)
    assert rec["reason"].endswith("(3 broken cells counted as misses)")


def test_equal_scores_go_to_the_lower_weight_and_the_earlier_epoch():
    from lora_studio.evaluate.recommend import recommend
    from lora_studio.evaluate.scorer import Thresholds

    same = {"fidelity": 0.9, "adherence": 0.8, "quality": 0.9}
    cells = [{"epoch": e, "weight": w, **same} for e in (3, 2) for w in (0.9, 0.6)]
    rec = recommend(cells, Thresholds(0.75, 0.5, 0.5))
    assert (rec["epoch"], rec["weight"]) == (2, 0.6)


def test_fidelity_weighs_beta_times_adherence_as_cyberharem_ranks():
    from lora_studio.evaluate.scorer import f_beta

    assert f_beta(0.9, 0.5) > f_beta(0.5, 0.9)
    assert f_beta(0.7, 0.7, beta=3) == pytest.approx(0.7)
    assert f_beta(0.0, 1.0) == 0.0


def test_a_grid_whose_lora_cells_all_look_broken_says_so_instead_of_picking_one():
    from lora_studio.evaluate.recommend import recommend
    from lora_studio.evaluate.scorer import Thresholds

    cells = [{"epoch": 1, "weight": w, "fidelity": 0.9, "adherence": 0.9, "quality": 0.1 if w else 0.9}
             for w in (0.0, 0.5, 1.0)]
    rec = recommend(cells, Thresholds(0.75, 0.5, 0.5))
    assert rec["epoch"] is None and rec["weight"] is None
    assert rec["reason"].startswith("nothing to recommend: all 2 cells with the LoRA on look broken")
