"""study.json → report.html (one self-contained file to post) and report.png (the same as one sheet).

    write_report(study_dir)   # → {"report": .../report.html, "sheet": .../report.png}

The report reads only study.json and the files it names (schema in lora_studio/study/__init__.py), so it
can be written again at any time, and of a stopped study too: runs not trained and grids not drawn yet
are said in words, never a crash or a broken image. Every image is a data: URI; the grids keep their
original PNG bytes, so A1111's PNG Info still reads their `parameters` text out of the HTML file.
Charts come from curves.py, the sheet from sheet.py; the words here are shared by both.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from lora_studio import runfiles
from lora_studio.errors import UserError
from lora_studio.generate.prompt import format_weight

LR_SCALING_WORDS = {
    "same": "the same learning rate at every batch size (the seed's recipe)",
    "sqrt": "learning rates scaled with √(batch size ÷ the preset's batch size)",
}


def load_study(study_dir: Path) -> dict:
    """The study.json of a study folder, or a UserError saying what is missing."""
    path = Path(study_dir) / runfiles.STUDY_FILE
    if not path.is_file():
        raise UserError(f"{study_dir} has no {runfiles.STUDY_FILE}", "give the folder of a batch-size study "
                        "(lora-studio study … --output DIR); a study writes it after its first stage")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})", "run or resume the study to write it again") from exc


# --- the words -----------------------------------------------------------------------------------

def weight_text(value) -> str:
    """A weight as a person writes it, or a dash."""
    return "—" if value is None else format_weight(value)


def _own_words(choice: dict) -> str:
    """A reason without its own 'bs2 epoch 6 at weight 0.7: ' (or 'batch size 2, …') prefix, which the report says."""
    reason = choice.get("reason") or ""
    where = f"epoch {choice.get('epoch')} at weight {weight_text(choice.get('weight'))}: "
    for prefix in (f"{choice.get('run')} {where}", f"batch size {choice.get('batch_size')}, {where}", where):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def headline(study: dict) -> str:
    """The recommendation in words, 'batch size 2, epoch 6, weight 0.7: why', or why there is none yet."""
    rec = study.get("recommendation")
    if not rec:
        if not any(r.get("state") == "done" for r in study.get("runs", [])):
            return "No recommendation yet: no run has finished training."
        return "No recommendation yet: the grids are not all drawn and scored."
    if rec.get("epoch") is None or rec.get("weight") is None:
        return rec.get("reason") or "No recommendation."
    return (f"batch size {rec['batch_size']}, epoch {rec['epoch']}, weight {weight_text(rec['weight'])}: "
            f"{_own_words(rec)}").rstrip(": ")


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 90:
        return f" in {seconds:.0f} s"
    if seconds < 5400:
        return f" in {seconds / 60:.0f} min"
    return f" in {seconds / 3600:.1f} h"


def run_state(run: dict) -> str:
    """Where one run stands, in words."""
    state = run.get("state")
    if state == "pending":
        return "has not trained yet"
    epochs_done = len(run.get("epoch_loss") or [])
    if state == "stopped":
        return f"stopped after {epochs_done} of {run.get('epochs', '?')} epochs (resume the study to finish it)"
    return f"trained {run.get('epochs', epochs_done)} epochs, {run.get('steps', '?')} steps{_duration(run.get('elapsed_s'))}"


def seeds_text(study: dict) -> str:
    """'seed 1234' or 'seeds 1234, 1235: every score is the mean over them'."""
    seeds = study.get("seeds") or []
    if len(seeds) <= 1:
        return f"seed {seeds[0]}" if seeds else "one seed"
    return f"seeds {', '.join(str(s) for s in seeds)}: every score is the mean over them"


def grid_state(grid: dict) -> str:
    """Where one prompt's grids stand, in words."""
    return {"pending": "not drawn yet", "stopped": "stopped before every cell was drawn (resume the study to finish)",
            }.get(grid.get("state"), "drawn and scored")


