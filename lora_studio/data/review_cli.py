"""`lora-studio review DIR [--json]`: every frame's flags, worst first; optional keep/exclude decisions."""

from __future__ import annotations

import json
import sys

from lora_studio.errors import UserError

_MARK = {"error": "✗", "warning": "!", "note": "·"}


def add_review_parser(subparsers) -> None:
    """Register the `review` subcommand."""
    p = subparsers.add_parser("review", help="check every frame of a dataset folder: flags with reasons, worst first")
    p.add_argument("dataset", metavar="DIR", help="folder of frames with .txt tag captions")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one object per file: file, kept, flags [{check, message, value}]")
    p.add_argument("--trigger", default="", help="the character's trigger word (default: the one saved in the "
                   "review, else the tag that opens most captions)")
    p.add_argument("--resolution", type=int, default=512, help="training resolution the size checks assume")
    p.add_argument("--caption-extension", default=".txt")
    p.add_argument("--features", choices=("stats", "vae", "clip"), default="stats",
                   help="outlier features: colour/shape statistics (default), the base model's VAE encoder "
                   "(--base), or a CLIP vision model from a local folder (--clip-model)")
    p.add_argument("--base", default="toy", help="base model for --features vae")
    p.add_argument("--clip-model", metavar="DIR", help="local CLIP vision model folder for --features clip")
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="exclude a frame from training (repeatable); saved in the review state")
    p.add_argument("--keep", action="append", default=[], metavar="FILE", help="keep a frame again (repeatable)")
    p.add_argument("--reason", default="", help="reason stored with --exclude")
    p.add_argument("--all", action="store_true", help="also list frames without flags")
    p.set_defaults(func=run_review)


def _extractor(args):
    from lora_studio.data import outliers

    if args.features == "vae":
        from lora_studio.models.load import load_base

        return outliers.VaeFeatures(load_base(args.base).vae)
    if args.features == "clip":
        if not args.clip_model:
            raise UserError("--features clip needs --clip-model DIR",
                            "download a CLIP vision model once (e.g. openai/clip-vit-base-patch32) and pass its folder")
        return outliers.ClipImageFeatures(args.clip_model)
    return outliers.ImageStatsFeatures()


def run_review(args) -> int:
    """Review a folder and print the flags (text or JSON); apply --exclude/--keep first."""
    from lora_studio.data.review import list_image_files, review_dataset
    from lora_studio.data.review_state import ReviewState

    state = ReviewState.load(args.dataset)
    if args.exclude or args.keep:
        known = set(list_image_files(state.dataset_dir))
        unknown = [f for f in args.exclude + args.keep if f not in known]
        if unknown:
            raise UserError(f"not in {state.dataset_dir}: {', '.join(unknown)}",
                            "give the file's path relative to the folder, as the review lists it")
        # frames named on the command line are decisions by hand, as one click on a frame is
        state.set_kept_many(args.exclude, False, args.reason, by="hand")
        state.set_kept_many(args.keep, True, include_by_hand=True)

    from tqdm import tqdm

    with tqdm(unit="frame", desc="reviewing", file=sys.stderr, disable=None, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        review = review_dataset(args.dataset, trigger_word=args.trigger, resolution=args.resolution,
                                caption_extension=args.caption_extension, extractor=_extractor(args),
                                state=state, progress=progress)
    if args.json:
        json.dump([f.to_dict() for f in review.frames], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0

    trigger = (f"trigger word '{review.trigger_word}'" + (" (guessed from the captions)" if review.trigger_inferred else "")
               if review.trigger_word else "no trigger word (pass --trigger)")
    print(f"Reviewed {len(review.frames)} files in {review.seconds:.1f} s; outliers by {review.extractor}; {trigger}")
    quiet = 0
    for frame in review.frames:
        if not frame.flags and frame.kept and not args.all:
            quiet += 1
            continue
        status = "kept" if frame.kept else ("cannot be used" if not frame.trainable else "excluded")
        if frame.exclusion_reason:
            status += f" ({frame.exclusion_reason})"
        print(f"{frame.id}  [{status}]")
        for flag in frame.flags:
            print(f"   {_MARK.get(flag.severity, '-')} {flag.check}: {flag.message}")
    if quiet:
        print(f"{quiet} more frame{'s' if quiet != 1 else ''} without flags")
    print(review.summary())
    return 0
