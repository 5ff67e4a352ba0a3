"""Training in two processes, as on two GPUs: CPU processes talking over gloo, launched by accelerate.

`accelerate launch --multi_gpu` starts the processes through torchrun; on a machine without CUDA the
loop's Accelerator(cpu=True) then trains on the CPU with the gloo backend: the GPU code path, minus the GPU.
(`accelerate launch --cpu --num_processes 2` starts ONE process: accelerate's CPU launcher needs MPI.)
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lora_studio.runfiles import read_events

pytestmark = pytest.mark.slow  # two launches of two processes: ~20 s each on 2 idle cores, minutes on a busy box

SMALL = dict(resolution=32, repeats=1, batch_size=1, epochs=2, network_dim=4, network_alpha=2,
             min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16, unet_lr=1e-3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    """accelerate launch with two processes, the command the README gives for two GPUs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(free_port()), *command],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_share_the_steps_and_only_the_main_one_writes_the_run(tiny_model_dir, tiny_frames, tmp_path):
    run_dir = tmp_path / "run"
    sets = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    launch("-m", "lora_studio.cli", "train", "--dataset", str(tiny_frames), "--base", str(tiny_model_dir),
           "--name", "tibbie", "--trigger", "tibbie", "--output", str(run_dir), *sets,
           "--set", "validation_split=2", "--quiet", cwd=tmp_path)

    events, _ = read_events(run_dir)
    kinds = [e["type"] for e in events]
    # 8 frames, 2 held out for validation: 6 × 2 epochs at batch 1 is 12 batches; two processes take 6 steps
    # each, a step being both batches.
    started = [e for e in events if e["type"] == "started"]
    assert len(started) == 1 and started[0]["total_steps"] == 6 and started[0]["steps_per_epoch"] == 3
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, 7))  # each step written once
    assert kinds.count("checkpoint") == 2 and kinds.count("epoch") == 2 and kinds[-1] == "done"
    # The main process alone evaluates the held-out frames (on the bare UNet, so DDP waits for nobody).
    assert [(e["epoch"], e["step"]) for e in events if e["type"] == "validation"] == [(0, 0), (1, 3), (2, 6)]
    # The LR schedule runs over the 6 steps once (accelerate would step it once per process, ending it at step 3).
    lrs = [e["lr_unet"] for e in events if e["type"] == "step"]
    assert lrs[-1] > 0 and lrs == sorted(lrs, reverse=True)
    assert sorted(p.name for p in run_dir.glob("*.safetensors")) == ["tibbie-000001.safetensors",
                                                                      "tibbie-000002.safetensors"]

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(run_dir), weight_name="tibbie-000002.safetensors", adapter_name="e2")
    assert "e2" in pipe.get_list_adapters()["unet"]


@pytest.fixture(scope="module")
def stopped_and_resumed(tiny_model_dir, tmp_path_factory):
    """Two processes train 3 epochs; rank 0 alone asks to stop at step 5; then both resume to the end."""
    from frame_helpers import draw_frame

    folder = tmp_path_factory.mktemp("two-processes")
    frames = folder / "frames"
    frames.mkdir()
    for i in range(8):
        draw_frame(frames / f"frame_{i:03d}.png", i)
        (frames / f"frame_{i:03d}.txt").write_text(f"tibbie, sheep, pose{i % 3}")
    config = dict(SMALL, base_model=str(tiny_model_dir), dataset=str(frames), name="tibbie",
                  trigger_word="tibbie", epochs=3, te_lr=1e-4, clip_skip=2)  # clip skip 2 leaves a CLIP layer unused
    (folder / "config.json").write_text(json.dumps(config))
    launch(str(Path(__file__).with_name("two_process_run.py")), str(folder / "config.json"), str(folder / "run"),
           str(folder / "report"), "5", cwd=folder)
    reports = [json.loads((folder / "report" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return folder, config, reports


def test_a_stop_seen_by_one_process_stops_both_and_the_run_resumes_in_step(stopped_and_resumed):
    folder, _, (main, other) = stopped_and_resumed
    # Only rank 0's should_stop said yes at step 5; both processes stopped there (else the next sync hangs).
    assert main["first"] == other["first"] == {"steps": 5, "stopped": True, "total_steps": 12}
    assert main["second"] == other["second"] == {"steps": 12, "stopped": False, "total_steps": 12}
    resumed = [e for e in main["events_second"] if e["type"] == "step"]
    assert [e["step"] for e in resumed] == list(range(6, 13))
    assert other["events_first"] == other["events_second"] == []  # rank 1 reports nothing
    # Gradients are averaged across the processes: their LoRA weights stay identical at every step.
    assert len(main["digests"]) >= 7 and main["digests"] == other["digests"]
    files = sorted(p.name for p in (folder / "run").glob("*.safetensors"))
    assert files == [f"tibbie-00000{e}.safetensors" for e in (1, 2, 3)]
    from safetensors.torch import load_file

    keys = load_file(folder / "run" / files[-1]).keys()
    assert any(re.match(r"lora_te_text_model_encoder_layers_\d+_self_attn", k) for k in keys)


def test_a_two_process_run_does_not_resume_in_one_process(stopped_and_resumed):
    """Its LR schedule was laid out for two processes' share of the steps: one process alone cannot continue it."""
    from lora_studio.config import config_from_dict
    from lora_studio.errors import UserError
    from lora_studio.train.loop import train

    folder, config, _ = stopped_and_resumed
    with pytest.raises(UserError, match="2 processes"):
        train(config_from_dict(config), folder / "run", resume=True)
