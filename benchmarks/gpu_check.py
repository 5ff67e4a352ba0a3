"""The one command to run when a CUDA GPU is at hand: ≤ 8 minutes, results written as they come.

    python benchmarks/gpu_check.py                 # on a CUDA GPU → benchmarks/gpu_results.md + gpu_results.json
    python benchmarks/gpu_check.py --dry-run-cpu --out /tmp/gpu-dry   # every code path, tiny sizes, CPU, seconds

In order of importance (a timeout still leaves the earlier numbers, both files are rewritten after each one):
1. the CUDA-marked tests (`pytest -m cuda`: fp16/bf16 bases with fp32 LoRA weights, checkpointing, OOM, XY);
2. LoRA training on a full-size SD1.5 with random weights (built from assets/sd15-config, no download) at
   512 px: ours (lora_studio.train.loop.train) against a bare diffusers + peft loop written the way
   diffusers' train_text_to_image_lora.py is, same rank, targets, optimizer and batch: it/s, images/s, peak VRAM;
3. the XY plot, 8 epochs × 8 weights at 512 px, 20 steps: the naive per-cell render (benchmarks/xy_plot.py)
   against ours without (batch 1) and with (batch 8) cell batching.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

BEGIN, END = "<!-- gpu_check results: rewritten by benchmarks/gpu_check.py -->", "<!-- end of gpu_check results -->"
GOALS = "training it/s ≥ 1.2× the bare loop's at equal or lower peak VRAM; 8×8 XY grid ≤ 0.85× the naive render's time"


class Results:
    """Everything measured so far; save() rewrites the JSON and the Markdown block after every measurement."""

    def __init__(self, out: Path, dry: bool, environment: dict):
        self.out, self.dry = out, dry
        self.data = {"status": "running", "dry_run_cpu": dry, "environment": environment, "goals": GOALS,
                     "tests": None, "model": None, "training": [], "xy": [], "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_results.json").write_text(json.dumps(self.data, indent=1) + "\n")
        md = self.out / "gpu_results.md"
        block = f"{BEGIN}\n{render_markdown(self.data)}\n{END}"
        text = md.read_text() if md.is_file() else ""
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:  # a first run: the block goes after whatever the file says already
            text = (text.rstrip() + "\n\n" if text.strip() else "# GPU check\n\n") + block + "\n"
        md.write_text(text)


def render_markdown(data: dict) -> str:
    """The results as tables (the JSON holds the same and the tracebacks)."""
    env = data["environment"]
    lines = [f"Run {data['started']} ({data['status']}{', CPU dry run: tiny sizes, numbers mean nothing' if data['dry_run_cpu'] else ''}): "
             f"{env['device']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, diffusers {env['diffusers']}, "
             f"peft {env['peft']}, transformers {env['transformers']}, accelerate {env['accelerate']}.", ""]
    tests = data["tests"]
    if tests:
        lines += [f"**CUDA tests** (`{tests['command']}`): {tests['summary']} in {tests['seconds']:.0f} s.", ""]
    if data["model"]:
        lines += [f"**Model**: {data['model']}", ""]
    if data["training"]:
        lines += ["**Training** (LoRA rank 32 on the UNet's attention, te_lr 0, AdamW; it/s over the timed steps after warm-up):",
                  "", "| batch | precision | checkpointing | ours it/s | bare it/s | ratio | ours img/s | ours peak VRAM | bare peak VRAM | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in data["training"]:
            ours, bare = row.get("ours") or {}, row.get("bare") or {}
            ratio = f"{ours['it_s'] / bare['it_s']:.2f}×" if ours.get("it_s") and bare.get("it_s") else "—"
            note = "; ".join(x for x in (ours.get("error"), bare.get("error"), row.get("skipped")) if x)
            lines.append(f"| {row['batch']} | {row['precision']} | {'on' if row['checkpointing'] else 'off'} | "
                         f"{_num(ours.get('it_s'))} | {_num(bare.get('it_s'))} | {ratio} | {_num(ours.get('images_s'))} | "
                         f"{_gib(ours.get('peak_vram'))} | {_gib(bare.get('peak_vram'))} | {note} |")
        lines.append("")
    if data["xy"]:
        lines += ["**XY plot** (8 epochs × 8 weights, DPM++ 2M Karras, fp16 base):", "",
                  "| approach | seconds | rendered / reused, LoRA loads | × naive time | note |", "|---|---|---|---|---|"]
        naive = next((r["seconds"] for r in data["xy"] if r["approach"] == "naive" and r.get("seconds")), None)
        for row in data["xy"]:
            share = f"{row['seconds'] / naive:.2f}×" if naive and row.get("seconds") else "—"
            counts = f"{row['rendered']} / {row['reused']}, {row['lora_loads']}" if "rendered" in row else "—"
            lines.append(f"| {row['approach']} | {_num(row.get('seconds'))} | {counts} | {share} | "
                         f"{row.get('error') or row.get('skipped') or ''} |")
    return "\n".join(lines)


def _num(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _gib(value) -> str:
    return f"{value / 2**30:.2f} GiB" if isinstance(value, (int, float)) else "—"


def environment(device: str) -> dict:
    """The GPU and the versions the numbers belong to."""
    import accelerate
    import diffusers
    import peft
    import torch
    import transformers

    cuda = device == "cuda"
    return {"device": torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)",
            "vram_total": torch.cuda.get_device_properties(0).total_memory if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "diffusers": diffusers.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": sys.version.split()[0]}


def failure(exc: BaseException) -> dict:
    # One GPU window per session: a failing measurement is written down and the next one still runs.
    return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
            "traceback": traceback.format_exc()}


def cuda_test_files() -> list[str]:
    """The test files that mark tests `cuda`: only they are collected, so the GPU machine needs no UI packages."""
    return sorted(str(p.relative_to(HERE.parent)) for p in (HERE.parent / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


def run_cuda_tests(timeout: int) -> dict:
    """pytest -m cuda over the files that hold such tests, in a subprocess (on a CPU they all skip)."""
    where = cuda_test_files()
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *where]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"{exc.stdout or ''}\ntimed out after {timeout} s", "timeout"
    lines = [line for line in output.strip().splitlines() if line.strip()]
    # pytest's own result line ("7 skipped in 1.5s"), not whatever a plugin printed last (pytest-benchmark
    # warns after it when pytest-xdist is installed).
    results = [line for line in lines if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)\b", line)]
    summary = results[-1] if results else (lines[-1] if lines else "no output")
    return {"command": "pytest -q -m cuda " + " ".join(where), "exit_code": code, "seconds": time.perf_counter() - start,
            "summary": summary, "output_tail": "\n".join(lines[-60:])}


def ours(base, frames: Path, work: Path, batch: int, precision: str, checkpointing: bool, size: int,
         warmup: int, timed: int, device: str) -> dict:
    """lora_studio's train() on the kept base: timed from its step events, peak VRAM over the whole run."""
    import torch

    from lora_studio.config import config_from_dict
    from lora_studio.presets import load_preset
    from lora_studio.train.loop import train

    count = len(list(frames.glob("*.png")))
    repeats = -(-(warmup + timed) * batch // count)
    config = config_from_dict(dict(
        base_model="random-sd15", dataset=str(frames), name="bench", resolution=size, repeats=repeats, batch_size=batch,
        epochs=1, mixed_precision=precision, gradient_checkpointing=checkpointing, optimizer="adamw", unet_lr=1e-4,
        te_lr=0.0, shuffle_caption=False, network_dim=32, network_alpha=16, min_bucket_reso=min(256, size),
        max_bucket_reso=max(1024, size), bucket_reso_steps=min(64, size // 2), sample_prompts=[]),
        load_preset("seed-recipe"))
    steps = []
    _reset_peak(device)
    train(config, work / f"ours-b{batch}-{precision}-gc{int(checkpointing)}", base=base, device=device,
          emit=lambda e: steps.append(e["elapsed_s"]) if e["type"] == "step" else None)
    seconds = steps[warmup + timed - 1] - steps[warmup - 1]
    return {"it_s": timed / seconds, "images_s": timed * batch / seconds, "peak_vram": _peak(device),
            "steps": len(steps)}


def bare(base, frames: Path, batch: int, precision: str, checkpointing: bool, size: int, warmup: int,
         timed: int, device: str) -> dict:
    """A bare diffusers + peft loop as in diffusers' train_text_to_image_lora.py: VAE and CLIP every step."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from PIL import Image

    from lora_studio.models.text import tokenize
    from lora_studio.train.network import remove_lora

    cuda = device == "cuda"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision] if cuda else torch.float32
    AcceleratorState._reset_state(reset_partial_state=False)  # ours ran in another precision in this process
    accelerator = Accelerator(mixed_precision=precision if cuda else "no", cpu=not cuda)
    unet, vae, text_encoder = base.unet, base.vae, base.text_encoder
    _reset_peak(device)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.to(accelerator.device, dtype=dtype)
    unet.add_adapter(LoraConfig(r=32, lora_alpha=16, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    cast_training_params(unet, dtype=torch.float32)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    noise_scheduler = DDPMScheduler.from_config(base.scheduler_config)
    images = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 127.5 - 1 for p in sorted(frames.glob("*.png"))]
    pixels_all = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    ids_all = tokenize(base.tokenizer, [p.with_suffix(".txt").read_text() for p in sorted(frames.glob("*.png"))])
    times = []
    try:
        unet.train()
        for step in range(warmup + timed):
            pick = [(step * batch + i) % len(images) for i in range(batch)]
            pixels = pixels_all[pick].to(accelerator.device, dtype=dtype)  # the dataloader's batch, every step
            with accelerator.accumulate(unet):
                latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), device=latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                hidden = text_encoder(ids_all[pick].to(accelerator.device), return_dict=False)[0]
                pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
                loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
            float(accelerator.gather(loss.detach()).mean())  # the example logs the loss every step
            times.append(time.perf_counter())
    finally:
        remove_lora(accelerator.unwrap_model(unet), None)
        for module in (base.unet, base.vae, base.text_encoder):
            module.to("cpu", dtype=torch.float32)
    seconds = times[-1] - times[warmup - 1]
    return {"it_s": timed / seconds, "images_s": timed * batch / seconds, "peak_vram": _peak(device)}


def _reset_peak(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str):
    import torch

    return torch.cuda.max_memory_allocated() if device == "cuda" else None


def training_rows(dry: bool) -> list[tuple[int, str, bool]]:
    """(batch, precision, checkpointing), the headline rows first so a timeout keeps them."""
    if dry:
        return [(1, "fp16", False), (2, "bf16", True)]
    first = [(b, "fp16", gc) for b in (1, 4) for gc in (False, True)]
    rest = [(b, p, gc) for p in ("fp16", "bf16") for b in (1, 2, 3, 4) for gc in (False, True)]
    return first + [row for row in rest if row not in first]


def write_epoch_files(base, folder: Path, epochs: int, dim: int = 32) -> Path:
    """epochs kohya-format LoRA files of the base's shape with different random weights (as xy_plot.py makes)."""
    import torch

    from lora_studio.train.lora_file import save_lora
    from lora_studio.train.network import add_lora, remove_lora

    folder.mkdir(parents=True, exist_ok=True)
    add_lora(base.unet, base.text_encoder, network_dim=dim, network_alpha=dim / 2)
    try:
        for epoch in range(1, epochs + 1):
            gen = torch.Generator().manual_seed(epoch)
            with torch.no_grad():
                for module in (base.unet, base.text_encoder):
                    for name, p in module.named_parameters():
                        if "lora_B" in name:
                            p.copy_((torch.randn(p.shape, generator=gen) * 0.05).to(p.device, p.dtype))
            save_lora(folder / f"tibbie-{epoch:06d}.safetensors", base.unet, base.text_encoder, dim / 2, {})
    finally:
        remove_lora(base.unet, base.text_encoder)
    return folder


def xy_measure(base, run: Path, work: Path, approach: str, epochs: int, weights: str, settings: dict) -> dict:
    """One XY approach timed: naive (xy_plot.py's per-cell loop) or ours at a cell batch size."""
    from xy_plot import NEGATIVE, PROMPT, naive

    from lora_studio.generate.xy import xy_plot
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_plan import plan_from_config

    if approach == "naive":
        return {"seconds": naive(base, run, epochs, [float(w) for w in weights.split(",")], **settings)}
    batch = int(approach.split()[-1])
    os.environ["LORA_STUDIO_HOME"] = str(work / f"home-{batch}")  # an empty cell cache
    plan = plan_from_config(XYPlotConfig(
        prompt=PROMPT, negative=NEGATIVE, x="epoch", y=f"weight={weights}", run=str(run), seed=settings["seed"],
        sampler=settings["sampler"], steps=settings["steps"], size=f"{settings['size']}x{settings['size']}",
        batch_size=batch))
    start = time.perf_counter()
    result = xy_plot(base, plan, work / f"xy-{batch}")
    return {"seconds": time.perf_counter() - start, "rendered": result.rendered, "reused": result.reused,
            "lora_loads": result.lora_loads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run-cpu", action="store_true", help="tiny sizes on the CPU: proves the script runs")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for gpu_results.md/.json (default benchmarks/)")
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting measurements after this many seconds")
    parser.add_argument("--tests-timeout-s", type=int, default=150, help="the CUDA tests get at most this long")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)

    import torch

    dry = args.dry_run_cpu
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was measured and "
              f"{args.out / 'gpu_results.md'} is unchanged. To check the script itself: --dry-run-cpu --out /tmp/x",
              file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    left = lambda: args.budget_s - (time.perf_counter() - start)
    device = "cpu" if dry else "cuda"
    results = Results(args.out, dry, environment(device))
    results.save()
    size, warmup, timed = (32, 1, 1) if dry else (512, 3, 10)
    epochs, weights, xy_steps = (2, "0,1", 1) if dry else (8, "0,0.3,0.5,0.6,0.7,0.8,0.9,1", 20)

    if not args.skip_tests:
        print("gpu_check: CUDA tests …", flush=True)
        results.data["tests"] = run_cuda_tests(args.tests_timeout_s)
        results.save()

    from sd15_random import build_random_sd15, parameter_counts, write_frames

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    base = build_random_sd15(tiny=dry)
    results.data["model"] = f"{base.source}, parameters (M): {parameter_counts(base)}; {size} px frames"
    frames = write_frames(work / "frames", 8, size)
    rows = training_rows(dry)
    xy_reserve = 0 if dry else 150  # the XY plot is measured after the headline training rows
    for index, (batch, precision, checkpointing) in enumerate(rows):
        row = {"batch": batch, "precision": precision, "checkpointing": checkpointing}
        results.data["training"].append(row)
        if index >= 4 and left() < xy_reserve + 40 and not results.data["xy"]:
            xy_section(results, base, work, epochs, weights, xy_steps, size, device, left)
        if left() < 40:
            row["skipped"] = "time budget"
            continue
        print(f"gpu_check: training batch {batch} {precision} checkpointing {checkpointing} …", flush=True)
        for name, measure in (("ours", lambda: ours(base, frames, work, batch, precision, checkpointing, size, warmup,
                                                       timed, device)),
                              ("bare", lambda: bare(base, frames, batch, precision, checkpointing, size, warmup,
                                                    timed, device))):
            try:
                row[name] = measure()
            except Exception as exc:  # noqa: BLE001 — written down with its traceback, see failure()
                row[name] = failure(exc)
            results.save()
    if not results.data["xy"]:
        xy_section(results, base, work, epochs, weights, xy_steps, size, device, left)
    results.data["status"] = "complete" if left() > 0 else "stopped at the time budget"
    results.data["seconds"] = round(time.perf_counter() - start, 1)
    results.save()
    print(f"gpu_check: done in {results.data['seconds']} s → {args.out / 'gpu_results.md'}")
    return 0


def xy_section(results: Results, base, work: Path, epochs: int, weights: str, steps: int, size: int, device: str,
               left) -> None:
    """Naive vs ours without and with cell batching, on the base in fp16 on the GPU (as `lora-studio xy` loads it)."""
    import torch

    print("gpu_check: XY plot …", flush=True)
    if device == "cuda":
        base.to("cuda", torch.float16)
    settings = dict(seed=29464874, sampler="DPM++ 2M Karras", steps=steps, size=size)
    try:
        run = write_epoch_files(base, work / "run", epochs)
        base.pipeline()(prompt_embeds=torch.zeros(1, 77, base.text_encoder.config.hidden_size, device=base.unet.device,
                                                  dtype=base.unet.dtype),
                        num_inference_steps=1, height=size, width=size, output_type="latent")  # warm-up
        for approach in ("naive", "ours, batch 1", "ours, batch 8"):
            row = {"approach": approach}
            results.data["xy"].append(row)
            if left() < 15:
                row["skipped"] = "time budget"
                continue
            try:
                row.update(xy_measure(base, run, work, approach, epochs, weights, settings))
            except Exception as exc:  # noqa: BLE001 — written down with its traceback, see failure()
                row.update(failure(exc))
            results.save()
    finally:
        base.to("cpu", torch.float32)


if __name__ == "__main__":
    sys.exit(main())
