"""launch.py: a fixed port (7860, as A1111 and kohya users expect), the next free one when it is taken."""

from __future__ import annotations

import importlib.util
import socket
import urllib.request

import gradio as gr

from lora_studio import paths


def launch_module():
    spec = importlib.util.spec_from_file_location("launch", paths.project_root() / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_studio_listens_on_7860_by_default():
    args = launch_module().parser().parse_args([])
    assert args.port == 7860 and not args.no_browser


def test_a_taken_port_moves_the_studio_to_the_next_free_one_and_says_so(capsys):
    launch = launch_module()
    with socket.socket() as taken:  # another studio, A1111 or ComfyUI already listens there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with gr.Blocks() as demo:
            gr.Markdown("studio")
        got = launch.serve(demo, "127.0.0.1", port, quiet=True)
        try:
            assert got > port
            assert urllib.request.urlopen(f"http://127.0.0.1:{got}/", timeout=30).status == 200
        finally:
            demo.close()
    assert f"Port {port} is in use" in capsys.readouterr().out