def pick_text(pick: dict | None, run: dict | None = None) -> str:
    """A grid's pick for one run, in words."""
    if not pick:
        return "no pick (not scored yet, or nothing with the LoRA on passed)"
    if pick.get("epoch") is None or pick.get("weight") is None:
        return pick.get("reason") or "no pick"
    return f"epoch {pick['epoch']}, weight {weight_text(pick['weight'])}: {_own_words({**(run or {}), **pick})}".rstrip(": ")


def lr_text(value) -> str:
    """An LR as 3e-03."""
    return "—" if value is None else f"{float(value):.3g}"


def run_rows(study: dict) -> list[dict]:
    """One row per run: its batch size, state, LRs and best cell (the report's table, in both files)."""
    best = {b.get("run"): b for b in study.get("best") or []}
    rec = study.get("recommendation") or {}
    rows = []
    for run in study.get("runs", []):
        cell = best.get(run.get("run")) or {}
        rows.append({
            "batch size": str(run.get("batch_size", "")), "run": str(run.get("run", "")), "state": run_state(run),
            "UNet LR": lr_text(run.get("unet_lr")), "TE LR": lr_text(run.get("te_lr")),
            "epoch": "—" if cell.get("epoch") is None else str(cell["epoch"]), "weight": weight_text(cell.get("weight")),
            "fidelity": _score(cell.get("fidelity")), "adherence": _score(cell.get("adherence")),
            "quality": _score(cell.get("quality")), "F": _score(cell.get("f")),
            "recommended": bool(rec) and rec.get("run") == run.get("run")})
    return rows


TABLE_COLUMNS = ("batch size", "run", "UNet LR", "TE LR", "epoch", "weight", "fidelity", "adherence", "quality", "F")


def _score(value) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def summary_lines(study: dict) -> list[str]:
    """The study in a few lines of text (the sheet's PNG text chunk and the top of both reports)."""
    runs = study.get("runs", [])
    lines = [f"Batch-size study '{study.get('name', '')}' of {study.get('base', '?')} with preset "
             f"{study.get('preset', '?')}: batch sizes {', '.join(str(b) for b in study.get('batch_sizes', []))}; "
             f"{LR_SCALING_WORDS.get(study.get('lr_scaling'), study.get('lr_scaling', '?'))}."]
    lines += [f"{r.get('run')} (batch {r.get('batch_size')}): {run_state(r)}." for r in runs]
    for g in study.get("grids", []):
        lines.append(f"Prompt {g.get('prompt_index', 0) + 1} '{g.get('prompt', '')}': {grid_state(g)}.")
    return lines


def unfinished(study: dict) -> list[str]:
    """What a stopped or running study has not done yet, a line each."""
    lines = [f"{r.get('run')} (batch {r.get('batch_size')}) {run_state(r)}." for r in study.get("runs", [])
             if r.get("state") != "done"]
    lines += [f"Prompt {g.get('prompt_index', 0) + 1}: the grid is {grid_state(g)}." for g in study.get("grids", [])
              if g.get("state") != "done"]
    if not study.get("grids"):
        lines.append("No grid is drawn yet: the grids come after the runs have trained.")
    return lines


def study_complete(study: dict) -> bool:
    """True once every run has trained and every grid is drawn."""
    return (all(r.get("state") == "done" for r in study.get("runs", []))
            and all(g.get("state") == "done" for g in study.get("grids", [])) and bool(study.get("grids")))


# --- files named by study.json -------------------------------------------------------------------

