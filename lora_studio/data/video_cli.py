"""`lora-studio frames VIDEO… --out DIR`: a few sharp, distinct frames per scene, with empty captions."""

from __future__ import annotations

import sys


def add_frames_parser(subparsers) -> None:
    """Register the `frames` subcommand."""
    p = subparsers.add_parser("frames", help="import frames from videos: a few sharp, distinct frames per scene")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (mp4, mkv, webm … anything FFmpeg reads)")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for the PNG frames and their empty captions")
    p.add_argument("--per-scene", type=int, default=3, help="frames per scene, evenly spaced, the sharpest of each stretch")
    p.add_argument("--max-frames", type=int, help="cap on frames over all videos (scenes are thinned evenly)")
    p.add_argument("--range", action="append", default=[], metavar="START-END",
                   help="only this time range, e.g. 1:20-3:05 (repeatable, or comma-separated)")
    p.add_argument("--size", type=int, help="scale the short side down to this many px (e.g. 512)")
    p.add_argument("--square", action="store_true", help="centre-crop every frame to a square")
    p.add_argument("--cut-threshold", type=float, default=0.12,
                   help="mean colour change (0–1) between two frames that counts as a cut")
    p.add_argument("--into-existing", action="store_true",
                   help="add to a folder that already holds files (frames like those there are skipped)")
    p.set_defaults(func=run_frames)


def run_frames(args) -> int:
    """Import the videos and print the summary."""
    from lora_studio.data.video import VideoImportOptions, import_videos, parse_ranges

    options = VideoImportOptions(frames_per_scene=args.per_scene, max_frames=args.max_frames,
                                 ranges=parse_ranges(",".join(args.range)), size=args.size, square=args.square,
                                 cut_threshold=args.cut_threshold, into_existing=args.into_existing)
    live = sys.stderr.isatty()
    printed = [-1]

    def progress(fraction: float, what: str) -> None:
        if fraction >= 1:
            return
        if live:  # one line, rewritten in place
            print(f"\r{100 * fraction:3.0f}% {what}\033[K", end="", file=sys.stderr, flush=True)
        elif int(10 * fraction) > printed[0]:  # a log file: a line every tenth
            printed[0] = int(10 * fraction)
            print(f"{100 * fraction:3.0f}% {what}", file=sys.stderr, flush=True)

    result = import_videos(args.videos, args.out, options, progress)
    if live:
        print("\r\033[K", end="", file=sys.stderr)
    print(result.summary())
    if result.written:
        print(f"next: lora-studio tag {result.out_dir}")
    return 0
