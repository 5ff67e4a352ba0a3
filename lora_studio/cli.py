"""`lora-studio`: train, probe, sweep and the other subcommands, on the same typed config as the studio."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from lora_studio.config import FIELD_NAMES, TrainConfig, config_from_dict, field_info, parse_overrides, save_config
from lora_studio.errors import UserError


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


class TerminalProgress:
    """A Recorder listener: a tqdm bar over the steps, and one line for each file written."""

    def __init__(self):
        self.bar = None

    def __call__(self, event: dict) -> None:
        from lora_studio import runfiles

        kind = event.get("type")
        if kind == runfiles.STARTED:
            from tqdm import tqdm

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=event["total_steps"], initial=event.get("start_step", 0), unit="step",
                            dynamic_ncols=True)
        elif kind == runfiles.STEP and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=event["epoch"], loss=f"{event['loss']:.4f}", lr=f"{event['lr_unet']:.2e}")
        elif kind in (runfiles.CHECKPOINT, runfiles.SAMPLE, runfiles.WARNING, runfiles.PROBE):
            text = event.get("path") or event.get("message") or f"d·lr {event.get('d_lr'):.3g} → unet_lr {event.get('unet_lr'):.3g}"
            (self.bar.write if self.bar else print)(f"{kind}: {text}")
        elif kind in (runfiles.DONE, runfiles.STOPPED, runfiles.RUN_DONE) and self.bar is not None:
            self.bar.close()
            self.bar = None


def recorder(run_dir: Path, quiet: bool = False):
    """The CLI's emit(): events.jsonl in the run folder (as the worker writes it), plus the terminal's view."""
    from lora_studio.runfiles import Recorder
    from lora_studio.train.processes import is_main_process

    if not is_main_process():  # under `accelerate launch` rank 0 writes the run folder for every process
        return Recorder(run_dir, write=False)
    return Recorder(run_dir, None if quiet else TerminalProgress())


@contextlib.contextmanager
def holding_gpu(job: str):
    """Run a heavy command under the studio's GPU lock; refused (UserError, exit 2) while someone holds it.

    On release, jobs the studio queued meanwhile get a worker: their submit found the lock held.
    """
    from lora_studio import jobs
    from lora_studio.lock import CLI, GpuLock
    from lora_studio.train.processes import is_main_process

    if not is_main_process():  # under `accelerate launch` rank 0 holds the lock for all its processes
        yield None
        return
    lock = GpuLock(CLI)
    lock.acquire(job=job)
    try:
        yield lock
    finally:
        lock.release()
        if jobs.queued_jobs():
            jobs.ensure_worker()


def _queued(job) -> int:
    print(f"queued as {job.id} for the studio's worker: {job.run_dir}")
    return 0


def _preset_label(args, config: TrainConfig) -> str:
    from lora_studio.presets import preset_label

    return preset_label(args.preset, config) if args.preset else ""


def _prepare_run(args, config: TrainConfig) -> Path:
    run_dir = Path(args.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    from lora_studio.runfiles import JOB_FILE, clear_stop

    clear_stop(run_dir)
    save_config(config, run_dir / JOB_FILE, preset=_preset_label(args, config))
    return run_dir


def cmd_train(args) -> int:
    """Train a LoRA; --resume continues a stopped run from its saved state; --queue hands it to the worker."""
    from lora_studio import jobs, paths
    from lora_studio.runfiles import JOB_FILE, clear_stop, remove_stale_temps, stop_requested
    from lora_studio.train.probe import record_probe

    if args.resume:
        run_dir = Path(args.resume if isinstance(args.resume, str) else args.output or "")
        if not (run_dir / JOB_FILE).is_file():
            raise UserError(f"nothing to resume in {run_dir}", "pass the folder of a stopped run: --resume RUN_DIR")
        if args.queue:
            if run_dir.resolve().parent != paths.runs_dir().resolve():
                raise UserError(f"the studio's worker only runs jobs in {paths.runs_dir()}",
                                f"resume it here without --queue: lora-studio train --resume {run_dir}")
            jobs.resume(run_dir)
            print(f"queued {run_dir.name} to resume in the studio's worker")
            return 0
        config = jobs.load_job(run_dir).config  # a run started in the studio has job keys besides the config
        args.output = str(run_dir)
    else:
        if not args.output and not args.queue:
            raise UserError("no output folder given", "pass --output RUN_DIR")
        config = build_config(args)
        if args.queue:
            job = jobs.submit("train", config, preset=_preset_label(args, config), start_worker=False)
            if args.lr_from_probe:  # the loop reads probe.json only when it writes an epoch file
                record_probe(args.lr_from_probe, job.run_dir)
            jobs.ensure_worker()
            return _queued(job)
    with holding_gpu(Path(args.output).name):
        from lora_studio.train.loop import train  # torch: only once the GPU is ours

        if args.resume:
            clear_stop(run_dir)
            remove_stale_temps(run_dir)  # a run killed mid-write left them; we hold the lock now
        else:
            run_dir = _prepare_run(args, config)
            if args.lr_from_probe:
                record_probe(args.lr_from_probe, run_dir)  # its LoRA files then carry the found d·lr
        record = recorder(run_dir, args.quiet)
        result = _reporting_errors(record, lambda: train(config, run_dir, record, lambda: stop_requested(run_dir),
                                                         resume=bool(args.resume)))
    for path in result["files"]:
        print(path)
    if result["stopped"]:
        print(f"stopped at step {result['steps']} of {result['total_steps']}; continue with: "
              f"lora-studio train --resume {run_dir}")
    return 0


def cmd_probe(args) -> int:
    """Run the LR probe and print the recommended learning rates."""
    from lora_studio import jobs
    from lora_studio.runfiles import stop_requested
    from lora_studio.train.probe import run_probe

    config = build_config(args)
    if args.queue:
        return _queued(jobs.submit("probe", config, preset=_preset_label(args, config)))
    if not args.output:
        raise UserError("no output folder given", "pass --output RUN_DIR")
    with holding_gpu(Path(args.output).name):
        run_dir = _prepare_run(args, config)
        record = recorder(run_dir, args.quiet)
        result = _reporting_errors(record, lambda: run_probe(config, run_dir, record, lambda: stop_requested(run_dir)))
    epochs = result.get("probe_epochs", 1)
    print(f"DAdaptation found d·lr = {result['d_lr']:.4g} over {epochs} epoch{'s' if epochs > 1 else ''} "
          f"({result.get('probe_images', '?')} images)")
    print(f"recommended: unet_lr = {result['unet_lr']:.4g} (÷{result['probe_divisor']:g}), "
          f"te_lr = {result['te_lr']:.4g} (÷{result['te_lr_divisor']:g}), optimizer lion, scheduler cosine_with_restarts")
    print(f"use it: lora-studio train --lr-from-probe {run_dir} …")
    return 0


def cmd_sweep(args) -> int:
    """The seed's batch-size comparison: one run per batch size, each in RUN_DIR/bsN (finished ones are kept)."""
    from lora_studio import jobs
    from lora_studio.runfiles import clear_stop, remove_stale_temps, stop_requested
    from lora_studio.train.sweep import run_sweep

    config = build_config(args)
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes {args.batch_sizes!r} is not a list of numbers", "for example 1,2,3,4") from None
    preset = _preset_label(args, config)
    if args.queue:
        return _queued(jobs.submit("sweep", config, batch_sizes=batch_sizes, preset=preset))
    if not args.output:
        raise UserError("no output folder given", "pass --output RUN_DIR")
    root = Path(args.output)
    with holding_gpu(root.name):
        root.mkdir(parents=True, exist_ok=True)
        clear_stop(root)
        remove_stale_temps(root)
        jobs.write_job_file(root, "sweep", config, batch_sizes=batch_sizes, preset=preset)
        record = recorder(root, args.quiet)
        result = _reporting_errors(record, lambda: run_sweep(config, root, record, lambda: stop_requested(root),
                                                             batch_sizes=batch_sizes, resume=args.resume,
                                                             preset=preset))
        if not record.ended:  # a stopped sub-run's `stopped` already ended the sweep's stream
            from lora_studio.runfiles import DONE

            record({"type": DONE, **result})
    if result.get("stopped"):
        print("sweep stopped; continue with the same command and --resume (finished batch sizes are kept)")
    return 0


