"""The XY tab: pick a run, set the chart's fields, Generate; the grid grows as the worker renders cells.

Generate queues an `xy` job (jobs.submit_xy) for the one worker, which keeps the base model loaded
after training. The tab follows that job's events.jsonl on a timer: a progress bar over the cells
(rendered vs reused), a preview grid drawn from the finished cell PNGs, then the grid PNG and its
share copy to download. The fields are `lora-studio xy`'s (config.XYPlotConfig), their labels, help and
ranges taken from its field metadata; the handlers take and return plain values by field name, so tests
call them without a browser. "Paste parameters" fills the form from an A1111 `parameters` text
(generate/infotext_parse.py); the run is still the user's pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from lora_studio import jobs, runfiles
from lora_studio.config import XY_DEFAULT_Y, TrainConfig, XYPlotConfig, xy_field_info
from lora_studio.errors import UserError
from lora_studio.generate.pipeline import sampler_names
from lora_studio.generate.prompt import set_lora_tag, split_lora_tags
from lora_studio.generate.xy_job import check_plot, default_prompt, run_axis
from lora_studio.generate.xy_plan import AXIS_KINDS, EPOCH_FILE
from lora_studio.train.lora_file import read_metadata, tags_on_every_frame
from lora_studio.ui.monitor import error_text
from lora_studio.ui.xy_progress import PlotWatch, update, xy_jobs

# (A1111's label, the axis kind of `lora-studio xy --x KIND=VALUES`), from the planner's own list; runs are
# compared on Z by their own picker.
AXIS_TYPES = [(label, kind) for kind, (label, _) in AXIS_KINDS.items() if kind != "run"]
NOTHING = "none"
NOT_QUEUED = "<div class='ls-status'><b data-state='error'>Not queued</b> XY plot · see below, then Generate again</div>"
SHARE_CHOICES = [("JPEG", "jpeg"), ("WebP", "webp"), ("no copy", NOTHING)]
# The XYPlotConfig fields the form shows one widget each for (x, y and z get an axis picker; base is the run's).
PLAIN_FIELDS = ("prompt", "negative", "seed", "sampler", "steps", "cfg", "size", "clip_skip", "batch_size", "margin",
                "legend", "use_cache", "share", "score", "scorer", "score_dataset", "beta", "badges")


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
        try:
            if jobs.load_job(job_dir).kind == "probe":  # an LR probe's one epoch was a DAdaptation test, not a LoRA
                continue
        except UserError:
            pass  # an xy job's or a hand-edited job.toml: its folders are judged one by one below
        subruns = sorted(p for p in job_dir.iterdir() if (p / runfiles.JOB_FILE).is_file())
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
    text = (f"**Base model:** `{c.base_model}` · **epoch files:** {len(run.epoch_stems)} "
            f"(`{run.epoch_stems[0]}` … `{run.epoch_stems[-1]}`) · trained at {c.resolution} px, "
            f"batch {c.batch_size}, unet_lr {c.unet_lr:g}, {c.optimizer} · folder `{run.folder}`")
    try:
        tags = tags_on_every_frame(read_metadata(run.folder / f"{run.epoch_stems[-1]}.safetensors"), c.trigger_word)
    except UserError:
        tags = []
    if tags:
        text += (" · **tagged on every frame:** " + ", ".join(f"`{t}`" for t in tags)
                 + " (the LoRA learned what these show under them: a prompt gets it only by naming them)")
    return text


def paste_fields(text: str, folder: str | None) -> tuple[dict[str, Any], str]:
    """The form's values (by field name) from a pasted A1111 `parameters` text, and what to tell the user."""
    from lora_studio.generate.infotext_parse import plot_from_infotext, run_mismatch
    from lora_studio.generate.pipeline import parse_sampler

    if not (text or "").strip():
        raise UserError("nothing pasted", "copy the text A1111's PNG Info shows under 'parameters' into the box")
    pasted = plot_from_infotext(text)
    c = pasted.config
    values = {name: getattr(c, name) for name in ("prompt", "negative", "seed", "steps", "cfg", "size", "clip_skip")}
    notes = [pasted.warning()]
    try:
        sampler, schedule = parse_sampler(c.sampler)
        values["sampler"] = sampler if schedule == "Automatic" else f"{sampler} {schedule}"
    except UserError as exc:
        notes.append(f"{exc.message}: the form keeps its sampler")
    if pasted.has_axes:
        for letter, spec in (("x", c.x), ("y", c.y)):
            kind, _, axis_values = spec.partition("=")
            values[f"{letter}_type"], values[f"{letter}_values"] = kind or NOTHING, axis_values
        if c.z:
            notes.append(f"its Z axis `{c.z}`: this tab compares runs on Z; `lora-studio xy --infotext` plots it")
    run = find_run(folder)
    wrong = run_mismatch(c.prompt, run.folder) if run else ""
    said = "**Filled the form** from the pasted text." + "".join(f"\n\n⚠️ {n}" for n in [*notes, wrong] if n)
    return values, said


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


