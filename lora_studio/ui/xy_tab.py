"""The XY tab: pick a run, set the chart's fields, Generate; the grid grows as the worker renders cells.

Generate queues an `xy` job (jobs.submit_xy) for the one worker, which keeps the base model loaded
after training. The tab follows that job's events.jsonl on a timer: a progress bar over the cells
(rendered vs reused), a preview grid drawn from the finished cell PNGs, then the grid PNG and its
share copy to download. The fields are `lora-studio xy`'s (generate.xy_job.XYSettings); the handlers
take and return plain values, so tests call them without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from lora_studio import jobs
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError
from lora_studio.generate.pipeline import sampler_names
from lora_studio.generate.prompt import set_lora_tag, split_lora_tags
from lora_studio.generate.xy_plan import EPOCH_FILE
from lora_studio.generate.xy_job import DEFAULT_Y, XYSettings, default_prompt, run_axis
from lora_studio.ui.monitor import error_text
from lora_studio.ui.xy_progress import PlotWatch, update, xy_jobs

# (A1111's label, the axis kind of `lora-studio xy --x KIND=VALUES`)
AXIS_TYPES = [("Epoch", "epoch"), ("LoRA weight", "weight"), ("Prompt S/R", "sr"), ("Seed", "seed"),
              ("CFG Scale", "cfg"), ("Steps", "steps"), ("Sampler", "sampler"), ("Clip skip", "clip_skip")]
NOTHING = "none"
SHARE_CHOICES = [("JPEG", "jpeg"), ("WebP", "webp"), ("no copy", NOTHING)]
FIELDS = ("run", "prompt", "negative", "x_type", "x_values", "y_type", "y_values", "z_runs", "seed", "sampler",
          "steps", "cfg", "size", "clip_skip", "batch_size", "margin", "legend", "use_cache", "share")


# --- runs to plot ---------------------------------------------------------------------------------

@dataclass
class RunInfo:
    """A run folder with epoch files: a train job, or one batch size of a sweep."""

    folder: Path
    label: str
    config: TrainConfig
    epoch_stems: list[str]  # NAME-000001 … in epoch order


def epoch_stems(folder: Path) -> list[str]:
    """The stems of a folder's NAME-00000N.safetensors files, in epoch order."""
    stems = [p.stem for p in Path(folder).glob("*.safetensors") if EPOCH_FILE.match(p.stem)]
    return sorted(stems, key=lambda s: int(EPOCH_FILE.match(s).group("epoch")))


def plot_runs() -> list[RunInfo]:
    """Every run with at least one epoch file, newest first; a running run lists the epochs so far."""
    alive = jobs.worker_running()
    found = []
    for job_dir in jobs.list_jobs():
        subruns = sorted(p for p in job_dir.iterdir() if (p / jobs.JOB_FILE).is_file())
        for folder in [job_dir, *subruns]:
            stems = epoch_stems(folder)
            if not stems:
                continue
            try:
                config = jobs.load_job(folder).config
            except UserError:  # a hand-edited job.toml that no longer parses: its base model is unknown
                continue
            name = job_dir.name + (f" / {folder.name}" if folder != job_dir else "")
            label = f"{name} · {jobs.job_state(folder, alive)} · {len(stems)} epoch file{'s' * (len(stems) != 1)}"
            found.append(RunInfo(folder, label, config, stems))
    return found


def find_run(folder: str | None) -> RunInfo | None:
    """The listed run in this folder, if it still has epoch files."""
    return next((r for r in plot_runs() if str(r.folder) == str(folder)), None) if folder else None


def retarget_prompt(prompt: str, run: RunInfo) -> str:
    """Point the prompt's epoch tag at the picked run (keeping the user's words); the chart prompt if empty."""
    first = run.epoch_stems[0]
    if not prompt.strip():
        return default_prompt(first.rsplit("-", 1)[0], first, run.config.trigger_word)
    for index, tag in enumerate(split_lora_tags(prompt)[1]):
        if EPOCH_FILE.match(tag.name):
            return set_lora_tag(prompt, index, name=first)
    return prompt  # no tag: the plot adds one for the run


