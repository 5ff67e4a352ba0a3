"""Scores for every cell of an XY grid, as cells finish, and the files beside the grid.

    scoring = GridScoring(scorer, beta=3.0)
    scoring.add(cell, cell_png)          # → the cell's scores (from the cache when seen before)
    scoring.write(grid_png)              # → xy_grid-0001-scores.json / .csv, with the recommendation

A cell's scores are cached by its pixels, the scorer's version, the character's reference features and
what its prompt asks, so a re-run grid (its cells from the render cache) scores nothing again.
`score_grid(grid_dir)` scores a grid that already exists from its cells' own `parameters` text.
Both write the grid's badged copy beside it too (evaluate/badges.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np

from lora_studio import paths, runfiles
from lora_studio.errors import UserError
from lora_studio.evaluate.reference import Character, dataset_character, reference_features, run_character
from lora_studio.evaluate.scorer import ScoreRequest, Scores, f_beta
from lora_studio.evaluate.tags import asked_tags

CSV_FIELDS = ("x", "y", "z", "run", "epoch", "weight", "prompt", "seed", "fidelity", "adherence", "quality",
              "f_beta", "path")


def _score_cache(key: str) -> Path:
    return paths.cache_dir() / "xy-scores" / key[:2] / f"{key}.json"


def cell_epoch_weight(cell) -> tuple[int | None, float]:
    """A cell's epoch and LoRA weight, from its axes or else from the run's <lora:NAME-00000N:w> tag."""
    epoch, weight = cell.epoch, cell.weight
    if cell.run is not None and (epoch is None or weight is None):
        for _tag, path, _te, unet in cell.loras:
            match = runfiles.EPOCH_STEM.match(Path(path).stem)
            if match and cell.run.owns(_tag):
                epoch = int(match.group("epoch")) if epoch is None else epoch
                weight = float(unet) if weight is None else weight
                break
    return epoch, float(weight or 0.0)


class GridScoring:
    """Scores cells of one grid with one scorer against their run's character."""

    def __init__(self, scorer, beta: float = 3.0, dataset: str | Path | None = None):
        self.scorer = scorer
        self.beta = beta
        self.dataset = Path(dataset) if dataset else None
        self._characters: dict[str, tuple[Character, np.ndarray, str]] = {}
        self.cells: dict[tuple[int, int, int], dict] = {}
        self.scored = 0  # cells scored now (the rest came from the cache)

    def character(self, run_folder: Path | None) -> tuple[Character, np.ndarray, str]:
        """The character a run's cells are compared with: (kept frames, reference features, their digest)."""
        key = str(self.dataset or run_folder)
        if key not in self._characters:
            if self.dataset is not None:
                character = dataset_character(self.dataset)
            elif run_folder is not None:
                character = run_character(run_folder)
            else:
                raise UserError("the grid's cells use no run, so there is no character to compare with",
                                "pass the dataset of the character (--dataset DIR)")
            features = reference_features(self.scorer, character)
            digest = hashlib.sha256(features.tobytes()).hexdigest()
            self._characters[key] = (character, features, digest)
        return self._characters[key]

    def add(self, cell, png: Path) -> tuple[dict, bool]:
        """Score one delivered cell (its PNG on disk); (the stored record, whether it came from the cache)."""
        from PIL import Image

        run_folder = cell.run.folder if cell.run is not None else None
        character, features, digest = self.character(run_folder)
        asked = asked_tags(cell.prompt, character.own_tags())
        with Image.open(png) as im:
            image = im.convert("RGB")
        pixels = hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()
        key = hashlib.sha256(json.dumps([self.scorer.name, self.scorer.version, digest, asked, pixels]).encode()).hexdigest()
        cache = _score_cache(key)
        cached = cache.is_file()
        if cached:
            scores = Scores.from_dict(json.loads(cache.read_text()))
        else:
            scores = self.scorer.score([image], [ScoreRequest(asked)], features)[0]
            cache.parent.mkdir(parents=True, exist_ok=True)
            runfiles.atomic_write(cache, json.dumps(scores.to_dict()))
            self.scored += 1
        epoch, weight = cell_epoch_weight(cell)
        record = {"x": cell.x, "y": cell.y, "z": cell.z, "run": run_folder.name if run_folder else "",
                  "epoch": epoch, "weight": weight, "prompt": cell.prompt, "seed": cell.seed,
                  "fidelity": round(scores.fidelity, 4), "adherence": round(scores.adherence, 4),
                  "quality": round(scores.quality, 4),
                  "f_beta": round(f_beta(scores.fidelity, scores.adherence, self.beta), 4),
                  "asked": list(asked), "unjudged": list(scores.unjudged), "path": Path(png).name}
        self.cells[(cell.x, cell.y, cell.z)] = record
        return record, cached

    def event(self, record: dict, cached: bool, with_z: bool) -> dict:
        """The `score` event for a scored cell."""
        event = {"type": runfiles.SCORE, "x": record["x"], "y": record["y"], "fidelity": record["fidelity"],
                 "adherence": record["adherence"], "quality": record["quality"], "cached": cached}
        if with_z:
            event["z"] = record["z"]
        return event

    def recommendation(self) -> dict | None:
        """The recommended epoch × weight over the cells scored so far."""
        from lora_studio.evaluate.recommend import recommend

        return recommend(list(self.cells.values()), self.scorer.thresholds, self.beta)

    def write(self, grid: Path) -> tuple[Path, Path, dict | None]:
        """scores.json and the CSV beside the grid PNG; returns their paths and the recommendation."""
        ordered = [self.cells[k] for k in sorted(self.cells, key=lambda t: (t[2], t[1], t[0]))]
        recommendation = self.recommendation()
        t = self.scorer.thresholds
        data = {"scorer": self.scorer.name, "scorer_version": self.scorer.version, "beta": self.beta,
                "thresholds": {"fidelity": t.fidelity, "adherence": t.adherence, "quality": t.quality},
                "grid": Path(grid).name, "cells": ordered, "recommendation": recommendation}
        json_path = runfiles.scores_file(grid)
        runfiles.atomic_write(json_path, json.dumps(data, indent=1) + "\n")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(ordered)
        csv_path = runfiles.scores_csv(grid)
        runfiles.atomic_write(csv_path, out.getvalue())
        from lora_studio.evaluate.heatmap import write_heatmaps

        write_heatmaps(grid, data)
        return json_path, csv_path, recommendation


