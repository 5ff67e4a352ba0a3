"""The command line: one clear line for every mistake, real runs for the rest."""

import json

import pytest

from lora_studio.cli import main
from lora_studio.config import load_config
from lora_studio.runfiles import read_events

SMALL = ["--set", "resolution=32", "--set", "repeats=1", "--set", "batch_size=4", "--set", "network_dim=4",
         "--set", "min_bucket_reso=16", "--set", "max_bucket_reso=64", "--set", "bucket_reso_steps=16",
         "--set", "probe_min_images=0", "--quiet"]


def test_probe_then_train_with_its_learning_rates(tiny_model_dir, tiny_frames, tmp_path, capsys):
    probe_dir, run_dir = tmp_path / "probe", tmp_path / "run"
    assert main(["probe", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--trigger", "tibbie",
                 "--output", str(probe_dir), *SMALL]) == 0
    probe = json.loads((probe_dir / "probe.json").read_text())
    assert "recommended: unet_lr" in capsys.readouterr().out

    assert main(["train", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--preset", "seed-recipe",
                 "--name", "tibbie", "--output", str(run_dir), "--lr-from-probe", str(probe_dir),
                 "--set", "epochs=2", *SMALL]) == 0
    job = load_config(run_dir / "job.toml")
    assert job.unet_lr == pytest.approx(probe["unet_lr"]) and job.optimizer == "lion"
    assert probe["unet_lr"] == pytest.approx(probe["d_lr"] / 3, rel=1e-3)
    assert job.resolved_te_lr() == pytest.approx(probe["unet_lr"] / 10)
    events, _ = read_events(run_dir)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "caching" and "started" in kinds and kinds[-1] == "done"
    assert sorted(p.name for p in run_dir.glob("*.safetensors")) == ["tibbie-000001.safetensors",
                                                                      "tibbie-000002.safetensors"]
    from lora_studio.train.lora_file import read_metadata

    meta = read_metadata(run_dir / "tibbie-000002.safetensors")
    assert float(meta["lora_studio_probe_d_lr"]) == pytest.approx(probe["d_lr"])
    from lora_studio.generate.infotext import training_recipe

    # The probe's LRs and epochs=2 changed the preset: a shared grid must not claim the plain recipe.
    assert training_recipe(run_dir)["preset"] == "seed-recipe (edited)"


def _run_until_first_step_then_stop(argv, run_dir, offset=0):
    """Run the CLI in a thread; create STOP as soon as it has made a step (events after offset)."""
    import threading
    import time

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(argv)))
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and thread.is_alive():
        events, offset = read_events(run_dir, offset)
        if any(e["type"] == "step" for e in events):
            (run_dir / "STOP").write_text("")
            break
        time.sleep(0.01)
    thread.join(120)
    assert not thread.is_alive(), "the run did not stop after STOP"
    return result["code"]


