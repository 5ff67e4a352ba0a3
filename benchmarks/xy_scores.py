"""Benchmark: what --score adds to an 8×8 epoch × weight XY plot on the toy model (CPU).

Runs the same plot without and with scoring, alternating (A B A B), every cell rendered anew
(use_cache off) and the score cache emptied before each scored run, so both pay full price.

    OMP_NUM_THREADS=1 python benchmarks/xy_scores.py [--run RUN_DIR]   # trains the demo LoRA if no run given

benchmarks/xy_plot.md keeps the numbers (section "Scoring").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT = "tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="a trained demo run folder (with job.toml); default: train one")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xy-scores-"))
    os.environ["LORA_STUDIO_HOME"] = str(work / "home")

    from lora_studio import jobs, paths
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_job import run_xy_plot
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config, train_demo_lora

    demo_config()
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        run.mkdir(parents=True)
        jobs.write_job_file(run, "train", demo_config())
        train_demo_lora(run)
    base = load_base("toy")
    rows = []
    for round_ in range(args.rounds):
        for score in (False, True):
            shutil.rmtree(paths.cache_dir() / "xy-scores", ignore_errors=True)
            config = XYPlotConfig(base="toy", run=str(run), prompt=PROMPT, size="64x64", seed=7, use_cache=False,
                                  share="", score=score)
            events = []
            start = time.perf_counter()
            result = run_xy_plot(config, base, work / f"plot-{round_}-{score}", events.append, lambda: False)
            seconds = time.perf_counter() - start
            scored = sum(e["type"] == "score" and not e["cached"] for e in events)
            rows.append((score, seconds, result["rendered"], scored))
            print(f"round {round_ + 1} score={score}: {seconds:.1f} s, {result['rendered']} rendered, {scored} scored",
                  flush=True)
    plain = min(s for score, s, *_ in rows if not score)
    scored = min(s for score, s, *_ in rows if score)
    print(f"| best of {args.rounds} | {plain:.1f} s | {scored:.1f} s | +{100 * (scored - plain) / plain:.1f} % |")


if __name__ == "__main__":
    main()
