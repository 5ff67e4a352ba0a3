"""`lora-studio xy`: an XY(Z) plot of a run's epoch files from the command line.

    lora-studio xy --base MODEL --run RUN_DIR --prompt "…" [--negative "…"] --x epoch
        --y "weight=0,0.3,0.5,0.6,0.7,0.8,0.9,1" [--z "run=DIR1,DIR2"] [--sr …] [--seed N]
        [--sampler "DPM++ 2M Karras"] [--steps 20] [--cfg 7] [--size 512x512] --output DIR
"""

from __future__ import annotations

import re
from pathlib import Path

from lora_studio.errors import UserError


def add_xy_parser(subparsers) -> None:
    """Register the `xy` subcommand on the CLI's subparsers."""
    p = subparsers.add_parser("xy", help="XY plot: epochs × LoRA weights (× runs) as a labelled grid")
    p.add_argument("--base", required=True, help="SD1.5 base: 'toy', a diffusers folder, a .safetensors file or a hub id")
    p.add_argument("--run", help="run folder with NAME-000001.safetensors … (optional when --z gives runs)")
    p.add_argument("--prompt", required=True, help="A1111 prompt; <lora:NAME-000001:0> marks the run's LoRA")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--x", required=True, help="X axis: epoch | epoch=1-8 | weight=0,0.5,1 | sr=a,b | seed=… | cfg=… | "
                                              "steps=… | sampler=… | clip_skip=… | run=DIR1,DIR2")
    p.add_argument("--y", help="Y axis, same forms as --x")
    p.add_argument("--z", help="Z axis, e.g. run=DIR1,DIR2: one grid per value plus a combined sheet")
    p.add_argument("--sr", help="Prompt S/R values 'find,replace1,replace2'; an axis named 'sr' without values uses "
                                "them, else they become the first free axis")
    p.add_argument("--seed", type=int, default=-1, help="seed for every cell (-1: one random seed)")
    p.add_argument("--sampler", default="DPM++ 2M Karras", help="A1111 sampler name")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    p.add_argument("--size", default="512x512", help="WIDTHxHEIGHT")
    p.add_argument("--clip-skip", type=int, default=2, help="A1111 'Clip skip' (2 for anime models)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="cells rendered together when they share a LoRA state (0: 1 on CPU, 4 on a GPU)")
    p.add_argument("--margin", type=int, default=0, help="pixels between cells")
    p.add_argument("--no-legend", action="store_true", help="grid without labels")
    p.add_argument("--no-cache", action="store_true", help="render every cell again, ignoring cached cells")
    p.add_argument("--share", choices=("jpeg", "webp"), help="also write a small copy to post")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--output", required=True, help="folder for xy_grid-NNNN.png and its cells")
    p.set_defaults(func=run_xy)


def parse_size(text: str) -> tuple[int, int]:
    """'512x512' → (512, 512)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT", "for example --size 512x512")
    return int(match.group(1)), int(match.group(2))


def plan_from_args(args):
    """The XYPlan the flags describe (no model loaded, so mistakes are reported at once)."""
    from lora_studio.generate.xy_plan import XYPlan, parse_axis

    axes = [parse_axis(spec, args.sr) if spec else None for spec in (args.x, args.y, args.z)]
    if args.sr and not any(a is not None and a.kind == "sr" for a in axes):
        free = next((i for i, a in enumerate(axes) if a is None), None)
        if free is None:
            raise UserError("--sr needs a free axis, but X, Y and Z are all used", "drop one axis or write it as sr=…")
        axes[free] = parse_axis("sr", args.sr)
    if axes[2] is not None and axes[1] is None:
        axes[1], axes[2] = axes[2], None
    width, height = parse_size(args.size)
    return XYPlan(prompt=args.prompt, negative=args.negative, x=axes[0], y=axes[1], z=axes[2],
                  run=Path(args.run) if args.run else None, seed=args.seed, sampler=args.sampler,
                  steps=args.steps, cfg=args.cfg, width=width, height=height, clip_skip=args.clip_skip,
                  batch_size=args.batch_size or 1, margin=args.margin, legend=not args.no_legend,
                  use_cache=not args.no_cache)


def run_xy(args) -> int:
    """Plan, load the base once, render, and print where the grid is."""
    import dataclasses

    import torch

    from lora_studio.generate.grid import share_copy
    from lora_studio.generate.infotext import recipe_text, training_recipe
    from lora_studio.generate.xy import xy_plot
    from lora_studio.generate.xy_plan import plan_cells
    from lora_studio.models.load import load_base
    from lora_studio.runfiles import append_event, clear_stop, stop_requested

    plan = plan_from_args(args)
    planned = plan_cells(plan)
    runs = sorted({c.run.folder for c in planned.cells if c.run}, key=str)
    recipe = recipe_text([(r.name, training_recipe(r)) for r in runs])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # batching only pays on a GPU; on a CPU it would also cost bit-identity with single renders
    batch_size = args.batch_size or (4 if device.startswith("cuda") else 1)
    plan = dataclasses.replace(plan, recipe=recipe, batch_size=batch_size)
    base = load_base(args.base, device=device, dtype=torch.float16 if device.startswith("cuda") else None)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    clear_stop(output)  # a STOP file (`touch DIR/STOP`) ends the plot early; an old one must not
    total = len(planned.cells)
    done = 0

    def emit(event: dict) -> None:
        nonlocal done
        append_event(output, event)
        if event["type"] == "xy_plan":
            print(f"{event['cells']} cells, {event['to_render']} to render (the rest cached or repeated)")
        elif event["type"] == "cell":
            done += 1
            print(f"[{done}/{total}] {'rendered' if event['rendered'] else 'reused  '} {event['path']}")

    result = xy_plot(base, plan, output, emit=emit, should_stop=lambda: stop_requested(output), planned=planned)
    print(f"grid: {result.grid} ({result.rendered} rendered, {result.reused} reused"
          + (", stopped early" if result.stopped else "") + (", saved downscaled" if result.downscaled else "") + ")")
    if args.share:
        print(f"share copy: {share_copy(result.grid, args.share)}")
    return 0
