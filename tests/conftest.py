"""Shared fixtures: tiny real SD1.5-shaped models and tiny frame folders, written to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frame_helpers import draw_frame

# Tests never reach the network; a test that needs a hub download must fail, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models on 2 cores: torch's thread pool costs more than it gains (measured 18 s vs 101 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a CUDA GPU: skipped here with the reason, run by benchmarks/gpu_check.py on one."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here); `python benchmarks/gpu_check.py` runs it on one")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own studio data folder (presets, runs, caches)."""
    home = tmp_path / "studio-home"
    monkeypatch.setenv("LORA_STUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny SD1.5-shaped diffusers folder (random weights), built once per test session."""
    from lora_studio.models.tiny import build_tiny_components, save_diffusers_folder

    folder = tmp_path_factory.mktemp("tiny-sd15")
    return save_diffusers_folder(build_tiny_components(seed=0), folder)


@pytest.fixture(scope="session")
def demo_lora(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The demo preset trained once per session on the demo frames (distorted ones excluded): (run, last file, result).

    The run folder has its job.toml and events.jsonl, as a studio run has, so a grid of it knows its
    dataset and a study report has its real loss curve.
    """
    from lora_studio import jobs, runfiles
    from lora_studio.toy.proof import demo_config, train_demo_lora

    home = tmp_path_factory.mktemp("demo-home")
    old = os.environ.get("LORA_STUDIO_HOME")
    os.environ["LORA_STUDIO_HOME"] = str(home)
    try:
        run = home / "run"
        run.mkdir()
        jobs.write_job_file(run, "train", demo_config())
        lora, result = train_demo_lora(run, emit=runfiles.Recorder(run))
        return run, lora, result
    finally:
        if old is None:
            os.environ.pop("LORA_STUDIO_HOME")
        else:
            os.environ["LORA_STUDIO_HOME"] = old


@pytest.fixture
def tiny_frames(tmp_path) -> Path:
    """8 tiny frames with tag captions, as a user's frame folder."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(8):
        draw_frame(folder / f"frame_{i:03d}.png", i)
        (folder / f"frame_{i:03d}.txt").write_text(f"tibbie, sheep, pose{i % 3}, white background")
    return folder
