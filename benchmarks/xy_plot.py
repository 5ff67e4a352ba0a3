"""Benchmark: an 8×8 epoch × weight XY plot vs the same 64 images rendered naively.

Naive = what A1111's X/Y/Z plot does with Prompt S/R over the lora tag: the LoRA is loaded again
for every cell and the weight-0 row is rendered once per epoch. Ours = lora_studio.generate.xy.

    python benchmarks/xy_plot.py                # assets/toy-model if present, else a tiny random model
    python benchmarks/xy_plot.py --base toy --size 64 --steps 20 --device cpu

Prints one Markdown table row per run; benchmarks/xy_plot.md keeps the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WEIGHTS = "0,0.3,0.5,0.6,0.7,0.8,0.9,1"
PROMPT = "masterpiece, best quality, 1girl, tibbie, sheep, sitting on tree, <lora:tibbie-000001:0>"
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, worst quality, low quality"


def make_base(spec: str | None, device: str, workdir: Path):
    """The toy model if shipped (or the given spec), else a tiny random model of the toy's shape."""
    from lora_studio.models.load import load_base, toy_model_dir
    from lora_studio.models.tiny import build_tiny_components, save_diffusers_folder

    if spec is None:
        spec = "toy" if (toy_model_dir() / "model_index.json").is_file() else None
    if spec is None:
        folder = save_diffusers_folder(build_tiny_components(seed=0, size="toy"), workdir / "tiny-toy-shape")
        return load_base(str(folder), device=device), "tiny random model, toy-sized (assets/toy-model absent)"
    return load_base(spec, device=device), spec


def make_run(base_spec_folder: str, folder: Path, epochs: int, dim: int) -> Path:
    """epochs LoRA files (kohya format, the project's save_lora) with different random weights."""
    import torch

    from lora_studio.models.load import load_base
    from lora_studio.train.lora_file import save_lora
    from lora_studio.train.network import add_lora

    parts = load_base(base_spec_folder)
    add_lora(parts.unet, parts.text_encoder, network_dim=dim, network_alpha=dim / 2)
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, epochs + 1):
        gen = torch.Generator().manual_seed(epoch)
        with torch.no_grad():
            for module in (parts.unet, parts.text_encoder):
                for name, p in module.named_parameters():
                    if "lora_B" in name:
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        save_lora(folder / f"tibbie-{epoch:06d}.safetensors", parts.unet, parts.text_encoder, dim / 2, {})
    return folder


def naive(base, run: Path, epochs: int, weights: list[float], **settings) -> float:
    """Load the LoRA for every cell, render every cell (weight 0 included), unload."""
    from lora_studio.generate.pipeline import _quiet_adapter_loading, sample

    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    for weight in weights:
        for epoch in range(1, epochs + 1):
            with _quiet_adapter_loading():
                pipe.load_lora_weights(str(run / f"tibbie-{epoch:06d}.safetensors"), adapter_name="cell")
            pipe.set_adapters(["cell"], [weight])
            prompt = PROMPT.replace("000001:0", f"{epoch:06d}:{weight:g}")
            sample(pipe, base, [prompt], [NEGATIVE], [settings["seed"]], sampler=settings["sampler"],
                   steps=settings["steps"], cfg=7.0, width=settings["size"], height=settings["size"], clip_skip=2)
            pipe.delete_adapters("cell")
    return time.perf_counter() - start


def ours(base, run: Path, out: Path, batch_size: int, **settings):
    from lora_studio.generate.xy import xy_plot
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_plan import plan_from_config

    plan = plan_from_config(XYPlotConfig(
        prompt=PROMPT, negative=NEGATIVE, x="epoch", y=f"weight={WEIGHTS}", run=str(run), seed=settings["seed"],
        sampler=settings["sampler"], steps=settings["steps"], size=f"{settings['size']}x{settings['size']}",
        batch_size=batch_size))
    start = time.perf_counter()
    result = xy_plot(base, plan, out)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base model spec (default: toy if shipped, else a tiny random model)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dim", type=int, default=32, help="LoRA rank of the benchmark's epoch files")
    parser.add_argument("--batch-size", type=int, default=0, help="0: 1 on CPU, 8 on CUDA")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each approach (best one counts)")
    args = parser.parse_args()

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch_size or (8 if device == "cuda" else 1)
    work = Path(tempfile.mkdtemp(prefix="xy-bench-"))
    base, described = make_base(args.base, device, work)
    run = make_run(base.source, work / "run", 8, args.dim)
    settings = dict(seed=29464874, sampler="DPM++ 2M Karras", steps=args.steps, size=args.size)

    base.pipeline()(prompt_embeds=torch.zeros(1, 77, base.text_encoder.config.hidden_size, device=device,
                                              dtype=base.unet.dtype),
                    num_inference_steps=1, height=args.size, width=args.size, output_type="latent")  # warm-up
    # The CPU may be shared: alternate the order and keep each approach's best time.
    naive_times, our_times = [], []
    for repeat in range(args.repeats):
        for which in (("naive", "ours") if repeat % 2 == 0 else ("ours", "naive")):
            if which == "naive":
                naive_times.append(naive(base, run, 8, [float(w) for w in WEIGHTS.split(",")], **settings))
            else:
                os.environ["LORA_STUDIO_HOME"] = str(work / f"home-{repeat}")  # an empty cell cache
                seconds, result = ours(base, run, work / f"ours-{repeat}", batch, **settings)
                our_times.append(seconds)
    t_cached, again = ours(base, run, work / "again", batch, **settings)  # every cell now cached
    t_naive, t_ours = min(naive_times), min(our_times)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"model: {described}; {args.size}x{args.size}, {args.steps} steps DPM++ 2M Karras, LoRA dim {args.dim}")
    print("naive runs: " + ", ".join(f"{t:.1f}" for t in naive_times) + " s; ours: " + ", ".join(f"{t:.1f}" for t in our_times) + " s")
    print("| device | naive 64 cells | ours (rendered/reused, LoRA loads) | ratio | re-run, cells cached |")
    print("|---|---|---|---|---|")
    print(f"| {name}, batch {batch} | {t_naive:.1f} s | {t_ours:.1f} s ({result.rendered}/{result.reused}, "
          f"{result.lora_loads}) | {t_naive / t_ours:.2f}× | {t_cached:.1f} s ({again.rendered} rendered) |")


if __name__ == "__main__":
    main()
