"""`lora-studio study`: the seed's batch-size study from the command line, as the studio's worker runs it.

    lora-studio study --dataset DIR --base MODEL --preset NAME --name NAME --output DIR
        [--batch-sizes 1,2,3,4] [--prompt "…" ...] [--lr-scaling same|sqrt] [--weights 0,0.3,…,1]
        [--set k=v ...] [--resume] [--queue]

The training flags are train's (a preset, --set overrides); the study's flags are config.StudyConfig's
fields (a new field becomes a flag by itself). The study is study.run.run_study, the function the
worker's study job calls; --queue hands it to the worker instead.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from lora_studio.config import StudyConfig, study_config_from_dict
from lora_studio.errors import UserError

_TYPES = {"int": int, "float": float, "str": str}


def add_study_parser(subparsers) -> None:
    """Register the `study` subcommand: train's config flags plus one flag per StudyConfig field."""
    from lora_studio.cli import _add_config_args

    p = subparsers.add_parser("study", help="batch-size study: a run per batch size, scored epoch × weight grids "
                                            "per prompt, a report with a recommendation")
    _add_config_args(p)
    for f in fields(StudyConfig):
        help_text = f.metadata.get("help", "")
        if f.name == "prompts":
            p.add_argument("--prompt", dest="prompts", action="append", metavar="TEXT",
                           help=help_text + "; repeat the flag for each prompt (default: '', 'sitting on tree', "
                                            "'lying on beach')")
        elif f.name == "batch_sizes":
            p.add_argument("--batch-sizes", dest="batch_sizes", metavar="1,2,3,4", help=help_text + " (default 1,2,3,4)")
        else:
            choices = [c for c in f.metadata.get("choices") or () if c] or None
            p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_TYPES[str(f.type)], choices=choices,
                           help=f"{help_text} (default {f.default!r})")
    p.add_argument("--resume", action="store_true", help="continue a stopped run from its saved state "
                                                          "(finished runs and cached cells are always kept)")
    p.set_defaults(func=cmd_study)


def study_from_args(args) -> StudyConfig:
    """The StudyConfig the flags describe (fields left out keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if getattr(args, f.name, None) is not None}
    return study_config_from_dict(values)


class StudyTerminal:
    """A Recorder listener: one line per stage and per grid (the training's own bar comes from cli.TerminalProgress)."""

    def __call__(self, event: dict) -> None:
        from lora_studio import runfiles

        kind = event.get("type")
        if kind == runfiles.STUDY_STAGE:
            where = {"train": f"training batch size {event.get('batch_size')}",
                     "xy": f"grid of prompt {event['index'] + 1}", "report": "writing the report"}[event["stage"]]
            print(f"study [{event['stage']} {event['index'] + 1}/{event['total']}]: {where}", flush=True)
        elif kind == runfiles.XY_PLAN:
            print(f"  {event['cells']} cells, {event['to_render']} to render (the rest cached or repeated)", flush=True)
        elif kind == runfiles.XY_DONE:
            print(f"  grid: {event['grid']} ({event['rendered']} rendered, {event['reused']} reused)", flush=True)


def cmd_study(args) -> int:
    """Run the study into --output (holding the GPU), or queue it for the studio's worker (--queue)."""
    from lora_studio import jobs, runfiles
    from lora_studio.cli import _preset_label, _queued, _reporting_errors, build_config, holding_gpu, recorder

    config = build_config(args)
    study = study_from_args(args)
    preset = _preset_label(args, config)
    if args.queue:
        return _queued(jobs.submit_study(config, study, preset=preset))
    if not args.output:
        raise UserError("no output folder given", "pass --output DIR (or --queue to let the studio's worker run it)")
    root = Path(args.output)
    with holding_gpu(root.name):
        from lora_studio.study.run import run_study  # torch: only once the GPU is ours

        root.mkdir(parents=True, exist_ok=True)
        runfiles.clear_stop(root)
        runfiles.remove_stale_temps(root)
        jobs.write_job_file(root, "study", config, preset=preset, study=study)
        record = recorder(root, args.quiet)
        if not args.quiet:
            record.listeners.append(StudyTerminal())
        result = _reporting_errors(record, lambda: run_study(config, study, root, record,
                                                             lambda: runfiles.stop_requested(root), preset=preset,
                                                             resume=args.resume))
        if not record.ended:
            record({"type": runfiles.STOPPED if result.get("stopped") else runfiles.DONE, **result})
    if result.get("stopped"):
        print("study stopped; continue with the same command and --resume (finished runs and cached cells are kept)")
        return 0
    print(f"study: {result['study']}")
    if result.get("report"):
        print(f"report: {result['report']}\nsheet: {result['sheet']}")
    if result.get("recommendation"):
        print(f"recommendation: {result['recommendation']}")
    return 0
