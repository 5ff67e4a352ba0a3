"""Fixtures for the generate tests: a loaded tiny base and a finished 3-epoch run of LoRA files."""

from __future__ import annotations

from pathlib import Path

import pytest

from xy_helpers import write_run

@pytest.fixture(scope="session")
def tiny_base(tiny_model_dir):
    """The tiny base model, loaded once (XY plots add and remove their adapters on it)."""
    from lora_studio.models.load import load_base

    return load_base(str(tiny_model_dir))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run: tibbie-000001 … tibbie-000003.safetensors."""
    return write_run(tmp_path_factory.mktemp("run-bs1"))
