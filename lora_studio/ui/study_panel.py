"""The Train tab's "Study batch sizes" panel: StudyConfig's fields, and Start study with the form's TrainConfig.

The fields are built from StudyConfig's own metadata (label, help, choices). Start study reads the
Train tab's form with the same read_form() and job_config() that Start uses, and queues one study job
(jobs.submit_study); the study view (ui/study_view.py) follows it beside the monitor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Callable

import gradio as gr

from lora_studio import jobs, presets
from lora_studio.config import STUDY_DEFAULT_PROMPTS, StudyConfig, TrainConfig, study_config_from_dict
from lora_studio.errors import UserError

PROMPT_BOXES = 3
ESSENTIAL = ("batch_sizes", "prompts", "lr_scaling", "weights")  # the rest under "More study settings"
_INFO = {f.name: dict(f.metadata) for f in fields(StudyConfig)}
_KINDS = {f.name: str(f.type) for f in fields(StudyConfig)}
_DEFAULTS = StudyConfig()
PROMPT_PLACEHOLDERS = ("empty = the character prompt (trigger + the tags on most kept frames)",
                       "e.g. sitting on tree (empty = not used)", "e.g. lying on beach (empty = not used)")


@dataclass
class StudyPanel:
    """The panel's components: one per StudyConfig field (prompts: one per box), the button, its message."""

    fields: dict  # field name → component; "prompts" → a list of PROMPT_BOXES text boxes
    start: gr.Button
    message: gr.Markdown

    def inputs(self) -> set:
        """Every component Start study reads."""
        return {c for name, comp in self.fields.items() for c in (comp if isinstance(comp, list) else [comp])}


def _widget_value(name: str):
    value = getattr(_DEFAULTS, name)
    return ",".join(str(b) for b in value) if name == "batch_sizes" else value


def _component(name: str):
    info = _INFO[name]
    common = {"label": info.get("label") or name, "info": info["help"], "elem_id": f"study-{name}"}
    value = _widget_value(name)
    if info.get("choices"):
        if name == "lr_scaling":
            return gr.Radio(list(info["choices"]), value=value, **common)
        return gr.Dropdown(list(info["choices"]), value=value, **common)
    # Numbers as text: a gr.Number would clamp or turn an empty box into None silently; read_study refuses it.
    return gr.Textbox(value="" if value is None else str(value), **common)


def build() -> StudyPanel:
    """Lay out the panel (an accordion) in the current Blocks context."""
    comps: dict = {}
    with gr.Accordion("Study batch sizes", open=False, elem_id="study-panel"):
        gr.Markdown("One job: a training run per batch size with the form's settings, then for each study prompt "
                    "an epoch × weight grid over the runs, every cell scored, and a report with one recommendation.")
        comps["batch_sizes"] = _component("batch_sizes")
        comps["prompts"] = [
            gr.Textbox(value=STUDY_DEFAULT_PROMPTS[i] if i < len(STUDY_DEFAULT_PROMPTS) else "",
                       label=f"Study prompt {i + 1}", placeholder=PROMPT_PLACEHOLDERS[i], elem_id=f"study-prompt-{i + 1}",
                       info=_INFO["prompts"]["help"] if i == 0 else None)
            for i in range(PROMPT_BOXES)]
        with gr.Row():
            comps["lr_scaling"] = _component("lr_scaling")
            comps["weights"] = _component("weights")
        with gr.Accordion("More study settings", open=False):
            for f in fields(StudyConfig):
                if f.name not in ESSENTIAL:
                    comps[f.name] = _component(f.name)
        start = gr.Button("Start study", variant="primary", elem_id="study-start-button")
        message = gr.Markdown("", elem_id="study-message")
    return StudyPanel(comps, start, message)


def read_study(values: dict) -> StudyConfig:
    """The validated StudyConfig from the panel's {field name: widget value} (prompts: the boxes' texts)."""
    out = {}
    for name, value in values.items():
        if name == "prompts":
            boxes = [(text or "").strip() for text in value]
            # The first box always runs (empty = the character prompt); an empty later box is not used.
            value = boxes[:1] + [text for text in boxes[1:] if text]
        elif _KINDS[name] in ("int", "float"):
            value = _number(name, value)
        elif name == "batch_sizes":
            value = str(value or "").strip()
            if not value:
                raise UserError("study batch sizes are empty", "type them with commas, e.g. 1,2,3,4")
        out[name] = value
    return study_config_from_dict(out)


def _number(name: str, text) -> int | float:
    label = _INFO[name].get("label") or name
    try:
        number = float(str(text).strip())
    except ValueError:
        raise UserError(f"study '{label}' is {str(text).strip() or 'empty'}",
                        f"type a {'whole ' if _KINDS[name] == 'int' else ''}number") from None
    if _KINDS[name] == "int":
        if not number.is_integer():
            raise UserError(f"study '{label}' is {number:g}", "type a whole number")
        return int(number)
    return number


def plan_text(config: TrainConfig, study: StudyConfig) -> str:
    """'2 runs (batch 1: 16 steps, batch 2: 8 steps), then 2 grids of 2 epochs × 3 weights × 2 runs'."""
    frames = jobs.kept_frames(config)
    steps = [f"batch {b}: {jobs.step_budget(dataclasses.replace(config, batch_size=b), frames)['total_steps']} steps"
             for b in study.batch_sizes]
    weights = [w for w in study.weights.replace(" ", "").split(",") if w]
    runs = len(study.batch_sizes)
    grids = len(study.prompts) * study.seeds
    seeds = f" ({len(study.prompts)} prompt{'s' * (len(study.prompts) != 1)} × {study.seeds} seeds)" if study.seeds > 1 else ""
    return (f"{runs} run{'s' * (runs != 1)} ({', '.join(steps)}), then {grids} "
            f"grid{'s' * (grids != 1)}{seeds} of {config.epochs} epochs × {len(weights)} weights × {runs} "
            f"run{'s' * (runs != 1)}")


def submit_study(config: TrainConfig, study: StudyConfig, *, preset_label: str = "",
                 start_worker: bool = True) -> jobs.Job:
    """Queue the study the panel asks for; the form's config is written as Start writes it (te_lr in force)."""
    from lora_studio.ui.train_tab import job_config  # here, not at the top: train_tab imports this module

    return jobs.submit_study(job_config(config), study, preset=preset_label, start_worker=start_worker)


def wire(panel: StudyPanel, form: dict, preset: gr.Dropdown, watch: gr.State, show: Callable, outputs: list,
         read_config: Callable[[dict], TrainConfig]) -> None:
    """Start study: the Train tab's form (read_config) plus the panel's StudyConfig → jobs.submit_study; the monitor follows it."""
    from lora_studio.ui import characters
    from lora_studio.ui.monitor import error_text

    def on_start(data: dict) -> dict:
        w = data[watch]
        try:
            config = read_config(data)
            jobs.check_inputs(config)
            values = {name: ([data[c] for c in comp] if isinstance(comp, list) else data[comp])
                      for name, comp in panel.fields.items()}
            study = read_study(values)
            plan = plan_text(config, study)
            characters.remember(config)
            job = submit_study(config, study, preset_label=presets.preset_label(data[preset], config))
        except UserError as exc:
            return {panel.message: error_text(exc)}
        w.follow(str(job.run_dir))
        return {**show(w), panel.message: f"The study is queued as `{job.id}`: {plan}. Its progress and report "
                                          "are shown beside the form."}

    panel.start.click(on_start, inputs={*form.values(), *panel.inputs(), preset, watch},
                      outputs=[*outputs, panel.message], show_progress_on=[panel.message])