def load_scores(grid: Path) -> dict | None:
    """The scores.json of a grid PNG, or None when it was not scored."""
    path = runfiles.scores_file(grid)
    return json.loads(path.read_text()) if path.is_file() else None


def newest_grid(folder: Path) -> Path:
    """The highest-numbered xy_grid-NNNN.png in a folder (a grid PNG itself is returned as is)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    pattern = re.compile(re.escape(runfiles.XY_GRID_PREFIX) + r"(\d{4,})\.png$")
    grids = sorted((int(m.group(1)), p) for p in folder.glob(runfiles.XY_GRID_PREFIX + "*.png")
                   if (m := pattern.match(p.name)))
    if not grids:
        raise UserError(f"no xy_grid-NNNN.png in {folder}", "give the folder of an XY plot (or its grid PNG)")
    return grids[-1][1]


def score_grid(grid_or_folder: Path, *, scorer: str = "", beta: float | None = None, dataset: str = "",
               emit=None) -> tuple[Path, dict | None, GridScoring]:
    """Score an existing grid from its settings file and cell PNGs; (scores.json, recommendation, scoring)."""
    import dataclasses

    from lora_studio.config import load_toml, xy_config_from_dict
    from lora_studio.generate.xy import cell_file_name
    from lora_studio.generate.xy_job import TABLE, check_plot, start_scoring

    grid = newest_grid(Path(grid_or_folder))
    settings = runfiles.xy_settings_file(grid)
    if not settings.is_file():
        raise UserError(f"{settings.name} is missing beside {grid.name}, so its cells cannot be matched to epochs",
                        "plot it again (cached cells make that quick), with --score to score it at once")
    values = load_toml(settings)
    config = xy_config_from_dict({**values[TABLE], "base": str(values.get("base_model", "toy"))})
    changes = {"score": True}
    if scorer:
        changes["scorer"] = scorer
    if beta is not None:
        changes["beta"] = beta
    if dataset:
        changes["score_dataset"] = dataset
    config = dataclasses.replace(config, **changes)
    planned = check_plot(config)
    scoring = start_scoring(config, planned)
    cell_dir = grid.with_suffix("")
    sheets = planned.shape[2]
    emit = emit or (lambda event: None)
    for cell in planned.cells:
        png = cell_dir / cell_file_name(cell, sheets)
        if png.is_file():
            record, cached = scoring.add(cell, png)
            emit(scoring.event(record, cached, sheets > 1))
    if not scoring.cells:
        raise UserError(f"none of the cells of {grid.name} are in {cell_dir}", "plot it again")
    json_path, _csv, recommendation = scoring.write(grid)
    from lora_studio.evaluate.badges import write_badged

    write_badged(grid, planned, config, json.loads(json_path.read_text()))
    return json_path, recommendation, scoring
