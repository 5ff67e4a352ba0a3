"""The Runs tab: every job folder with its kind, state and files; pick one to watch it on Train."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from lora_studio import jobs, paths, runfiles
from lora_studio.config import load_toml
from lora_studio.errors import UserError
from lora_studio.ui.train_tab import TrainTab

COLUMNS = ["run", "kind", "state", "progress", "epoch files"]


def _progress(event: dict | None) -> str:
    if not event:
        return ""
    if event.get("type") == runfiles.ERROR:
        return event.get("message", "")
    if "step" in event and event.get("total_steps"):
        return f"step {event['step']} / {event['total_steps']}"
    return f"{event['step']} steps" if "step" in event else ""


def runs_table() -> pd.DataFrame:
    """One row per job, newest first."""
    alive = jobs.worker_running()
    rows = []
    for run_dir in jobs.list_jobs():
        last = jobs.last_event(run_dir)
        rows.append([run_dir.name, _kind(run_dir), jobs.job_state(run_dir, alive), _progress(last),
                     len(list(run_dir.rglob("*.safetensors")))])
    return pd.DataFrame(rows, columns=COLUMNS)


def _kind(run_dir: Path) -> str:
    try:
        return str(load_toml(run_dir / runfiles.JOB_FILE).get("kind", "train"))
    except UserError:  # a hand-edited job.toml that no longer parses: still list the run
        return "?"


def build(tab: gr.Tab, tabs: gr.Tabs, train: TrainTab) -> None:
    """Lay out the tab (inside `tab`) and wire selecting a row to the Train tab's monitor."""
    worker = gr.Markdown("", elem_id="worker-status")
    refresh = gr.Button("Refresh", size="sm")
    table = gr.Dataframe(runs_table(), interactive=False, elem_id="runs-table", wrap=True,
                         column_widths=["40%", "10%", "12%", "28%", "10%"])
    gr.Markdown(f"Click a run to watch it on the Train tab. Run folders are in `{paths.runs_dir()}`; each "
                "holds `job.toml`, `events.jsonl` (one event a line; `tail -f` it), its epoch files and samples.")

    def on_refresh():
        state = "running" if jobs.worker_running() else "not running (it starts with the next job)"
        waiting = len(jobs.queued_jobs())
        return runs_table(), f"**Worker:** {state} · **queued:** {waiting} · log: `{jobs.worker_log_path()}`"

    def on_select(w, evt: gr.SelectData):
        row = evt.row_value
        if not row:
            return {}
        run_dir = paths.runs_dir() / row[COLUMNS.index("run")]
        return {**train.show(w.follow(str(run_dir))), tabs: gr.Tabs(selected="train")}

    refresh.click(on_refresh, outputs=[table, worker])
    tab.select(on_refresh, outputs=[table, worker])
    table.select(on_select, inputs=train.watch, outputs=[*train.outputs, tabs])
