"""The run folder's contract: every event any job writes is declared with its fields; files are written whole."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest

from lora_studio import jobs, paths, runfiles, worker
from lora_studio.cli import main
from lora_studio.config import StudyConfig, TrainConfig, XYPlotConfig

SIZE = 32


def tiny_config(model, frames, **changes) -> TrainConfig:
    """Two epochs at 32 px, with a preview per epoch: a real run in about a second."""
    values = dict(name="tibbie", base_model=str(model), dataset=str(frames), trigger_word="tibbie", epochs=2,
                  repeats=1, batch_size=4, resolution=SIZE, min_bucket_reso=16, max_bucket_reso=64,
                  bucket_reso_steps=16, network_dim=4, network_alpha=4.0, sample_prompts=["tibbie, sheep"],
                  sample_steps=2, probe_min_images=0)
    return TrainConfig(**{**values, **changes})


def all_events(root: Path) -> list[dict]:
    return [e for events_file in sorted(root.rglob(runfiles.EVENTS_FILE))
            for e in runfiles.read_events(events_file.parent)[0]]


def test_every_event_a_train_probe_sweep_and_xy_job_writes_is_declared_with_its_fields(
        tiny_model_dir, tiny_frames, tmp_path):
    (tiny_frames / "broken.png").write_bytes(b"not a picture")  # a skipped frame: the run warns and goes on
    bases = worker.BaseCache()
    config = tiny_config(tiny_model_dir, tiny_frames)
    # two frames held out: the run writes `validation` events too
    train = jobs.submit("train", dataclasses.replace(config, validation_split=2), start_worker=False).run_dir
    assert worker.run_job(train, bases=bases) == "done", jobs.last_event(train)
    probe = jobs.submit("probe", config, start_worker=False).run_dir
    assert worker.run_job(probe, bases=bases) == "done", jobs.last_event(probe)
    sweep = jobs.submit("sweep", tiny_config(tiny_model_dir, tiny_frames, epochs=1, sample_prompts=[]),
                        batch_sizes=[2, 4], start_worker=False).run_dir
    assert worker.run_job(sweep, bases=bases) == "done", jobs.last_event(sweep)
    plot = XYPlotConfig(base=str(tiny_model_dir), run=str(train), prompt="tibbie, <lora:tibbie-000001:0>",
                        y="weight=0,1", steps=2, seed=3, size=f"{SIZE}x{SIZE}", score=True, scorer="toy")
    xy = jobs.submit_xy(plot, start_worker=False).run_dir
    assert worker.run_job(xy, bases=bases) == "done", jobs.last_event(xy)
    study = jobs.submit_study(tiny_config(tiny_model_dir, tiny_frames, epochs=1, sample_prompts=[]),
                              StudyConfig(batch_sizes=[4], prompts=[""], weights="0,1", steps=2, scorer="toy"),
                              start_worker=False).run_dir
    assert worker.run_job(study, bases=bases) == "done", jobs.last_event(study)
    odd_size = jobs.submit_xy(XYPlotConfig(**{**plot.to_dict(), "size": "33x33"}), start_worker=False).run_dir
    assert worker.run_job(odd_size, bases=bases) == "error"
    never = jobs.submit("train", config, start_worker=False).run_dir
    jobs.stop(never)
    assert worker.run_job(never, bases=bases) == "stopped"
    # The CLI writes the same streams as the worker.
    cli_sweep = tmp_path / "cli-sweep"
    assert main(["sweep", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--output", str(cli_sweep),
                 "--batch-sizes", "4", "--set", f"resolution={SIZE}", "--set", "epochs=1", "--set", "repeats=1",
                 "--set", "network_dim=4", "--set", "min_bucket_reso=16", "--set", "max_bucket_reso=64",
                 "--set", "bucket_reso_steps=16", "--quiet"]) == 0

    events = all_events(paths.runs_dir()) + all_events(cli_sweep)
    problems = sorted({problem for event in events for problem in runfiles.event_problems(event)})
    assert problems == []
    # ... and the table holds nothing that no job writes.
    assert {e["type"] for e in events} == set(runfiles.EVENT_TYPES)


def test_the_readme_names_every_event_type_and_file_of_the_run_folder():
    readme = (paths.project_root() / "README.md").read_text(encoding="utf-8")
    missing = [name for name in runfiles.EVENT_TYPES if f"`{name}`" not in readme]
    assert missing == [], "README's run-folder paragraph lacks these events"
    for name in (runfiles.JOB_FILE, runfiles.EVENTS_FILE, runfiles.STOP_FILE, runfiles.PROBE_FILE,
                 f"{runfiles.STATE_DIR}/{runfiles.STATE_FILE}", runfiles.ERROR_LOG):
        assert f"`{name}`" in readme, name


def test_no_module_spells_an_event_type_or_run_file_name_itself():
    # The contract has one home: emitters and readers use runfiles' names, so a rename cannot miss one.
    names = "|".join(re.escape(n) for n in runfiles.EVENT_TYPES)
    bare_event = re.compile(rf"""(["']type["']\s*:\s*["']({names})["']|\.get\(["']type["']\)\s*==\s*["'])""")
    files = "|".join(re.escape(n) for n in (runfiles.JOB_FILE, runfiles.EVENTS_FILE, runfiles.PROBE_FILE,
                                            runfiles.STATE_FILE, runfiles.ERROR_LOG))
    bare_file = re.compile(rf"""(["'])({files})\1""")
    offenders = []
    for path in sorted((paths.project_root() / "lora_studio").rglob("*.py")):
        if path.name == "runfiles.py" or "toy" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if bare_event.search(line) or bare_file.search(line):
                offenders.append(f"{path.relative_to(paths.project_root())}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_atomic_write_gives_the_users_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = runfiles.atomic_write(tmp_path / "job.toml", "kind = 'train'\n")
        os.umask(0o077)
        private = runfiles.atomic_write(tmp_path / "private.toml", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600  # the umask decides, as for any file the user writes


def test_a_write_that_fails_halfway_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = runfiles.atomic_write(tmp_path / "state.pt", b"old state")

    def half_then_crash(fh):
        fh.write(b"half of the new")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        runfiles.atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old state"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_a_temp_file_left_by_a_killed_writer_is_recognised_and_removed(tmp_path):
    (tmp_path / "bs1").mkdir()
    left = tmp_path / "bs1" / ".tibbie-000001.safetensors.4242-0badc0de.tmp"
    left.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("the user's own file")
    assert runfiles.remove_stale_temps(tmp_path) == [left]
    assert not left.exists() and (tmp_path / "notes.tmp").exists()


def test_a_full_disk_while_writing_is_one_message_with_what_to_do(tmp_path):
    import errno

    from lora_studio.errors import UserError

    def no_room(fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="the disk is full while writing") as caught:
        runfiles.atomic_write(tmp_path / "tibbie-000001.safetensors", no_room)
    assert "free some space" in caught.value.hint
    assert list(tmp_path.iterdir()) == []
