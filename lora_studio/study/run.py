"""The batch-size study, start to end: `run_study` is the one study that `lora-studio study` and the worker call.

    train   one run per batch size in root/bsN (train/sweep.py's run_sweep, one size at a time)
    xy      per study prompt one XY plot in grids/pN: X epoch, Y weight, Z run over bs1 … bsN, scored;
            with StudyConfig.seeds > 1 the same plot again per further seed in grids/pN-seed2 …, and every
            pick, heatmap and the recommendation use the cells' mean over the seeds
    report  study.json (written after every stage), then report.html and report.png

Every event of the runs and grids is forwarded into the study's own stream, tagged with `run` and
`batch_size` (a training's) or `prompt_index` and `seed_index` (a grid's). A sub-run's `done` is forwarded as
`run_done`, and the inner `stopped` events are not forwarded: the study's one final event (done or
stopped, with this function's result) is the caller's to write. Run again on the same folder, a
study trains only the runs not finished (resume=True continues a stopped one from its saved state)
and its grids reuse every cached cell and score.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

from lora_studio import runfiles
from lora_studio.config import StudyConfig, TrainConfig, XYPlotConfig
from lora_studio.study import results

STUDY_VERSION = 1


def scaled_config(config: TrainConfig, batch_size: int, lr_scaling: str) -> TrainConfig:
    """The preset's config with its LRs for this batch size: the same, or × √(batch ÷ the preset's batch)."""
    if lr_scaling != "sqrt":
        return config
    factor = math.sqrt(batch_size / config.batch_size)
    # te_lr left empty follows unet_lr (÷ te_lr_divisor), so it scales with it by itself
    te_lr = None if config.te_lr is None else config.te_lr * factor
    return dataclasses.replace(config, unet_lr=config.unet_lr * factor, te_lr=te_lr)


def study_prompts(config: TrainConfig, study: StudyConfig) -> list[str]:
    """The grids' prompts: trigger word + the study prompt (empty: the character's own tags) + the first run's LoRA tag."""
    from lora_studio.evaluate.reference import dataset_character

    character = dataset_character(config.dataset, config)
    trigger = character.trigger_word or config.name
    own = character.own_tags()
    # the character's tags in the order the frames write them (most frequent first), the trigger once
    counts: dict[str, int] = {}
    for tags in character.tag_lists:
        for tag in dict.fromkeys(t.strip() for t in tags if t.strip()):
            counts[tag] = counts.get(tag, 0) + 1
    character_tags = [t for t in sorted(counts, key=lambda t: -counts[t])
                      if t.lower() in own and t.lower() != trigger.lower()]
    tag = f"<lora:{config.name}-bs{study.batch_sizes[0]}-000001:0>"  # the Z axis points it at each run
    out = []
    for prompt in study.prompts:
        words = [trigger] + ([prompt.strip()] if prompt.strip() else character_tags)
        out.append(", ".join(words) + ", " + tag)
    return out


def study_weights(study: StudyConfig) -> list[float]:
    """The grids' weights (their Y axis), A1111 ranges such as 0-1 [5] expanded."""
    from lora_studio.generate.xy_plan import parse_axis

    return [float(w) for w in parse_axis(f"weight={study.weights}").values]


def study_seeds(study: StudyConfig) -> list[int]:
    """The seed of each of a prompt's grids: the study's seed, then the next ones (StudyConfig.seeds)."""
    return [(study.seed + k) % 2**32 for k in range(study.seeds)]


def grid_settings(config: TrainConfig, study: StudyConfig, prompt: str, run_dirs: list[Path],
                  seed: int) -> XYPlotConfig:
    """One study grid: epoch × weight × run, the study's sampling settings, the run's size and clip skip, scored."""
    from lora_studio.generate.xy_job import run_axis

    return XYPlotConfig(base=config.base_model, prompt=prompt, negative=study.negative, x="epoch",
                        y=f"weight={study.weights}", z=run_axis([str(d) for d in run_dirs]), seed=seed,
                        sampler=study.sampler, steps=study.steps, cfg=study.cfg,
                        size=f"{config.resolution}x{config.resolution}", clip_skip=config.clip_skip,
                        share="", score=True, scorer=study.scorer, beta=study.beta).validate()