def study_file(study_dir: Path, relative: str | None) -> Path | None:
    """A file study.json names, or None when it names none or the file is not there (yet)."""
    if not relative:
        return None
    path = Path(study_dir) / relative
    return path if path.is_file() else None


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI (the bytes unchanged, text chunks and all)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_bytes(image) -> bytes:
    """A Pillow image encoded as PNG."""
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def heatmap_files(study_dir: Path, grid: dict, runs: list[dict]) -> list[tuple[list[str], Path | None, str]]:
    """A grid's heatmap pictures: ([runs it shows], file or None, relative path); one picture shared by runs once."""
    seen: dict[str, list[str]] = {}
    for run in runs:
        name = run.get("run")
        relative = (grid.get("heatmaps") or {}).get(name) or ""
        seen.setdefault(relative, []).append(name)
    return [(names, study_file(study_dir, relative), relative) for relative, names in seen.items()]


# --- the HTML report -----------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1540px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .headline { font-size: 1.25rem; background: #eef6ee; border-left: 5px solid #3a8a3a;
       padding: .7rem 1rem; } .pending { background: #fff6e0; border-left: 5px solid #d09a00; padding: .5rem 1rem; }
table { border-collapse: collapse; margin: .8rem 0; } th, td { border: 1px solid #ccc; padding: .3rem .6rem;
       text-align: right; } th { background: #f3f3f3; } td.text { text-align: left; }
tr.recommended td { background: #eef6ee; font-weight: 600; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: .92rem; max-width: 900px; }
img { max-width: 100%; height: auto; } .charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.charts figure { flex: 0 1 700px; }
.heatmaps { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.missing { color: #9a4a00; font-style: italic; } code { background: #f3f3f3; padding: 0 .25rem; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{_esc(alt)}">'


def _table_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in (*TABLE_COLUMNS, "state"))
    body = []
    for row in rows:
        cells = "".join(f'<td{" class=text" if c == "run" else ""}>{_esc(row[c])}</td>' for c in TABLE_COLUMNS)
        body.append(f'<tr{" class=recommended" if row["recommended"] else ""}>{cells}'
                    f'<td class=text>{_esc(row["state"])}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def report_html(study: dict, study_dir: Path) -> str:
    """The whole report as one HTML page, every image embedded."""
    from lora_studio.study import curves

    study_dir = Path(study_dir)
    runs = study.get("runs", [])
    name = study.get("name", "")
    out = [f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
           f'<meta name=viewport content="width=device-width, initial-scale=1">'
           f"<title>Batch-size study: {_esc(name)}</title><style>{STYLE}</style></head><body>",
           f"<h1>Batch-size study: {_esc(name)}</h1>",
           f"<p class=meta>Dataset <code>{_esc(study.get('dataset', ''))}</code> · base <code>"
           f"{_esc(study.get('base', ''))}</code> · preset <code>{_esc(study.get('preset', ''))}</code> · "
           f"weights {_esc(', '.join(weight_text(w) for w in study.get('weights', [])))} · "
           f"{_esc(seeds_text(study))}</p>",
           "<h2>Recommendation</h2>", f"<p class=headline>{_esc(headline(study))}</p>"]
    if not study_complete(study):
        notes = unfinished(study)
        out.append("<div class=pending><p>This study is not finished; the report shows what it has so far.</p><ul>"
                   + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul></div>")

    out += ["<h2>Runs and their best cells</h2>",
            f"<p>Learning rate: {_esc(LR_SCALING_WORDS.get(study.get('lr_scaling'), study.get('lr_scaling', '')))}."
            " Best cell: the run's highest F-β of fidelity and adherence over all prompts (F).</p>",
            _table_html(run_rows(study))]

    out += ["<h2>Loss</h2><div class=charts>",
            f"<figure>{_img(png_bytes(curves.loss_chart(runs)), 'training loss of every batch size against epochs')}"
            f"<figcaption>{_esc(curves.LOSS_CAPTION)}</figcaption></figure>"]
    validation = curves.validation_chart(runs)
    if validation is None:
        out.append("<p class=missing>No validation loss: no run held frames out (validation_split = 0).</p>")
    else:
        out.append(f"<figure>{_img(png_bytes(validation), 'validation loss of every batch size against epochs')}"
                   f"<figcaption>{_esc(curves.VALIDATION_CAPTION)}</figcaption></figure>")
    out.append("</div>")

    out.append("<h2>Scores per batch size and prompt</h2>")
    grids = study.get("grids", [])
    if not grids:
        out.append("<p class=missing>No grid yet: the grids are drawn once the runs have trained.</p>")
    seed_mean = f", the mean of {len(study['seeds'])} seeds" if len(study.get("seeds") or []) > 1 else ""
    for grid in grids:
        number = grid.get("prompt_index", 0) + 1
        out.append(f"<h3>Prompt {number}: <code>{_esc(grid.get('prompt', ''))}</code> — {_esc(grid_state(grid))}</h3>")
        out.append("<ul>" + "".join(f"<li>{_esc(r.get('run'))} (batch {_esc(r.get('batch_size'))}): pick "
                                    f"{_esc(pick_text((grid.get('picks') or {}).get(r.get('run')), r))}</li>"
                                    for r in runs) + "</ul>")
        out.append("<div class=heatmaps>")
        for names, path, relative in heatmap_files(study_dir, grid, runs):
            label = ", ".join(names)
            if path is None:
                out.append(f"<p class=missing>Heatmaps of {_esc(label)}: not drawn yet"
                           + (f" ({_esc(relative)} is missing)" if relative else "") + ".</p>")
            else:
                out.append(f"<figure>{_img(path.read_bytes(), f'fidelity, adherence and quality heatmaps of {label}')}"
                           f"<figcaption>{_esc(label)}: fidelity, adherence and quality per epoch (columns) × weight "
                           f"(rows){_esc(seed_mean)}, the pick outlined</figcaption></figure>")
        out.append("</div>")

    out.append("<h2>The grids side by side</h2>")
    for grid in grids:
        number = grid.get("prompt_index", 0) + 1
        combined = study_file(study_dir, grid.get("grid"))
        prompt = grid.get("prompt", "")
        if combined is not None:
            out.append(f"<figure>{_img(combined.read_bytes(), f'prompt {number}: every run side by side')}"
                       f"<figcaption>Prompt {number}: <code>{_esc(prompt)}</code> — every batch size side by side "
                       f"(epochs across, weights down; {_esc(grid.get('grid'))}, its A1111 parameters inside)"
                       "</figcaption></figure>")
            for extra in grid.get("seed_grids") or []:
                path = study_file(study_dir, extra.get("grid"))
                if path is not None:
                    seed = extra.get("seed")
                    out.append(f"<figure>{_img(path.read_bytes(), f'prompt {number}, seed {seed}')}"
                               f"<figcaption>Prompt {number}, seed {_esc(seed)}: the same grid with the "
                               f"next seed ({_esc(extra.get('grid'))})</figcaption></figure>")
            continue
        parts = [(run, study_file(study_dir, path)) for run, path in (grid.get("run_grids") or {}).items()]
        parts = [(run, p) for run, p in parts if p is not None]
        if not parts:
            out.append(f"<p class=missing>Prompt {number}: the grid is {_esc(grid_state(grid))}.</p>")
        for run, path in parts:
            out.append(f"<figure>{_img(path.read_bytes(), f'prompt {number}, {run}')}<figcaption>Prompt {number}, "
                       f"{_esc(run)} (the combined sheet is not drawn yet)</figcaption></figure>")
    out.append("<p class=meta>Made with LoRA Studio.</p></body></html>\n")
    return "\n".join(out)


def write_report(study_dir: Path) -> dict:
    """Write report.html and report.png from study_dir/study.json; {"report": path, "sheet": path}."""
    from lora_studio.study.sheet import save_sheet

    study_dir = Path(study_dir)
    study = load_study(study_dir)
    report = runfiles.atomic_write(study_dir / runfiles.REPORT_FILE, report_html(study, study_dir))
    sheet = save_sheet(study, study_dir, study_dir / runfiles.REPORT_SHEET)
    return {"report": report, "sheet": sheet}
