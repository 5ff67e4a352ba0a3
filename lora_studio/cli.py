"""`lora-studio`: train, probe, sweep and the other subcommands, on the same typed config as the studio."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from lora_studio.config import FIELD_NAMES, TrainConfig, config_from_dict, field_info, parse_overrides, save_config
from lora_studio.errors import UserError

JOB_FILE = "job.toml"


def build_config(args) -> TrainConfig:
    """Preset, then the explicit flags, then --set overrides, then the probe's LRs: one validated config."""
    from lora_studio.presets import load_preset

    config = load_preset(args.preset) if args.preset else TrainConfig()
    explicit = {"dataset": args.dataset, "base_model": args.base, "name": getattr(args, "name", None),
                "trigger_word": getattr(args, "trigger", None)}
    values = {k: v for k, v in explicit.items() if v is not None}
    values.update(parse_overrides(args.set))
    config = config_from_dict(values, config)
    if getattr(args, "lr_from_probe", None):
        from lora_studio.train.probe import apply_probe, read_probe

        config = apply_probe(config, read_probe(args.lr_from_probe))
    return config


class RunReporter:
    """Turns the loop's events into events.jsonl lines and a tqdm bar on the terminal."""

    def __init__(self, run_dir: Path, quiet: bool = False):
        self.run_dir = run_dir
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: dict) -> None:
        from lora_studio.runfiles import append_event

        append_event(self.run_dir, event)
        kind = event.get("type")
        if self.quiet:
            return
        if kind == "started":
            from tqdm import tqdm

            self.bar = tqdm(total=event["total_steps"], initial=event.get("start_step", 0), unit="step",
                            dynamic_ncols=True)
        elif kind == "step" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=event["epoch"], loss=f"{event['loss']:.4f}", lr=f"{event['lr_unet']:.2e}")
        elif kind in ("checkpoint", "sample", "warning", "probe"):
            text = event.get("path") or event.get("message") or f"d·lr {event.get('d_lr'):.3g} → unet_lr {event.get('unet_lr'):.3g}"
            (self.bar.write if self.bar else print)(f"{kind}: {text}")
        elif kind in ("done", "stopped") and self.bar is not None:
            self.bar.close()


def _preset_label(args, config: TrainConfig) -> str:
    from lora_studio.presets import preset_label

    return preset_label(args.preset, config) if args.preset else ""


def _prepare_run(args, config: TrainConfig) -> Path:
    run_dir = Path(args.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    from lora_studio.runfiles import clear_stop

    clear_stop(run_dir)
    save_config(config, run_dir / JOB_FILE, preset=_preset_label(args, config))
    return run_dir


def cmd_train(args) -> int:
    """Train a LoRA; --resume continues a stopped run from its saved state."""
    from lora_studio.runfiles import stop_requested
    from lora_studio.train.loop import train

    if args.resume:
        run_dir = Path(args.resume if isinstance(args.resume, str) else args.output or "")
        if not (run_dir / JOB_FILE).is_file():
            raise UserError(f"nothing to resume in {run_dir}", "pass the folder of a stopped run: --resume RUN_DIR")
        from lora_studio.jobs import load_job

        config = load_job(run_dir).config  # a run started in the studio has job keys besides the config
        args.output = str(run_dir)
        from lora_studio.runfiles import clear_stop

        clear_stop(run_dir)
    else:
        if not args.output:
            raise UserError("no output folder given", "pass --output RUN_DIR")
        config = build_config(args)
        run_dir = _prepare_run(args, config)
        if args.lr_from_probe:
            import shutil

            shutil.copyfile(Path(args.lr_from_probe) / "probe.json", run_dir / "probe.json")
    reporter = RunReporter(run_dir, args.quiet)
    result = _reporting_errors(reporter, lambda: train(config, run_dir, reporter, lambda: stop_requested(run_dir),
                                                       resume=bool(args.resume)))
    for path in result["files"]:
        print(path)
    if result["stopped"]:
        print(f"stopped at step {result['steps']} of {result['total_steps']}; continue with: "
              f"lora-studio train --resume {run_dir}")
    return 0


def cmd_probe(args) -> int:
    """Run the LR probe and print the recommended learning rates."""
    from lora_studio.runfiles import stop_requested
    from lora_studio.train.probe import run_probe

    config = build_config(args)
    run_dir = _prepare_run(args, config)
    reporter = RunReporter(run_dir, args.quiet)
    result = _reporting_errors(reporter, lambda: run_probe(config, run_dir, reporter, lambda: stop_requested(run_dir)))
    print(f"DAdaptation found d·lr = {result['d_lr']:.4g}")
    print(f"recommended: unet_lr = {result['unet_lr']:.4g} (÷{result['probe_divisor']:g}), "
          f"te_lr = {result['te_lr']:.4g} (÷{result['te_lr_divisor']:g}), optimizer lion, scheduler cosine_with_restarts")
    print(f"use it: lora-studio train --lr-from-probe {run_dir} …")
    return 0


def cmd_sweep(args) -> int:
    """The seed's batch-size comparison: one run per batch size, each in RUN_DIR/bsN."""
    from lora_studio.runfiles import stop_requested
    from lora_studio.train.loop import train

    base_config = build_config(args)
    root = Path(args.output)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        config = dataclasses.replace(base_config, batch_size=batch_size,
                                     name=f"{base_config.name}-bs{batch_size}").validate()
        run_dir = root / f"bs{batch_size}"
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / JOB_FILE, preset=_preset_label(args, base_config))
        reporter = RunReporter(run_dir, args.quiet)
        result = _reporting_errors(reporter, lambda: train(config, run_dir, reporter, lambda: stop_requested(run_dir)))
        if result["stopped"]:
            print(f"sweep stopped during batch size {batch_size}")
            return 0
    return 0


