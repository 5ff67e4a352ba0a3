"""The Train tab: character and preset, the form, the step budget, Start / Find LR / Sweep, the monitor.

Handlers read the form as {component: value} and hand the validated config to jobs.submit(); the
worker does the work. Nothing here blocks or computes beyond turning files into what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import gradio as gr

from lora_studio import jobs, presets
from lora_studio.config import TrainConfig, field_info
from lora_studio.errors import UserError
from lora_studio.ui import characters, monitor
from lora_studio.ui.form import ESSENTIAL, build_fields, read_form, to_widget, values_of

CHARACTER_FIELDS = presets.CHARACTER_FIELDS  # who the character is: a preset never changes them
BUDGET_FIELDS = ("dataset", "repeats", "epochs", "batch_size", "resolution", "enable_buckets", "min_bucket_reso",
                 "max_bucket_reso", "bucket_reso_steps", "caption_extension", "unet_lr", "te_lr", "te_lr_divisor")


def kept_of(config: TrainConfig, kept: int) -> str:
    """'kept 44 of 46 frames': frames excluded on the Dataset tab are not trained."""
    from lora_studio.data.review import list_image_files
    from lora_studio.data.review_state import ReviewState

    excluded = ReviewState.load(config.dataset).excluded_ids() & set(list_image_files(Path(config.dataset)))
    return f"kept {kept} of {kept + len(excluded)} frames"


def budget_text(config: TrainConfig) -> str:
    """'kept 46 of 48 frames · 46 frames × 6 repeats × 8 epochs ÷ batch 1 = 2208 steps' plus the TE LR in force."""
    budget = jobs.step_budget(config, jobs.kept_frames(config))
    per_bucket = f" ({budget['buckets']} aspect buckets)" if budget["buckets"] > 1 else ""
    te = ("frozen" if config.resolved_te_lr() == 0 else f"{config.resolved_te_lr():.3g}"
          + (f" (unet_lr ÷ {config.te_lr_divisor:g})" if config.te_lr is None else ""))
    return (f"**Dataset:** {kept_of(config, budget['frames'])} (review them on the Dataset tab) · "
            f"**Step budget:** {budget['frames']} frames × {config.repeats} repeats × {config.epochs} epochs "
            f"÷ batch {config.batch_size} = **{budget['total_steps']} steps** "
            f"({budget['steps_per_epoch']} per epoch{per_bucket}) · te_lr in force: {te}")


@dataclass
class TrainTab:
    """What other tabs need: the session's watch state, a way to show a job in the monitor, the form."""

    watch: gr.State
    outputs: list
    show: Callable
    comps: dict  # field name → component (the Dataset tab reads dataset, trigger_word, resolution)
    budget: gr.Markdown
    refresh_budget: Callable  # {component: value} of the form → the step-budget text


