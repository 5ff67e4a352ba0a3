"""The XY plot on a CUDA GPU: batched cells, an fp16 base, a cache that keeps GPU and CPU pixels apart.

Marked `cuda`: without a GPU they are skipped with the reason; `python benchmarks/gpu_check.py` runs them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lora_studio.generate.xy import xy_plot
from lora_studio.config import XYPlotConfig
from lora_studio.generate.xy_plan import XYPlan, plan_from_config
from lora_studio.models.load import load_base

from xy_helpers import NEGATIVE, PROMPT, SIZE, STEPS

pytestmark = pytest.mark.cuda


def plan(run, batch_size: int) -> XYPlan:
    config = XYPlotConfig(prompt=PROMPT, negative=NEGATIVE, x="epoch", y="weight=0,0.5,1", run=str(run), seed=1234,
                          steps=STEPS, size=f"{SIZE}x{SIZE}", batch_size=batch_size)
    return plan_from_config(config)


def cell_pixels(result) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in result.cells]


def test_batched_cells_on_the_gpu_match_cells_rendered_one_by_one(tiny_model_dir, tiny_run, tmp_path, monkeypatch):
    base = load_base(str(tiny_model_dir), device="cuda")
    single = xy_plot(base, plan(tiny_run, 1), tmp_path / "single")
    monkeypatch.setenv("LORA_STUDIO_HOME", str(tmp_path / "empty-cache"))  # render again, not from the cache
    batched = xy_plot(base, plan(tiny_run, 4), tmp_path / "batched")
    assert batched.rendered == single.rendered == 7  # 3 epochs × 3 weights, the weight-0 row once
    worst = max(int(np.abs(a - b).max()) for a, b in zip(cell_pixels(single), cell_pixels(batched)))
    assert worst <= 2  # float rounding of batched kernels, not another image


def test_an_fp16_base_renders_finite_distinct_cells_and_never_reuses_cpu_pixels(tiny_model_dir, tiny_run, tmp_path):
    cpu = xy_plot(load_base(str(tiny_model_dir)), plan(tiny_run, 1), tmp_path / "cpu")
    base = load_base(str(tiny_model_dir), device="cuda", dtype=torch.float16)
    gpu = xy_plot(base, plan(tiny_run, 4), tmp_path / "gpu")
    assert gpu.reused == cpu.reused and gpu.rendered == cpu.rendered  # same plan, no cell taken from the CPU run
    cells = cell_pixels(gpu)
    assert all(c.std() > 0 for c in cells)  # a NaN in fp16 decodes to a flat black cell
    assert not np.array_equal(cells[-1], cells[0])  # weight 1 of epoch 3 is not the bare model
    assert {base.unet.device.type, base.vae.device.type} == {"cuda"}


def test_a_run_trained_on_the_gpu_is_plotted_on_the_same_kept_base(tiny_model_dir, tiny_frames, tmp_path):
    """The worker's order: train on the kept base, then plot the run's epochs with that very base."""
    from lora_studio.config import config_from_dict
    from lora_studio.presets import load_preset
    from lora_studio.train.loop import train

    base = load_base(str(tiny_model_dir))
    config = config_from_dict(dict(base_model=str(tiny_model_dir), dataset=str(tiny_frames), name="tibbie",
                                   resolution=32, repeats=1, batch_size=2, epochs=3, unet_lr=1e-3, network_dim=4,
                                   min_bucket_reso=16, max_bucket_reso=64, bucket_reso_steps=16),
                              load_preset("seed-recipe"))
    train(config, tmp_path / "run", base=base)
    # Training moved the UNet to the GPU in fp16 and the VAE to the CPU; a base left like that cannot decode.
    result = xy_plot(base, plan(tmp_path / "run", 4), tmp_path / "xy")
    assert len(result.cells) == 9 and result.grid.is_file()