def run_text(run: RunInfo) -> str:
    """What the picked run is: base model, epochs, and the recipe that made it."""
    c = run.config
    return (f"**Base model:** `{c.base_model}` · **epoch files:** {len(run.epoch_stems)} "
            f"(`{run.epoch_stems[0]}` … `{run.epoch_stems[-1]}`) · trained at {c.resolution} px, "
            f"batch {c.batch_size}, unet_lr {c.unet_lr:g}, {c.optimizer} · folder `{run.folder}`")


def run_defaults(run: RunInfo, prompt: str) -> dict[str, Any]:
    """Fields that follow the picked run: its tag in the prompt, its size, preview seed and clip skip."""
    c = run.config
    return {"prompt": retarget_prompt(prompt, run), "size": f"{c.resolution}x{c.resolution}",
            "seed": c.sample_seed, "clip_skip": c.clip_skip}


# --- the form -------------------------------------------------------------------------------------

def axis_spec(kind: str, values: str) -> str:
    """('weight', '0,0.5,1') → 'weight=0,0.5,1', the CLI's form; ('epoch', '') → 'epoch' (every file)."""
    if not kind or kind == NOTHING:
        return ""
    return f"{kind}={values.strip()}" if values and values.strip() else kind


def read_settings(values: dict[str, Any]) -> XYSettings:
    """The form's values (by field name) as the job's settings; the run's own base model is used."""
    run = find_run(values.get("run"))
    if run is None:
        raise UserError("pick a run to plot", "runs appear here once their first epoch file is written")
    z_runs = [f for f in values.get("z_runs") or [] if f != str(run.folder)]

    def number(name: str, cast):
        try:
            return cast(values[name])
        except (TypeError, ValueError):
            raise UserError(f"{name.replace('_', ' ')} must be a number, not {values[name]!r}") from None

    return XYSettings(
        base=run.config.base_model, run=str(run.folder), prompt=values.get("prompt") or "",
        negative=values.get("negative") or "", x=axis_spec(values["x_type"], values.get("x_values", "")),
        y=axis_spec(values["y_type"], values.get("y_values", "")),
        z=run_axis([str(run.folder), *z_runs]) if z_runs else "",
        seed=number("seed", int), sampler=values["sampler"], steps=number("steps", int), cfg=number("cfg", float),
        size=values.get("size") or "", clip_skip=number("clip_skip", int), batch_size=number("batch_size", int),
        margin=number("margin", int), legend=bool(values.get("legend", True)),
        use_cache=bool(values.get("use_cache", True)),
        share="" if values.get("share") == NOTHING else values.get("share", "jpeg"))


def generate(values: dict[str, Any], start_worker: bool = True) -> tuple[Path, str]:
    """Queue the plot; returns its job folder and what to tell the user (UserError for a mistake)."""
    settings = read_settings(values)
    busy = jobs.active_job()
    busy_state = jobs.job_state(busy) if busy else ""
    cells = len(settings.check().cells)
    job = jobs.submit_xy(settings, start_worker=start_worker)
    queued = f" It waits behind `{busy.name}`." if busy_state in ("running", "queued") else ""
    return job.run_dir, f"The XY plot ({cells} cells) is queued as `{job.id}`.{queued}"


# --- layout and wiring ----------------------------------------------------------------------------