def build(demo: gr.Blocks, defaults: TrainConfig, default_preset: str) -> TrainTab:
    """Lay out the tab and wire its events (inside demo and a gr.Tabs context)."""
    names = [f.name for f in fields(TrainConfig)]
    more = [n for n in names if n not in ESSENTIAL and n != "name" and not field_info(n)["advanced"]]
    advanced = [n for n in names if n not in ESSENTIAL and field_info(n)["advanced"]]

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=380):
            with gr.Row():
                name = gr.Dropdown(sorted(set(characters.list_characters()) | {defaults.name}), value=defaults.name,
                                   allow_custom_value=True, label="Character (name)", elem_id="field-name",
                                   info="LoRA file name; remembers its last settings")
                preset = gr.Dropdown(presets.list_presets(), value=default_preset, label="Preset",
                                     elem_id="preset", info="fills every field in one click")
            comps = {"name": name, **build_fields(defaults, [n for n in ESSENTIAL if n in names])}
            budget = gr.Markdown("", elem_id="step-budget")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="start-button")
                find_lr = gr.Button("Find LR", elem_id="find-lr-button")
                sweep = gr.Button("Sweep batch 1–4", elem_id="sweep-button")
            form_message = gr.Markdown("", elem_id="form-message")
            with gr.Accordion("More settings", open=False):
                comps.update(build_fields(defaults, more))
            with gr.Accordion("Advanced", open=False):
                comps.update(build_fields(defaults, advanced))
            with gr.Accordion("Save as preset", open=False):
                preset_name = gr.Textbox(label="preset name", elem_id="preset-name")
                preset_note = gr.Textbox(label="note (written as a comment in the file)")
                save = gr.Button("Save as preset", elem_id="save-preset-button")
        with gr.Column(scale=3, min_width=480):
            panel = monitor.build()

    watch = gr.State(monitor.Watch())
    form_inputs = set(comps.values())
    panel_outputs = [*panel.outputs(), watch]

    def show(w: monitor.Watch, extra: dict | None = None) -> dict:
        return {**monitor.render(panel, w, monitor.update(w)), watch: w, **(extra or {})}

    def on_character(data: dict) -> dict:
        remembered = characters.last_settings(data[name] or "")
        if remembered is None:
            return {form_message: ""}
        return {**values_of(remembered, comps), form_message: f"Loaded the last settings used for **{remembered.name}**."}

    def on_preset(data: dict) -> dict:
        try:
            keep = {n: data[comps[n]] for n in CHARACTER_FIELDS}
            config = presets.load_preset(data[preset], base=TrainConfig(**keep))
        except UserError as exc:
            return {form_message: monitor.error_text(exc)}
        return {**values_of(config, comps), form_message: f"Preset **{data[preset]}** applied."}

    def on_budget(data: dict) -> str:
        try:
            return budget_text(read_form(data, comps))
        except UserError as exc:
            return monitor.error_text(exc)

    def submit(kind: str):
        def handler(data: dict) -> dict:
            w = data[watch]
            try:
                config = read_form(data, comps)
                jobs.check_inputs(config)
                characters.remember(config)
                busy = jobs.active_job()
                busy_state = jobs.job_state(busy) if busy else ""
                job = jobs.submit(kind, config, preset=presets.preset_label(data[preset], config))
            except UserError as exc:
                return {form_message: monitor.error_text(exc)}
            what = {"train": "Training", "probe": "The LR probe", "sweep": "The batch-size sweep"}[kind]
            queued = f" It waits behind `{busy.name}`." if busy_state in ("running", "queued") else ""
            return show(w.follow(str(job.run_dir)), {form_message: f"{what} is queued as `{job.id}`.{queued}"})
        return handler

    def on_tick(w: monitor.Watch) -> dict:
        out = show(w)
        probe = w.progress.probe
        if probe and w.progress.state == "done" and w.job not in w.probes_applied:
            w.probes_applied.add(w.job)
            # Four significant digits: the probe is an estimate, and 0.0016752125153381254 reads badly.
            unet_lr, te_lr = float(f"{probe['unet_lr']:.4g}"), float(f"{probe['te_lr']:.4g}")
            out.update({comps["unet_lr"]: unet_lr, comps["te_lr"]: to_widget("te_lr", te_lr),
                        comps["optimizer"]: "lion", comps["scheduler"]: "cosine_with_restarts"})
        return out

    def on_watch(run_dir: str, w: monitor.Watch) -> dict:
        return show(w.follow(run_dir))

    def on_stop(w: monitor.Watch) -> dict:
        if w.job:
            jobs.stop(w.job)
        return {**show(w), form_message: "Stopping after the current step (its state is saved for Resume)…"}

    def on_resume(w: monitor.Watch) -> dict:
        try:
            jobs.resume(w.job)
        except UserError as exc:
            return {form_message: monitor.error_text(exc)}
        return {**show(w), form_message: "Resuming from the last saved state."}

    def on_save_preset(data: dict) -> dict:
        try:
            path = presets.save_preset(read_form(data, comps), (data[preset_name] or "").strip(), data[preset_note] or "")
        except UserError as exc:
            return {form_message: monitor.error_text(exc)}
        return {form_message: f"Saved preset **{path.stem}** to `{path}`.",
                preset: gr.update(choices=presets.list_presets(), value=path.stem)}

    def on_load(w: monitor.Watch) -> dict:
        active = jobs.active_job()
        w.follow(str(active) if active else None)
        if active and jobs.job_state(active) == "done":
            w.probes_applied.add(str(active))  # an old probe's numbers are not pushed into a fresh form
        # A reopened page shows the settings last used for this character, not the launch defaults.
        remembered = characters.last_settings(defaults.name)
        return show(w, values_of(remembered, comps) if remembered else None)

    all_form = [*comps.values(), form_message]
    quiet = {"show_progress_on": [form_message]}  # a click must not grey out the live panel
    name.input(on_character, inputs={name}, outputs=all_form, **quiet)
    preset.input(on_preset, inputs={preset, *(comps[n] for n in CHARACTER_FIELDS)}, outputs=all_form, **quiet)
    gr.on([comps[n].change for n in BUDGET_FIELDS if n in comps], on_budget, inputs=form_inputs, outputs=budget,
          show_progress="hidden", trigger_mode="always_last")
    for button, kind in ((start, "train"), (find_lr, "probe"), (sweep, "sweep")):
        button.click(submit(kind), inputs={*form_inputs, watch, preset}, outputs=[*panel_outputs, form_message], **quiet)
    gr.Timer(1.0).tick(on_tick, inputs=watch, outputs=[*panel_outputs, *comps.values()], show_progress="hidden")
    panel.job.input(on_watch, inputs=[panel.job, watch], outputs=panel_outputs, show_progress="hidden")
    panel.stop.click(on_stop, inputs=watch, outputs=[*panel_outputs, form_message], **quiet)
    panel.resume.click(on_resume, inputs=watch, outputs=[*panel_outputs, form_message], **quiet)
    save.click(on_save_preset, inputs={*form_inputs, preset_name, preset_note}, outputs=[form_message, preset], **quiet)
    demo.load(on_load, inputs=watch, outputs=[*panel_outputs, *comps.values()], show_progress="hidden")
    demo.load(on_budget, inputs=form_inputs, outputs=budget)
    return TrainTab(watch, panel_outputs, show, comps, budget, on_budget)
