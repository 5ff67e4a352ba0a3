"""The Train tab: character and preset, the form, the step budget, Start / Find LR / Sweep, the monitor.

Handlers read the form as {component: value} and hand the validated config to jobs.submit(); the
worker does the work. Nothing here blocks or computes beyond turning files into what is shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import gradio as gr

from lora_studio import jobs, presets
from lora_studio.config import TrainConfig, field_info
from lora_studio.errors import UserError
from lora_studio.train import probe as lr_probe
from lora_studio.ui import characters, monitor, study_panel, study_view
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


def te_lr_text(config: TrainConfig) -> str:
    """The text-encoder LR in force as the budget line shows it: '0.000276 (unet_lr ÷ 10)', '1e-05' or 'frozen'."""
    te_lr = job_config(config).te_lr
    if te_lr == 0:
        return "frozen"
    return f"{te_lr:.4g}" + (f" (unet_lr ÷ {config.te_lr_divisor:g})" if config.te_lr is None else "")


def budget_text(config: TrainConfig) -> str:
    """'kept 46 of 48 frames · 46 frames × 6 repeats × 8 epochs ÷ batch 1 = 2208 steps' plus the TE LR in force."""
    from lora_studio.data.run_frames import load_kept_frames, split_validation

    # one scan of the folder: the kept frames, then the ones the validation split leaves to train on
    trained, held_out = split_validation(load_kept_frames(config)[0], config.validation_split, config.seed)
    budget = jobs.step_budget(config, trained)
    per_bucket = f" ({budget['buckets']} aspect buckets)" if budget["buckets"] > 1 else ""
    te = te_lr_text(config)
    held = f", {len(held_out)} held out for the validation loss" if held_out else ""
    return (f"**Dataset:** {kept_of(config, len(trained) + len(held_out))}{held} (review them on the Dataset tab) · "
            f"**Step budget:** {budget['frames']} frames × {config.repeats} repeats × {config.epochs} epochs "
            f"÷ batch {config.batch_size} = **{budget['total_steps']} steps** "
            f"({budget['steps_per_epoch']} per epoch{per_bucket}) · te_lr in force: {te}")


def job_config(config: TrainConfig) -> TrainConfig:
    """What Start writes to job.toml: the form's config with the te_lr in force spelled out, as the budget shows it."""
    return dataclasses.replace(config, te_lr=config.resolved_te_lr())


def start_job(kind: str, config: TrainConfig, *, preset: str = "", probe_dir: str | None = None,
              start_worker: bool = True) -> tuple[jobs.Job, bool]:
    """Queue what Start, Find LR or Sweep asks for; (job, True) when the run records the probe its LRs came from.

    A run records the probe (probe.json copied in, as `lora-studio train --lr-from-probe` does) only while
    the form still holds what the probe → run rule made of it, so its LoRA files carry the found d·lr.
    """
    probe = lr_probe.read_probe(probe_dir) if probe_dir and kind in ("train", "sweep") else None
    from_probe = probe is not None and lr_probe.follows_probe(config, probe)
    job = jobs.submit(kind, config if kind == "probe" else job_config(config), preset=preset, start_worker=False)
    if from_probe:
        # Before the worker starts; the loop reads probe.json only when it writes an epoch file.
        lr_probe.record_probe(probe_dir, job.run_dir)
    if start_worker:
        jobs.ensure_worker()
    return job, from_probe


def probe_applied_text(probe: dict, config: TrainConfig) -> str:
    """The form message once Find LR's numbers are in the form."""
    return (f"**Find LR** put its numbers in the form: unet_lr = {probe['d_lr']:.3g} ÷ {config.probe_divisor:g} = "
            f"**{config.unet_lr:g}**, te_lr auto (in force: {te_lr_text(config)}), {config.optimizer}, "
            f"{config.scheduler}. Start trains them and records the probe in the run.")