def test_stop_file_stops_cleanly_and_resume_continues_where_it_stopped(tiny_model_dir, tiny_frames, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "STOP").write_text("left over from an earlier run")  # a new run clears it
    argv = ["train", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--name", "t",
            "--output", str(run_dir), "--set", "epochs=300", "--set", "save_every_n_epochs=100", *SMALL]
    assert _run_until_first_step_then_stop(argv, run_dir) == 0
    events, offset = read_events(run_dir)
    stopped = events[-1]
    assert stopped["type"] == "stopped" and 1 <= stopped["step"] < 600
    assert (run_dir / "state" / "train_state.pt").is_file()
    assert "lora-studio train --resume" in capsys.readouterr().out

    assert _run_until_first_step_then_stop(["train", "--resume", str(run_dir), "--quiet"], run_dir, offset) == 0
    resumed, _ = read_events(run_dir, offset)
    first_step = next(e for e in resumed if e["type"] == "step")
    assert first_step["step"] == stopped["step"] + 1
    assert next(e for e in resumed if e["type"] == "started")["resumed"] is True


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "/no/such/folder", "--base", "toy", "--output", "OUT"], "folder"),
    (["train", "--dataset", "FRAMES", "--base", "model.ckpt", "--output", "OUT"], "safetensors"),
    (["train", "--dataset", "FRAMES", "--base", "/no/model.safetensors", "--output", "OUT"], "not found"),
    (["train", "--dataset", "FRAMES", "--base", "toy", "--output", "OUT", "--set", "batchsize=2"], "unknown field 'batchsize'"),
    (["train", "--dataset", "FRAMES", "--base", "toy", "--output", "OUT", "--preset", "nope"], "no preset named 'nope'"),
    (["train", "--dataset", "EMPTY", "--base", "MODEL", "--output", "OUT"], "image"),
    (["train", "--resume", "OUT"], "nothing to resume"),
])
def test_bad_input_exits_with_one_clear_line(args, message, tiny_frames, tiny_model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"pickle")
    swap = {"FRAMES": str(tiny_frames), "OUT": str(tmp_path / "out"), "EMPTY": str(tmp_path / "empty"),
            "MODEL": str(tiny_model_dir), "model.ckpt": str(tmp_path / "model.ckpt")}
    code = main([swap.get(a, a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("lora-studio: error:")
    assert message in err
    assert "Traceback" not in err


def test_demo_dataset_command_writes_captioned_frames_and_the_distortion_labels(tmp_path, capsys):
    assert main(["demo-dataset", str(tmp_path / "demo"), "--frames", "6", "--distorted", "2"]) == 0
    images = sorted((tmp_path / "demo").glob("*.png"))
    assert len(images) == 8 and all(p.with_suffix(".txt").read_text().startswith("tibbie") for p in images)
    labels = json.loads((tmp_path / "demo" / "distorted.json").read_text())
    assert len(labels) == 2 and all((tmp_path / "demo" / name).is_file() for name in labels)
    assert not any("pink bow" in p.with_suffix(".txt").read_text() for p in images)  # pruned, as shipped
    assert main(["demo-dataset", str(tmp_path / "tagged"), "--frames", "6", "--tagger-captions"]) == 0
    assert all("pink bow" in p.read_text() for p in (tmp_path / "tagged").glob("*.txt"))


def test_while_the_studios_worker_holds_the_gpu_the_cli_says_so_and_queue_hands_the_job_over(
        tiny_model_dir, tiny_frames, tmp_path, capsys):
    from lora_studio import jobs
    from lora_studio.lock import GpuLock

    studio_worker = GpuLock()  # the studio's worker, running a job
    studio_worker.acquire(job="20260101-120000-000-train-other")
    try:
        argv = ["train", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--name", "t",
                "--output", str(tmp_path / "run"), *SMALL]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == (
            "lora-studio: error: the studio's worker is running 20260101-120000-000-train-other — "
            "use --queue to add this to its queue, or wait")
        assert not (tmp_path / "run").exists()  # nothing started beside the worker's job

        assert main([*argv, "--queue"]) == 0
        (queued,) = jobs.queued_jobs()
        assert jobs.load_job(queued).kind == "train" and jobs.load_job(queued).config.name == "t"
        assert f"queued as {queued.name}" in capsys.readouterr().out
    finally:
        studio_worker.release()


def test_a_sweep_run_again_keeps_the_batch_sizes_that_finished(tiny_model_dir, tiny_frames, tmp_path):
    root = tmp_path / "sweep"
    argv = ["sweep", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir), "--name", "t", "--output",
            str(root), "--set", "epochs=1", *SMALL]
    assert main([*argv, "--batch-sizes", "4"]) == 0
    finished = read_events(root / "bs4")[0]
    written = (root / "bs4" / "t-bs4-000001.safetensors").stat().st_mtime_ns

    assert main([*argv, "--batch-sizes", "4,2"]) == 0
    assert read_events(root / "bs4")[0] == finished  # not trained again
    assert (root / "bs4" / "t-bs4-000001.safetensors").stat().st_mtime_ns == written
    assert read_events(root / "bs2")[0][-1]["type"] == "done"
    sweep_events = [e["type"] for e in read_events(root)[0]]
    assert sweep_events.count("run_done") == 2 and sweep_events[-1] == "done"
