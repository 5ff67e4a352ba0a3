"""Open LoRA Studio in the browser: `python launch.py` (127.0.0.1, a free port, the URL printed)."""

from __future__ import annotations

import argparse
import os
import socket
import sys


def free_port(host: str) -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, build the studio and serve it until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--base", help="base model to preselect instead of the toy demo (.safetensors, folder, hub id)")
    parser.add_argument("--dataset", help="frame folder to preselect instead of the demo dataset")
    parser.add_argument("--name", help="character name to preselect")
    parser.add_argument("--trigger", help="trigger word to preselect")
    parser.add_argument("--preset", help="preset to preselect (a name or a .toml file)")
    args = parser.parse_args(argv)

    # The studio runs offline: no analytics or version pings from Gradio, no hub lookups.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
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

    port = args.port or free_port(args.host)
    demo = build_app(defaults)
    print(f"LoRA Studio: http://{args.host}:{port}/", flush=True)
    demo.launch(server_name=args.host, server_port=port, inbrowser=not args.no_browser, quiet=True,
                **launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
