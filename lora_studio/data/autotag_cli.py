"""`lora-studio tag DIR`: a tagger's tags for every kept frame, shown first, then stored."""

from __future__ import annotations

import sys

from lora_studio.errors import UserError


def add_tag_parser(subparsers) -> None:
    """Register the `tag` subcommand."""
    p = subparsers.add_parser("tag", help="auto-tag the frames of a folder (toy judge or a WD14 tagger)")
    p.add_argument("dataset", metavar="DIR", help="folder of frames")
    p.add_argument("--tagger", choices=("toy", "wd14"), default="toy",
                   help="toy: the toy world's judge (offline); wd14: SmilingWolf's WD14 ONNX tagger (anime; downloaded "
                        "once, or read from the folder LORA_STUDIO_ONNX_DIR names)")
    p.add_argument("--threshold", type=float, help="general tag threshold (default: the tagger's own, else 0.35)")
    p.add_argument("--character-threshold", type=float, default=0.85, help="threshold for character-name tags")
    p.add_argument("--keep-underscores", action="store_true", help="keep the tagger's underscores (long_hair)")
    p.add_argument("--undesired", default="", metavar="TAGS", help="comma-separated tags never to write")
    p.add_argument("--trigger", default="", help="trigger word, put first (default: the one saved in the review)")
    p.add_argument("--add", action="store_true", help="add the new tags after each frame's current ones")
    p.add_argument("--write", choices=("preview", "review", "captions"), default="preview",
                   help="preview: only print (default); review: store as the review's tag edits; "
                        "captions: also write the .txt files (old ones kept as NAME.txt.bak)")
    p.add_argument("--caption-extension", default=".txt")
    p.set_defaults(func=run_tag)


def run_tag(args) -> int:
    """Tag, print the proposal per frame, then store it where --write says."""
    from lora_studio.data import autotag
    from lora_studio.data.review_state import ReviewState

    for name, value in (("--threshold", args.threshold), ("--character-threshold", args.character_threshold)):
        if value is not None and not 0 <= value <= 1:
            raise UserError(f"{name} {value} is not between 0 and 1", "thresholds are probabilities, e.g. 0.35")
    trigger = args.trigger or ReviewState.load(args.dataset).trigger_word
    options = autotag.TagOptions(general_threshold=args.threshold, character_threshold=args.character_threshold,
                                 replace_underscores=not args.keep_underscores,
                                 undesired=autotag.undesired_list(args.undesired), trigger_word=trigger,
                                 keep_existing=args.add)
    tagger = autotag.load_tagger(args.tagger)
    live = sys.stderr.isatty()  # a log file gets no progress line, only the result
    results = autotag.tag_frames(args.dataset, tagger, options, caption_extension=args.caption_extension,
                                 progress=lambda f, what: live and print(f"\r{what}\033[K", end="", file=sys.stderr,
                                                                         flush=True))
    if live:
        print("\r\033[K", end="", file=sys.stderr)
    for line in autotag.preview_lines(results):
        print(line)
    if args.write == "preview":
        print("nothing written; store these with --write review (tag edits) or --write captions (.txt files)")
        return 0
    if args.write == "captions":
        written = autotag.write_captions(results, args.caption_extension)
        print(f"wrote {len(written)} caption files (old non-empty ones kept as NAME{args.caption_extension}.bak)")
    changed = autotag.store_in_review(args.dataset, results)
    if args.write == "review":
        print(f"stored the tags of {changed} frames as the review's tag edits (caption files unchanged)")
    return 0
