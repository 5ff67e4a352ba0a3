"""benchmarks/gpu_check.py cannot rot while no GPU is at hand: its CPU dry run takes every code path."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_leaves_the_results_alone(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real check would run")
    (tmp_path / "gpu_results.md").write_text("not run yet\n")
    assert load_gpu_check().main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert (tmp_path / "gpu_results.md").read_text() == "not run yet\n"


@pytest.mark.slow  # ~20 s idle (a nested pytest, two training rows, a 2×2 XY plot); minutes on a busy box
def test_the_cpu_dry_run_measures_every_section_and_keeps_the_notes_around_its_block(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_STUDIO_HOME", str(tmp_path / "home"))  # the script points it at fresh cell caches
    notes = "# GPU check\n\nWhy the numbers are what they are: kept as written.\n"
    (tmp_path / "gpu_results.md").write_text(notes)
    assert load_gpu_check().main(["--dry-run-cpu", "--out", str(tmp_path)]) == 0

    data = json.loads((tmp_path / "gpu_results.json").read_text())
    assert data["status"] == "complete" and data["dry_run_cpu"] is True
    assert data["tests"]["exit_code"] == 0 and "skipped" in data["tests"]["summary"]  # no GPU: skipped, not failed
    assert len(data["training"]) == 2
    for row in data["training"]:
        assert row["ours"]["it_s"] > 0 and row["bare"]["it_s"] > 0, row
    assert [r["approach"] for r in data["xy"]] == ["naive", "ours, batch 1", "ours, batch 8"]
    assert all(r["seconds"] > 0 for r in data["xy"]), data["xy"]
    assert data["xy"][1]["rendered"] == 3 and data["xy"][1]["lora_loads"] == 2  # 2 epochs × (0, 1): weight 0 once

    text = (tmp_path / "gpu_results.md").read_text()
    assert text.startswith(notes.strip())
    assert text.count("<!-- gpu_check results") == 1 and "| naive |" in text and "| 1 | fp16 | off |" in text
