"""Smoke run on the CPU with a full-size SD1.5 as A1111 users keep it: one ldm-layout fp16 .safetensors (~2 GB).

    python benchmarks/full_size_smoke.py          # several minutes, ~7 GB of RAM; writes benchmarks/full_size_smoke.md
    python benchmarks/full_size_smoke.py --tiny   # the same steps at tiny widths, to check the script (no results)

Random weights from assets/sd15-config (no download), written as one original-layout file in /tmp and deleted
after. Then, in a fresh process with the network refused: load_base(FILE) (what `--base FILE` calls), train 2
steps at 64 px (the seed recipe, text encoder included), and render one XY cell with the epoch file. Wall time
and RSS are taken after each phase; each phase gets its own process where its peak would hide another's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
GIB = 2 ** 30


def rss() -> dict:
    """This process's resident memory now and its peak so far, in GiB (Linux: ru_maxrss is in KiB)."""
    now = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return {"rss_gib": round(now / 2**20, 2), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def write_checkpoint(path: Path, tiny: bool) -> dict:
    """A random full-size SD1.5 in A1111's key layout, fp16, as one .safetensors file (tiny: its config beside it)."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from test_load import text_encoder_to_ldm, unet_to_ldm, vae_to_ldm, write_config_folder  # kept with their tests

    from sd15_random import build_random_sd15, parameter_counts

    start = time.perf_counter()
    base = build_random_sd15(tiny=tiny)
    built = time.perf_counter() - start
    if tiny:  # the shipped config describes the full size; a tiny file needs its own
        from lora_studio.models.tiny import build_tiny_components

        write_config_folder({"unet": base.unet, "vae": base.vae, "text_encoder": base.text_encoder,
                             "scheduler": build_tiny_components()["scheduler"]}, path.with_suffix(".config"))
    ldm = {**unet_to_ldm(base.unet), **vae_to_ldm(base.vae), **text_encoder_to_ldm(base.text_encoder)}
    ldm["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    ldm = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in ldm.items()}
    save_file(ldm, str(path))
    return {"parameters_m": parameter_counts(base), "build_s": round(built, 1),
            "write_s": round(time.perf_counter() - start - built, 1), "file_gib": round(path.stat().st_size / GIB, 2),
            "tensors": len(ldm), **rss()}


def run_from_file(path: Path, work: Path, tiny: bool) -> dict:
    """Load offline, train 2 steps at 64 px, plot one cell: each phase timed, RSS after each."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("the network is switched off for this smoke run")

    socket.socket.connect = refuse  # loading a single file must never reach the hub
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["LORA_STUDIO_HOME"] = str(work / "home")
    from sd15_random import write_frames

    from lora_studio.config import config_from_dict
    from lora_studio.generate.xy import xy_plot
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_plan import plan_from_config
    from lora_studio.models.load import load_base
    from lora_studio.presets import load_preset
    from lora_studio.train.loop import train

    phases = {"start": {"seconds": 0.0, **rss()}}
    start = time.perf_counter()
    import diffusers  # noqa: F401 — the libraries' own import cost and memory, apart from the model's
    import transformers  # noqa: F401

    phases["import torch, diffusers, transformers"] = {"seconds": round(time.perf_counter() - start, 1), **rss()}
    start = time.perf_counter()
    if tiny:
        from lora_studio.models.single_file import load_single_file

        base = load_single_file(path, config_dir=path.with_suffix(".config"))
    else:
        base = load_base(str(path))
    model_bytes = sum(p.numel() * p.element_size() for part in (base.unet, base.vae, base.text_encoder)
                      for p in part.parameters())
    phases["load_base(file)"] = {"seconds": round(time.perf_counter() - start, 1), **rss(),
                                 "model_gib_fp32": round(model_bytes / GIB, 2)}

    frames = write_frames(work / "frames", 2, 64)
    config = config_from_dict(dict(base_model=str(path), dataset=str(frames), name="smoke", trigger_word="tibbie",
                                   resolution=64, repeats=1, batch_size=1, epochs=1, min_bucket_reso=64,
                                   max_bucket_reso=64, bucket_reso_steps=64), load_preset("seed-recipe"))
    events, start = [], time.perf_counter()
    train(config, work / "run", events.append, base=base)
    steps = [e for e in events if e["type"] == "step"]
    phases["train 2 steps at 64 px"] = {"seconds": round(time.perf_counter() - start, 1), **rss(),
                                        "steps": len(steps), "losses": [round(e["loss"], 4) for e in steps]}

    plan = plan_from_config(XYPlotConfig(prompt="tibbie, sheep, meadow, <lora:smoke-000001:1>", negative="lowres",
                                         x="epoch", y="weight=1", run=str(work / "run"), seed=1, steps=20, size="64x64"))
    start = time.perf_counter()
    result = xy_plot(base, plan, work / "xy")
    phases["one XY cell, 20 steps at 64 px"] = {"seconds": round(time.perf_counter() - start, 1), **rss(),
                                                "rendered": result.rendered}
    return phases


def box_load() -> str:
    """The 1, 5 and 15 minute load averages (the box is shared)."""
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def in_subprocess(phase: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, phase, *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(written: dict, phases: dict, loads: tuple[str, str], wall: float) -> str:
    rows = "\n".join(f"| {name} | {p['seconds']} s | {p['rss_gib']} GiB | {p['peak_rss_gib']} GiB |"
                     for name, p in phases.items())
    return f"""# Full-size SD1.5 smoke run on the CPU

Script: `benchmarks/full_size_smoke.py` (run once, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).
A random-weight SD1.5 of the real size (parameters in millions: {written['parameters_m']}), written in A1111's
original key layout as one fp16 `.safetensors` of {written['file_gib']} GiB ({written['tensors']} tensors;
built in {written['build_s']} s, converted and written in {written['write_s']} s, in its own process, peak RSS
{written['peak_rss_gib']} GiB). Then a fresh process with the network refused (`socket.connect` raises,
`HF_HUB_OFFLINE=1`): `load_base(FILE)` (what `--base FILE` runs), the seed recipe for 2 steps at 64 px
(batch 1, text encoder trained, rank 32), one XY cell with the epoch file. Whole run {wall:.0f} s.
Machine: 2 CPU cores shared with other work; load average {loads[0]} at the start, {loads[1]} at the end
(the times are inflated by it; the memory figures are not).

| phase | wall time | RSS after | peak RSS so far |
|---|---|---|---|
{rows}

The model in fp32 is {phases['load_base(file)']['model_gib_fp32']} GiB of parameters. Training losses:
{phases['train 2 steps at 64 px']['losses']}; the XY cell rendered: {phases['one XY cell, 20 steps at 64 px']['rendered']}.
"""


def main() -> int:
    tiny = "--tiny" in sys.argv  # checks the script itself in seconds; writes no results
    argv = [a for a in sys.argv[1:] if a != "--tiny"]
    if argv and argv[0] in ("--write", "--run"):
        out = write_checkpoint(Path(argv[1]), tiny) if argv[0] == "--write" else \
            run_from_file(Path(argv[1]), Path(argv[2]), tiny)
        print(json.dumps(out))
        return 0
    start, loads = time.perf_counter(), [box_load()]
    work = Path(tempfile.mkdtemp(prefix="full-size-smoke-"))
    path = work / "random-sd15.safetensors"
    try:
        extra = ["--tiny"] if tiny else []
        written = in_subprocess("--write", str(path), *extra)
        print(f"wrote {path} ({written['file_gib']} GiB)", flush=True)
        phases = in_subprocess("--run", str(path), str(work), *extra)
    finally:
        shutil.rmtree(work)  # the ~2 GB checkpoint in /tmp, the run, the frames
    loads.append(box_load())
    text = report(written, phases, tuple(loads), time.perf_counter() - start)
    if tiny:
        print(text)
        return 0
    (HERE / "full_size_smoke.json").write_text(json.dumps({"written": written, "phases": phases, "load": loads}, indent=1))
    print(text)
    (HERE / "full_size_smoke.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
