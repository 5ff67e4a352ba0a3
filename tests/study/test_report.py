"""A study's report on real artifacts: the demo run's loss curves and a real scored XY plot of it.

The study folder is built once per module: the demo LoRA (tests/conftest.py) copied in as two runs,
bs1 and bs2 (the same real run twice: training a second one would cost a minute), one real scored
grid of both with a Z axis over them, and study.json written from those files as the schema in
lora_studio/study/__init__.py says.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from lora_studio import runfiles

PROMPT = "tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"
STEPS = 12


def curves_of(run: Path) -> dict:
    """A run's loss curves from its events.jsonl, in study.json's form."""
    events, _ = runfiles.read_events(run)
    started = next(e for e in events if e["type"] == runfiles.STARTED)
    per_epoch = started["steps_per_epoch"]
    steps = [e for e in events if e["type"] == runfiles.STEP]
    by_epoch: dict[int, list[float]] = {}
    for e in steps:
        by_epoch.setdefault(int(e["epoch"]), []).append(e["loss"])
    done = next(e for e in events if e["type"] == runfiles.DONE)
    return {"steps": len(steps), "steps_per_epoch": per_epoch, "epochs": started["epochs"],
            "elapsed_s": done.get("elapsed_s"),
            "loss": [[e["step"] / per_epoch, e["loss"]] for e in steps],
            "epoch_loss": [[epoch, sum(v) / len(v)] for epoch, v in sorted(by_epoch.items())],
            "validation": [[e["epoch"], e["loss"]] for e in events if e["type"] == runfiles.VALIDATION]}


def judged(scores: dict, run: str | None = None) -> dict | None:
    """The recommendation over a scores.json's cells (of one run, or of all)."""
    from lora_studio.evaluate.recommend import recommend
    from lora_studio.evaluate.scorer import Thresholds

    cells = [c for c in scores["cells"] if run is None or c["run"] == run]
    return recommend(cells, Thresholds(**scores["thresholds"]), scores["beta"])


def quality_at(scores: dict, run: str, epoch: int, weight: float) -> float:
    values = [c["quality"] for c in scores["cells"] if (c["run"], c["epoch"], c["weight"]) == (run, epoch, weight)]
    return sum(values) / len(values)


def build_study(run: Path, root: Path) -> Path:
    """A finished two-run study folder at root from one real run folder (its report not written yet)."""
    from lora_studio.config import XYPlotConfig
    from lora_studio.evaluate.heatmap import draw_heatmaps
    from lora_studio.generate.xy_job import run_axis, run_xy_plot
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config

    config = demo_config()  # the review state the demo run was trained with (the distorted frames excluded)
    names = ["bs1", "bs2"]
    for name in names:
        shutil.copytree(run, root / name, ignore=shutil.ignore_patterns(runfiles.STATE_DIR, runfiles.SAMPLES_DIR))
    grid_dir = runfiles.study_grid_dir(root, 0)
    plot = XYPlotConfig(base="toy", prompt=PROMPT, x="epoch=4,7", y="weight=0,0.6,1",
                        z=run_axis([str(root / n) for n in names]), steps=STEPS, seed=1, size="64x64",
                        score=True, share="")
    result = run_xy_plot(plot, load_base("toy"), grid_dir, lambda e: None, lambda: False)
    grid = Path(result["grid"])
    scores = json.loads(runfiles.scores_file(grid).read_text())
    heatmaps, picks, best = {}, {}, []
    for name in names:
        mine = {**scores, "cells": [c for c in scores["cells"] if c["run"] == name], "recommendation": judged(scores, name)}
        path = grid_dir / f"{grid.stem}-{name}-scores.png"
        draw_heatmaps(mine).save(path)
        heatmaps[name] = path.relative_to(root).as_posix()
        pick = mine["recommendation"]
        picks[name] = {"epoch": pick["epoch"], "weight": pick["weight"], "reason": pick["reason"]}
        best.append({"batch_size": int(name[2:]), "run": name, "epoch": pick["epoch"], "weight": pick["weight"],
                     "fidelity": pick["fidelity"], "adherence": pick["adherence"],
                     "quality": quality_at(scores, name, pick["epoch"], pick["weight"]), "f": pick["f_beta"]})
    overall = judged(scores)
    study = {"version": 1, "name": "tibbie", "dataset": config.dataset, "base": "toy", "preset": "demo",
             "lr_scaling": "same", "batch_sizes": [1, 2], "weights": [0.0, 0.6, 1.0], "prompts": [PROMPT],
             "runs": [{"batch_size": int(n[2:]), "run": n, "folder": n, "state": "done", "unet_lr": 0.003,
                       "te_lr": 0.0003, **curves_of(root / n)} for n in names],
             "grids": [{"prompt_index": 0, "prompt": PROMPT, "folder": grid_dir.relative_to(root).as_posix(),
                        "grid": grid.relative_to(root).as_posix(),
                        "run_grids": {n: Path(p).relative_to(root).as_posix() for n, p in zip(names, result["grids"])},
                        "scores": runfiles.scores_file(grid).relative_to(root).as_posix(),
                        "heatmaps": heatmaps, "picks": picks, "state": "done"}],
             "best": best,
             "recommendation": {"batch_size": int(overall["run"][2:]), "run": overall["run"], "epoch": overall["epoch"],
                                "weight": overall["weight"], "reason": overall["reason"]},
             "report": runfiles.REPORT_FILE, "sheet": runfiles.REPORT_SHEET}
    runfiles.atomic_write(root / runfiles.STUDY_FILE, json.dumps(study, indent=1))
    return root