def probe_left_text(probe: dict, config: TrainConfig) -> str:
    """The form message once the form no longer holds Find LR's numbers: what changed."""
    rule = lr_probe.apply_probe(config, probe)
    def shown(value) -> str:
        return "auto" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    changed = [f"{name} {shown(getattr(rule, name))} → {shown(getattr(config, name))}"
               for name in ("unet_lr", "te_lr", "optimizer", "scheduler") if getattr(rule, name) != getattr(config, name)]
    return (f"The form no longer holds Find LR's numbers ({', '.join(changed)}): Start trains what the form shows "
            f"(te_lr in force: {te_lr_text(config)}), and the run will not record the probe.")


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
            study_form = study_panel.build()
            with gr.Accordion("More settings", open=False):
                comps.update(build_fields(defaults, more))
            with gr.Accordion("Advanced", open=False):
                comps.update(build_fields(defaults, advanced))
            with gr.Accordion("Save as preset", open=False):
                preset_name = gr.Textbox(label="preset name", elem_id="preset-name")
                preset_note = gr.Textbox(label="note (written as a comment in the file)")
                save = gr.Button("Save as preset", elem_id="save-preset-button")
        with gr.Column(scale=3, min_width=480):
            study = study_view.build()  # shown while the monitor follows a study job
            panel = monitor.build()
    study_view.build_report(study)  # full width below: the report is a wide page

    watch = gr.State(monitor.Watch())
    form_inputs = set(comps.values())
    panel_outputs = [*panel.outputs(), watch]

    def show(w: monitor.Watch, extra: dict | None = None) -> dict:
        return {**monitor.render(panel, w, monitor.update(w)), watch: w, **(extra or {})}

    def on_character(data: dict) -> dict:
        data[watch].notice_job = None  # the message shown from now on is this one
        remembered = characters.last_settings(data[name] or "")
        if remembered is None:
            return {form_message: ""}
        return {**values_of(remembered, comps), form_message: f"Loaded the last settings used for **{remembered.name}**."}

    def on_preset(data: dict) -> dict:
        data[watch].notice_job = None
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

    def on_recipe_change(data: dict) -> str:
        """Say so once the form stops (or starts again) holding the numbers Find LR put there."""
        w = data[watch]
        if not w.applied_probe:
            return gr.skip()
        try:
            config = read_form(data, comps)
            probe = lr_probe.read_probe(w.applied_probe)
        except UserError:
            return gr.skip()  # the budget line already shows what is wrong with the form
        held = lr_probe.follows_probe(config, probe)
        if held == w.probe_held:
            return gr.skip()
        w.probe_held, w.notice_job = held, None
        return probe_applied_text(probe, config) if held else probe_left_text(probe, config)

    def submit(kind: str):
        def handler(data: dict) -> dict:
            w = data[watch]
            try:
                config = read_form(data, comps)
                jobs.check_inputs(config)
                characters.remember(config)
                busy = jobs.active_job()
                busy_state = jobs.job_state(busy) if busy else ""
                job, from_probe = start_job(kind, config, preset=presets.preset_label(data[preset], config),
                                            probe_dir=w.applied_probe)
            except UserError as exc:
                w.notice_job = None
                return {form_message: monitor.error_text(exc)}
            what = {"train": "Training", "probe": "The LR probe", "sweep": "The batch-size sweep"}[kind]
            queued = f" It waits behind `{busy.name}`." if busy_state in ("running", "queued") else ""
            recorded = " Its LRs come from Find LR; the run records the probe." if from_probe else ""
            w.follow(str(job.run_dir))
            w.notice_job = str(job.run_dir)
            if kind == "probe":
                w.pending_probe = str(job.run_dir)
            return show(w, {form_message: f"{what} is queued as `{job.id}`.{queued}{recorded}"})
        return handler

    def on_tick(w: monitor.Watch) -> dict:
        out = show(w)
        if w.notice_job and (w.notice_job != w.job or jobs.job_state(Path(w.notice_job)) in jobs.TERMINAL):
            w.notice_job = None  # "queued as…" / "Stopping after…" no longer describe the job
            out[form_message] = ""
        probe = w.progress.probe
        if probe and w.progress.state == "done" and w.job == w.pending_probe:
            # Only the probe this session's Find LR started fills the form; viewing an old one does not.
            w.pending_probe, w.applied_probe, w.probe_held = None, w.job, True
            config = lr_probe.apply_probe(jobs.load_job(Path(w.job)).config, probe)
            out.update({comps[n]: to_widget(n, getattr(config, n)) for n in ("unet_lr", "te_lr", "optimizer", "scheduler")})
            out[form_message] = probe_applied_text(probe, config)
        return out

    def on_watch(run_dir: str, w: monitor.Watch) -> dict:
        return show(w.follow(run_dir))

    def on_stop(w: monitor.Watch) -> dict:
        if not w.job:
            return show(w)
        jobs.stop(w.job)
        w.notice_job = w.job
        # The panel is left to the timer: a reply carrying the status read here ("running") could land after
        # the tick that showed "stopped", and a stopped run has no later event to correct it.
        return {panel.stop: gr.update(interactive=False), watch: w,
                form_message: "Stopping after the current step (its state is saved for Resume)…"}

    def on_resume(w: monitor.Watch) -> dict:
        try:
            if not w.job or not monitor.can_resume(Path(w.job)):
                raise UserError("this run has nothing to resume: it ended before it saved any training state",
                                "fix the settings in the form and press Start for a new run")
            jobs.resume(w.job)
        except UserError as exc:
            w.notice_job = None
            return {form_message: monitor.error_text(exc)}
        w.notice_job = w.job
        return {**show(w), form_message: "Resuming from the last saved state."}

    def on_save_preset(data: dict) -> dict:
        data[watch].notice_job = None
        try:
            path = presets.save_preset(read_form(data, comps), (data[preset_name] or "").strip(), data[preset_note] or "")
        except UserError as exc:
            return {form_message: monitor.error_text(exc)}
        return {form_message: f"Saved preset **{path.stem}** to `{path}`.",
                preset: gr.update(choices=presets.list_presets(), value=path.stem)}

    def on_load(w: monitor.Watch) -> dict:
        active = jobs.active_job()
        w.follow(str(active) if active else None)
        if active and jobs.load_job(active).kind == "probe" and jobs.job_state(active) in ("queued", "running"):
            w.pending_probe = str(active)  # a reopened page still gets the numbers of the probe it started
        # A reopened page shows the settings last used for this character, not the launch defaults.
        remembered = characters.last_settings(defaults.name)
        return show(w, values_of(remembered, comps) if remembered else None)

    all_form = [*comps.values(), form_message]
    quiet = {"show_progress_on": [form_message]}  # a click must not grey out the live panel
    name.input(on_character, inputs={name, watch}, outputs=all_form, **quiet)
    # select, not input: choosing the preset that is already shown applies it again (input only fires on a change).
    preset.select(on_preset, inputs={preset, watch, *(comps[n] for n in CHARACTER_FIELDS)}, outputs=all_form, **quiet)
    gr.on([comps[n].change for n in BUDGET_FIELDS if n in comps], on_budget, inputs=form_inputs, outputs=budget,
          show_progress="hidden", trigger_mode="always_last")
    recipe = ("unet_lr", "te_lr", "optimizer", "scheduler", "probe_divisor")
    gr.on([comps[n].change for n in recipe], on_recipe_change, inputs={*form_inputs, watch},
          outputs=[form_message], show_progress="hidden", trigger_mode="always_last")
    for button, kind in ((start, "train"), (find_lr, "probe"), (sweep, "sweep")):
        button.click(submit(kind), inputs={*form_inputs, watch, preset}, outputs=[*panel_outputs, form_message], **quiet)
    gr.Timer(1.0).tick(on_tick, inputs=watch, outputs=[*panel_outputs, *comps.values(), form_message],
                       show_progress="hidden")
    panel.job.input(on_watch, inputs=[panel.job, watch], outputs=panel_outputs, show_progress="hidden")
    panel.stop.click(on_stop, inputs=watch, outputs=[*panel_outputs, form_message], **quiet)
    panel.resume.click(on_resume, inputs=watch, outputs=[*panel_outputs, form_message], **quiet)
    save.click(on_save_preset, inputs={*form_inputs, watch, preset_name, preset_note}, outputs=[form_message, preset],
               **quiet)
    demo.load(on_load, inputs=watch, outputs=[*panel_outputs, *comps.values()], show_progress="hidden")
    demo.load(on_budget, inputs=form_inputs, outputs=budget)
    study_panel.wire(study_form, comps, preset, watch, show, panel_outputs, lambda data: read_form(data, comps))
    study_view.wire(study, watch)
    return TrainTab(watch, panel_outputs, show, comps, budget, on_budget)