class _Study:
    """study.json as it grows: what is known after each stage."""

    def __init__(self, root: Path, config: TrainConfig, study: StudyConfig, preset: str, prompts: list[str]):
        self.root = root
        self.config, self.study = config, study
        self.data = {"version": STUDY_VERSION, "name": config.name, "dataset": config.dataset,
                     "base": config.base_model, "preset": preset, "lr_scaling": study.lr_scaling,
                     "batch_sizes": list(study.batch_sizes), "weights": study_weights(study),
                     "seeds": study_seeds(study), "prompts": prompts, "runs": [], "grids": [
                         {"prompt_index": i, "prompt": p, "folder": self.rel(runfiles.study_grid_dir(root, i)),
                          "grid": None, "run_grids": {}, "scores": None, "seed_grids": [], "heatmaps": {},
                          "picks": {}, "state": "pending"} for i, p in enumerate(prompts)],
                     "best": [], "recommendation": None, "report": None, "sheet": None}
        self.refresh_runs()

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def refresh_runs(self) -> None:
        runs = []
        for batch_size in self.study.batch_sizes:
            name = runfiles.sweep_subrun(batch_size)
            sub = scaled_config(self.config, batch_size, self.study.lr_scaling)
            runs.append({"batch_size": batch_size, "run": name, "folder": name,
                         "state": results.run_state(self.root / name),
                         "unet_lr": sub.unet_lr, "te_lr": sub.resolved_te_lr(),
                         **results.run_curves(self.root / name)})
            runs[-1]["epochs"] = runs[-1]["epochs"] or sub.epochs  # a run not started yet: what it will train
        self.data["runs"] = runs

    def write(self) -> Path:
        import json

        return runfiles.atomic_write(self.root / runfiles.STUDY_FILE, json.dumps(self.data, indent=1) + "\n")