@pytest.fixture(scope="module")
def study_dir(demo_lora, tmp_path_factory) -> Path:
    """The study folder of the demo run, built once for this module."""
    home = tmp_path_factory.mktemp("study-home")
    old = os.environ.get("LORA_STUDIO_HOME")
    os.environ["LORA_STUDIO_HOME"] = str(home)  # a module fixture runs before the per-test studio_home
    try:
        return build_study(demo_lora[0], home / "study")
    finally:
        if old is None:
            os.environ.pop("LORA_STUDIO_HOME")
        else:
            os.environ["LORA_STUDIO_HOME"] = old


@pytest.fixture(scope="module")
def written(study_dir) -> dict:
    """The report of the finished study, written once."""
    from lora_studio.study.report import write_report

    return write_report(study_dir)


def images_of(html_text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html_text)


def decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_the_report_names_the_recommended_run_epoch_and_weight_and_every_runs_best_cell(study_dir, written):
    from lora_studio.generate.prompt import format_weight

    study = json.loads((study_dir / runfiles.STUDY_FILE).read_text())
    rec = study["recommendation"]
    assert written == {"report": study_dir / runfiles.REPORT_FILE, "sheet": study_dir / runfiles.REPORT_SHEET}
    text = written["report"].read_text(encoding="utf-8")
    said = f"batch size {rec['batch_size']}, epoch {rec['epoch']}, weight {format_weight(rec['weight'])}: "
    assert said in text and rec["epoch"] in (4, 7) and rec["weight"] in (0.6, 1.0)
    assert text.index(said) < text.index("<table")  # the answer first, then the evidence
    rows = re.findall(r"<tr(?: class=recommended)?>(<td.*?)</tr>", text)
    assert len(rows) == 2 and text.count("<tr class=recommended>") == 1
    for best, row in zip(study["best"], rows):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[:2] == [str(best["batch_size"]), best["run"]]
        assert cells[4:7] == [str(best["epoch"]), format_weight(best["weight"]), f"{best['fidelity']:.3f}"]
        assert cells[2] == "0.003" and cells[3] == "0.0003"
    assert "the same learning rate at every batch size" in text
    validated = any(r["validation"] for r in study["runs"])  # the demo preset's validation_split decides
    assert ('alt="validation loss of every batch size against epochs"' in text) == validated
    assert ("no run held frames out" in text) == (not validated)
    assert "<script" not in text and "<link" not in text and all(u.startswith("data:") for u in images_of(text))

    sheet = Image.open(written["sheet"])
    assert max(sheet.size) <= 4096 and sheet.width >= 1000
    chunk = json.loads(sheet.info["lora_studio_study"])
    assert chunk["recommendation"] == rec and chunk["headline"].startswith(said)
    assert len(chunk["best"]) == 2