def read_settings(values: dict[str, Any]) -> XYPlotConfig:
    """The form's values (by field name) as the plot's XYPlotConfig; the run's own base model is used."""
    run = find_run(values.get("run"))
    if run is None:
        raise UserError("pick a run to plot", "runs appear here once their first epoch file is written")
    z_runs = [f for f in values.get("z_runs") or [] if f != str(run.folder)]
    kinds = {"int": int, "float": float}
    plain = {}
    for name in PLAIN_FIELDS:
        value, kind = values.get(name), xy_field_info(name)["type"]
        if name not in values:  # a field the caller's form does not show keeps its default
            value = xy_field_info(name)["default"]
        elif kind in kinds:
            try:
                value = kinds[kind](value)
            except (TypeError, ValueError):
                raise UserError(f"{name.replace('_', ' ')} must be a number, not {value!r}") from None
        elif value is None:
            value = xy_field_info(name)["default"]
        plain[name] = value
    if plain["share"] == NOTHING:
        plain["share"] = ""
    return XYPlotConfig(
        base=run.config.base_model, run=str(run.folder), x=axis_spec(values["x_type"], values.get("x_values", "")),
        y=axis_spec(values["y_type"], values.get("y_values", "")),
        z=run_axis([str(run.folder), *z_runs]) if z_runs else "", **plain).validate()


def generate(values: dict[str, Any], start_worker: bool = True) -> tuple[Path, str]:
    """Queue the plot; returns its job folder and what to tell the user (UserError for a mistake)."""
    settings = read_settings(values)
    busy = jobs.active_job()
    busy_state = jobs.job_state(busy) if busy else ""
    cells = len(check_plot(settings).cells)
    job = jobs.submit_xy(settings, start_worker=start_worker)
    queued = f" It waits behind `{busy.name}`." if busy_state in ("running", "queued") else ""
    return job.run_dir, f"The XY plot ({cells} cells) is queued as `{job.id}`.{queued}"


# --- layout and wiring ----------------------------------------------------------------------------

