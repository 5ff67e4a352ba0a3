"""A hub id as base model: downloaded when online; without a network, a quick message saying what to do."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from lora_studio import paths

LOAD = ("import time\n"
        "from lora_studio.errors import UserError\n"
        "from lora_studio.models.load import load_base\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    load_base('runwayml/stable-diffusion-v1-5')\n"
        "except UserError as exc:\n"
        "    print('MESSAGE', exc.message)\n"
        "    print('HINT', exc.hint)\n"
        "    print('SECONDS', time.monotonic() - started)\n")


@pytest.fixture
def black_hole():
    """A proxy that accepts connections and never answers: a network that drops packets (no internet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def load_hub_id_through(proxy: str, tmp_path, repo_id: str = "runwayml/stable-diffusion-v1-5") -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HTTPS_PROXY=proxy, https_proxy=proxy, HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="",
               HF_HUB_CACHE=str(tmp_path / "hub-cache"), HF_HUB_ETAG_TIMEOUT="2",
               PYTHONPATH=str(paths.project_root()))
    code = LOAD.replace("runwayml/stable-diffusion-v1-5", repo_id) + "else:\n    print('LOADED')\n"
    # A generous limit: on a busy machine importing torch alone can take minutes; the hub part is timed inside.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    out = result.stdout + result.stderr
    seconds = re.search(r"SECONDS (\S+)", out)
    return out, float(seconds[1]) if seconds else float("nan")


def test_a_hub_id_without_a_network_fails_quickly_naming_the_model_and_what_to_do(black_hole, tmp_path):
    out, seconds = load_hub_id_through(black_hole, tmp_path)
    assert "MESSAGE cannot reach huggingface.co to download runwayml/stable-diffusion-v1-5" in out, out
    assert "connect to the internet" in out and "local diffusers folder or .safetensors file" in out
    assert "Traceback" not in out
    # Not a hang: huggingface_hub's first request has no timeout of its own (minutes behind a dead proxy).
    assert seconds < 60


def test_a_refused_connection_is_the_same_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens once the socket is closed
    out, _ = load_hub_id_through(f"http://127.0.0.1:{closed_port}", tmp_path)
    assert "MESSAGE cannot reach huggingface.co to download runwayml/stable-diffusion-v1-5" in out, out


def test_hub_downloads_switched_off_say_how_to_switch_them_on(tmp_path, monkeypatch):
    from lora_studio.errors import UserError
    from lora_studio.models.hub import load_hub_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as caught:
        load_hub_model("runwayml/stable-diffusion-v1-5", cache_dir=tmp_path / "hub-cache")
    assert "HF_HUB_OFFLINE=1" in caught.value.message and "unset HF_HUB_OFFLINE" in caught.value.hint


def test_a_downloaded_hub_model_is_used_from_the_cache_when_the_network_is_gone(black_hole, tiny_model_dir, tmp_path):
    # The layout huggingface_hub leaves after a download: refs/main → snapshots/<commit>/…
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub-cache" / "models--someone--tiny-sd15"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    out, _ = load_hub_id_through(black_hole, tmp_path, "someone/tiny-sd15")
    assert "LOADED" in out, out
