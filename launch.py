"""Open LoRA Studio in the browser: `python launch.py` (127.0.0.1, port 7860 or the next free one, the URL printed)."""

from __future__ import annotations

import argparse
import os
import socket
import sys


DEFAULT_PORT = 7860  # what A1111 and kohya_ss users expect; bookmarks and open tabs keep working
PORTS_TO_TRY = 100


def free_port(host: str) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve(demo, host: str, port: int, **launch_kwargs) -> int:
    """Launch on `port`, or on the next free one after it (saying so); the port it got.

    Trying the launch itself (not a test bind first) leaves no gap in which another program takes the port.
    """
    for candidate in range(port, port + PORTS_TO_TRY):
        try:
            demo.launch(server_name=host, server_port=candidate, prevent_thread_lock=True, **launch_kwargs)
        except OSError:
            continue
        if candidate != port:
            print(f"Port {port} is in use (another LoRA Studio, A1111 or ComfyUI?); using {candidate} instead. "
                  f"Choose one with --port.", flush=True)
        return candidate
    raise SystemExit(f"launch.py: ports {port}-{port + PORTS_TO_TRY - 1} are all in use; choose one with --port")


def parser() -> argparse.ArgumentParser:
    """launch.py's flags (the README lists them)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; if it is taken, the next free one); 0 = any free port")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--base", help="base model to preselect instead of the toy demo (.safetensors, folder, hub id)")
    parser.add_argument("--dataset", help="frame folder to preselect instead of the demo dataset")
    parser.add_argument("--name", help="character name to preselect")
    parser.add_argument("--trigger", help="trigger word to preselect")
    parser.add_argument("--preset", help="preset to preselect (a name or a .toml file)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, build the studio and serve it until Ctrl-C."""
    args = parser().parse_args(argv)

    # No analytics or version pings from Gradio. The hub stays reachable: a hub id as base model is
    # downloaded once; without a network the worker falls back to the cache and says so (models/hub.py).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lora_studio.ui.app import StudioDefaults, build_app, launch_kwargs

    defaults = StudioDefaults()
    if args.base:
        defaults.base_model = args.base
    if args.dataset:
        defaults.dataset = args.dataset
        defaults.name, defaults.trigger_word = args.name or os.path.basename(os.path.abspath(args.dataset)), ""
    if args.name:
        defaults.name = args.name
    if args.trigger is not None:
        defaults.trigger_word = args.trigger
    if args.preset:
        defaults.preset = args.preset

    demo = build_app(defaults)
    port = serve(demo, args.host, args.port or free_port(args.host), inbrowser=not args.no_browser, quiet=True,
                 **launch_kwargs())
    print(f"LoRA Studio: http://{args.host}:{port}/", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
