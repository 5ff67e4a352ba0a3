"""Assemble the studio: one tab module each, the demo defaults, and how it is served.

The UI process holds no model and imports no torch; it reads run folders and queues jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from lora_studio import paths, presets
from lora_studio.config import TrainConfig
from lora_studio.errors import UserError
from lora_studio.ui import characters, dataset_tab, runs_tab, train_tab, xy_tab

CSS = """
.ls-status { font-size: 1.05em; padding: 4px 2px; }
.ls-status progress { width: 100%; height: 12px; margin-top: 6px; }
"""


@dataclass
class StudioDefaults:
    """What the form shows on first open: the built-in demo unless the user named their own."""

    base_model: str = "toy"
    dataset: str = ""
    name: str = "tibbie"
    trigger_word: str = "tibbie"
    preset: str = ""

    def resolved_preset(self) -> str:
        """The preset to start from: the one asked for, else 'demo' if shipped, else the seed recipe."""
        names = presets.list_presets()
        for candidate in (self.preset, "demo", "seed-recipe"):
            if candidate and (candidate in names or candidate.endswith(".toml")):
                return candidate
        return names[0] if names else ""

    def config(self) -> TrainConfig:
        """The first config: the character's remembered settings, else the preset over the demo."""
        dataset = self.dataset or str(paths.assets_dir() / "demo-dataset")
        remembered = characters.last_settings(self.name)
        keep = {"name": self.name, "base_model": self.base_model, "dataset": dataset, "trigger_word": self.trigger_word}
        if remembered is not None:
            return remembered
        preset = self.resolved_preset()
        try:
            return presets.load_preset(preset, base=TrainConfig(**keep)) if preset else TrainConfig(**keep)
        except UserError:
            return TrainConfig(**keep)  # a broken preset file must not keep the studio from opening


def build_app(defaults: StudioDefaults | None = None) -> gr.Blocks:
    """The whole studio as a gr.Blocks (not launched)."""
    defaults = defaults or StudioDefaults()
    with gr.Blocks(title="LoRA Studio", analytics_enabled=False) as demo:
        gr.Markdown("## LoRA Studio\nTrain a character LoRA for Stable Diffusion 1.5 and watch it learn.")
        with gr.Tabs() as tabs:
            with gr.Tab("Train", id="train") as train_page:
                config = defaults.config()
                train = train_tab.build(demo, config, defaults.resolved_preset())
            with gr.Tab("Dataset", id="dataset") as dataset_page:
                form = train.comps
                dataset_tab.build(dataset_page, form["dataset"], form["trigger_word"], form["resolution"],
                                  form["caption_extension"], folder=config.dataset, trigger_word=config.trigger_word)
            with gr.Tab("XY plot", id="xy") as xy_page:
                xy_tab.build(demo, xy_page)
            with gr.Tab("Runs", id="runs") as runs:
                runs_tab.build(runs, tabs, train)
        # Frames kept or excluded on the Dataset tab change the step budget.
        train_page.select(train.refresh_budget, inputs=set(train.comps.values()), outputs=train.budget,
                          show_progress="hidden")
    return demo


def launch_kwargs() -> dict:
    """Blocks.launch() settings every launcher needs: run folders may be served (samples)."""
    return {"allowed_paths": [str(paths.data_home())], "css": CSS, "show_error": True,
            "footer_links": ["gradio", "settings"]}