def build(demo: gr.Blocks, tab: gr.Tab) -> None:
    """Lay out the tab (inside `tab`) and wire its events."""
    runs = plot_runs()
    first = runs[0] if runs else None
    start = run_defaults(first, "") if first else {"prompt": "", "size": "512x512", "seed": -1, "clip_skip": 2}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=380):
            with gr.Row():
                run = gr.Dropdown([(r.label, str(r.folder)) for r in runs], value=str(first.folder) if first else None,
                                  label="Run", elem_id="xy-run", scale=4,
                                  info="a finished or running training run (each batch size of a sweep is one)")
                refresh = gr.Button("Refresh", size="sm", scale=1, elem_id="xy-refresh")
            run_info = gr.Markdown(run_text(first) if first else "No run with epoch files yet: train one first.",
                                   elem_id="xy-run-info")
            prompt = gr.Textbox(start["prompt"], label="Prompt", lines=2, elem_id="xy-prompt",
                                info="A1111 syntax; the axes rewrite the run's <lora:NAME-00000N:weight> tag")
            negative = gr.Textbox("lowres, bad anatomy, bad hands, worst quality", label="Negative prompt",
                                  elem_id="xy-negative")
            with gr.Row():
                x_type = gr.Dropdown(AXIS_TYPES, value="epoch", label="X type", elem_id="xy-x-type", scale=1)
                x_values = gr.Textbox("", label="X values", elem_id="xy-x-values", scale=2,
                                      placeholder="empty: every epoch file",
                                      info="commas, or ranges: 1-8, 0-1 (+0.1), 0-1 [5]")
            with gr.Row():
                y_type = gr.Dropdown([("Nothing", NOTHING), *AXIS_TYPES], value="weight", label="Y type",
                                     elem_id="xy-y-type", scale=1)
                y_values = gr.Textbox(DEFAULT_Y.partition("=")[2], label="Y values", elem_id="xy-y-values", scale=2,
                                      info="Prompt S/R: the first value must be in the prompt")
            z_runs = gr.Dropdown([(r.label, str(r.folder)) for r in runs], value=[], multiselect=True,
                                 label="Compare with runs (Z axis)", elem_id="xy-z-runs",
                                 info="one grid per run plus a combined sheet, e.g. the bs1…bs4 runs of a sweep")
            with gr.Row():
                seed = gr.Number(start["seed"], label="Seed", precision=0, elem_id="xy-seed",
                                 info="-1: random; fixed, a re-run reuses cached cells")
                sampler = gr.Dropdown(sampler_names(), value="DPM++ 2M Karras", label="Sampler", elem_id="xy-sampler")
            with gr.Row():
                steps = gr.Slider(1, 150, value=20, step=1, label="Steps", elem_id="xy-steps")
                cfg = gr.Slider(1, 30, value=7, step=0.5, label="CFG scale", elem_id="xy-cfg")
            with gr.Row():
                size = gr.Textbox(start["size"], label="Size", elem_id="xy-size",
                                  info="WIDTHxHEIGHT; the run's resolution")
                clip_skip = gr.Slider(1, 12, value=start["clip_skip"], step=1, label="Clip skip",
                                      elem_id="xy-clip-skip")
            with gr.Accordion("More", open=False):
                with gr.Row():
                    batch_size = gr.Number(0, label="Batch size", precision=0, minimum=0, elem_id="xy-batch-size",
                                           info="cells rendered together; 0: 1 on a CPU, 4 on a GPU")
                    margin = gr.Number(0, label="Grid margin (px)", precision=0, minimum=0, elem_id="xy-margin")
                with gr.Row():
                    legend = gr.Checkbox(True, label="Draw legend", elem_id="xy-legend")
                    use_cache = gr.Checkbox(True, label="Reuse cached cells", elem_id="xy-use-cache")
                    share = gr.Radio(SHARE_CHOICES, value="jpeg", label="Copy to post", elem_id="xy-share")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="xy-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="xy-stop", interactive=False)
            message = gr.Markdown("", elem_id="xy-message")
        with gr.Column(scale=3, min_width=480):
            plot = gr.Dropdown([], value=None, label="Plot", elem_id="xy-job")
            status = gr.HTML("<div class='ls-status'>No plot yet: pick a run and press Generate.</div>",
                             elem_id="xy-status")
            image = gr.Image(None, label="Grid", interactive=False, elem_id="xy-grid", format="png", height=560)
            with gr.Row():
                grid_file = gr.DownloadButton("Download grid PNG", value=None, interactive=False,
                                              elem_id="xy-download-grid")
                share_file = gr.DownloadButton("Download copy to post", value=None, interactive=False,
                                               elem_id="xy-download-share")

    comps = dict(zip(FIELDS, (run, prompt, negative, x_type, x_values, y_type, y_values, z_runs, seed, sampler,
                              steps, cfg, size, clip_skip, batch_size, margin, legend, use_cache, share)))
    watch = gr.State(PlotWatch())
    parts = {"status": status, "message": message, "image": image, "grid_file": grid_file,
             "share_file": share_file, "stop": stop}
    outputs = [*parts.values(), plot, watch]

    def show(w: PlotWatch, extra: dict | None = None) -> dict:
        changes = update(w)
        out = {parts[k]: v for k, v in changes.items() if k in parts}
        if "choices" in changes:
            out[plot] = gr.update(choices=changes["choices"], value=w.job)
        elif "job" in changes:
            out[plot] = gr.update(value=w.job)
        return {**out, watch: w, **(extra or {})}

    def on_run(folder: str | None, text: str) -> dict:
        picked = find_run(folder)
        if picked is None:
            return {run_info: "No run with epoch files yet: train one first."}
        return {run_info: run_text(picked), **{comps[k]: v for k, v in run_defaults(picked, text or "").items()}}

    def on_runs(folder: str | None, chosen: list, text: str) -> dict:
        listed = plot_runs()
        choices = [(r.label, str(r.folder)) for r in listed]
        keep = folder if any(str(r.folder) == folder for r in listed) else (choices[0][1] if choices else None)
        folders = {c[1] for c in choices}
        out = {run: gr.update(choices=choices, value=keep),
               z_runs: gr.update(choices=choices, value=[f for f in chosen or [] if f in folders])}
        # A run that appeared since the page opened takes the place of none: its fields follow it.
        return {**out, **(on_run(keep, text) if keep != folder else {})}

    def on_generate(data: dict) -> dict:
        w = data[watch]
        try:
            job_dir, text = generate({name: data[c] for name, c in comps.items()})
        except UserError as exc:
            return {message: error_text(exc)}
        return show(w.follow(str(job_dir)), {message: text})

    def on_stop(w: PlotWatch) -> dict:
        if w.job:
            jobs.stop(w.job)
        return {**show(w), message: "Stopping after the current cell; the grid keeps the cells rendered so far."}

    def on_pick_plot(job_dir: str, w: PlotWatch) -> dict:
        return show(w.follow(job_dir))

    def on_load(w: PlotWatch) -> dict:
        plots = xy_jobs()
        return show(w.follow(str(plots[0]) if plots else None))

    quiet = {"show_progress_on": [message]}
    follow_run = [run_info, prompt, size, seed, clip_skip]
    refresh.click(on_runs, inputs=[run, z_runs, prompt], outputs=[run, z_runs, *follow_run], **quiet)
    tab.select(on_runs, inputs=[run, z_runs, prompt], outputs=[run, z_runs, *follow_run], show_progress="hidden")
    run.input(on_run, inputs=[run, prompt], outputs=follow_run, **quiet)
    go.click(on_generate, inputs={*comps.values(), watch}, outputs=[*outputs, message], **quiet)
    stop.click(on_stop, inputs=watch, outputs=[*outputs, message], **quiet)
    plot.input(on_pick_plot, inputs=[plot, watch], outputs=outputs, show_progress="hidden")
    gr.Timer(1.0).tick(show, inputs=watch, outputs=outputs, show_progress="hidden")
    demo.load(on_load, inputs=watch, outputs=outputs, show_progress="hidden")
