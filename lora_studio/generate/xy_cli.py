"""`lora-studio xy`: an XY(Z) plot of a run's epoch files from the command line.

    lora-studio xy --base MODEL --run RUN_DIR --prompt "…" [--negative "…"] --x epoch
        --y "weight=0,0.3,0.5,0.6,0.7,0.8,0.9,1" [--z "run=DIR1,DIR2"] [--sr …] [--seed N]
        [--sampler "DPM++ 2M Karras"] [--steps 20] [--cfg 7] [--size 512x512] --output DIR
    lora-studio xy --base MODEL --run RUN_DIR --infotext PARAMETERS.txt|GRID.png --output DIR

The flags are config.XYPlotConfig's fields (a new field becomes a flag by itself); the plot is
generate.xy_job.run_xy_plot, the same function the studio's worker runs. --infotext fills every field
from an A1111 `parameters` text (generate/infotext_parse.py); a flag given beside it wins.
"""

from __future__ import annotations

from pathlib import Path

from lora_studio.config import XY_FIELD_NAMES, XYPlotConfig, xy_config_from_dict, xy_field_info
from lora_studio.errors import UserError
from lora_studio.generate.xy_plan import AXIS_KINDS, parse_size, plan_from_config  # noqa: F401 (parse_size: the CLI's API)

_TYPES = {"int": int, "float": float, "str": str}
# the required flags an --infotext file supplies instead
FROM_INFOTEXT = ("prompt", "x")


def _flag(name: str) -> str:
    return xy_field_info(name).get("cli") or "--" + name.replace("_", "-")


def add_xy_parser(subparsers) -> None:
    """Register the `xy` subcommand on the CLI's subparsers, one flag per XYPlotConfig field."""
    from lora_studio.cli import add_queue_arg

    p = subparsers.add_parser("xy", help="XY plot: epochs × LoRA weights (× runs) as a labelled grid")
    for name in XY_FIELD_NAMES:
        info = xy_field_info(name)
        if info["type"] == "bool":
            # A field that is on by default is turned off by its flag (--no-legend, --no-cache).
            p.add_argument(_flag(name), dest=name, action="store_false" if info["default"] else "store_true",
                           help=info["help"])
            continue
        kwargs = {"dest": name, "type": _TYPES[info["type"]], "help": info["help"]}
        if name == "x":  # the planner's own list, so a new axis shows up here by itself
            kwargs["help"] += " (kinds: " + ", ".join(AXIS_KINDS) + ")"
        if info.get("cli_required") and name not in FROM_INFOTEXT:
            kwargs["required"] = True
        else:
            kwargs["default"] = _flag_default(name)
        if info.get("choices"):
            kwargs["choices"] = [c for c in info["choices"] if c]  # "" (none) is the flag left out
        p.add_argument(_flag(name), **kwargs)
    p.add_argument("--infotext", metavar="FILE",
                   help="fill the fields from an A1111 parameters text (a .txt, or a PNG A1111 saved); flags win")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--output", help="folder for xy_grid-NNNN.png and its cells (not needed with --queue)")
    add_queue_arg(p)
    p.set_defaults(func=run_xy)


def _flag_default(name: str):
    """A flag's value when it is left out (None for the ones --infotext may supply)."""
    info = xy_field_info(name)
    if info.get("cli_required"):
        return None
    return info["default"] if info["type"] == "bool" else info.get("cli_default", info["default"])


def config_from_args(args, notes: list[str] | None = None) -> XYPlotConfig:
    """The XYPlotConfig the flags describe (and the --infotext file; `notes` gets what it could not use)."""
    flags = {name: getattr(args, name) for name in XY_FIELD_NAMES}
    infotext = getattr(args, "infotext", None)
    if not infotext:
        for name in FROM_INFOTEXT:
            if flags[name] is None:
                raise UserError(f"{_flag(name)} is required", "or give --infotext FILE with an A1111 parameters text")
        return xy_config_from_dict(flags)
    from lora_studio.generate.infotext_parse import plot_from_infotext, read_infotext_file, run_mismatch

    # a flag left at its default says nothing; one the user set beats the pasted text
    given = {name: value for name, value in flags.items() if value != _flag_default(name)}
    defaults = {name: _flag_default(name) for name in XY_FIELD_NAMES if _flag_default(name) is not None}
    pasted = plot_from_infotext(read_infotext_file(infotext), defaults, **given)
    if notes is not None and pasted.warning():
        notes.append(pasted.warning())
    if pasted.config.run.strip():
        wrong = run_mismatch(pasted.config.prompt, pasted.config.run)
        if wrong:
            raise UserError(wrong, "--run picks the run; the infotext's prompt names the LoRA files")
    return pasted.config


def plan_from_args(args):
    """The XYPlan the flags describe (no model loaded, so mistakes are reported at once)."""
    return plan_from_config(config_from_args(args))


class XYTerminal:
    """A Recorder listener: one line per cell as it arrives."""

    def __init__(self):
        self.done = 0
        self.total = 0

    def __call__(self, event: dict) -> None:
        from lora_studio import runfiles

        if event["type"] == runfiles.XY_PLAN:
            self.total = event["cells"]
            print(f"{event['cells']} cells, {event['to_render']} to render (the rest cached or repeated)")
        elif event["type"] == runfiles.CELL:
            self.done += 1
            print(f"[{self.done}/{self.total}] {'rendered' if event['rendered'] else 'reused  '} {event['path']}")


def run_xy(args) -> int:
    """Plan, take the GPU, load the base once, render, and print where the grid is (--queue: hand it to the worker)."""
    import torch

    from lora_studio import jobs, runfiles
    from lora_studio.cli import holding_gpu
    from lora_studio.generate.xy_job import check_plot, run_xy_plot
    from lora_studio.models.load import load_base

    notes: list[str] = []
    config = config_from_args(args, notes)
    for note in notes:
        print(note)
    if args.queue:
        job = jobs.submit_xy(config)
        print(f"queued as {job.id} for the studio's worker: {job.run_dir}")
        return 0
    if not args.output:
        raise UserError("no output folder given", "pass --output DIR (or --queue to let the studio's worker plot it)")
    check_plot(config)  # mistakes are reported before the model loads
    output = Path(args.output)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with holding_gpu(output.name):
        base = load_base(config.base, device=device, dtype=torch.float16 if device.startswith("cuda") else None)
        output.mkdir(parents=True, exist_ok=True)
        runfiles.clear_stop(output)  # a STOP file (`touch DIR/STOP`) ends the plot early; an old one must not
        record = runfiles.Recorder(output, XYTerminal())
        result = run_xy_plot(config, base, output, record, lambda: runfiles.stop_requested(output))
        if not record.ended:
            record({"type": runfiles.DONE, **result})
    print(f"grid: {result['grid']} ({result['rendered']} rendered, {result['reused']} reused"
          + (", stopped early" if result["stopped"] else "") + (", saved downscaled" if result["downscaled"] else "")
          + ")")
    if result.get("share"):
        print(f"share copy: {result['share']}")
    return 0