def cmd_demo_dataset(args) -> int:
    """Write the toy world's demo frames of 'tibbie' (with a few labelled distorted ones)."""
    from lora_studio.toy.dataset import DEMO_PRUNED_TAGS, write_demo_dataset

    pruned = () if args.tagger_captions else DEMO_PRUNED_TAGS
    out = write_demo_dataset(args.out_dir, n_frames=args.frames, n_distorted=args.distorted, seed=args.seed,
                             pruned_tags=pruned)
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


def _reporting_errors(record, work):
    """Run work; a UserError also becomes an 'error' event so the run folder tells what happened."""
    from lora_studio.runfiles import ERROR

    try:
        return work()
    except UserError as exc:
        record({"type": ERROR, "message": exc.message, "hint": exc.hint})
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
    add_queue_arg(p)


def add_queue_arg(p: argparse.ArgumentParser) -> None:
    """--queue: hand a heavy command to the studio's worker instead of running it here."""
    p.add_argument("--queue", action="store_true",
                   help="add the job to the studio's worker queue (runs/<job-id>/) instead of running it here; "
                        "without it the command refuses while the worker holds the GPU")


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
    p.add_argument("--resume", action="store_true", help="continue a stopped batch size from its saved state")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo-dataset", help="write the toy world's demo frames of the character 'tibbie'")
    p.add_argument("out_dir")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--distorted", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tagger-captions", action="store_true",
                   help="keep every tag the tagger wrote (the shipped set has her own 'pink bow' pruned)")
    p.set_defaults(func=cmd_demo_dataset)

    p = sub.add_parser("fields", help="list config fields, their defaults and help")
    p.set_defaults(func=cmd_fields)

    from lora_studio.data.review_cli import add_review_parser
    from lora_studio.evaluate.score_cli import add_score_parser
    from lora_studio.generate.xy_cli import add_xy_parser

    add_xy_parser(sub)
    from lora_studio.study.cli import add_study_parser

    add_study_parser(sub)
    add_score_parser(sub)
    add_review_parser(sub)
    from lora_studio.data.autotag_cli import add_tag_parser
    from lora_studio.data.video_cli import add_frames_parser

    add_frames_parser(sub)
    add_tag_parser(sub)
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