def widget(name: str, value: Any = None, **overrides):
    """One XYPlotConfig field's component, from its metadata: label, help, range, choices, default."""
    info = xy_field_info(name)
    value = info["default"] if value is None else value
    common = {"label": info.get("label", name), "info": info["help"], "elem_id": "xy-" + name.replace("_", "-"),
              **overrides}
    if name == "sampler":  # the choices are the pipeline's A1111 names
        return gr.Dropdown(sampler_names(), value=value, **common)
    if name == "share":
        return gr.Radio(SHARE_CHOICES, value=value or NOTHING, **common)
    if name == "scorer":
        return gr.Dropdown([("automatic: the toy judge for the toy model, else anime", ""), ("toy", "toy"),
                            ("anime", "anime")], value=value, **common)
    kind, low, high = info["type"], info.get("min"), info.get("max")
    if kind == "bool":
        return gr.Checkbox(value, **common)
    if kind in ("int", "float"):
        if not info["advanced"] and low is not None and high is not None and high - low <= 150:
            return gr.Slider(low, high, value=value, step=1 if kind == "int" else 0.5, **common)
        return gr.Number(value, precision=0 if kind == "int" else None, minimum=low, **common)
    return gr.Textbox(value, **common)


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
            with gr.Accordion("Paste parameters", open=False, elem_id="xy-paste-box"):
                paste_text = gr.Textbox("", lines=4, show_label=False, elem_id="xy-paste",
                                        placeholder="an A1111 'parameters' text (PNG Info): prompt, Negative prompt: …, "
                                                    "Steps: 20, Sampler: …, Script: X/Y/Z plot, X Type: …")
                paste_go = gr.Button("Fill the form", size="sm", elem_id="xy-paste-fill")
                paste_note = gr.Markdown("", elem_id="xy-paste-note")
            f = {"prompt": widget("prompt", start["prompt"], lines=2,
                                  info="A1111 syntax; the axes rewrite the run's <lora:NAME-00000N:weight> tag"),
                 "negative": widget("negative", "lowres, bad anatomy, bad hands, worst quality")}
            with gr.Row():
                x_type = gr.Dropdown(AXIS_TYPES, value="epoch", label="X type", elem_id="xy-x-type", scale=1)
                x_values = gr.Textbox("", label="X values", elem_id="xy-x-values", scale=2,
                                      placeholder="empty: every epoch file",
                                      info="commas, or ranges: 1-8, 0-1 (+0.1), 0-1 [5]")
            with gr.Row():
                y_type = gr.Dropdown([("Nothing", NOTHING), *AXIS_TYPES], value="weight", label="Y type",
                                     elem_id="xy-y-type", scale=1)
                y_values = gr.Textbox(XY_DEFAULT_Y.partition("=")[2], label="Y values", elem_id="xy-y-values", scale=2,
                                      info="Prompt S/R: the first value must be in the prompt")
            z_runs = gr.Dropdown([(r.label, str(r.folder)) for r in runs], value=[], multiselect=True,
                                 label="Compare with runs (Z axis)", elem_id="xy-z-runs",
                                 info="one grid per run plus a combined sheet, e.g. the bs1…bs4 runs of a sweep")
            with gr.Row():
                f["seed"], f["sampler"] = widget("seed", start["seed"]), widget("sampler")
            with gr.Row():
                f["steps"], f["cfg"] = widget("steps"), widget("cfg")
            with gr.Row():
                f["size"], f["clip_skip"] = widget("size", start["size"]), widget("clip_skip", start["clip_skip"])
            with gr.Accordion("More", open=False):
                with gr.Row():
                    f["batch_size"], f["margin"] = widget("batch_size"), widget("margin")
                with gr.Row():
                    f["legend"], f["use_cache"], f["share"] = widget("legend"), widget("use_cache"), widget("share")
                with gr.Row():
                    f["scorer"], f["beta"], f["badges"] = widget("scorer"), widget("beta"), widget("badges")
                f["score_dataset"] = widget("score_dataset")
            with gr.Row():
                # on by default: the studio judges every grid (the toy judge costs well under a second)
                f["score"] = widget("score", True, info=None, scale=1, min_width=120)
                go = gr.Button("Generate", variant="primary", elem_id="xy-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="xy-stop", interactive=False)
        with gr.Column(scale=3, min_width=480):
            plot = gr.Dropdown([], value=None, label="Plot", elem_id="xy-job")
            status = gr.HTML("<div class='ls-status'>No plot yet: pick a run and press Generate.</div>",
                             elem_id="xy-status")
            # at the top of the result pane, beside the grid it is about: a mistake is seen without scrolling
            message = gr.Markdown("", elem_id="xy-message")
            image = gr.Image(None, label="Grid", interactive=False, elem_id="xy-grid", format="png", height=560)
            with gr.Row():
                grid_file = gr.DownloadButton("Download grid PNG", value=None, interactive=False,
                                              elem_id="xy-download-grid")
                share_file = gr.DownloadButton("Download copy to post", value=None, interactive=False,
                                               elem_id="xy-download-share")
                scored_file = gr.DownloadButton("Download grid with scores", value=None, interactive=False,
                                                elem_id="xy-download-scored")
            scores_md = gr.Markdown("", elem_id="xy-scores")
            scores_png = gr.Image(None, label="Scores: epoch × weight", interactive=False, elem_id="xy-scores-image",
                                  format="png", visible=False)

    comps = {"run": run, "x_type": x_type, "x_values": x_values, "y_type": y_type, "y_values": y_values,
             "z_runs": z_runs, **f}
    watch = gr.State(PlotWatch())
    run_seen = gr.State((str(first.folder), len(first.epoch_stems)) if first else None)  # (run, epoch files) shown
    parts = {"status": status, "message": message, "image": image, "grid_file": grid_file,
             "share_file": share_file, "scored_file": scored_file, "stop": stop, "scores_text": scores_md,
             "scores_image": scores_png}
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
        picked = next((r for r in listed if str(r.folder) == keep), None)
        out[run_info] = run_text(picked) if picked else "No run with epoch files yet: train one first."
        # A run that appeared since the page opened takes the place of none: its fields follow it.
        return {**out, **(on_run(keep, text) if keep != folder else {})}

    def on_tick(data: dict) -> dict:
        # a run still training writes an epoch file now and then: its count and label follow
        folder, seen = data[run], data[run_seen]
        now = (folder, len(epoch_stems(Path(folder)))) if folder else None
        out = show(data[watch])
        if now == seen:
            return out
        return {**out, **on_runs(folder, data[z_runs], data[prompt]), run_seen: now}

    def on_paste(text: str, folder: str | None) -> dict:
        try:
            values, said = paste_fields(text, folder)
        except UserError as exc:
            return {paste_note: error_text(exc)}
        return {paste_note: said, **{comps[name]: value for name, value in values.items()}}

    def on_generate(data: dict) -> dict:
        w = data[watch]
        try:
            job_dir, text = generate({name: data[c] for name, c in comps.items()})
        except UserError as exc:
            # the previous grid would read as this plot's result: it goes, the mistake takes its place
            return {message: error_text(exc), status: NOT_QUEUED, image: None,
                    grid_file: gr.update(value=None, interactive=False),
                    share_file: gr.update(value=None, interactive=False),
                    scored_file: gr.update(value=None, interactive=False)}
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
    prompt = f["prompt"]
    follow_run = [run_info, *(f[name] for name in ("prompt", "size", "seed", "clip_skip"))]  # run_defaults' fields
    refresh.click(on_runs, inputs=[run, z_runs, prompt], outputs=[run, z_runs, *follow_run], **quiet)
    tab.select(on_runs, inputs=[run, z_runs, prompt], outputs=[run, z_runs, *follow_run], show_progress="hidden")
    paste_go.click(on_paste, inputs=[paste_text, run], outputs=[paste_note, *comps.values()], **quiet)
    run.input(on_run, inputs=[run, prompt], outputs=follow_run, **quiet)
    go.click(on_generate, inputs={*comps.values(), watch}, outputs=[*outputs, message], **quiet)
    # Generate sits at the foot of a long form: a new answer (queued, or the mistake) is brought into view
    message.change(None, js="() => document.getElementById('xy-message')?.scrollIntoView({block: 'nearest'})")
    stop.click(on_stop, inputs=watch, outputs=[*outputs, message], **quiet)
    plot.input(on_pick_plot, inputs=[plot, watch], outputs=outputs, show_progress="hidden")
    gr.Timer(1.0).tick(on_tick, inputs={watch, run, run_seen, z_runs, prompt},
                       outputs=[*outputs, run_seen, run, z_runs, *follow_run], show_progress="hidden")
    demo.load(on_load, inputs=watch, outputs=outputs, show_progress="hidden")
