"""`lora-studio score GRID_DIR`: score an existing XY grid's cells and say which epoch × weight to use.

    lora-studio score runs/xy-…/                 # the newest xy_grid-NNNN.png in the folder
    lora-studio score out/xy_grid-0002.png --scorer anime --beta 2 --dataset frames/

Cells scored before (same pixels, scorer and character) are read from the cache, not scored again.
"""

from __future__ import annotations

from lora_studio.config import XY_SCORERS


def add_score_parser(subparsers) -> None:
    """Register the `score` subcommand."""
    p = subparsers.add_parser("score", help="score an XY grid's cells (fidelity, adherence, quality) and recommend")
    p.add_argument("grid", help="an XY plot's folder (its newest grid) or one xy_grid-NNNN.png")
    p.add_argument("--scorer", choices=[s for s in XY_SCORERS if s],
                   help="toy (the toy judge) or anime (CCIP + WD14 + AI-corrupt); default: the plot's own choice")
    p.add_argument("--beta", type=float, help="F-β weight of fidelity over adherence (default: the plot's, 3)")
    p.add_argument("--dataset", help="the character's frames (default: the run's own dataset)")
    p.set_defaults(func=run_score)


def run_score(args) -> int:
    """Score, write xy_grid-NNNN-scores.json/.csv/.png and the badged grid, print the recommendation."""
    from lora_studio import runfiles
    from lora_studio.evaluate.grid_scores import newest_grid, score_grid

    json_path, recommendation, scoring = score_grid(args.grid, scorer=args.scorer or "", beta=args.beta,
                                                    dataset=args.dataset or "")
    cells = len(scoring.cells)
    print(f"{cells} cells, {scoring.scored} scored now, {cells - scoring.scored} from the cache ({scoring.scorer.name} scorer)")
    print(f"scores: {json_path}")
    print(f"grid with score badges: {runfiles.scores_badged(newest_grid(args.grid))}")
    print("recommended: " + (recommendation["reason"] if recommendation else "nothing (no cell with the LoRA on)"))
    return 0
