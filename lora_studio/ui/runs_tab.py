"""The Runs tab: every job folder with its kind, state and files; pick one to watch it on Train, or delete it."""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from lora_studio import jobs, paths, runfiles
from lora_studio.config import load_toml
from lora_studio.errors import UserError
from lora_studio.ui import monitor
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


def deletable_runs() -> list[str]:
    """Names of the job folders that may be deleted: every one the worker is not running or about to run."""
    alive = jobs.worker_running()
    return [p.name for p in jobs.list_jobs() if jobs.job_state(p, alive) not in ("queued", "running")]


def _run_folder(name: str) -> Path:
    """The job folder of a run name, refusing anything that is not one of the studio's own run folders."""
    run_dir = paths.runs_dir() / (name or "")
    if not name or run_dir.parent != paths.runs_dir() or not (run_dir / runfiles.JOB_FILE).is_file():
        raise UserError(f"no run named {name!r}", "pick a run from the list")
    return run_dir


def delete_summary(name: str) -> str:
    """What deleting a run removes, for the confirmation: its folder, file count and size."""
    run_dir = _run_folder(name)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    loras = sum(1 for p in files if p.suffix == ".safetensors")
    size = sum(p.stat().st_size for p in files)
    return (f"Delete **{name}** and everything in `{run_dir}`: {len(files)} files ({size / 1e6:.1f} MB), "
            f"{loras} LoRA file{'s' * (loras != 1)}? This cannot be undone.")


def delete_run(name: str, asked: str | None = None) -> Path:
    """Delete a finished, stopped or failed run's folder with all its files (never a queued or running one).

    `asked` is the run the confirmation on screen named; a different pick since then is refused.
    """
    if asked is not None and name != asked:
        raise UserError(f"the question named {asked}, but {name or 'no run'} is picked now",
                        "click Delete… again to be asked about the run picked")
    run_dir = _run_folder(name)
    state = jobs.job_state(run_dir)
    if state in ("queued", "running"):
        raise UserError(f"{name} is {state}", "stop it first (Train tab: Stop), then delete it")
    shutil.rmtree(run_dir)
    return run_dir


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
    with gr.Accordion("Delete a run", open=False):
        with gr.Row():
            pick = gr.Dropdown(deletable_runs(), value=None, label="run to delete (not a queued or running one)",
                               elem_id="delete-run", scale=4)
            delete = gr.Button("Delete…", variant="stop", elem_id="delete-run-button", scale=1)
        delete_message = gr.Markdown("", elem_id="delete-message")
        asked = gr.State(None)  # the run the question on screen names
        with gr.Row(visible=False) as confirm_row:
            confirm = gr.Button("Yes, delete its files", variant="stop", elem_id="delete-confirm-button")
            cancel = gr.Button("Cancel", elem_id="delete-cancel-button")

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

    def on_delete(name: str | None) -> dict:
        try:
            return {delete_message: delete_summary(name or ""), confirm_row: gr.Row(visible=True), asked: name}
        except UserError as exc:
            return {delete_message: monitor.error_text(exc), confirm_row: gr.Row(visible=False), asked: None}

    def on_confirm(name: str | None, asked_name: str | None) -> dict:
        try:
            run_dir = delete_run(name or "", asked=asked_name or "")
            text = f"Deleted **{run_dir.name}** and its files."
        except UserError as exc:
            text = monitor.error_text(exc)
        table_now, worker_now = on_refresh()
        return {delete_message: text, confirm_row: gr.Row(visible=False), table: table_now, worker: worker_now,
                pick: gr.Dropdown(choices=deletable_runs(), value=None), asked: None}

    def on_cancel() -> dict:
        return {delete_message: "", confirm_row: gr.Row(visible=False), asked: None}

    def on_tab() -> dict:
        table_now, worker_now = on_refresh()
        return {table: table_now, worker: worker_now, pick: gr.Dropdown(choices=deletable_runs())}

    refresh.click(on_tab, outputs=[table, worker, pick])
    tab.select(on_tab, outputs=[table, worker, pick])
    delete.click(on_delete, inputs=pick, outputs=[delete_message, confirm_row, asked])
    # A new choice must be confirmed again, so Yes deletes only the run the question named. (Clearing the
    # question on the dropdown's input event instead raced the Delete click: its empty reply could land last.)
    confirm.click(on_confirm, inputs=[pick, asked], outputs=[delete_message, confirm_row, table, worker, pick, asked])
    cancel.click(on_cancel, outputs=[delete_message, confirm_row, asked])
    table.select(on_select, inputs=train.watch, outputs=[*train.outputs, tabs])
