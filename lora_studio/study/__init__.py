"""The seed's batch-size study as one job: a run per batch size, XY grids per study prompt, scores, a report.

Modules: `run.py` (run_study, the one study for the CLI and the worker), `cli.py` (`lora-studio study`),
`report.py` (study.json → report.html and report.png). Files and events are in runfiles.py.

A study folder (a job folder of kind "study", or `--output DIR`):

    job.toml          kind = "study", the TrainConfig at the preset's batch size, and a [study] table (StudyConfig)
    events.jsonl      the study's own stream: study_plan, study_stage, the runs' and grids' events forwarded
                      (tagged run/batch_size, and prompt_index for a grid's), study_report, done
    bs1/ … bs4/       one training run per batch size (train/sweep.py's sub-runs)
    grids/p1/ …       one XY plot per study prompt: X epoch, Y weight, Z run over bs1 … bs4, scored
    grids/p1-seed2/ … the same plot with the next seed, one folder per further seed (StudyConfig.seeds > 1)
    study.json        the results (below), written after every stage so a stopped study shows what it has
    report.html       the report, self-contained (every image embedded as a data: URI)
    report.png        the same report as one sheet to post

study.json (all paths relative to the study folder; numbers are plain JSON numbers):

    {"version": 1, "name": str, "dataset": str, "base": str, "preset": str,
     "lr_scaling": "same" | "sqrt", "batch_sizes": [int], "weights": [float],
     "seeds": [int],                       # the seed of each of a prompt's grids (the first is the study's seed)
     "prompts": [str],                     # as the grids used them (trigger and LoRA tag added)
     "runs": [{"batch_size": int, "run": "bs1", "folder": "bs1", "state": "done" | "stopped" | "pending",
               "unet_lr": float, "te_lr": float, "steps": int, "steps_per_epoch": int, "epochs": int,
               "elapsed_s": float | null,
               "loss": [[epoch: float, loss: float], …],        # every step, x = step ÷ steps_per_epoch
               "epoch_loss": [[epoch: int, mean loss: float], …],
               "validation": [[epoch: int, loss: float], …]}],  # [] when validation_split = 0
     "grids": [{"prompt_index": int, "prompt": str, "folder": "grids/p1",
                "grid": "grids/p1/xy_grid-0001.png",            # the combined sheet (all runs), A1111 parameters kept
                "run_grids": {"bs1": "grids/p1/xy_grid-0001-z01.png", …},  # one run: the grid itself
                "scores": "grids/p1/xy_grid-0001-scores.json", "heatmaps": {"bs1": "grids/p1/xy_grid-0001-bs1-scores.png", …},
                "seed_grids": [{"seed": int, "grid": str, "run_grids": {…}, "scores": str}],  # seeds after the first
                                                        # (grid, run_grids and scores above are the first seed's);
                                                        # heatmaps and picks are over every seed's cells (their mean)
                "picks": {"bs1": {"epoch": int, "weight": float, "reason": str} | null, …},  # epoch and weight
                                                        # null when every cell with the LoRA on looks broken (reason says so)
                "state": "done" | "stopped" | "pending"}],       # grid and scores null until drawn
     "best": [{"batch_size": int, "run": str, "epoch": int, "weight": float, "fidelity": float,
               "adherence": float, "quality": float, "f": float}],  # every run's best cell over all prompts
                                                        # (epoch, weight and scores null as in picks)
     "recommendation": {"batch_size": int, "run": str, "epoch": int, "weight": float, "reason": str} | null,
     "report": "report.html", "sheet": "report.png"}     # null until written
"""
