"""One process trains run after run (the studio's worker does): each run gets its own precision settings."""

from accelerate import Accelerator
from accelerate.state import AcceleratorState

from lora_studio.config import config_from_dict
from lora_studio.presets import load_preset
from lora_studio.train.loop import train


def test_a_run_after_one_in_another_mixed_precision_still_trains(tiny_model_dir, tiny_frames, tmp_path):
    # accelerate keeps the first Accelerator's mixed precision for the whole process and refuses another
    # ("AcceleratorState has already been initialized and cannot be changed"): on a GPU, an fp16 job
    # followed by a bf16 one. The CPU trains in fp32, so a bf16 Accelerator made first stands in for that job.
    AcceleratorState._reset_state()  # earlier tests in this process made Accelerators of their own
    Accelerator(mixed_precision="bf16", cpu=True)
    config = config_from_dict(dict(base_model=str(tiny_model_dir), dataset=str(tiny_frames), name="tibbie",
                                   resolution=32, repeats=1, batch_size=4, epochs=1, network_dim=4,
                                   min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16),
                              load_preset("seed-recipe"))
    result = train(config, tmp_path / "run")
    assert result["steps"] == 2 and not result["stopped"]