def cmd_demo_dataset(args) -> int:
    """Write the toy world's demo frames of 'tibbie' (with a few labelled distorted ones)."""
    from lora_studio.toy.dataset import write_demo_dataset

    out = write_demo_dataset(args.out_dir, n_frames=args.frames, n_distorted=args.distorted, seed=args.seed)
    print(f"wrote {args.frames} frames and {args.distorted} distorted ones (listed in distorted.json) to {out}")
    return 0


def cmd_fields(args) -> int:
    """List every config field with its default and help (what --set and presets accept)."""
    defaults = TrainConfig()
    for name in FIELD_NAMES:
        info = field_info(name)
        extra = f" [{', '.join(info['choices'])}]" if info.get("choices") else ""
        print(f"{name} = {getattr(defaults, name)!r}{extra}\n    {info['help']}")
    return 0


def _reporting_errors(reporter: RunReporter, work):
    """Run work; a UserError also becomes an 'error' event so the run folder tells what happened."""
    try:
        return work()
    except UserError as exc:
        reporter({"type": "error", "message": exc.message, "hint": exc.hint})
        raise


def _add_config_args(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    p.add_argument("--dataset", help="folder of frames with .txt tag captions")
    p.add_argument("--base", help="base model: toy, a hub id, a diffusers folder or a .safetensors file")
    p.add_argument("--preset", help="preset name (see presets/) or a .toml file")
    if with_name:
        p.add_argument("--name", help="LoRA name: files are NAME-000001.safetensors …")
    p.add_argument("--trigger", help="trigger word (tag) of the character")
    p.add_argument("--output", help="run folder (events.jsonl, LoRA files, state)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one config field, e.g. --set batch_size=2 (see 'lora-studio fields')")
    p.add_argument("--lr-from-probe", metavar="RUN_DIR", help="take unet_lr/te_lr from a finished LR probe")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="lora-studio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a LoRA (one file per epoch)")
    _add_config_args(p)
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN_DIR",
                   help="continue a stopped run (its folder, or --output)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("probe", help="LR probe: one DAdaptation epoch → recommended learning rates")
    _add_config_args(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("sweep", help="one run per batch size (default 1,2,3,4)")
    _add_config_args(p)
    p.add_argument("--batch-sizes", default="1,2,3,4")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo-dataset", help="write the toy world's demo frames of the character 'tibbie'")
    p.add_argument("out_dir")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--distorted", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_dataset)

    p = sub.add_parser("fields", help="list config fields, their defaults and help")
    p.set_defaults(func=cmd_fields)

    from lora_studio.data.review_cli import add_review_parser
    from lora_studio.generate.xy_cli import add_xy_parser

    add_xy_parser(sub)
    add_review_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: a user error prints one line and exits 2; bugs keep their traceback."""
    args = make_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"lora-studio: error: {exc.message}" + (f" — {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lora-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