def test_the_embedded_grid_keeps_its_a1111_parameters_text(study_dir, written):
    from lora_studio.generate.grid import read_parameters

    study = json.loads((study_dir / runfiles.STUDY_FILE).read_text())
    original = study_dir / study["grids"][0]["grid"]
    embedded = [decoded(u) for u in images_of(written["report"].read_text(encoding="utf-8"))]
    with_text = [im.info["parameters"] for im in embedded if "parameters" in im.info]
    assert with_text == [read_parameters(original)] and f"Steps: {STEPS}" in with_text[0]
    assert base64.b64encode(original.read_bytes()).decode() in written["report"].read_text(encoding="utf-8")


def test_the_report_opens_in_chromium_with_no_missing_image(study_dir, written):
    sys.path.insert(0, str(Path(__file__).parents[1] / "ui"))
    from test_studio_browser import browser_page, chromium_path

    chromium_path()  # skips at once where Chromium is missing
    with browser_page(written["report"].as_uri()) as page:
        shown = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
        title = page.title()
    # the loss chart (and the validation chart), two runs' heatmaps and the combined grid
    study = json.loads((study_dir / runfiles.STUDY_FILE).read_text())
    charts = 1 + any(r["validation"] for r in study["runs"])
    assert len(shown) == charts + 3 and all(complete and width > 0 for _alt, complete, width in shown), shown
    assert title == "Batch-size study: tibbie"


def test_a_stopped_study_with_a_pending_run_still_gets_a_report_that_says_so(study_dir, tmp_path):
    from lora_studio.study.report import write_report

    study = json.loads((study_dir / runfiles.STUDY_FILE).read_text())
    partial = tmp_path / "stopped-study"
    partial.mkdir()
    shutil.copytree(study_dir / runfiles.STUDY_GRIDS_DIR, partial / runfiles.STUDY_GRIDS_DIR)
    runs = [study["runs"][0], {**study["runs"][1], "state": "stopped", "epoch_loss": study["runs"][1]["epoch_loss"][:3]},
            {"batch_size": 3, "run": "bs3", "folder": "bs3", "state": "pending", "unet_lr": 0.003, "te_lr": 0.0003,
             "steps": 0, "steps_per_epoch": 0, "epochs": 8, "elapsed_s": None, "loss": [], "epoch_loss": [],
             "validation": []}]
    grid = study["grids"][0]
    second = {"prompt_index": 1, "prompt": "tibbie <b>lying</b> on beach & more", "folder": "grids/p2",
              "grid": "grids/p2/xy_grid-0001.png", "run_grids": {}, "scores": "grids/p2/xy_grid-0001-scores.json",
              "heatmaps": {"bs1": "grids/p2/xy_grid-0001-scores.png"}, "picks": {"bs1": None}, "state": "pending"}
    stopped = {**study, "name": "tibbie <script>alert(1)</script>", "batch_sizes": [1, 2, 3], "runs": runs,
               "grids": [{**grid, "state": "stopped", "picks": {**grid["picks"], "bs3": None}}, second],
               "best": study["best"][:1], "recommendation": None}
    runfiles.atomic_write(partial / runfiles.STUDY_FILE, json.dumps(stopped))

    files = write_report(partial)
    text = files["report"].read_text(encoding="utf-8")
    assert "bs3 (batch 3) has not trained yet" in text
    assert f"stopped after 3 of {study['runs'][1]['epochs']} epochs" in text
    assert "No recommendation yet" in text and "Prompt 2: the grid is not drawn yet" in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;lying&lt;/b&gt; on beach &amp; more" in text
    assert all(decoded(u).size[0] > 0 for u in images_of(text))  # only images that exist are embedded
    sheet = Image.open(files["sheet"])
    assert max(sheet.size) <= 4096
    assert json.loads(sheet.info["lora_studio_study"])["recommendation"] is None
