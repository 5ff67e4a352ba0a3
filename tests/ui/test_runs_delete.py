"""Deleting a run from the Runs tab: its folder and every file, never a queued or running one."""

from __future__ import annotations

import pytest

from lora_studio import jobs, runfiles
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError
from lora_studio.ui import runs_tab


def finished_run(frames, last: dict):
    run_dir = jobs.submit("train", TrainConfig(name="tibbie", dataset=str(frames)), start_worker=False).run_dir
    (run_dir / "tibbie-000001.safetensors").write_bytes(b"lora")
    runfiles.append_event(run_dir, last)
    return run_dir


def test_a_failed_run_is_deleted_with_its_files_after_saying_what_goes(tiny_frames):
    run_dir = finished_run(tiny_frames, {"type": "error", "message": "model not found", "hint": ""})
    assert run_dir.name in runs_tab.deletable_runs()
    summary = runs_tab.delete_summary(run_dir.name)
    assert run_dir.name in summary and "1 LoRA file?" in summary and "cannot be undone" in summary
    assert run_dir.is_dir()
    runs_tab.delete_run(run_dir.name)
    assert not run_dir.exists() and run_dir.name not in runs_tab.deletable_runs()


def test_a_queued_run_cannot_be_deleted(tiny_frames):
    queued = jobs.submit("train", TrainConfig(name="tibbie", dataset=str(tiny_frames)), start_worker=False).run_dir
    assert queued.name not in runs_tab.deletable_runs()
    with pytest.raises(UserError, match="is queued"):
        runs_tab.delete_run(queued.name)
    assert queued.is_dir()


@pytest.mark.parametrize("name", ["", "..", "../..", "/etc"])
def test_only_the_studios_own_run_folders_can_be_deleted(name, tmp_path):
    with pytest.raises(UserError, match="no run named"):
        runs_tab.delete_run(name)


def test_yes_deletes_only_the_run_the_question_named(tiny_frames):
    asked = finished_run(tiny_frames, {"type": "error", "message": "model not found", "hint": ""})
    picked_since = finished_run(tiny_frames, {"type": "error", "message": "model not found", "hint": ""})
    with pytest.raises(UserError, match=f"the question named {asked.name}"):
        runs_tab.delete_run(picked_since.name, asked=asked.name)
    assert asked.is_dir() and picked_since.is_dir()
    runs_tab.delete_run(asked.name, asked=asked.name)
    assert not asked.exists() and picked_since.is_dir()