def run_study(config: TrainConfig, study: StudyConfig, root: Path, emit: Callable[[dict], None],
              should_stop: Callable[[], bool], *, preset: str = "", base=None, resume: bool = False) -> dict:
    """Train a run per batch size, plot and score a grid per prompt, write study.json and the report; the result.

    A stopped study returns {'stopped': True, …}; running it again continues (see the module docstring).
    """
    from lora_studio.generate.xy_job import run_xy_plot
    from lora_studio.models.load import load_base
    from lora_studio.study.report import write_report
    from lora_studio.train.network import remove_lora
    from lora_studio.train.sweep import run_sweep

    config, study, root = config.validate(), study.validate(), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    prompts = study_prompts(config, study)
    state = _Study(root, config, study, preset, prompts)
    sizes = list(study.batch_sizes)
    run_dirs = [root / runfiles.sweep_subrun(b) for b in sizes]
    seeds = study_seeds(study)
    emit({"type": runfiles.STUDY_PLAN, "batch_sizes": sizes, "prompts": prompts, "grids": len(prompts),
          "lr_scaling": study.lr_scaling, "seeds": seeds})
    state.write()

    def stopped() -> dict:
        state.write()
        return {"stopped": True, "study": str(root / runfiles.STUDY_FILE), "runs": [str(d) for d in run_dirs]}

    def from_training(event: dict) -> None:
        if event.get("type") != runfiles.STOPPED:  # the study's own final event says it stopped
            emit(event)

    for index, batch_size in enumerate(sizes):
        name = runfiles.sweep_subrun(batch_size)
        emit({"type": runfiles.STUDY_STAGE, "stage": "train", "index": index, "total": len(sizes), "run": name,
              "batch_size": batch_size})
        if base is None:
            base = load_base(config.base_model)  # once for every run and grid
        outcome = run_sweep(scaled_config(config, batch_size, study.lr_scaling), root, from_training, should_stop,
                            batch_sizes=[batch_size], resume=resume, preset=preset, base=base)
        state.refresh_runs()
        state.write()
        if outcome.get("stopped"):
            return stopped()
    if should_stop():  # the last run finished as the stop came: the grids wait for the next start
        return stopped()

    all_cells: list[dict] = []
    thresholds = None
    for index, prompt in enumerate(prompts):
        entry = state.data["grids"][index]
        entry["seed_grids"] = []
        prompt_cells: list[dict] = []  # every seed's cells: picks and heatmaps average them per cell
        first_grid = None  # the heatmaps sit beside the first seed's grid
        for seed_index, seed in enumerate(seeds):
            emit({"type": runfiles.STUDY_STAGE, "stage": "xy", "index": index, "total": len(prompts),
                  "prompt_index": index, "seed_index": seed_index})

            def from_grid(event: dict, index=index, seed_index=seed_index) -> None:
                if event.get("type") != runfiles.STOPPED:
                    emit({**event, "prompt_index": index, "seed_index": seed_index})

            folder = runfiles.study_grid_dir(root, index, seed_index)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                plotted = run_xy_plot(grid_settings(config, study, prompt, run_dirs, seed), base, folder, from_grid,
                                      should_stop)
            finally:
                remove_lora(base.unet, base.text_encoder)  # the plot's adapter wrappers must not reach the next one
            grid = Path(plotted["grid"])
            drawn = {"grid": state.rel(grid),
                     "run_grids": {d.name: state.rel(p) for d, p in zip(run_dirs, plotted["grids"] or [grid])},
                     "scores": state.rel(Path(plotted["scores"])) if plotted.get("scores") else None}
            if seed_index == 0:
                first_grid = grid
                entry.update(drawn)
            else:
                entry["seed_grids"].append({"seed": seed, **drawn})
            entry["state"] = "stopped" if plotted["stopped"] else (
                "done" if seed_index == len(seeds) - 1 else "pending")
            scores = results.load_scores(plotted["scores"]) if plotted.get("scores") else None
            if scores is not None:
                thresholds = results.thresholds_of(scores)
                prompt_cells += scores["cells"]
                for run_dir in run_dirs:
                    cells = [c for c in prompt_cells if c.get("run") == run_dir.name]
                    pick = results.run_pick(cells, thresholds, study.beta)
                    entry["picks"][run_dir.name] = pick
                    entry["heatmaps"][run_dir.name] = state.rel(
                        results.run_heatmap(first_grid, scores, run_dir.name, cells, pick))
            state.write()
            if plotted["stopped"]:
                return stopped()
        all_cells += [{**c, "prompt_index": index} for c in prompt_cells]

    if thresholds is not None:
        names = [d.name for d in run_dirs]
        state.data["best"] = results.best_cells(all_cells, thresholds, study.beta, names)
        state.data["recommendation"] = results.overall_recommendation(all_cells, thresholds, study.beta,
                                                                      state.data["best"])
    emit({"type": runfiles.STUDY_STAGE, "stage": "report", "index": 0, "total": 1})
    state.write()
    written = write_report(root)
    report, sheet = Path(written["report"]), Path(written["sheet"])
    state.data.update(report=state.rel(report), sheet=state.rel(sheet))
    study_file = state.write()
    recommendation = (state.data["recommendation"] or {}).get("reason")
    emit({"type": runfiles.STUDY_REPORT, "study": str(study_file), "report": str(report), "sheet": str(sheet),
          "recommendation": recommendation})
    return {"study": str(study_file), "report": str(report), "sheet": str(sheet), "recommendation": recommendation,
            "runs": [str(d) for d in run_dirs]}

